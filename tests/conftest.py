"""Shared fixtures: small configs, and the real MNIST prepared once per session
from the original files (no network)."""

import fcntl
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

import forked

from adversarial import config as config_lib
from adversarial import data as data_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MANUAL_DIR = os.path.join(REPO, "..", "shared", "data", "mnist")


def module_env(mnist_dirs=None) -> dict:
  """The environment of a subprocess of the package: this checkout on the
  path, TensorFlow's start-up logs off and, given `mnist_dirs` (the fixture's
  pair), the real MNIST files."""
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
  if mnist_dirs:
    manual, data_dir = mnist_dirs
    env.update(ADVERSARIAL_TFDS_MANUAL_DIR=manual,
               ADVERSARIAL_TFDS_DATA_DIR=data_dir)
  return env


def run_module(module, args, mnist_dirs=None, timeout=120,
               merge_stderr=False, cwd=None):
  """`python -m module args` in `module_env`, run in `cwd` (default: this
  process's), its output captured (stderr into stdout with
  `merge_stderr`), in a process forked from one that has imported
  TensorFlow (`forked`)."""
  return forked.run_module(module, args, module_env(mnist_dirs), timeout,
                           cwd=cwd, merge_stderr=merge_stderr)


def record_file_events(monkeypatch) -> list:
  """The calls of os.fsync (as ("fsync", path synced)), os.replace and
  os.rename (as (name, source, target)) from now on, in order."""
  events = []
  fsync, replace, rename = os.fsync, os.replace, os.rename

  def on_fsync(fd):
    events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
    fsync(fd)

  def on(name, call):
    def renaming(src, dst):
      events.append((name, str(src), str(dst)))
      call(src, dst)
    return renaming

  monkeypatch.setattr(os, "fsync", on_fsync)
  monkeypatch.setattr(os, "replace", on("replace", replace))
  monkeypatch.setattr(os, "rename", on("rename", rename))
  return events


def small_config(**changes):
  """The paper's recipe shrunk to test size: latent 8, batch 8, tiny nets."""
  base = config_lib.PAPER_MNIST.override(
      latent_dim=8, g_hidden=(16,), d_hidden=(8,), d_pieces=2,
      batch_size=8, epochs=2, steps_per_epoch=3, jit_compile=False,
      sample_grid_rows=2, monitor_samples=0, seed=3)
  return base.override(**changes)


def random_images(n=64, shape=(28, 28, 1), seed=0):
  rng = np.random.default_rng(seed)
  return data_lib.ArrayData(
      rng.integers(0, 256, size=(n,) + shape, dtype=np.uint8),
      rng.integers(0, 10, size=(n,)).astype(np.int64))


MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@pytest.fixture
def wrong_mnist_files(tmp_path):
  """A manual directory with the four MNIST file names and other bytes."""
  manual = tmp_path / "wrong_manual"
  manual.mkdir()
  for name in MNIST_FILES:
    (manual / name).write_bytes(b"not mnist")
  return manual


@pytest.fixture(scope="session", autouse=True)
def session_tempdir(tmp_path_factory):
  """The temporary directory of `tempfile`, here and in the subprocesses the
  tests start, inside the session's own, which pytest removes in time: TFDS
  leaves an empty folder in the system's temporary directory each time it
  builds the builder of a dataset not yet prepared, and a suite run builds
  about a hundred."""
  path = str(tmp_path_factory.mktemp("tempfile"))
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv("TMPDIR", path)
    patch.setattr(tempfile, "tempdir", path)
    yield path


@pytest.fixture(scope="session")
def mnist_dirs(tmp_path_factory):
  """(manual_dir, data_dir): real MNIST prepared by TFDS from the original
  files. The tests that use it must run: a missing directory fails."""
  manual = os.environ.get("ADVERSARIAL_TFDS_MANUAL_DIR", DEFAULT_MANUAL_DIR)
  if not os.path.exists(os.path.join(manual, "train-images-idx3-ubyte.gz")):
    pytest.fail(f"the MNIST files are not in {manual!r}: set "
                f"ADVERSARIAL_TFDS_MANUAL_DIR to the folder of the four "
                f"original *-ubyte.gz files.")
  data_dir = os.environ.get("ADVERSARIAL_TFDS_DATA_DIR")
  if not data_dir and os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest-xdist's workers share the parent of their temporary roots: one
    # prepared copy (and one cached classifier) serves them all.
    data_dir = str(tmp_path_factory.getbasetemp().parent / "tfds")
  elif not data_dir:
    data_dir = str(tmp_path_factory.mktemp("tfds"))
  config = config_lib.PAPER_MNIST.override(tfds_manual_dir=manual,
                                           tfds_data_dir=data_dir)
  os.makedirs(data_dir, exist_ok=True)
  with open(os.path.join(data_dir, ".prepare.lock"), "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # one worker prepares; the rest wait
    data_lib.prepare(config)
  return manual, data_dir
