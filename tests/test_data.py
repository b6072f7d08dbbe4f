import gzip
import os
import pathlib
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from adversarial import data as data_lib
from adversarial import files
from adversarial.config import ConfigError

from conftest import MNIST_FILES, random_images, small_config


def test_mock_tfds_split_in_model_range():
  config = small_config(dataset="mnist", train_split="train")
  with tfds.testing.mock_data(num_examples=20):
    arr = data_lib.load_array(config, "train")
  assert arr.images.shape == (20, 28, 28, 1) and arr.images.dtype == np.uint8
  assert arr.labels.shape == (20,)
  x = data_lib.to_model_range(arr.images, "sigmoid").numpy()
  assert x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
  t = data_lib.to_model_range(arr.images, "tanh").numpy()
  assert -1 <= t.min() and t.max() <= 1
  np.testing.assert_allclose(t, 2 * x - 1, atol=1e-6)


def test_any_tfds_image_dataset_by_name():
  config = small_config(dataset="cifar10", train_split="train")
  data_lib.check_dataset(config)
  with tfds.testing.mock_data(num_examples=6):
    arr = data_lib.load_array(config, "train")
  assert arr.images.shape == (6, 32, 32, 3)


def test_unknown_and_non_image_datasets_are_named():
  with pytest.raises(ConfigError, match="'mnistt'.*TFDS image dataset"):
    data_lib.check_dataset(small_config(dataset="mnistt"))
  with pytest.raises(ConfigError, match="'imdb_reviews'.*no 'image'"):
    data_lib.check_dataset(small_config(dataset="imdb_reviews"))


def test_checking_a_dataset_name_reads_no_index_over_the_network(
    monkeypatch):
  from tensorflow_datasets.core import community

  def index():
    raise AssertionError("read the community datasets' index")

  # TFDS reaches its community datasets' index, on the network, through
  # this call.
  monkeypatch.setattr(community, "community_register", index)
  data_lib.check_dataset(small_config(dataset="mnist"))
  with pytest.raises(ConfigError, match="'mnsit' is not accepted"):
    data_lib.check_dataset(small_config(dataset="mnsit"))


@pytest.mark.parametrize("name,meant", [("mnsit", "mnist"),
                                        ("Fashion-MNIST", "fashion_mnist"),
                                        ("cifar11", "cifar10"),
                                        ("svhn", "svhn_cropped")])
def test_a_mistyped_dataset_is_answered_with_the_names_it_may_mean(name,
                                                                   meant):
  with pytest.raises(ConfigError) as raised:
    data_lib.check_dataset(small_config(dataset=name))
  similar = str(raised.value).split("similar names: [")[1].split("]")[0]
  assert f"'{meant}'" in similar
  assert similar.count("'") <= 2 * 8


def _batches(ds):
  return [b.numpy() for b in ds]


def test_train_dataset_epochs_are_a_function_of_seed_and_epoch():
  data = random_images(40)
  config = small_config(epochs=3, steps_per_epoch=None, batch_size=8)
  full = _batches(data_lib.train_dataset(config, data))
  assert len(full) == 3 * 5
  assert all(b.shape == (8, 28, 28, 1) and b.dtype == np.float32
             for b in full)
  resumed = _batches(data_lib.train_dataset(config, data, initial_epoch=1))
  for a, b in zip(full[5:], resumed):
    np.testing.assert_array_equal(a, b)
  # Each epoch is a permutation of the data, and epochs differ in order.
  first = np.concatenate(full[:5]).reshape(40, -1)
  want = (data.images.reshape(40, -1) / 255.0).astype(np.float32)
  assert sorted(map(bytes, first)) == sorted(map(bytes, want))
  assert not np.array_equal(full[0], full[5])
  other = _batches(data_lib.train_dataset(config.override(seed=4), data))
  assert not np.array_equal(full[0], other[0])


