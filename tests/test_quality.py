import numpy as np
import pytest

from adversarial import data as data_lib
from adversarial import quality
from adversarial.config import PAPER_MNIST


def test_frechet_distance_of_gaussians():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(20000, 3))
  assert quality.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
  shifted = a + np.array([1.0, 2.0, 0.0])
  assert quality.frechet_distance(a, shifted) == pytest.approx(5.0, rel=1e-6)
  # N(0, I) vs N(0, 4I) in 3-d: 3 * (1 + 4 - 2 * 2) = 3.
  wide = rng.normal(scale=2.0, size=(200000, 3))
  assert quality.frechet_distance(a, wide) == pytest.approx(3.0, rel=0.05)


def test_frechet_distance_names_features_it_cannot_fit():
  rng = np.random.default_rng(1)
  a, b = rng.normal(size=(50, 4)), rng.normal(size=(60, 4))
  nan = a.copy()
  nan[3, 2] = np.nan
  for bad, name, shape in ((a[:1], "a", r"\(1, 4\)"),
                           (a[:0], "a", r"\(0, 4\)"),
                           (a[:, 0], "a", r"\(50,\)"),
                           (nan, "a", r"\(50, 4\)")):
    with pytest.raises(ValueError, match=rf"{name} of shape {shape} is not "
                       r"accepted: expected finite features \[n, d\] of "
                       r"n >= 2 rows"):
      quality.frechet_distance(bad, b)
  with pytest.raises(ValueError, match=r"b of shape \(1, 4\)"):
    quality.frechet_distance(a, b[:1])
  with pytest.raises(ValueError, match=r"features of 4 and 3 dimensions: "
                     r"expected a and b of the same dimension"):
    quality.frechet_distance(a, b[:, :3])


def test_weighted_frechet_distance_sets_the_mix_right():
  rng = np.random.default_rng(2)
  shift = np.array([6.0, 0.0])
  # a: 1,000 rows of one component and 3,000 of the other; b: 2,000 of each.
  a = np.concatenate([rng.normal(size=(1000, 2)),
                      rng.normal(size=(3000, 2)) + shift])
  b = np.concatenate([rng.normal(size=(2000, 2)),
                      rng.normal(size=(2000, 2)) + shift])
  classes = np.repeat([0, 1], [1000, 3000])
  weights = quality.class_mix_weights(classes, np.repeat([0, 1], 2000),
                                      num_classes=2)
  np.testing.assert_allclose(weights[:1000], 2.0)
  np.testing.assert_allclose(weights[1000:], 2 / 3)
  as_drawn = quality.frechet_distance(a, b)
  assert as_drawn > 1.0
  assert quality.frechet_distance(a, b, weights) < 0.05
  # Integer weights count as repeated rows.
  repeated = np.repeat(a, np.where(classes == 1, 2, 1), axis=0)
  assert quality.frechet_distance(
      a, b, np.where(classes == 1, 2.0, 1.0)) == pytest.approx(
          quality.frechet_distance(repeated, b), rel=1e-3)
  with pytest.raises(ValueError, match="weights_a of shape"):
    quality.frechet_distance(a, b, weights[:10])
  with pytest.raises(ValueError, match="non-negative"):
    quality.frechet_distance(a, b, -weights)


def test_class_mix_weights_refuse_a_missing_class():
  assert quality.class_mix_weights(np.array([0, 0, 1]), np.array([0, 1, 2]),
                                   num_classes=3) is None
  # A class of the samples that the test set lacks gets weight 0.
  weights = quality.class_mix_weights(np.array([0, 1, 2, 2]),
                                      np.array([0, 1]), num_classes=3)
  np.testing.assert_allclose(weights, [2.0, 2.0, 0.0, 0.0])


