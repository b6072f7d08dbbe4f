"""Datasets -> arrays and `tf.data` pipelines.

Data contract: every pipeline here yields float32 images [batch, H, W, C] in
the range of the generator's output activation ([0, 1] for sigmoid, the
paper's `pixels / 255`; [-1, 1] for tanh), the form G makes and D judges.

Image datasets come from TFDS by name (`mnist`, `fashion_mnist`, `cifar10`,
or any TFDS dataset with an `image` feature). Without network access TFDS can
prepare a dataset from files the user already has: pass their folder as
`tfds_manual_dir` (TFDS's `DownloadConfig(manual_dir=...)`). The 1-D toy
source of the paper's Figure 1 is `toy_gaussian`.

The training pipeline is a pure function of (seed, epoch): the order of
epoch e is a stateless permutation seeded with (seed, e), so a run resumed at
epoch e sees the same batches as a run that never stopped.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import math
import os
from typing import Optional

from absl import logging
import numpy as np
import tensorflow as tf

from adversarial.config import Config, ConfigError, TOY_DATASETS
from adversarial.files import kept, RunRecordError, savez_atomic


class DataUnavailableError(RuntimeError):
  """TFDS could not prepare a dataset: no network for its download, or files
  in `tfds_manual_dir` that are not the dataset's."""


@dataclasses.dataclass(frozen=True)
class ArrayData:
  """One split held in memory.

  Attributes:
    images: uint8 [N, H, W, C] for image datasets; float32 [N, 1] for the toy.
    labels: int64 [N], or None where the dataset has no labels.
  """
  images: np.ndarray
  labels: Optional[np.ndarray] = None

  def __len__(self):
    return len(self.images)


def _tfds():
  # Imported on use: TFDS is slow to import and the toy data needs none of it.
  import tensorflow_datasets as tfds
  return tfds


def similar_names(name: str, known, count: int = 8) -> list[str]:
  """Up to `count` of `known` a mistyped `name` may have meant: the closest
  spellings first ('mnsit' -> 'mnist'), then names holding its first three
  letters ('svhn' -> 'svhn_cropped')."""
  name = name.lower()
  close = difflib.get_close_matches(name, known, n=count, cutoff=0.6)
  close += sorted(n for n in known if name[:3] in n and n not in close)
  return close[:count]


def check_dataset(config: Config) -> None:
  """Raises `ConfigError` unless `config.dataset` names data the package can
  train on: a TFDS builder with an `image` feature, or a toy source. Reads no
  data and needs no network."""
  if config.dataset in TOY_DATASETS:
    return
  tfds = _tfds()
  # TFDS's own builders: listing its community datasets as well would read
  # their index from Google Cloud Storage on every start, where offline it
  # finds nothing.
  known = set(tfds.list_builders(with_community_datasets=False))
  if config.dataset not in known:
    close = similar_names(config.dataset, known)
    raise ConfigError(
        f"dataset={config.dataset!r} is not accepted: expected the name of a "
        f"TFDS image dataset (e.g. 'mnist', 'fashion_mnist', 'cifar10')"
        + (f"; similar names: {close}" if close else "")
        + f", or one of {TOY_DATASETS}.")
  builder = tfds.builder(config.dataset, data_dir=config.tfds_data_dir)
  if "image" not in builder.info.features:
    raise ConfigError(
        f"dataset={config.dataset!r} is not accepted: it has no 'image' "
        f"feature (its features: {sorted(builder.info.features.keys())}); "
        f"expected a TFDS image dataset.")


