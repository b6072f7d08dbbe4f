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


def test_nearest_distances_match_brute_force():
  rng = np.random.default_rng(1)
  x, ref = rng.uniform(size=(30, 50)), rng.uniform(size=(70, 50))
  dist, index = quality.nearest_distances(x, ref, chunk_size=7)
  full = np.sqrt(((x[:, None] - ref[None]) ** 2).sum(-1))
  np.testing.assert_array_equal(index, full.argmin(1))
  np.testing.assert_allclose(dist, full.min(1), rtol=1e-4)


@pytest.fixture(scope="module")
def mnist(mnist_dirs):
  manual, data_dir = mnist_dirs
  config = PAPER_MNIST.override(tfds_manual_dir=manual,
                                tfds_data_dir=data_dir)
  classifier = quality.load_or_train_classifier(config)
  train = data_lib.load_array(config, config.train_split)
  test = data_lib.load_array(config, config.test_split)
  return classifier, train, test


def test_scores_tell_real_digits_noise_and_copies_apart(mnist):
  classifier, train, test = mnist
  unit = lambda x: x.astype(np.float32) / 255.0
  real = quality.sample_quality(classifier, unit(test.images[5000:]),
                                train.images, test.images, test.labels)
  assert real.classifier_test_accuracy > 0.97
  assert real.classes_present == 10
  assert max(real.class_histogram) < 0.15
  assert real.frechet_distance < 2 * real.frechet_distance_real
  assert 0.8 < real.nn_sample_median / real.nn_test_median < 1.25
  # The samples' classes, kept for a conditional model's accuracy.
  assert (real.sample_classes == test.labels[5000:]).mean() > 0.97
  assert "sample_classes" not in real.to_dict()

  noise = np.random.default_rng(0).uniform(size=(5000, 28, 28, 1))
  bad = quality.sample_quality(classifier, noise.astype(np.float32),
                               train.images, test.images, test.labels)
  assert bad.frechet_distance > 20 * real.frechet_distance

  copies = quality.sample_quality(classifier, unit(train.images[:2000]),
                                  train.images, test.images, test.labels)
  assert copies.nn_sample_median == pytest.approx(0.0, abs=1e-2)
  assert copies.nn_test_median > 3.0


def test_classifier_is_cached_in_the_data_dir(mnist, mnist_dirs):
  import os
  assert os.path.exists(quality.classifier_path(mnist_dirs[1]))
