import numpy as np
import pytest
import tensorflow as tf

from adversarial import networks
from adversarial.config import PAPER_MNIST

from conftest import small_config


def test_maxout_matches_numpy():
  layer = networks.Maxout(3, 4)
  x = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
  y = np.asarray(layer(x))
  w, b = (np.asarray(v) for v in layer.weights)
  z = (x @ w + b).reshape(5, 3, 4)
  np.testing.assert_allclose(y, z.max(axis=-1), rtol=1e-5, atol=1e-6)
  assert y.shape == (5, 3)


def test_maxout_rejects_bad_sizes():
  with pytest.raises(ValueError, match="units=0"):
    networks.Maxout(0, 5)


def test_paper_pair_architecture_and_initial_statistics():
  means = np.full((28, 28, 1), 0.13, np.float32)
  means[0, 0, 0] = 0.0  # clipped to 1e-7, not -inf
  g, d = networks.build_networks(PAPER_MNIST, (28, 28, 1), means)
  dense = [l for l in g.layers if l.__class__.__name__ == "Dense"]
  assert [l.units for l in dense] == [1200, 1200, 784]
  assert [l.activation.__name__ for l in dense] == ["relu", "relu", "sigmoid"]
  maxouts = [l for l in d.layers if isinstance(l, networks.Maxout)]
  assert [(l.units, l.pieces) for l in maxouts] == [(240, 5), (240, 5)]
  rates = [l.rate for l in d.layers if isinstance(l, networks.Dropout)]
  assert rates == [0.2, 0.5, 0.5]
  for model, scale in ((g, 0.05), (d, 0.005)):
    for w in model.weights:
      w = np.asarray(w)
      if w.ndim == 2:  # kernels: U(-scale, scale), std scale / sqrt(3)
        assert np.abs(w).max() <= scale
        np.testing.assert_allclose(w.std(), scale / np.sqrt(3), rtol=0.05)
  bias = np.asarray(g.get_layer("output").bias)
  np.testing.assert_allclose(bias[1], np.log(0.13 / 0.87), rtol=1e-5)
  np.testing.assert_allclose(bias[0], np.log(1e-7), rtol=1e-3)
  assert np.all(np.asarray(d.get_layer("maxout0").bias) == 0)


def test_generator_starts_near_the_mean_image_in_range():
  rng = np.random.default_rng(0)
  means = rng.uniform(0.05, 0.95, size=(28, 28, 1)).astype(np.float32)
  g, d = networks.build_networks(PAPER_MNIST, (28, 28, 1), means)
  z = rng.uniform(-np.sqrt(3), np.sqrt(3), size=(64, 100)).astype(np.float32)
  x = np.asarray(g(z))
  assert x.shape == (64, 28, 28, 1)
  assert x.min() >= 0 and x.max() <= 1
  # Small weights: every sample starts close to the data's mean image.
  assert np.abs(x.mean(axis=0) - means).max() < 0.1
  logits = np.asarray(d(x))
  assert logits.shape == (64, 1)
  assert np.abs(logits).max() < 0.1  # D(x) starts near 1/2


def test_discriminator_dropout_only_in_training():
  _, d = networks.build_networks(small_config(), (28, 28, 1))
  x = np.random.default_rng(1).uniform(size=(4, 28, 28, 1)).astype("float32")
  np.testing.assert_array_equal(np.asarray(d(x)), np.asarray(d(x)))
  assert not np.allclose(np.asarray(d(x, training=True)),
                         np.asarray(d(x, training=True)))


@pytest.mark.parametrize("shape", [(32, 32, 3), (28, 28, 1)])
def test_conv_pair_shapes_and_tanh_range(shape):
  config = small_config(architecture="conv", g_output="tanh",
                        conv_filters=(8, 16), latent_dim=8)
  g, d = networks.build_networks(config, shape)
  z = np.random.default_rng(0).normal(size=(3, 8)).astype("float32")
  x = np.asarray(g(z))
  assert x.shape == (3,) + shape
  assert x.min() >= -1 and x.max() <= 1
  assert np.asarray(d(x)).shape == (3, 1)


def test_dropout_masks_agree_with_and_without_xla():
  layer = networks.Dropout(0.5, seed=4)
  x = tf.ones([16, 32])
  plain = tf.function(lambda x: layer(x, training=True))
  layer.seed_generator.state.assign([4, 0])
  a = plain(x).numpy()
  layer.seed_generator.state.assign([4, 0])
  b = tf.function(lambda x: layer(x, training=True), jit_compile=True)(x)
  np.testing.assert_array_equal(a, b.numpy())
  assert set(np.unique(a)) == {0.0, 2.0}
  assert 0.4 < (a == 0).mean() < 0.6


def test_conv_pair_rejects_indivisible_images():
  config = small_config(architecture="conv", conv_filters=(8, 16, 32))
  with pytest.raises(ValueError, match=r"\(28, 28, 1\).*divisible by 8"):
    networks.build_networks(config, (28, 28, 1))


@pytest.mark.parametrize("changes,shape,message", [
    ({}, (28, 28), r"image_shape=\(28, 28\) is not accepted: expected "
     r"\(height, width, channels\)"),
    ({}, (0, 28, 1), r"image_shape=\(0, 28, 1\) is not accepted"),
    ({}, (28.0, 28, 1), r"image_shape=\(28.0, 28, 1\) is not accepted"),
    (dict(dataset="toy_gaussian"), (28, 28, 1), r"expected \(1,\) for "
     r"dataset='toy_gaussian'"),
    (dict(g_hidden=[16]), (28, 28, 1), r"g_hidden=\[16\] is not accepted"),
])
def test_bad_shapes_and_configurations_are_named(changes, shape, message):
  with pytest.raises(ValueError, match=message):
    networks.build_networks(small_config(**changes), shape)


def test_sizes_are_parameters():
  config = small_config(g_hidden=(7, 9), d_hidden=(5,), d_pieces=3,
                        g_activation="tanh")
  g, d = networks.build_networks(config, (8, 8, 3))
  assert g.output_shape == (None, 8, 8, 3)
  assert [l.units for l in g.layers if hasattr(l, "units")] == [7, 9, 192]
  assert [(l.units, l.pieces) for l in d.layers
          if isinstance(l, networks.Maxout)] == [(5, 3)]


def test_output_bias_of_wrong_size_is_rejected():
  with pytest.raises(ValueError, match="783 values: expected 784"):
    networks.mlp_generator(8, (28, 28, 1), output_bias=np.zeros(783))