def prepare(config: Config):
  """Makes sure TFDS has `config.dataset` prepared in `tfds_data_dir`.

  Uses `tfds_manual_dir` when given, so that the data can be prepared with no
  network from the original files. Returns the TFDS builder.
  """
  tfds = _tfds()
  builder = tfds.builder(config.dataset, data_dir=config.tfds_data_dir)
  download_config = None
  manual = config.tfds_manual_dir
  if manual and not (os.path.isdir(manual) and os.listdir(manual)):
    raise ConfigError(
        f"tfds_manual_dir={manual!r} is not accepted: expected an existing "
        f"folder holding the dataset's original files (for MNIST the four "
        f"*-ubyte.gz files).")
  if manual:
    download_config = tfds.download.DownloadConfig(
        manual_dir=config.tfds_manual_dir)
  missing = []
  if not builder.is_prepared():
    # TFDS retries a failed download 10 times with a growing wait, about 3.5
    # minutes in all, before it gives up: say so before it starts.
    if not manual:
      logging.warning(
          "TFDS is downloading dataset %r into %s: this needs network access "
          "(without it TFDS gives up after about 3.5 minutes of retries). "
          "With the original files at hand, pass --tfds_manual_dir instead.",
          config.dataset, config.tfds_data_dir or "~/tensorflow_datasets")
    elif missing := _not_in_manual_dir(builder, manual):
      logging.warning(
          "TFDS is downloading %s for dataset %r, which tfds_manual_dir=%r "
          "lacks: this needs network access (without it TFDS gives up "
          "after about 3.5 minutes of retries).",
          ", ".join(missing), config.dataset, manual)
  try:
    builder.download_and_prepare(download_config=download_config)
  except Exception as e:  # TFDS raises many kinds; all mean "no data".
    # Unless another process (a second run started beside this one) has
    # prepared the same data meanwhile: TFDS then fails to move this
    # process's copy into the place the other's took, and that one serves.
    again = tfds.builder(config.dataset, data_dir=config.tfds_data_dir)
    if again.is_prepared():
      logging.warning("Dataset %r was prepared by another process as this "
                      "one prepared it (%s: %s); reading that copy.",
                      config.dataset, type(e).__name__, e)
      return again
    if missing:
      hint = (f"Without network access, put {', '.join(missing)} into "
              f"tfds_manual_dir={manual!r}.")
    else:
      hint = ("Without network access, pass the folder holding the "
              "dataset's original files as --tfds_manual_dir (for MNIST, the "
              "four *-ubyte.gz files).")
    raise DataUnavailableError(
        f"TFDS could not prepare dataset {config.dataset!r} in data_dir="
        f"{config.tfds_data_dir or '~/tensorflow_datasets'} (manual_dir="
        f"{manual!r}): {type(e).__name__}: {e}\n{hint}") from e
  return builder


def _not_in_manual_dir(builder, manual) -> list:
  """The names of the original files of `builder`'s dataset, as TFDS has
  registered them, that the folder `manual` lacks: TFDS downloads these
  when it prepares the dataset."""
  names = {info.filename for info in (builder.url_infos or {}).values()
           if info.filename}
  return sorted(n for n in names
                if not os.path.exists(os.path.join(manual, n)))


def load_array(config: Config, split: str) -> ArrayData:
  """One split of the dataset, in memory (uint8 images).

  `split` is a TFDS split expression ('train', 'train[:50000]',
  'train[:10%]+test', ...), counted in the order `config.split_order`
  names: for MNIST by default the original files' order, so that
  'train[:50000]' is the paper's first 50,000 training images. Decoded
  once, then read from `_ArrayCache`. A split that holds no examples
  ('test[:0]') raises ConfigError."""
  data = _load_array(config, split)
  if not len(data):
    raise ConfigError(
        f"split={split!r} of dataset {config.dataset!r} holds no examples: "
        f"expected a split, or a slice of one, with at least one.")
  return data