def test_alternating_batches_hold_k_minibatches():
  data = random_images(40)
  config = small_config(update="alternating", k=2, batch_size=4,
                        steps_per_epoch=None, epochs=1)
  batches = _batches(data_lib.train_dataset(config, data))
  assert len(batches) == 5 and batches[0].shape[0] == 8


def test_steps_per_epoch_longer_than_the_data_repeats_it():
  data = random_images(10)
  config = small_config(steps_per_epoch=4, batch_size=8, epochs=1)
  assert len(_batches(data_lib.train_dataset(config, data))) == 4
  with pytest.raises(ConfigError, match="batch_size=16"):
    data_lib.steps_per_epoch(small_config(batch_size=16,
                                          steps_per_epoch=None), 10)


def test_toy_gaussian():
  config = small_config(dataset="toy_gaussian", toy_mean=-1.0, toy_std=0.5,
                        toy_size=20000)
  x = data_lib.load_array(config, "train").images
  assert x.shape == (20000, 1) and x.dtype == np.float32
  assert abs(x.mean() + 1.0) < 0.02 and abs(x.std() - 0.5) < 0.02
  np.testing.assert_array_equal(x, data_lib.load_array(config, "train").images)
  np.testing.assert_array_equal(
      data_lib.to_model_range(x[:5], "linear").numpy(), x[:5])


def test_pixel_means():
  data = data_lib.ArrayData(np.stack([np.zeros((2, 2, 1), np.uint8),
                                      np.full((2, 2, 1), 255, np.uint8)]))
  np.testing.assert_allclose(data_lib.pixel_means(data, "sigmoid"), 0.5)
  np.testing.assert_allclose(data_lib.pixel_means(data, "tanh"), 0.0)


def test_real_mnist_offline_with_the_papers_split(mnist_dirs):
  manual, data_dir = mnist_dirs
  config = small_config(tfds_manual_dir=manual, tfds_data_dir=data_dir)
  train = data_lib.load_array(config, config.train_split)
  val = data_lib.load_array(config, config.val_split)
  assert train.images.shape == (50000, 28, 28, 1)
  assert val.images.shape == (10000, 28, 28, 1)
  assert set(np.unique(train.labels)) == set(range(10))
  # Real digits: dark background, about 13% ink on average.
  assert 0.12 < train.images.mean() / 255 < 0.14


@pytest.mark.parametrize("order", ["auto", "stored"])
def test_splits_that_cannot_be_read_are_named(mnist_dirs, order):
  manual, data_dir = mnist_dirs
  config = small_config(tfds_manual_dir=manual, tfds_data_dir=data_dir,
                        split_order=order)
  empty = (r"holds no examples: expected a split, or a slice of one, with "
           r"at least one" if order == "auto" else r"corresponds to no data")
  for split, message in (
      ("test[:0]", empty),
      ("train[5:5]", empty if order == "auto" else r"corresponds to no data"),
      ("train[50000:70000]", r"Requested slice \[50000:70000\] "
       r"incompatible with 60000 examples"),
      ("validation", r"Unknown split 'validation'")):
    with pytest.raises(ConfigError, match=rf"split='{re.escape(split)}' of "
                       rf"dataset 'mnist' (is not accepted: .*)?{message}"):
      data_lib.load_array(config, split)


def _original_file(manual, name, offset, shape):
  with gzip.open(os.path.join(manual, name)) as f:
    return np.frombuffer(f.read(), np.uint8, offset=offset).reshape(shape)


