import numpy as np
import pytest

from adversarial import semisupervised as ss
from adversarial import train_lib

from conftest import small_config


def test_balanced_subset():
  labels = np.repeat(np.arange(10), 30)
  idx = ss.balanced_subset(labels, 100, seed=0)
  assert len(idx) == 100 and len(set(idx)) == 100
  np.testing.assert_array_equal(np.bincount(labels[idx]), [10] * 10)
  np.testing.assert_array_equal(idx, ss.balanced_subset(labels, 100, seed=0))
  assert not np.array_equal(idx, ss.balanced_subset(labels, 100, seed=1))
  with pytest.raises(ValueError, match="multiple of the 10 classes"):
    ss.balanced_subset(labels, 105, seed=0)
  with pytest.raises(ValueError, match="size=0 is not accepted: expected a "
                     "positive multiple"):
    ss.balanced_subset(labels, 0, seed=0)
  # 30 of each class: 300 is the most with the same count of each.
  ss.check_sizes(labels, [10, 300])
  with pytest.raises(ValueError, match=r"size=310 is not accepted: .* of at "
                     r"most 300 \(the rarest class, 0, has 30 examples\)"):
    ss.balanced_subset(labels, 310, seed=0)
  uneven = np.concatenate([labels, np.full(5, 3)])[5:]  # 25 of class 0
  with pytest.raises(ValueError, match=r"at most 250 \(the rarest class, 0, "
                     r"has 25 examples\)"):
    ss.check_sizes(uneven, [10, 260])


def blobs(n, seed, label_seed=None):
  rng = np.random.default_rng(seed)
  y = rng.integers(0, 4, n)
  centres = np.random.default_rng(42).normal(0, 3, (4, 20))
  x = centres[y] + rng.normal(0, 1, (n, 20))
  if label_seed is not None:
    y = np.random.default_rng(label_seed).integers(0, 4, n)
  return x.astype(np.float32), y


def test_linear_probe_separates_blobs_and_not_noise():
  x, y = blobs(200, 0)
  xt, yt = blobs(500, 1)
  assert ss.linear_probe(x, y, xt, yt) < 0.05
  # Labels unrelated to the features: a probe can only guess.
  xr, yr = blobs(200, 0, label_seed=7)
  assert ss.linear_probe(xr, yr, xt, yt) > 0.4


def test_features_are_the_hidden_layers_of_d():
  config = small_config(d_hidden=(8, 6), d_pieces=2)
  model = train_lib.build_model(config, (28, 28, 1), None, steps=3)
  images = np.random.default_rng(0).random((5, 28, 28, 1), np.float32)
  feats = ss.discriminator_features(model.discriminator, images)
  assert feats.shape == (5, 14)
  # Inference mode: no dropout, the same features twice.
  np.testing.assert_array_equal(
      feats, ss.discriminator_features(model.discriminator, images))
  conditional = train_lib.build_model(small_config(conditional=True),
                                      (28, 28, 1), None, 3, num_classes=10)
  with pytest.raises(ValueError, match="conditional discriminator"):
    ss.discriminator_features(conditional.discriminator, images)
  with pytest.raises(ValueError, match=r"images of dtype uint8 are not "
                     r"accepted: expected floating-point images in G's "
                     r"output range"):
    ss.discriminator_features(model.discriminator,
                              (images * 255).astype(np.uint8))


def test_table_has_every_feature_set_and_size(monkeypatch):
  x, y = blobs(400, 0)
  y = y % 2
  xt, yt = blobs(100, 1)
  yt = yt % 2
  table = ss.semi_supervised_table(
      {"a": (x, xt), "b": (x[:, :3], xt[:, :3])}, y, yt, sizes=(10, 20),
      draws=2)
  assert set(table.errors) == {"a", "b"}
  assert all(len(table.errors[k][n]) == 2 for k in "ab" for n in (10, 20))
  text = ss.format_table(table)
  assert "| a |" in text and "20 labels" in text
  with pytest.raises(ValueError, match="draws=0 is not accepted"):
    ss.semi_supervised_table({"a": (x, xt)}, y, yt, sizes=(10,), draws=0)
  with pytest.raises(ValueError, match="l2=-1.0 is not accepted"):
    ss.semi_supervised_table({"a": (x, xt)}, y, yt, sizes=(10,), l2=-1.0)
  # Every size is checked before any classifier is fitted.
  fitted = []
  monkeypatch.setattr(ss, "linear_probe",
                      lambda *args, **kwargs: fitted.append(1) or 0.5)
  with pytest.raises(ValueError, match="size=15 is not accepted"):
    ss.semi_supervised_table({"a": (x, xt)}, y, yt, sizes=(10, 15))
  assert not fitted
