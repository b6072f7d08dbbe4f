import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from adversarial import figures
from adversarial import gan as gan_lib
from adversarial import networks
from adversarial import train_lib
from adversarial.config import get_preset

from conftest import random_images, small_config


def _fixed_uniform_generator(low, high):
  """G(z) = a z + b: with z ~ U(-sqrt 3, sqrt 3), p_g is uniform on
  [low, high]."""
  z = keras.Input((1,))
  dense = keras.layers.Dense(1, trainable=False)
  generator = keras.Model(z, dense(z))
  a = (high - low) / (2 * math.sqrt(3))
  dense.set_weights([np.array([[a]], np.float32),
                     np.array([(low + high) / 2], np.float32)])
  return generator


def test_a_trained_discriminator_approaches_the_optimum_for_a_fixed_g():
  # Proposition 1: D*(x) = p_data(x) / (p_data(x) + p_g(x)).
  # Data near 0, where the maxout units' breakpoints start, so that D can
  # bend where the densities are.
  generator = _fixed_uniform_generator(-1.0, 1.0)
  discriminator = networks.mlp_discriminator(
      (1,), hidden=(32, 32), pieces=2, input_dropout=0.0, hidden_dropout=0.0,
      init_scale=0.5, seed=0)
  model = gan_lib.GAN(generator, discriminator, update="alternating", seed=0)
  model.compile(d_optimizer=keras.optimizers.Adam(3e-3),
                g_optimizer=keras.optimizers.SGD(0.0))
  data = np.random.default_rng(0).normal(0.0, 0.5, (400_000, 1)).astype(
      np.float32)
  step = tf.function(model.discriminator_step)
  for i in range(2000):
    step(data[(i * 200) % 399_800:][:200])
  grid = np.linspace(-0.8, 0.8, 17)
  p_data = figures.normal_pdf(grid, 0.0, 0.5)
  optimum = p_data / (p_data + 0.5)
  got = tf.sigmoid(discriminator(grid[:, None].astype(np.float32))).numpy()
  np.testing.assert_allclose(got.ravel(), optimum, atol=0.08)
  assert not any(v.numpy().any() for v in generator.trainable_weights)


def test_toy_gan_ends_with_d_near_one_half_on_the_data():
  config = get_preset("toy_1d").override(jit_compile=True)
  grid = np.linspace(-2.5, -0.5, 21)  # the data's bulk, +-2 std
  first, last = figures.toy_snapshots(config, [0, 3000], grid)
  g = last["g_samples"]
  assert abs(first["g_samples"].mean() + 1.5) > 1.5  # G starts away
  assert abs(g.mean() + 1.5) < 0.15                  # and reaches the data
  assert abs(g.std() - 0.5) < 0.15
  assert np.abs(last["d"] - 0.5).max() < 0.1


def test_sample_figures(tmp_path):
  workdir = str(tmp_path / "run")
  data = random_images(48)
  train_lib.train(small_config(epochs=1), workdir, verbose=0,
                  train_data=data)
  model = train_lib.restore(workdir)[0]
  samples = model.generate(5, seed=0)
  train = data.images.astype(np.float32) / 255.0
  picture = figures.neighbours_figure(samples, train, columns=5)
  # One row of 5 (sample, neighbour) pairs of 28 x 28 RGB tiles.
  assert picture.shape == (29 + 1, 10 * 29 + 1, 3)
  assert (picture == [255, 217, 0]).all(-1).any()   # the yellow frames
  strip = figures.interpolation_figure(model, pairs=3, steps=7)
  assert strip.shape == (3 * 29 + 1, 7 * 29 + 1, 1)
  # The ends of each row are G of the two end points.
  z = np.asarray(model.noise_for_seed(6, 0))
  first = np.asarray(model.generator(z[:1]))[0]
  np.testing.assert_allclose(strip[1:29, 1:29] / 255.0, first, atol=0.003)