def test_mnist_splits_are_counted_in_the_original_files_order(mnist_dirs):
  manual, data_dir = mnist_dirs
  images = _original_file(manual, "train-images-idx3-ubyte.gz", 16,
                          (-1, 28, 28, 1))
  labels = _original_file(manual, "train-labels-idx1-ubyte.gz", 8, (-1,))
  test_images = _original_file(manual, "t10k-images-idx3-ubyte.gz", 16,
                               (-1, 28, 28, 1))
  config = small_config(tfds_manual_dir=manual, tfds_data_dir=data_dir)
  assert config.split_order == "auto" and config.reads_original_order()
  # The paper's split: the first 50,000 training images, then validation
  # images 50,000-59,999 (sigma is chosen on the first 1,000 of them).
  train = data_lib.load_array(config, config.train_split)
  val = data_lib.load_array(config, config.val_split)
  np.testing.assert_array_equal(train.images, images[:50000])
  np.testing.assert_array_equal(train.labels, labels[:50000])
  np.testing.assert_array_equal(val.images, images[50000:])
  np.testing.assert_array_equal(
      data_lib.load_array(config, "test").images, test_images)
  mixed = data_lib.load_array(config, "train[-3:]+test[:10%]")
  np.testing.assert_array_equal(
      mixed.images, np.concatenate([images[-3:], test_images[:1000]]))
  # TFDS's stored order is a fixed shuffle of it, which the same slice
  # reads from elsewhere in the file.
  stored = config.override(split_order="stored")
  first = data_lib.load_array(stored, "train[:1000]")
  positions = data_lib.original_positions("train", 60000)
  assert sorted(positions) == list(range(60000))
  in_original = np.argsort(positions)[:1000]
  np.testing.assert_array_equal(first.images, images[in_original])
  np.testing.assert_array_equal(first.labels, labels[in_original])
  assert not np.array_equal(first.images, images[:1000])
  with pytest.raises(ConfigError, match=r"split='trian\[:5\]'.*\['test', "
                     r"'train'\]"):
    data_lib.load_array(config, "trian[:5]")


def test_original_order_is_refused_where_it_is_not_known():
  config = small_config(dataset="cifar10")
  assert not config.validate().reads_original_order()
  with pytest.raises(ConfigError, match="split_order='original'.*'cifar10'"
                     ".*mnist.*expected split_order='stored'"):
    config.override(split_order="original").validate()
  with pytest.raises(ConfigError, match="split_order='shuffled'.*'auto', "
                     "'original', 'stored'"):
    small_config(split_order="shuffled").validate()


@pytest.fixture
def own_mnist_dirs(mnist_dirs, tmp_path):
  """`mnist_dirs` with a private copy of the prepared MNIST, for tests that
  remove or damage the arrays kept beside it: the session's copy is read by
  the other workers' tests meanwhile."""
  manual, data_dir = mnist_dirs
  own = tmp_path / "tfds"
  shutil.copytree(os.path.join(data_dir, "mnist"), own / "mnist")
  return manual, str(own)


def _test_split_from_tfds(data_dir):
  builder = tfds.builder("mnist", data_dir=data_dir)
  return tfds.as_numpy(builder.as_dataset(split="test", batch_size=-1,
                                          shuffle_files=False))


def test_a_decoded_split_is_kept_and_read_back_unchanged(own_mnist_dirs,
                                                        monkeypatch):
  manual, data_dir = own_mnist_dirs
  # TFDS's order, in which the kept arrays hold a split.
  config = small_config(tfds_manual_dir=manual, tfds_data_dir=data_dir,
                        split_order="stored")
  cache = data_lib._array_cache(config, data_lib.prepare(config), "test")
  assert cache.path.startswith(data_dir) and cache.num_examples == 10000
  if os.path.exists(cache.path):
    os.remove(cache.path)
  decoded = data_lib.load_array(config, "test")
  assert os.path.exists(cache.path)
  real = _test_split_from_tfds(data_dir)
  np.testing.assert_array_equal(decoded.images, real["image"])
  np.testing.assert_array_equal(decoded.labels, real["label"])
  # Read back without decoding the split in batches again (its first
  # example is read, to check the kept arrays are of this data).
  def no_decoding(*args, **kwargs):
    raise AssertionError("the split was decoded again")
  monkeypatch.setattr(tf.data.Dataset, "batch", no_decoding)
  kept = data_lib.load_array(config, "test")
  np.testing.assert_array_equal(kept.images, real["image"])
  np.testing.assert_array_equal(kept.labels, real["label"])
  assert kept.labels.dtype == np.int64 and kept.images.dtype == np.uint8