def _load_array(config: Config, split: str) -> ArrayData:
  if config.dataset in TOY_DATASETS:
    return toy_gaussian(config, split)
  builder = prepare(config)
  if not config.reads_original_order():
    return _load_stored(config, builder, split)
  tfds = _tfds()
  # Each named split is read whole in the stored order and put back in the
  # original one; the slices are then taken from it as TFDS would count.
  wholes = {}
  for sub in split.split("+"):
    name = sub.strip().split("[", 1)[0]
    if name == "all":
      raise ConfigError(
          f"split={split!r} is not accepted with split_order="
          f"{config.split_order!r}: expected the splits named, such as "
          f"'train+test', or split_order='stored'.")
    if name not in wholes:
      try:
        stored = _load_stored(config, builder, name)
      except ConfigError as e:  # Name the expression asked for.
        raise ConfigError(_bad_split(config, builder, split,
                                     e.__cause__ or e)) from e
      wholes[name] = _original_order(stored, name,
                                     builder.info.disable_shuffling)
  lengths = tfds.core.SplitDict([
      tfds.core.SplitInfo(name=name, shard_lengths=[len(whole)], num_bytes=0)
      for name, whole in wholes.items()])
  try:
    parts = tfds.core.ReadInstruction.from_spec(split).to_absolute(lengths)
  except Exception as e:
    raise ConfigError(_bad_split(config, builder, split, e)) from e
  images, labels = [], []
  for part in parts:
    whole = wholes[part.splitname]
    images.append(whole.images[part.from_:part.to])
    if whole.labels is not None:
      labels.append(whole.labels[part.from_:part.to])
  return ArrayData(np.concatenate(images),
                   np.concatenate(labels) if labels else None)


@functools.lru_cache(maxsize=8)
def original_positions(split_name: str, num_examples: int) -> np.ndarray:
  """Where TFDS stores each example of a split whose builder keys examples
  by their index in the original files: int64 [num_examples], the stored
  position of original example i at [i].

  TFDS writes a split's examples sorted by an MD5 hash of their keys salted
  with the split's name (`tfds.core.hashing.Hasher`), and keeps that hash
  for a dataset's version: it names the examples every slice reads. Kept
  (read-only) for the next split read from the same one: hashing MNIST's
  60,000 keys takes about 0.3 s."""
  from tensorflow_datasets.core import hashing
  hasher = hashing.Hasher(split_name)
  hashes = [hasher.hash_key(i) for i in range(num_examples)]
  stored = sorted(range(num_examples), key=hashes.__getitem__)
  positions = np.empty(num_examples, np.int64)
  positions[stored] = np.arange(num_examples)
  positions.setflags(write=False)
  return positions


def _original_order(data: ArrayData, split_name: str,
                    disable_shuffling: bool) -> ArrayData:
  """A whole split read in TFDS's stored order -> the original order."""
  if disable_shuffling:  # TFDS then stores the examples in key order.
    return data
  positions = original_positions(split_name, len(data))
  return ArrayData(data.images[positions],
                   None if data.labels is None else data.labels[positions])


def _bad_split(config: Config, builder, split: str, error: Exception) -> str:
  return (f"split={split!r} of dataset {config.dataset!r} is not accepted: "
          f"{str(error).rstrip('.')}; the dataset's splits are "
          f"{sorted(builder.info.splits.keys())} (slices such as "
          f"'train[:50000]' work too).")


def _load_stored(config: Config, builder, split: str) -> ArrayData:
  """One split in TFDS's stored order, as TFDS slices it, from `builder`
  (`prepare`'s)."""
  tfds = _tfds()
  try:
    # Read once into arrays: TFDS's in-memory cache of small datasets would
    # only hold a second copy (and warns when the check of kept arrays
    # reads just the first example).
    ds = builder.as_dataset(
        split=split, shuffle_files=False,
        read_config=tfds.ReadConfig(try_autocache=False))
  except Exception as e:
    raise ConfigError(_bad_split(config, builder, split, e)) from e

  def decode():
    has_labels = "label" in builder.info.features
    images, labels = [], []
    for example in ds.batch(10_000).as_numpy_iterator():
      images.append(example["image"])
      if has_labels:
        labels.append(example["label"])
    return ArrayData(np.concatenate(images),
                     np.concatenate(labels).astype(np.int64)
                     if has_labels else None)

  cache = _array_cache(config, builder, split)
  if cache is None:
    return decode()
  return kept(cache.path, lambda _: cache.read(ds), decode,
              lambda _, data: cache.write(data), "array cache")