@pytest.mark.parametrize("kind", ["conditional", "masked"])
def test_figures_of_conditional_and_masked_runs(tmp_path, kind, mnist_dirs):
  workdir = str(tmp_path / "run")
  config = small_config(epochs=1, g_init_scale=0.5, **{kind: True})
  if kind == "masked":
    config = config.override(mask_kinds="all")
  train_lib.train(config, workdir, verbose=0, train_data=random_images(48))
  model = train_lib.restore(workdir)[0]
  strip = figures.interpolation_figure(model, pairs=3, steps=7)
  assert strip.shape == (3 * 29 + 1, 7 * 29 + 1, 1)
  # Row r starts at z[2r]: G draws it for class r (conditional) or fills in
  # the whole image (masked), as `generate` does.
  if kind == "conditional":
    want = model.generate(6, seed=0, labels=[0, 0, 1, 1, 2, 2])
    other = model.generate(6, seed=0, labels=[3] * 6)
    assert np.abs(want[4] - other[4]).max() > 0.01
  else:
    want = model.generate(6, seed=0)
  for row in range(3):
    tile = strip[1 + 29 * row:29 * (row + 1), 1:29] / 255.0
    np.testing.assert_allclose(tile, want[2 * row], atol=0.003)
  # Figure 2 reads MNIST's training images, from the test session's TFDS
  # directories: the run's config names none.
  manual, data_dir = mnist_dirs
  paths = figures.write_figures(
      workdir, str(tmp_path / "figs"), toy_steps=0,
      data_dirs={"tfds_manual_dir": manual, "tfds_data_dir": data_dir})
  assert [os.path.basename(p) for p in paths] == [
      "figure2_neighbours.png", "figure3_interpolation.png"]


def test_write_figures_names_a_missing_run_and_writes_nothing(tmp_path):
  out = tmp_path / "figs"
  with pytest.raises(FileNotFoundError, match="workdir='.*none' does not "
                     "exist"):
    figures.write_figures(str(tmp_path / "none"), str(out))
  workdir = str(tmp_path / "run")
  train_lib.train(small_config(epochs=1), workdir, verbose=0,
                  train_data=random_images(48))
  with pytest.raises(FileNotFoundError, match="checkpoint='x.weights.h5'"):
    figures.write_figures(workdir, str(out), checkpoint="x.weights.h5")
  with pytest.raises(ValueError, match="toy_steps=-1 is not accepted"):
    figures.write_figures(workdir, str(out), toy_steps=-1)
  with pytest.raises(ValueError, match=r"out='gs://b/figs' is not accepted: "
                     r"expected a folder of the file system"):
    figures.write_figures(workdir, "gs://b/figs")
  assert not out.exists() and not os.path.exists("gs:")
  out.write_text("a file, not a folder")
  with pytest.raises(ValueError, match=r"out='.*figs' cannot be created.*"
                     r"expected a writable folder"):
    figures.write_figures(workdir, str(out), toy_steps=0)
  assert out.read_text() == "a file, not a folder"


def test_a_run_of_the_toy_data_is_refused_where_images_are_needed(tmp_path):
  from adversarial import evaluation
  train_lib.train(get_preset("toy_1d").override(epochs=1, toy_size=200),
                  str(tmp_path), verbose=0)
  toy = (r"the run in '.*' is of the 1-D toy data \(dataset='toy_gaussian'\),"
         r" whose samples are numbers, not images: expected a run of an "
         r"image dataset for ")
  with pytest.raises(ValueError, match=toy + "Figures 2 and 3"):
    figures.write_figures(str(tmp_path), str(tmp_path / "figures"),
                          toy_steps=0)
  with pytest.raises(ValueError, match=toy + "the Parzen-window estimate"):
    evaluation.evaluate_workdir(str(tmp_path))
  assert not (tmp_path / "figures").exists()
  assert not (tmp_path / "evaluation.json").exists()