def test_a_kept_split_of_other_data_or_unreadable_is_decoded_again(
    own_mnist_dirs, caplog):
  manual, data_dir = own_mnist_dirs
  config = small_config(tfds_manual_dir=manual, tfds_data_dir=data_dir,
                        split_order="stored")
  cache = data_lib._array_cache(config, data_lib.prepare(config), "test")
  real = _test_split_from_tfds(data_dir)
  os.makedirs(os.path.dirname(cache.path), exist_ok=True)
  # Arrays kept from data prepared before (another dataset_info.json),
  # alike in their first example only.
  stale_images = np.zeros_like(real["image"])
  stale_images[0] = real["image"][0]
  np.savez(cache.path, fingerprint=np.array("other"), images=stale_images,
           labels=real["label"].astype(np.int64))
  np.testing.assert_array_equal(data_lib.load_array(config, "test").images,
                                real["image"])
  with np.load(cache.path) as f:
    assert str(f["fingerprint"]) == cache.fingerprint
  # A truncated file.
  with open(cache.path, "wb") as f:
    f.write(b"PK\x03\x04 cut short")
  with caplog.at_level("WARNING"):
    np.testing.assert_array_equal(
        data_lib.load_array(config, "test").labels, real["label"])
  assert "unreadable array cache" in caplog.text
  with np.load(cache.path) as f:
    np.testing.assert_array_equal(f["labels"], real["label"])


def test_mocked_or_unwritable_data_is_not_kept(own_mnist_dirs,
                                               monkeypatch, caplog):
  manual, data_dir = own_mnist_dirs
  config = small_config(tfds_manual_dir=manual, tfds_data_dir=data_dir)
  data_lib.load_array(config, "test")
  cache = data_lib._array_cache(config, data_lib.prepare(config), "test")
  kept = os.stat(cache.path).st_mtime_ns
  with tfds.testing.mock_data(num_examples=20):
    assert len(data_lib.load_array(config, "test")) == 20
  # Mocked from the real record: the same fingerprint, other examples.
  with tfds.testing.mock_data(num_examples=20, data_dir=data_dir):
    mocked = data_lib.load_array(config, "test")
    assert data_lib._array_cache(config, data_lib.prepare(config),
                                 "test").fingerprint == cache.fingerprint
  assert len(mocked) == 20
  assert os.stat(cache.path).st_mtime_ns == kept
  assert len(data_lib.load_array(config, "test")) == 10000
  # A folder that cannot be written: the split is still returned, and no
  # partial file is left behind.
  os.remove(cache.path)
  def disk_full(*args, **kwargs):
    raise OSError(28, "No space left on device")
  monkeypatch.setattr(np, "savez", disk_full)
  with caplog.at_level("WARNING"):
    assert len(data_lib.load_array(config, "test")) == 10000
  assert "No space left on device" in caplog.text
  assert not any(name.startswith("test-")
                 for name in os.listdir(os.path.dirname(cache.path))), (
                     os.listdir(os.path.dirname(cache.path)))


def test_missing_manual_dir_is_named(tmp_path):
  config = small_config(dataset="mnist", tfds_data_dir=str(tmp_path),
                        tfds_manual_dir=str(tmp_path / "nothing"))
  with pytest.raises(ConfigError, match="tfds_manual_dir=.*nothing"):
    data_lib.prepare(config)


def test_wrong_files_in_manual_dir_say_what_to_do(tmp_path,
                                                  wrong_mnist_files):
  config = small_config(dataset="mnist", tfds_data_dir=str(tmp_path / "d"),
                        tfds_manual_dir=str(wrong_mnist_files))
  with pytest.raises(data_lib.DataUnavailableError,
                     match=r"(?s)could not prepare.*wrong checksum.*"
                     r"tfds_manual_dir"):
    data_lib.prepare(config)