def cache_root(tfds_data_dir: Optional[str]) -> str:
  """The folder of the package's caches for data in `tfds_data_dir`: that
  folder itself, or ~/.cache/adversarial for TFDS's default folder and for
  remote storage (a `gs://` data directory), as the caches are local
  files."""
  if tfds_data_dir and "://" not in tfds_data_dir:
    return tfds_data_dir
  return os.path.join(os.path.expanduser("~"), ".cache", "adversarial")


@dataclasses.dataclass(frozen=True)
class _ArrayCache:
  """A split decoded once and kept as arrays.

  Decoding a split from TFDS's records costs about 3 s per 50,000 MNIST
  images on 2 cores, at every start of `train`, `evaluate` and the other
  binaries. The arrays are kept in `cache_root()/arrays/<name>/<version>/`,
  keyed by the split and by `fingerprint`: the prepared data's folder and its
  `dataset_info.json`, so that data TFDS prepares again, or reads from
  elsewhere, is decoded again. Kept arrays are used only while the split's
  first example, read from TFDS (about 0.2 s), is theirs, and only a split
  read whole is kept: its example count must be the one TFDS recorded. So a
  mocked TFDS (`tfds.testing.mock_data`), which makes other data from the
  same record, neither reads nor writes the kept arrays.
  """
  path: str
  fingerprint: str
  num_examples: int

  def read(self, ds: tf.data.Dataset) -> Optional[ArrayData]:
    """The kept split, or None where it is for other data than `ds` (the
    split as TFDS reads it); `files.kept` calls it, and decodes and keeps
    the split again in its place, also when the file cannot be read."""
    with np.load(self.path, allow_pickle=False) as f:
      if str(f["fingerprint"]) != self.fingerprint:
        return None
      data = ArrayData(f["images"], f["labels"] if "labels" in f else None)
    first = next(ds.take(1).as_numpy_iterator(), None)
    if first is None or not len(data) or not np.array_equal(
        first["image"], data.images[0]):
      return None
    if data.labels is not None and first.get("label") != data.labels[0]:
      return None
    return data

  def write(self, data: ArrayData) -> None:
    """Keeps a split read whole (a mocked TFDS makes fewer examples)."""
    if not len(data) or len(data) != self.num_examples:
      return
    arrays = dict(fingerprint=np.array(self.fingerprint), images=data.images)
    if data.labels is not None:
      arrays["labels"] = data.labels
    savez_atomic(self.path, **arrays)


def _array_cache(config: Config, builder, split: str
                 ) -> Optional[_ArrayCache]:
  """The cache of `split`; None for data on remote storage (a `gs://` data
  directory) or without TFDS's record of it, read from TFDS every time."""
  data_dir = str(builder.data_dir)
  if "://" in data_dir:
    return None
  try:
    with open(os.path.join(data_dir, "dataset_info.json"), "rb") as f:
      info = f.read()
    num_examples = builder.info.splits[split].num_examples
  except Exception:  # No record, or a split expression TFDS cannot count.
    return None
  fingerprint = hashlib.sha256(
      os.path.abspath(data_dir).encode() + b"\0" + info).hexdigest()
  safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in split)
  tag = hashlib.sha256(split.encode()).hexdigest()[:8]
  path = os.path.join(cache_root(config.tfds_data_dir), "arrays",
                      builder.info.full_name, f"{safe}-{tag}.npz")
  return _ArrayCache(path, fingerprint, num_examples)


def toy_gaussian(config: Config, split: str = "train") -> ArrayData:
  """Samples of N(toy_mean, toy_std^2), [toy_size, 1] float32, seeded by the
  config's seed and the split's name."""
  offset = {"train": 0, "validation": 1, "test": 2}.get(split, 3)
  rng = np.random.default_rng([config.seed, offset])
  x = rng.normal(config.toy_mean, config.toy_std, size=(config.toy_size, 1))
  return ArrayData(x.astype(np.float32))


def num_classes(config: Config) -> int:
  """Labels of the dataset, from its TFDS metadata (no data is read); 0 for
  the toy or a dataset without a `label` feature."""
  if config.dataset in TOY_DATASETS:
    return 0
  builder = _tfds().builder(config.dataset, data_dir=config.tfds_data_dir)
  features = builder.info.features
  if "label" not in features:
    return 0
  return int(getattr(features["label"], "num_classes", 0) or 0)


