"""Sample-quality scores beside the Parzen estimate.

Parzen-window estimates are a weak measure of a generative model (Theis, van
den Oord and Bethge, ICLR 2016: on MNIST a k-means model beats the real data
on it), so the package also reports, for MNIST:

  * the Frechet distance between real and generated images in the feature
    space of a small MNIST classifier trained by the package (the idea of
    FID, with a feature extractor fitted to the data at hand);
  * the histogram of the classifier's predicted classes on the samples (all
    ten digits should be present, in about equal shares);
  * the same Frechet distance with the samples weighted to the test set's
    class shares. These features separate the digits, so a class mix off
    by a few points moves the distance as much as badly drawn digits do
    (real training images drawn with 17% 1s and 7% 2s score 3.2-3.4
    against 0.7 in the test set's shares); the pair of distances tells the
    two apart;
  * a memorisation check: the distance from each sample to its nearest
    training image, against the same distance for held-out test images. A
    model that copies training images has samples much nearer to the training
    set than test images are. Beside the medians, the share of samples
    nearer to a training image than the nearest 1% and 5% of test images
    are: about 1% and 5% for a model that does not copy, whatever its
    median, while a median can hide copies that make up a third of the
    samples.

The classifier is one instrument for every run: it is trained once, on the
paper's training images (MNIST's first 50,000 in the order of the original
files, whatever split or order the run itself reads), and cached as
`mnist_classifier_train50000.keras` in the TFDS data directory (or
`~/.cache/adversarial`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from adversarial import data as data_lib
from adversarial.files import (arrays_digest, kept, renamed_into_place,
                               savez_atomic)
from adversarial.images import check_floats

# What the classifier is trained on, the same for every run: the paper's
# training images. The cache's name says so, so a classifier fitted to
# other images is never taken for it.
CLASSIFIER_SPLIT = "train[:50000]"
CLASSIFIER_SPLIT_ORDER = "original"
CLASSIFIER_FILE = "mnist_classifier_train50000.keras"
# The seed of the positions `subset` takes: fixed, so that every run and
# every draw of samples is scored against the same real images.
SUBSET_SEED = 0
# The share of samples below the test images' 1st percentile of distance to
# the training set at which `memorisation_warning` speaks up: five times
# what samples that are not copies give. The package's MNIST models give
# 1.1-2.1%; a third of the samples copied gives 34%.
MEMORISATION_SHARE = 0.05
FEATURE_LAYER = "features"


def classifier_path(tfds_data_dir: Optional[str]) -> str:
  return os.path.join(data_lib.cache_root(tfds_data_dir), CLASSIFIER_FILE)


def build_classifier(seed: int = 0) -> keras.Model:
  """A small convolutional MNIST classifier: images in [0, 1]
  [batch, 28, 28, 1] -> logits [batch, 10]; its 128-d `features` layer is
  the space of the Frechet distance."""
  init = lambda i: keras.initializers.GlorotUniform(seed=seed + i)
  x = keras.Input((28, 28, 1))
  h = keras.layers.Conv2D(32, 3, strides=2, activation="relu",
                          kernel_initializer=init(0))(x)
  h = keras.layers.Conv2D(64, 3, strides=2, activation="relu",
                          kernel_initializer=init(1))(h)
  h = keras.layers.Flatten()(h)
  h = keras.layers.Dense(128, activation="relu", kernel_initializer=init(2),
                         name=FEATURE_LAYER)(h)
  logits = keras.layers.Dense(10, kernel_initializer=init(3))(h)
  return keras.Model(x, logits, name="mnist_classifier")


def _check_pixels(**arrays) -> None:
  """Refuses real images (each named by its keyword) that are not uint8:
  they are divided by 255 here, where the samples, already in [0, 1], are
  not. Images in [0, 1] would be scored as near-black."""
  for name, values in arrays.items():
    dtype = np.asarray(values).dtype
    if dtype != np.uint8:
      raise ValueError(
          f"{name} of dtype {dtype} are not accepted: expected the uint8 "
          f"pixels (0-255) of real images, as the package's data reads "
          f"them; the generator's samples are the ones in [0, 1].")


def train_classifier(images: np.ndarray, labels: np.ndarray, epochs: int = 3,
                     seed: int = 0) -> keras.Model:
  """Fits `build_classifier` to uint8 images [N, 28, 28, 1] and labels."""
  keras.utils.set_random_seed(seed)
  model = build_classifier(seed)
  model.compile(optimizer=keras.optimizers.Adam(1e-3),
                loss=keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True), metrics=["accuracy"])
  _check_pixels(images=images)
  x = images.astype(np.float32) / 255.0
  model.fit(x, labels, batch_size=128, epochs=epochs, verbose=0,
            shuffle=True)
  return model


def classifier_data_config(config):
  """`config` reading the classifier's training images: MNIST's first
  50,000 in the files' order, from `config`'s data folders."""
  return config.override(dataset="mnist", train_split=CLASSIFIER_SPLIT,
                         split_order=CLASSIFIER_SPLIT_ORDER)


def load_or_train_classifier(config) -> keras.Model:
  """The cached MNIST classifier for `config`'s data directory, trained on
  the paper's 50,000 training images the first time (the same images for
  every run, so that runs' scores compare). A file Keras cannot load is
  trained again; a folder that cannot be written (read-only) leaves the
  classifier unkept, with a warning."""

  def train():
    data_config = classifier_data_config(config)
    data = data_lib.load_array(data_config, data_config.train_split)
    return train_classifier(data.images, data.labels)

  def save(path, model):
    tmp = path[:-len(".keras")] + f".tmp{os.getpid()}.keras"
    with renamed_into_place(tmp, path):
      model.save(tmp)

  return kept(classifier_path(config.tfds_data_dir), keras.models.load_model,
              train, save, "MNIST classifier")


def features_and_logits(classifier: keras.Model, images: np.ndarray,
                        batch_size: int = 1000):
  """(features [N, 128], logits [N, 10]) of images in [0, 1]."""
  both = keras.Model(classifier.inputs,
                     [classifier.get_layer(FEATURE_LAYER).output,
                      classifier.outputs[0]])
  feats, logits = both.predict(np.asarray(images, np.float32),
                               batch_size=batch_size, verbose=0)
  return feats.astype(np.float64), logits


def predicted_classes(classifier, images: np.ndarray,
                      batch_size: int = 1000) -> np.ndarray:
  """The classifier's class for each image in [0, 1], int [N]."""
  logits = classifier.predict(np.asarray(images, np.float32),
                              batch_size=batch_size, verbose=0)
  return np.argmax(logits, axis=1)