@pytest.fixture
def no_network(monkeypatch):
  """TFDS's preparation fails as a download with no network does."""
  def fail(self, *args, **kwargs):
    raise ConnectionError("Failed to resolve 'www.cs.toronto.edu'")
  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", fail)


def test_a_download_is_announced_and_its_failure_says_what_to_do(
    tmp_path, monkeypatch, caplog, mnist_dirs, no_network):
  config = small_config(dataset="cifar10", tfds_data_dir=str(tmp_path))
  with caplog.at_level("WARNING"):
    with pytest.raises(data_lib.DataUnavailableError,
                       match=r"(?s)could not prepare dataset "
                       r"'cifar10'.*ConnectionError.*--tfds_manual_dir"):
      data_lib.prepare(config)
  assert "TFDS is downloading dataset 'cifar10'" in caplog.text
  assert "3.5 minutes" in caplog.text
  # Data already prepared is read with no download and no warning.
  caplog.clear()
  monkeypatch.undo()
  prepared = small_config(dataset="mnist", tfds_data_dir=mnist_dirs[1])
  with caplog.at_level("WARNING"):
    assert data_lib.prepare(prepared).is_prepared()
  assert "downloading" not in caplog.text


def test_files_a_manual_dir_lacks_are_named(tmp_path, monkeypatch, caplog,
                                            mnist_dirs, no_network):
  manual = mnist_dirs[0]
  # CIFAR-10 asked for with the MNIST files as the manual directory: TFDS
  # would download its one file.
  config = small_config(dataset="cifar10", tfds_data_dir=str(tmp_path),
                        tfds_manual_dir=manual)
  with caplog.at_level("WARNING"):
    with pytest.raises(data_lib.DataUnavailableError,
                       match=r"(?s)ConnectionError.*put cifar-10-binary"
                       r"\.tar\.gz into tfds_manual_dir="):
      data_lib.prepare(config)
  assert "TFDS is downloading cifar-10-binary.tar.gz" in caplog.text
  assert manual in caplog.text
  # A manual directory holding every file: nothing to download, no warning.
  caplog.clear()
  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare",
                      lambda self, *args, **kwargs: None)
  mnist = small_config(dataset="mnist", tfds_data_dir=str(tmp_path),
                       tfds_manual_dir=manual)
  with caplog.at_level("WARNING"):
    data_lib.prepare(mnist)
  assert "downloading" not in caplog.text
  # One file gone from it: that file is named.
  partial = tmp_path / "partial"
  partial.mkdir()
  for name in MNIST_FILES[1:]:
    (partial / name).symlink_to(os.path.join(manual, name))
  with caplog.at_level("WARNING"):
    data_lib.prepare(small_config(dataset="mnist",
                                  tfds_data_dir=str(tmp_path),
                                  tfds_manual_dir=str(partial)))
  assert f"TFDS is downloading {MNIST_FILES[0]} for dataset 'mnist'" in (
      caplog.text)


def test_data_prepared_by_another_process_meanwhile_is_read(
    tmp_path, monkeypatch, caplog, mnist_dirs):
  manual, prepared = mnist_dirs
  data_dir = tmp_path / "fresh"
  prepare = tfds.core.DatasetBuilder.download_and_prepare

  def beaten(self, *args, **kwargs):
    # Another run, started at the same time, finishes first: its copy is in
    # place when this one's is to be renamed there, as TFDS then fails.
    shutil.copytree(os.path.join(prepared, "mnist"), data_dir / "mnist")
    raise FileExistsError(f"Cannot rename {data_dir}/mnist/incomplete.X. "
                          f"Destination {self.data_dir} already exists.")

  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare",
                      beaten)
  config = small_config(dataset="mnist", tfds_data_dir=str(data_dir),
                        tfds_manual_dir=manual)
  with caplog.at_level("WARNING"):
    builder = data_lib.prepare(config)
  assert builder.is_prepared()
  assert "prepared by another process" in caplog.text
  assert "FileExistsError: Cannot rename" in caplog.text
  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare",
                      prepare)
  test = data_lib.load_array(config, "test")
  assert test.images.shape == (10_000, 28, 28, 1)
  # A failure that leaves no data prepared is still the error it was.
  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare",
                      beaten)
  shutil.rmtree(data_dir)
  monkeypatch.setattr(shutil, "copytree", lambda *args: None)
  with pytest.raises(data_lib.DataUnavailableError,
                     match=r"could not prepare dataset 'mnist'.*"
                     r"FileExistsError: Cannot rename"):
    data_lib.prepare(config)