CLUSTERS_FILE = "clusters.npz"


@dataclasses.dataclass(frozen=True)
class ClusterPrior:
  """Clusters of the training images found without their labels: k-means
  centres in pixel space ([0, 1] pixels, flattened) and each cluster's share
  of the training split, p(c) of a model conditioned on clusters
  (`config.clusters`).

  Attributes:
    centres: float64 [k, d].
    shares: float64 [k], summing to 1.
  """
  centres: np.ndarray
  shares: np.ndarray

  @property
  def k(self) -> int:
    return len(self.centres)

  def assign(self, images: np.ndarray, chunk: int = 10_000) -> np.ndarray:
    """The nearest centre of each image (uint8 [N, ...] pixels): int64 [N]."""
    return _nearest(_flat_unit(images), self.centres, chunk)

  def save(self, path: str) -> None:
    """Writes the centres and shares under a temporary name, renamed into
    place."""
    savez_atomic(path, centres=self.centres, shares=self.shares)

  @classmethod
  def load(cls, path: str) -> "ClusterPrior":
    if not os.path.exists(path):
      raise FileNotFoundError(
          f"{path!r} does not exist: expected the clusters a run with "
          f"clusters > 0 writes into its work directory when it starts.")
    try:
      with np.load(path) as f:
        return cls(f["centres"], f["shares"])
    except Exception as e:  # Whatever a damaged file raises in np.load.
      raise RunRecordError.of(
          path, f"{type(e).__name__}: {e}", "the clusters training writes "
          "there (centres and shares)") from None


def _flat_unit(images: np.ndarray) -> np.ndarray:
  """uint8 images -> float64 [N, d] in [0, 1]."""
  return np.asarray(images, np.float64).reshape(len(images), -1) / 255.0


def _nearest(points: np.ndarray, centres: np.ndarray, chunk: int = 10_000
             ) -> np.ndarray:
  centre_sq = (centres * centres).sum(axis=1)
  out = []
  for i in range(0, len(points), chunk):
    x = points[i:i + chunk]
    # ||x||^2 is the same for every centre, so it does not change the argmin.
    out.append(np.argmin(centre_sq[None, :] - 2.0 * x @ centres.T, axis=1))
  return np.concatenate(out).astype(np.int64) if out else np.zeros(
      [0], np.int64)


def kmeans(points: np.ndarray, k: int, seed: int, iterations: int = 100
           ) -> np.ndarray:
  """Lloyd's k-means with k-means++ seeding (Arthur & Vassilvitskii, 2007).

  Args:
    points: float [N, d].
    k: clusters, 2 <= k <= N.
    seed: seed of the k-means++ draws; the same seed gives the same centres.
    iterations: at most this many Lloyd steps (it stops earlier when no
      point changes cluster).

  Returns:
    float64 [k, d] centres. A cluster that loses all its points keeps its
    centre.
  """
  points = np.asarray(points, np.float64)
  n = len(points)
  if not 2 <= k <= n:
    raise ValueError(f"k={k} is not accepted for {n} points: expected "
                     f"2 <= k <= {n}.")
  rng = np.random.default_rng(seed)
  sq = (points * points).sum(axis=1)
  centres = np.empty([k, points.shape[1]])
  centres[0] = points[rng.integers(n)]
  d2 = np.maximum(sq - 2.0 * points @ centres[0] + centres[0] @ centres[0],
                  0.0)
  for j in range(1, k):
    # Each new centre is drawn with probability proportional to the squared
    # distance to the nearest centre so far.
    total = d2.sum()
    i = rng.choice(n, p=d2 / total) if total > 0 else rng.integers(n)
    centres[j] = points[i]
    d2 = np.minimum(d2, np.maximum(
        sq - 2.0 * points @ centres[j] + centres[j] @ centres[j], 0.0))
  assigned = None
  for _ in range(iterations):
    new = _nearest(points, centres)
    if assigned is not None and np.array_equal(new, assigned):
      break
    assigned = new
    members = np.zeros([n, k])
    members[np.arange(n), assigned] = 1.0
    counts = members.sum(axis=0)
    sums = members.T @ points
    filled = counts > 0
    centres[filled] = sums[filled] / counts[filled, None]
  return centres