def frechet_distance(a: np.ndarray, b: np.ndarray,
                     weights_a: Optional[np.ndarray] = None) -> float:
  """Frechet distance between Gaussians fitted to feature sets a and b:

      ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)

  computed with symmetric eigendecompositions (no complex square roots).
  `weights_a` (one non-negative weight per row of a) fits a's Gaussian to
  the weighted rows, as if each row appeared in proportion to its weight.
  """
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  for name, x in (("a", a), ("b", b)):
    if x.ndim != 2 or len(x) < 2 or not np.isfinite(x).all():
      raise ValueError(
          f"{name} of shape {x.shape} is not accepted: expected finite "
          f"features [n, d] of n >= 2 rows (a covariance needs two).")
  if a.shape[1] != b.shape[1]:
    raise ValueError(f"features of {a.shape[1]} and {b.shape[1]} "
                     f"dimensions: expected a and b of the same dimension.")
  if weights_a is not None:
    weights_a = np.asarray(weights_a, np.float64)
    if weights_a.shape != (len(a),) or not (weights_a >= 0).all() or not (
        weights_a.sum() > 0):
      raise ValueError(
          f"weights_a of shape {weights_a.shape} is not accepted: expected "
          f"{len(a)} non-negative weights, one per row of a, not all zero.")
  mu_a, mu_b = np.average(a, axis=0, weights=weights_a), b.mean(0)
  s_a = np.cov(a, rowvar=False, aweights=weights_a)
  s_b = np.cov(b, rowvar=False)
  w, v = np.linalg.eigh(s_a)
  root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
  middle = root_a @ s_b @ root_a
  cross = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0,
                          None)).sum()
  return float(((mu_a - mu_b)**2).sum() + np.trace(s_a) + np.trace(s_b)
               - 2 * cross)


@tf.function(jit_compile=True, reduce_retracing=True)
def _nearest_in_block(chunk, ref, ref_sq):
  """(squared distance to, index of) the nearest row of ref, for each row of
  chunk."""
  # ||x - r||^2 = ||x||^2 + (||r||^2 - 2 x.r): the search needs only the
  # bracket; one XLA program computes it and both reductions.
  part = ref_sq[None] - tf.matmul(2 * chunk, ref, transpose_b=True)
  return (tf.reduce_sum(tf.square(chunk), axis=1)
          + tf.reduce_min(part, axis=1), tf.argmin(part, axis=1))