def _blobs(seed=0, per_blob=40):
  """Images of four well-separated kinds: each kind lights a different
  quarter of the image, with noise on top."""
  rng = np.random.default_rng(seed)
  images, kinds = [], []
  for kind in range(4):
    base = np.zeros((28, 28), np.float64)
    base[(kind // 2) * 14:(kind // 2) * 14 + 14,
         (kind % 2) * 14:(kind % 2) * 14 + 14] = 200
    noise = rng.integers(0, 50, size=(per_blob, 28, 28))
    images.append((base + noise).astype(np.uint8)[..., None])
    kinds += [kind] * per_blob
  order = rng.permutation(4 * per_blob)
  return np.concatenate(images)[order], np.array(kinds)[order]


def test_kmeans_finds_separated_kinds_and_repeats_with_its_seed():
  images, kinds = _blobs()
  points = images.reshape(len(images), -1) / 255.0
  centres = data_lib.kmeans(points, 4, seed=7)
  prior = data_lib.ClusterPrior(centres, np.full(4, 0.25))
  assigned = prior.assign(images)
  # Each kind is one cluster and each cluster one kind.
  for kind in range(4):
    assert len(set(assigned[kinds == kind])) == 1
  assert len(set(assigned)) == 4
  np.testing.assert_array_equal(data_lib.kmeans(points, 4, seed=7), centres)
  assert not np.array_equal(data_lib.kmeans(points, 4, seed=8), centres)
  with pytest.raises(ValueError, match=r"k=1 is not accepted for 160 "
                     r"points: expected 2 <= k <= 160"):
    data_lib.kmeans(points, 1, seed=0)


def test_cluster_prior_ignores_labels_and_round_trips(tmp_path):
  images, kinds = _blobs(per_blob=30)
  config = small_config(conditional=True, clusters=4, seed=5)
  prior = data_lib.cluster_prior(config, data_lib.ArrayData(images, kinds))
  # The labels play no part: shuffled or absent, the same clusters.
  again = data_lib.cluster_prior(
      config, data_lib.ArrayData(images, np.random.default_rng(0).permutation(
          kinds)))
  np.testing.assert_array_equal(again.centres, prior.centres)
  np.testing.assert_array_equal(
      data_lib.cluster_prior(config, data_lib.ArrayData(images)).centres,
      prior.centres)
  np.testing.assert_allclose(prior.shares, np.full(4, 0.25))
  path = str(tmp_path / data_lib.CLUSTERS_FILE)
  prior.save(path)
  loaded = data_lib.ClusterPrior.load(path)
  np.testing.assert_array_equal(loaded.centres, prior.centres)
  np.testing.assert_array_equal(loaded.shares, prior.shares)
  with pytest.raises(FileNotFoundError, match="clusters > 0"):
    data_lib.ClusterPrior.load(str(tmp_path / "none.npz"))
  # Cut short, or without its arrays: named.
  whole = pathlib.Path(path).read_bytes()
  np.savez(path, centres=prior.centres)
  for damaged in (whole[:len(whole) // 2], pathlib.Path(path).read_bytes()):
    pathlib.Path(path).write_bytes(damaged)
    with pytest.raises(files.RunRecordError,
                       match=r"clusters.npz cannot be read \(\w+: .+\): "
                       r"expected the clusters training writes there"):
      data_lib.ClusterPrior.load(path)