def cluster_prior(config: Config, data: ArrayData) -> ClusterPrior:
  """`config.clusters` k-means clusters of the training images, seeded by
  `config.seed`; the labels, if any, are not read."""
  points = _flat_unit(data.images)
  centres = kmeans(points, config.clusters, seed=config.seed)
  counts = np.bincount(_nearest(points, centres), minlength=config.clusters)
  return ClusterPrior(centres, counts / counts.sum())


def to_model_range(images, output_activation: str):
  """uint8 pixels (or toy floats) -> float32 in G's output range."""
  if images.dtype not in (tf.uint8, np.uint8):
    return tf.cast(images, tf.float32)
  x = tf.cast(images, tf.float32) / 255.0
  if output_activation == "tanh":
    x = x * 2.0 - 1.0
  return x


def to_unit_range(images, output_activation: str):
  """G's output range -> [0, 1], for pictures."""
  if output_activation == "tanh":
    return (np.asarray(images) + 1.0) / 2.0
  return np.asarray(images)


def pixel_means(data: ArrayData, output_activation: str) -> np.ndarray:
  """Per-pixel mean of a split in G's output range, float32 [H, W, C]."""
  return np.asarray(to_model_range(data.images, output_activation)
                    ).mean(axis=0).astype(np.float32)


def steps_per_epoch(config: Config, num_examples: int) -> int:
  """Steps in one epoch: `config.steps_per_epoch`, or one pass over the data
  in batches of k * batch_size (alternating) or batch_size."""
  if config.steps_per_epoch is not None:
    return config.steps_per_epoch
  per_step = config.batch_size * (config.k if config.update == "alternating"
                                  else 1)
  steps = num_examples // per_step
  if steps < 1:
    raise ConfigError(
        f"batch_size={config.batch_size} (x k={config.k}) is not accepted: "
        f"the training split has only {num_examples} examples; expected at "
        f"most {num_examples} examples per step.")
  return steps


def train_dataset(config: Config, data: ArrayData, initial_epoch: int = 0
                  ) -> tf.data.Dataset:
  """The training batches of epochs [initial_epoch, config.epochs).

  Batches are images, or (images, labels) for a conditional model. Each
  epoch has exactly `steps_per_epoch(config, len(data))` batches of
  `batch_size` (or k * batch_size for the alternating update) images in G's
  output range. The order of epoch e depends on (seed, e) alone.
  """
  steps = steps_per_epoch(config, len(data))
  per_step = config.batch_size * (config.k if config.update == "alternating"
                                  else 1)
  n = len(data)
  per_epoch = steps * per_step
  passes = math.ceil(per_epoch / n)
  images = tf.constant(data.images)
  seed = config.seed
  if config.conditional and data.labels is None:
    raise ConfigError(
        f"conditional=True is not accepted for dataset {config.dataset!r}: "
        f"its split has no labels; expected a labelled dataset.")
  labels = tf.constant(data.labels) if config.conditional else None

  def epoch_indices(epoch):
    perms = [tf.random.experimental.stateless_shuffle(
        tf.range(n, dtype=tf.int32),
        seed=tf.stack([tf.cast(seed, tf.int64), epoch * passes + j]))
             for j in range(passes)]
    return tf.data.Dataset.from_tensor_slices(
        tf.concat(perms, axis=0)[:per_epoch])

  def gather(indices):
    batch = to_model_range(tf.gather(images, indices), config.g_output)
    if labels is None:
      return batch
    # A conditional model trains on (images, labels).
    return batch, tf.gather(labels, indices)

  return (tf.data.Dataset.range(initial_epoch, config.epochs)
          .flat_map(epoch_indices)
          .batch(per_step, drop_remainder=True)
          .map(gather, num_parallel_calls=tf.data.AUTOTUNE)
          .prefetch(tf.data.AUTOTUNE))
