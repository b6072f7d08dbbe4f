import numpy as np
import pytest
import tensorflow as tf

import export
from adversarial import masked
from adversarial import train_lib
from adversarial.masked import MaskedGAN

from conftest import random_images, small_config

SHAPE = (28, 28, 1)


def masks_of(kinds, n=64, seed=0):
  return np.asarray(masked.sample_masks(n, 28, 28, kinds,
                                        tf.constant([seed, 0], tf.int64)))


def test_masks_of_each_kind():
  assert masks_of("all").min() == 1.0
  halves = masks_of("half")[..., 0]
  top = np.zeros((28, 28)); top[:14] = 1
  shapes = [top, top[::-1], top.T, top.T[:, ::-1]]
  for m in halves:
    assert any(np.array_equal(m, s) for s in shapes)
  assert len({m.tobytes() for m in halves}) == 4      # all four sides occur
  for m in masks_of("block")[..., 0]:
    rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
    assert 7 <= len(rows) <= 21 and 7 <= len(cols) <= 21
    assert m.sum() == len(rows) * len(cols)           # one full rectangle
  rates = masks_of("pixels").mean(axis=(1, 2, 3))
  assert rates.min() > 0.15 and rates.max() < 0.85 and rates.std() > 0.05
  mixed = masks_of("pixels,block,half,all", n=200)
  assert set(np.unique(mixed)) == {0.0, 1.0}
  np.testing.assert_array_equal(mixed, masks_of("pixels,block,half,all",
                                                n=200))
  assert not np.array_equal(mixed, masks_of("pixels,block,half,all", n=200,
                                            seed=1))
  with pytest.raises(ValueError, match="corners"):
    masked.parse_kinds("half,corners")


def test_demo_masks():
  bottom = masked.demo_masks("bottom_half", 2, 28, 28)[..., 0]
  assert bottom[:, 14:].min() == 1 and bottom[:, :14].max() == 0
  right = masked.demo_masks("right_half", 2, 28, 28)[..., 0]
  assert right[:, :, 14:].min() == 1 and right[:, :, :14].max() == 0
  block = masked.demo_masks("block", 5, 28, 28, seed=3)
  assert (block.sum(axis=(1, 2, 3)) == 14 * 14).all()


def make(**changes):
  config = small_config(masked=True, g_init_scale=0.5, **changes)
  return train_lib.build_model(config, SHAPE, None, steps=3)


def images(n=8, seed=0):
  return random_images(n, SHAPE, seed).images.astype(np.float32) / 255.0


def test_completion_keeps_the_visible_pixels_and_fills_the_rest():
  model = make()
  assert isinstance(model, MaskedGAN)
  x = images(6)
  m = masked.demo_masks("bottom_half", 6, 28, 28)
  a = model.complete(x, m, seed=0)
  b = model.complete(x, m, seed=1)
  visible = m == 0
  np.testing.assert_array_equal(a[visible], x[visible])
  np.testing.assert_array_equal(b[visible], x[visible])
  assert np.abs(a - b)[~visible].max() > 1e-4        # z changes the fill
  np.testing.assert_array_equal(a, model.complete(x, m, seed=0))
  with pytest.raises(ValueError, match="one \\[H, W, 1\\] mask"):
    model.complete(x, m[:3], seed=0)
  # A mask is 1 or 0 on each pixel: filled in or visible.
  for value in (0.5, np.nan):
    with pytest.raises(ValueError, match=f"masks holding {value!r} are not "
                       f"accepted: expected 1 on the pixels to fill in"):
      model.complete(x, np.where(m == 1, value, 0.0), seed=0)
  np.testing.assert_array_equal(a, model.complete(x, m.astype(bool), seed=0))


def test_packing_is_refused_when_built_by_hand():
  model = make()
  with pytest.raises(ValueError, match="pack=3 is not accepted by "
                     "MaskedGAN.*expected pack=1"):
    MaskedGAN(model.generator, model.discriminator, pack=3)


def test_both_nets_see_the_mask():
  model = make()
  x = tf.constant(images(4))
  z = model.noise_for_seed(4, 0)
  m1 = tf.constant(masked.demo_masks("bottom_half", 4, 28, 28))
  m2 = tf.constant(masked.demo_masks("right_half", 4, 28, 28))
  both = np.asarray(m1 * m2).astype(bool)     # missing under both masks
  g1 = np.asarray(model((z, x, m1)))
  g2 = np.asarray(model((z, x, m2)))
  assert np.abs(g1 - g2)[both].max() > 1e-4
  d1 = model._logits(x, (x, m1), training=False)
  d2 = model._logits(x, (x, m2), training=False)
  assert np.abs(np.asarray(d1) - np.asarray(d2)).max() > 1e-7


def test_masked_run_trains_and_is_not_exported(tmp_path):
  config = small_config(masked=True, epochs=1, mask_kinds="half,all")
  workdir = str(tmp_path / "run")
  result = train_lib.train(config, workdir, verbose=0,
                           train_data=random_images(48))
  assert result.model.mask_kinds == ("half", "all")
  assert result.model.generate(3, seed=0).shape == (3,) + SHAPE
  with pytest.raises(export.ExportError, match="masked"):
    export.export_generator(workdir, str(tmp_path / "serving"))


def test_completion_scores_compare_with_the_mean_fill():

  class Counts:
    """A classifier whose answer is the number of bright pixels mod 10."""

    def predict(self, images, batch_size=None, verbose=0):
      n = (np.asarray(images) > 0.5).sum(axis=(1, 2, 3)) % 10
      return np.eye(10)[n]

  model = make()
  x = images(20)
  labels = (x > 0.5).sum(axis=(1, 2, 3)) % 10
  scores = masked.completion_scores(model, Counts(), x, labels,
                                    np.full(SHAPE, 0.0, np.float32),
                                    completions=2)
  assert set(scores) == set(masked.DEMO_MASKS)
  for s in scores.values():
    assert s["original"] == 1.0
    assert len(s["completed_per_draw"]) == 2
    assert 0.0 <= s["completed"] <= 1.0 and 0.0 <= s["mean_fill"] <= 1.0
  assert scores["bottom_half"]["missing_share"] == pytest.approx(0.5)
  with pytest.raises(ValueError, match="completions=0 are not accepted"):
    masked.completion_scores(model, Counts(), x, labels, x.mean(0),
                             completions=0)
  picture = masked.completion_figure(model, x[:3], "block", completions=2)
  assert picture.shape[0] == 3 * 29 + 1 and picture.shape[1] == 4 * 29 + 1