def test_subset_draws_over_blocks_and_alternations_alike():
  x = np.arange(50_000)
  picked = quality.subset(x, 5_000)
  # Distinct positions, in order, the same for every array of that length.
  assert len(np.unique(picked)) == 5_000 and (np.diff(picked) > 0).all()
  np.testing.assert_array_equal(quality.subset(-x, 5_000), -picked)
  # Every tenth item would take only even positions, and the first 5,000
  # only the first block: the subset takes both about equally.
  assert 0.45 < (picked % 2).mean() < 0.55
  assert 0.45 < (picked >= 25_000).mean() < 0.55
  assert 0.08 < (picked % 10 == 3).mean() < 0.12
  # k >= len takes all, in order.
  np.testing.assert_array_equal(quality.subset(np.arange(6), 6), np.arange(6))
  np.testing.assert_array_equal(quality.subset(np.arange(3), 5), np.arange(3))
  with pytest.raises(ValueError):  # The kept positions are read-only.
    quality._subset_positions(50_000, 5_000)[0] = 1


def test_nearest_distances_match_brute_force():
  rng = np.random.default_rng(1)
  x, ref = rng.uniform(size=(30, 50)), rng.uniform(size=(70, 50))
  dist, index = quality.nearest_distances(x, ref, chunk_size=7)
  full = np.sqrt(((x[:, None] - ref[None]) ** 2).sum(-1))
  np.testing.assert_array_equal(index, full.argmin(1))
  np.testing.assert_allclose(dist, full.min(1), rtol=1e-4)
  # A row of the reference itself is at distance 0.
  dist, index = quality.nearest_distances(ref[5:8], ref)
  np.testing.assert_array_equal(index, [5, 6, 7])
  np.testing.assert_allclose(dist, 0.0, atol=1e-2)