def nearest_distances(x: np.ndarray, reference: np.ndarray,
                      chunk_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
  """(L2 distance to, index of) the nearest row of `reference`, for each row
  of x (both flattened)."""
  x = np.asarray(x, np.float32).reshape(len(x), -1)
  ref = tf.constant(np.asarray(reference, np.float32).reshape(
      len(reference), -1))
  ref_sq = tf.reduce_sum(tf.square(ref), axis=1)
  dist, index = [], []
  for start in range(0, len(x), chunk_size):
    d2, nearest = _nearest_in_block(tf.constant(x[start:start + chunk_size]),
                                    ref, ref_sq)
    index.append(nearest.numpy())
    dist.append(np.sqrt(np.maximum(d2.numpy(), 0)))
  return np.concatenate(dist), np.concatenate(index)


NEAREST_FOLDER = "nearest"


def nearest_test_distances(train: np.ndarray, test: np.ndarray,
                           cache_dir: Optional[str] = None) -> np.ndarray:
  """The distance from each test image to its nearest training image (uint8
  images, measured in [0, 1] pixels): `sample_quality`'s `test_distances`.

  Kept in `cache_dir/nearest/` (when given) under a digest of both sets of
  images, so that every evaluation against the same images reads them
  (10,000 test images against 50,000 training images take 7-8.5 s on 2
  cores); a file that is unreadable or of another length is computed again.
  """
  _check_pixels(train=train, test=test)
  unit = lambda images: np.asarray(images, np.float32) / 255.0
  compute = lambda: nearest_distances(unit(test), unit(train))[0]
  if cache_dir is None:
    return compute()
  path = os.path.join(cache_dir, NEAREST_FOLDER,
                      f"test_{len(test)}_train_{len(train)}_"
                      f"{arrays_digest(train, test)}.npz")

  def read(path):
    with np.load(path, allow_pickle=False) as f:
      distances = f["distances"]
    if distances.shape == (len(test),) and distances.dtype == np.float32:
      return distances
    return None

  return kept(path, read, compute,
              lambda path, d: savez_atomic(path, distances=d),
              "test images' distances")


@dataclasses.dataclass
class QualityResult:
  """Sample quality of a generator on MNIST.

  Attributes:
    frechet_distance: samples vs. test images, classifier features.
    frechet_distance_real: training vs. test images, the floor at this
      sample count.
    frechet_distance_test_mix: samples vs. test images with each sample
      weighted by (test share / sample share) of its predicted class, so
      that the samples count in the test set's class shares: what is left
      of `frechet_distance` once the class mix is set right. NaN when a
      digit of the test set is missing from the samples (no weighting puts
      it back).
    class_histogram: share of samples given each class, [10].
    classes_present: classes given to at least 1% of the samples.
    classifier_test_accuracy: the classifier's accuracy on the test images.
    nn_sample_median: median distance of a sample to its nearest training
      image (over `num_neighbours` of the samples).
    nn_test_median: the same for test images.
    nn_share_below_test_p1: share of the samples nearer to their nearest
      training image than the 1st percentile of the same distance for the
      test images (about 0.01 for samples that are not copies; 1.0 for
      copies). Over all n scored samples and n test images: a tail needs
      more points than a median.
    nn_share_below_test_p5: the same below the 5th percentile (about 0.05).
    sample_classes: the classifier's class for each scored sample, int [n]
      for the n = min(samples, test images) samples `subset(samples, n)`
      (kept out of `to_dict`).
  """
  frechet_distance: float
  frechet_distance_real: float
  frechet_distance_test_mix: float
  class_histogram: list
  classes_present: int
  classifier_test_accuracy: float
  nn_sample_median: float
  nn_test_median: float
  nn_share_below_test_p1: float
  nn_share_below_test_p5: float
  sample_classes: np.ndarray = dataclasses.field(default=None, repr=False)

  def to_dict(self):
    """The scores as JSON values (NaN as None), without sample_classes."""
    nan_to_none = lambda v: None if isinstance(v, float) and np.isnan(v) else v
    return {f.name: nan_to_none(getattr(self, f.name))
            for f in dataclasses.fields(self) if f.name != "sample_classes"}


def class_shares(classes: np.ndarray, num_classes: int = 10) -> np.ndarray:
  """The share of each class among `classes` (ints), [num_classes]."""
  return np.bincount(classes, minlength=num_classes) / len(classes)


def class_mix_weights(sample_classes: np.ndarray, test_classes: np.ndarray,
                      num_classes: int = 10) -> Optional[np.ndarray]:
  """A weight per sample, (test share / sample share) of its class, that
  gives the samples the test set's class shares; None when a class of the
  test set has no sample."""
  sample_share = class_shares(sample_classes, num_classes)
  test_share = class_shares(test_classes, num_classes)
  if ((test_share > 0) & (sample_share == 0)).any():
    return None
  ratio = np.divide(test_share, sample_share,
                    out=np.zeros(num_classes), where=sample_share > 0)
  return ratio[sample_classes]


def subset(x: np.ndarray, k: int) -> np.ndarray:
  """`k` items of `x`, at positions drawn once without replacement and kept
  in order (all of `x` when k >= len(x)).

  The positions depend on len(x) and k alone, so arrays of one length (a
  split's images and labels, samples and the labels they were drawn for)
  give aligned subsets. They are drawn rather than taken first or evenly
  spaced because MNIST's files are ordered by source (each split joins
  images of NIST's SD-3 and SD-1): the test file's first 5,000 images are
  the easier half, and the training file alternates two kinds of image, so
  that every n-th image for an even n is all of one kind (BUILD.md, "Data",
  has the figures). A conditional model's samples come in blocks of one
  class as well.
  """
  n = len(x)
  if k >= n:
    return np.asarray(x)
  return np.asarray(x)[_subset_positions(n, k)]


@functools.lru_cache(maxsize=64)
def _subset_positions(n: int, k: int) -> np.ndarray:
  positions = np.sort(np.random.default_rng(SUBSET_SEED).choice(
      n, size=k, replace=False))
  positions.setflags(write=False)
  return positions


def share_below(d_samples: np.ndarray, d_test: np.ndarray,
                percentile: float) -> float:
  """The share of `d_samples` below the `percentile`-th percentile of
  `d_test`."""
  return float((d_samples < np.percentile(d_test, percentile)).mean())


def memorisation_warning(scores: dict) -> Optional[str]:
  """A warning when many samples lie nearer the training set than test
  images do (`QualityResult.to_dict()` as `scores`); None otherwise."""
  share = scores["nn_share_below_test_p1"]
  if share < MEMORISATION_SHARE:
    return None
  return (f"warning: {100 * share:.1f}% of the samples lie nearer a training "
          f"image than the nearest 1% of test images do (samples that are "
          f"not copies: about 1%): the generator may be copying training "
          f"images. `python -m adversarial.figures` draws each of 24 samples "
          f"beside its nearest training image.")


def sample_quality(classifier: keras.Model, samples: np.ndarray,
                   train: np.ndarray, test: np.ndarray,
                   test_labels: Optional[np.ndarray] = None,
                   num_neighbours: int = 1000,
                   test_distances: Optional[np.ndarray] = None
                   ) -> QualityResult:
  """Scores samples (float [N, 28, 28, 1] in [0, 1]) against uint8 training
  and test images.

  `test_distances`, the distance from each test image to its nearest
  training image (`nearest_test_distances(train, test)`), spares computing
  them again when several sets of samples are scored against the same
  images; when None, they are computed for the test images scored.
  """
  check_floats(samples, "samples",
               "samples in [0, 1], as the generator gives them")
  _check_pixels(train=train, test=test)
  if test_distances is not None and len(test_distances) != len(test):
    raise ValueError(f"test_distances has {len(test_distances)} rows: "
                     f"expected one for each of the {len(test)} test "
                     f"images.")
  n = min(len(samples), len(test))
  m = min(num_neighbours, n)
  unit = lambda x: np.asarray(x, np.float32) / 255.0
  # The n samples and test images the Frechet distance and the
  # nearest-image check both score.
  samples_n, test_n = subset(samples, n), unit(subset(test, n))
  f_samples, l_samples = features_and_logits(classifier, samples_n)
  f_test, l_test = features_and_logits(classifier, test_n)
  f_train, _ = features_and_logits(classifier, unit(subset(train, n)))
  predicted = np.argmax(l_samples, axis=1)
  hist = class_shares(predicted)
  labels = None if test_labels is None else subset(test_labels, n)
  test_classes = np.argmax(l_test, axis=1) if labels is None else labels
  weights = class_mix_weights(predicted, test_classes)
  accuracy = float("nan")
  if labels is not None:
    accuracy = float((np.argmax(l_test, 1) == labels).mean())
  train_unit = unit(train)
  # The medians take m of the n rows the shares take.
  d_samples_all, _ = nearest_distances(samples_n, train_unit)
  if test_distances is None:
    d_test_all, _ = nearest_distances(test_n, train_unit)
  else:
    d_test_all = subset(test_distances, n)
  d_samples, d_test = subset(d_samples_all, m), subset(d_test_all, m)
  return QualityResult(
      frechet_distance=frechet_distance(f_samples, f_test),
      frechet_distance_real=frechet_distance(f_train, f_test),
      frechet_distance_test_mix=(
          float("nan") if weights is None
          else frechet_distance(f_samples, f_test, weights)),
      class_histogram=[round(float(h), 4) for h in hist],
      classes_present=int((hist >= 0.01).sum()),
      classifier_test_accuracy=accuracy,
      nn_sample_median=float(np.median(d_samples)),
      nn_test_median=float(np.median(d_test)),
      nn_share_below_test_p1=share_below(d_samples_all, d_test_all, 1),
      nn_share_below_test_p5=share_below(d_samples_all, d_test_all, 5),
      sample_classes=predicted)