def test_test_images_distances_are_kept_under_their_images_digest(
    tmp_path):
  rng = np.random.default_rng(3)
  train = rng.integers(0, 256, size=(60, 28, 28, 1), dtype=np.uint8)
  test = rng.integers(0, 256, size=(20, 28, 28, 1), dtype=np.uint8)
  true = quality.nearest_distances(test / 255, train / 255)[0]
  first = quality.nearest_test_distances(train, test, str(tmp_path))
  np.testing.assert_allclose(first, true, rtol=1e-5)
  np.testing.assert_allclose(quality.nearest_test_distances(train, test),
                             true, rtol=1e-5)
  (kept,) = (tmp_path / quality.NEAREST_FOLDER).iterdir()
  # The kept file is what a second call returns.
  np.savez(kept, distances=np.arange(20, dtype=np.float32))
  np.testing.assert_array_equal(
      quality.nearest_test_distances(train, test, str(tmp_path)),
      np.arange(20))
  # One of another length, without the distances, cut short or not a
  # NumPy file, is computed again.
  whole = kept.read_bytes()
  for bad in (lambda: np.savez(kept, distances=np.zeros(19, np.float32)),
              lambda: np.savez(kept, other=np.arange(20, dtype=np.float32)),
              lambda: kept.write_bytes(whole[:len(whole) // 2]),
              lambda: kept.write_bytes(b"not an array")):
    bad()
    np.testing.assert_allclose(
        quality.nearest_test_distances(train, test, str(tmp_path)), true,
        rtol=1e-5)
  # Other images are kept beside them, not taken for them.
  other = test.copy()
  other[0, 0, 0, 0] ^= 1
  quality.nearest_test_distances(train, other, str(tmp_path))
  assert len(list((tmp_path / quality.NEAREST_FOLDER).iterdir())) == 2
  np.testing.assert_allclose(
      quality.nearest_test_distances(train, test, str(tmp_path)), true,
      rtol=1e-5)


@pytest.fixture(scope="module")
def mnist(mnist_dirs):
  manual, data_dir = mnist_dirs
  config = PAPER_MNIST.override(tfds_manual_dir=manual,
                                tfds_data_dir=data_dir)
  classifier = quality.load_or_train_classifier(config)
  train = data_lib.load_array(config, config.train_split)
  test = data_lib.load_array(config, config.test_split)
  return classifier, train, test


def test_images_on_the_wrong_scale_are_named():
  # Real images are uint8 pixels, divided by 255 here; samples are in
  # [0, 1] already. Either given as the other would score nonsense.
  rng = np.random.default_rng(0)
  pixels = rng.integers(0, 256, size=(4, 28, 28, 1), dtype=np.uint8)
  unit = pixels.astype(np.float32) / 255
  with pytest.raises(ValueError, match=r"test of dtype float32 are not "
                     r"accepted: expected the uint8 pixels \(0-255\)"):
    quality.nearest_test_distances(pixels, unit)
  with pytest.raises(ValueError, match=r"samples of dtype uint8 are not "
                     r"accepted: expected floating-point samples in "
                     r"\[0, 1\]"):
    quality.sample_quality(None, pixels, pixels, pixels)
  with pytest.raises(ValueError, match=r"train of dtype float32"):
    quality.sample_quality(None, unit, unit, pixels)
  with pytest.raises(ValueError, match=r"images of dtype float32"):
    quality.train_classifier(unit, np.arange(4), epochs=1)
  quality.nearest_test_distances(pixels, pixels)


def test_scores_tell_real_digits_noise_and_copies_apart(mnist, mnist_dirs):
  classifier, train, test = mnist
  unit = lambda x: x.astype(np.float32) / 255.0
  # Every other test image: the halves of MNIST's test file differ (its
  # first 5,000 images are the easier writers), alternate images do not.
  half, labels = test.images[1::2], test.labels[1::2]
  # The test images' distances to the training set, computed once (and
  # kept in the data folder, where evaluations read them) for the six sets
  # of samples scored below.
  d_test = quality.nearest_test_distances(train.images, test.images,
                                          data_lib.cache_root(mnist_dirs[1]))
  score = lambda samples: quality.sample_quality(
      classifier, samples, train.images, test.images, test.labels,
      test_distances=d_test)
  real = score(unit(half))
  assert real.classifier_test_accuracy > 0.97
  assert real.classes_present == 10
  assert max(real.class_histogram) < 0.15
  assert real.frechet_distance < 2 * real.frechet_distance_real
  # The training images it is measured against are drawn over both groups
  # of writers the training file alternates (every tenth image, all of one
  # group, lies about 5.6 from the test set).
  assert real.frechet_distance_real < 2.0
  assert 0.8 < real.nn_sample_median / real.nn_test_median < 1.25
  # Held-out digits fall below the test images' 1st and 5th percentiles of
  # distance about as often as test images do.
  assert 0.004 < real.nn_share_below_test_p1 < 0.02
  assert 0.03 < real.nn_share_below_test_p5 < 0.07
  assert quality.memorisation_warning(real.to_dict()) is None
  # The samples' classes, kept for a conditional model's accuracy.
  assert (real.sample_classes == labels).mean() > 0.97
  assert "sample_classes" not in real.to_dict()

  noise = np.random.default_rng(0).uniform(size=(1000, 28, 28, 1))
  bad = score(noise.astype(np.float32))
  assert bad.frechet_distance > 20 * real.frechet_distance

  # Real digits in a skewed mix (every 1 of those images, a third of the
  # 2s and 5s): worse as drawn, real again at the test set's class shares.
  keep = ((labels == 1) | ~np.isin(labels, (2, 5))
          | (np.arange(len(labels)) % 3 == 0))
  skewed = score(unit(half[keep]))
  assert skewed.frechet_distance > 1.5 * real.frechet_distance
  assert skewed.frechet_distance_test_mix < 1.2 * real.frechet_distance
  # No sample the classifier calls a 7: no weighting sets that mix right.
  first = unit(half[:1000])
  predicted = quality.predicted_classes(classifier, first)
  no_sevens = score(first[predicted != 7])
  assert np.isnan(no_sevens.frechet_distance_test_mix)
  assert no_sevens.to_dict()["frechet_distance_test_mix"] is None

  copies = score(unit(train.images[:2000]))
  assert copies.nn_sample_median == pytest.approx(0.0, abs=1e-2)
  assert copies.nn_test_median > 3.0
  assert copies.nn_share_below_test_p1 == 1.0
  assert "100.0% of the samples" in quality.memorisation_warning(
      copies.to_dict())
  # Samples in blocks, as a conditional model draws them (1,000 copies,
  # then 2,000 new digits): the distances are of samples from every block.
  blocks = np.concatenate([unit(train.images[:1000]), unit(half[:2000])])
  mixed = score(blocks)
  assert mixed.nn_sample_median > 0.5 * real.nn_sample_median
  # The median misses a third of copies; the share below the test images'
  # 1st percentile does not.
  assert 0.3 < mixed.nn_share_below_test_p1 < 0.4
  assert "may be copying" in quality.memorisation_warning(mixed.to_dict())
  # Left to compute the test images' distances itself, sample_quality finds
  # those of the same test images (2,000 of the 10,000).
  given, alone = score(unit(half[:2000])), quality.sample_quality(
      classifier, unit(half[:2000]), train.images, test.images, test.labels)
  assert alone.nn_test_median == pytest.approx(given.nn_test_median,
                                               rel=1e-5)
  assert alone.nn_share_below_test_p1 == given.nn_share_below_test_p1
  assert alone.nn_share_below_test_p5 == given.nn_share_below_test_p5
  with pytest.raises(ValueError, match="test_distances has 5000 rows: "
                     "expected one for each of the 10000 test images"):
    quality.sample_quality(classifier, unit(half), train.images,
                           test.images, test_distances=d_test[::2])


def test_classifier_is_cached_in_the_data_dir(mnist, mnist_dirs):
  import os
  assert os.path.exists(quality.classifier_path(mnist_dirs[1]))


def test_classifier_file_unreadable_or_unwritable_is_no_stop(
    tmp_path, monkeypatch, caplog):
  rng = np.random.default_rng(5)
  small = data_lib.ArrayData(
      rng.integers(0, 256, (64, 28, 28, 1), dtype=np.uint8),
      rng.integers(0, 10, 64))
  read = []
  monkeypatch.setattr(quality.data_lib, "load_array",
                      lambda config, split: read.append(split) or small)
  train = lambda data_dir: quality.load_or_train_classifier(
      PAPER_MNIST.override(tfds_data_dir=str(data_dir)))
  path = tmp_path / "mnist_classifier_train50000.keras"
  path.write_bytes(b"cut short")
  with caplog.at_level("WARNING"):
    first = train(tmp_path)
  assert "Ignoring the unreadable MNIST classifier" in caplog.text
  assert read == [quality.CLASSIFIER_SPLIT]
  # Trained again on the paper's images and kept: the next call loads it.
  x = small.images[:8].astype(np.float32) / 255
  np.testing.assert_allclose(train(tmp_path).predict(x, verbose=0),
                             first.predict(x, verbose=0), atol=1e-6)
  assert len(read) == 1
  # A data folder that cannot be written: the classifier is used unkept.
  blocked = tmp_path / "a_file"
  blocked.write_text("")
  with caplog.at_level("WARNING"):
    assert train(blocked / "tfds").predict(x, verbose=0).shape == (8, 10)
  assert "Could not keep the MNIST classifier" in caplog.text
  assert len(read) == 2


def test_classifier_learns_the_papers_images_whatever_the_run_reads():
  # One instrument for every run: a run reading TFDS's order, all 60,000
  # training images, still gets the classifier of the files' first 50,000.
  run = PAPER_MNIST.override(split_order="stored", train_split="train",
                             tfds_data_dir="/data/tfds")
  config = quality.classifier_data_config(run)
  assert config.train_split == "train[:50000]"
  assert config.reads_original_order()
  assert not run.reads_original_order()
  assert config.tfds_data_dir == "/data/tfds"
  assert quality.classifier_path("/data/tfds") == (
      "/data/tfds/mnist_classifier_train50000.keras")
  # TFDS's default folder, or data on remote storage: the caches, local
  # files, go to the user's cache folder.
  import os
  for remote in (None, "gs://bucket/tfds"):
    assert quality.classifier_path(remote) == os.path.join(
        os.path.expanduser("~"), ".cache", "adversarial",
        "mnist_classifier_train50000.keras")
