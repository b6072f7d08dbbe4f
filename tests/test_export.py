import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import export
from adversarial import train_lib
from adversarial.config import get_preset

from conftest import (random_images, record_file_events, run_module,
                      small_config)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("run")
  train_lib.train(small_config(epochs=1), str(workdir), verbose=0,
                  train_data=random_images(48))
  return str(workdir)


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
  base = str(tmp_path_factory.mktemp("serving"))
  return export.export_generator(run_dir, base), base


def test_layout_versions_and_metadata(run_dir, exported, tmp_path):
  path, base = exported
  assert path == os.path.join(base, "1")
  assert {"saved_model.pb", "variables", "assets", "assets.extra"} <= set(
      os.listdir(path))
  meta = export.read_metadata(path)
  assert meta["config"]["latent_dim"] == 8
  assert meta["version"].startswith("adversarial 0.1.0")
  second = export.export_generator(run_dir, str(tmp_path), version=7)
  assert second.endswith("/7")
  assert export.export_generator(run_dir, str(tmp_path)).endswith("/8")


def test_every_exported_file_is_synced_before_the_version_appears(
    run_dir, tmp_path, monkeypatch):
  events = record_file_events(monkeypatch)
  final = export.export_generator(run_dir, str(tmp_path))
  renames = [e for e in events if e[0] == "rename" and e[2] == final]
  assert len(renames) == 1
  at = events.index(renames[0])
  saved = renames[0][1]
  synced = {e[1] for e in events[:at] if e[0] == "fsync"}
  written = {os.path.join(saved, os.path.relpath(os.path.join(d, n), final))
             for d, _, names in os.walk(final) for n in names}
  assert written and written <= synced
  assert ("fsync", str(tmp_path)) in events[at:]


def test_saved_model_cli_lists_the_signatures(exported):
  path, _ = exported
  cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
  out = subprocess.run([cli, "show", "--all", "--dir", path],
                       capture_output=True, text=True, timeout=120).stdout
  sections = {name: out.split(f"signature_def['{name}']")[1].split(
      "signature_def[")[0] for name in export.SIGNATURES}
  z = sections["serving_default"]
  assert "inputs['z']" in z and "DT_FLOAT" in z and "shape: (-1, 8)" in z
  assert "outputs['images']" in z and "shape: (-1, 28, 28, 1)" in z
  s = sections["sample"]
  assert "inputs['seed']" in s and "DT_INT64" in s and "shape: (-1)" in s
  assert "outputs['images']" in s
  p = sections["sample_png"]
  assert "outputs['png_bytes']" in p and "DT_STRING" in p


def test_binary_outputs_are_named_for_rest_clients(exported):
  # TF Serving's REST API writes a string output as a JSON string of its raw
  # bytes (PNG bytes are no UTF-8) unless the output's name ends in _bytes,
  # when it sends {"b64": ...}.
  loaded = tf.saved_model.load(exported[0])
  strings = [(name, key) for name in export.SIGNATURES
             for key, spec in loaded.signatures[name].structured_outputs.items()
             if spec.dtype == tf.string]
  assert strings == [("sample_png", "png_bytes")]


CHECK = r"""
import sys, numpy as np, tensorflow as tf
m = tf.saved_model.load(sys.argv[1])
z = np.load(sys.argv[2])
out = {"default": m.signatures["serving_default"](z=tf.constant(z))["images"],
       "s1": m.signatures["sample"](seed=tf.constant([3, 4, 3], tf.int64))
       ["images"],
       "s2": m.signatures["sample"](seed=tf.constant([4], tf.int64))["images"],
       "png": m.signatures["sample_png"](seed=tf.constant([3], tf.int64))
       ["png_bytes"]}
np.savez(sys.argv[3], **{k: v.numpy() for k, v in out.items()})
"""


def test_a_fresh_process_gets_the_generators_images(run_dir, exported,
                                                     tmp_path):
  path, _ = exported
  model = train_lib.restore(run_dir)[0]
  z = model.noise_for_seed(5, 99).numpy()
  np.save(tmp_path / "z.npy", z)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  proc = subprocess.run(
      [sys.executable, "-c", CHECK, path, str(tmp_path / "z.npy"),
       str(tmp_path / "out.npz")], env=env, capture_output=True, text=True,
      timeout=120)
  assert proc.returncode == 0, proc.stderr
  out = np.load(tmp_path / "out.npz", allow_pickle=True)
  np.testing.assert_allclose(out["default"], np.asarray(model.generator(z)),
                             rtol=0, atol=1e-6)
  s1 = out["s1"]
  np.testing.assert_array_equal(s1[0], s1[2])       # same seed, same image
  assert not np.array_equal(s1[0], s1[1])
  # Any batch, any call: the same z (the matmul may round to an ulp apart).
  np.testing.assert_allclose(s1[1], out["s2"][0], rtol=0, atol=1e-6)
  # The seed's image is the trained model's generate(1, seed).
  np.testing.assert_allclose(s1[0], model.generate(1, seed=3)[0], atol=1e-6)
  png = tf.io.decode_png(out["png"][0]).numpy()
  np.testing.assert_array_equal(png, np.round(s1[0] * 255).astype(np.uint8))


def test_warmup_records_replay_through_their_signatures(exported):
  from tensorflow_serving.apis import prediction_log_pb2
  path, _ = exported
  loaded = tf.saved_model.load(path)
  records = list(tf.data.TFRecordDataset(
      os.path.join(path, "assets.extra", export.WARMUP_FILE)))
  assert len(records) == 3
  expected = {"serving_default": ("images", tf.float32, (1, 28, 28, 1)),
              "sample": ("images", tf.float32, (1, 28, 28, 1)),
              "sample_png": ("png_bytes", tf.string, (1,))}
  seen = set()
  for record in records:
    log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
    request = log.predict_log.request
    assert request.model_spec.name == "generator"
    name = request.model_spec.signature_name
    inputs = {k: tf.constant(tf.make_ndarray(v))
              for k, v in request.inputs.items()}
    outputs = loaded.signatures[name](**inputs)
    key, dtype, shape = expected[name]
    assert list(outputs) == [key]
    assert outputs[key].dtype == dtype and outputs[key].shape == shape
    seen.add(name)
  assert seen == set(export.SIGNATURES)


def test_bad_requests_fail_at_the_signature(exported):
  path, _ = exported
  fn = tf.saved_model.load(path).signatures["serving_default"]
  with pytest.raises((ValueError, TypeError, tf.errors.InvalidArgumentError),
                     match="(?i)shape|incompatible"):
    fn(z=tf.zeros([2, 9]))
  with pytest.raises((ValueError, TypeError, tf.errors.InvalidArgumentError),
                     match="(?i)dtype|int32|float"):
    fn(z=tf.zeros([2, 8], tf.int32))


def _listing(base):
  return sorted(os.listdir(base))


def test_exports_started_together_take_a_version_each(run_dir, tmp_path,
                                                     monkeypatch):
  base = str(tmp_path / "serving")
  check = export._check
  beside = []

  def another_export_ends_first(*args, **kwargs):
    # An export started beside this one writes the version this one picked
    # before this one's is renamed into place.
    check(*args, **kwargs)
    if not beside:
      beside.append(None)
      beside[0] = export.export_generator(run_dir, base, **chosen)

  monkeypatch.setattr(export, "_check", another_export_ends_first)
  chosen = {}
  path = export.export_generator(run_dir, base)
  assert (beside[0], path) == (os.path.join(base, "1"),
                               os.path.join(base, "2"))
  assert export.read_metadata(path) == export.read_metadata(beside[0])
  assert sorted(os.listdir(base)) == ["1", "2"]
  # A version the caller names is never taken from another export.
  beside.clear()
  chosen = {"version": 5}
  with pytest.raises(export.ExportError, match=r"version 5 already exists "
                     r"at '.*5': expected a new version \(the next free one "
                     r"is 6\)"):
    export.export_generator(run_dir, base, version=5)
  assert sorted(os.listdir(base)) == ["1", "2", "5"]


def test_bad_export_input_leaves_nothing_half_written(run_dir, tmp_path,
                                                      monkeypatch):
  base = str(tmp_path / "serving")
  export.export_generator(run_dir, base)
  before = _listing(base)
  with pytest.raises(export.ExportError, match="version 1 already exists"):
    export.export_generator(run_dir, base, version=1)
  with pytest.raises(FileNotFoundError, match="workdir="):
    export.export_generator(str(tmp_path / "none"), base)
  with pytest.raises(FileNotFoundError, match="checkpoint='nope.weights.h5'"):
    export.export_generator(run_dir, base, checkpoint="nope.weights.h5")
  blocker = tmp_path / "file"
  blocker.write_text("x")
  with pytest.raises(export.ExportError, match="cannot be created"):
    export.export_generator(run_dir, str(blocker / "sub"))
  with pytest.raises(export.ExportError, match=r"export_dir='gs://b/gan' is "
                     r"not accepted: expected a folder of the file system.* "
                     r"Export to a folder and copy the version folder"):
    export.export_generator(run_dir, "gs://b/gan")
  assert not os.path.exists("gs:")
  with pytest.raises(export.ExportError, match="version=0"):
    export.export_generator(run_dir, base, version=0)
  with pytest.raises(export.ExportError, match="model_name='' is not "
                     "accepted: expected the name TF Serving serves"):
    export.export_generator(run_dir, base, model_name="")
  # The 1-D toy's samples are numbers, not images.
  toy = tmp_path / "toy"
  train_lib.train(get_preset("toy_1d").override(epochs=1, toy_size=200),
                  str(toy), verbose=0)
  with pytest.raises(export.ExportError, match=r"1-D toy data \(dataset="
                     r"'toy_gaussian'\), whose samples are numbers, not "
                     r"images: expected a run of an image dataset"):
    export.export_generator(str(toy), base)
  # A failure after the model was written: earlier versions stay as they
  # were and no partial version appears.
  def broken(*args):
    raise export.ExportError("simulated failure")
  monkeypatch.setattr(export, "_check", broken)
  with pytest.raises(export.ExportError, match="simulated"):
    export.export_generator(run_dir, base)
  # A disk that fills up: the file and the reason in a line.
  def full(path, *args):
    raise OSError(28, "No space left on device", path)
  monkeypatch.setattr(export, "_check", full)
  with pytest.raises(export.ExportError, match=r"export to '.*2' failed "
                     r"\(.*model: No space left on device\); earlier "
                     r"versions are untouched"):
    export.export_generator(run_dir, base)
  assert _listing(base) == before == ["1"]
  assert os.path.exists(os.path.join(base, "1", "saved_model.pb"))


def test_export_command_line(run_dir, tmp_path):
  base = tmp_path / "serving"
  ok = run_module("export", [f"--workdir={run_dir}", f"--export_dir={base}",
                             "--checkpoint=last"], timeout=180)
  assert ok.returncode == 0, ok.stderr
  assert f"exported the generator to {base}/1" in ok.stdout
  again = run_module("export", [f"--workdir={run_dir}", f"--export_dir={base}",
                                "--version=1"], timeout=180)
  assert again.returncode != 0
  assert "version 1 already exists" in again.stderr
  # A checkpoint of other nets: the message, no traceback, no new version.
  other = tmp_path / "other"
  train_lib.train(small_config(epochs=1, g_hidden=(12,)), str(other),
                  verbose=0, train_data=random_images(48))
  foreign = run_module(
      "export", [f"--workdir={run_dir}", f"--export_dir={base}",
                 f"--checkpoint={other}/checkpoints/epoch-0001.weights.h5"],
      timeout=180)
  assert foreign.returncode == 1
  assert "error: checkpoint=" in foreign.stderr
  assert "does not fit the run" in foreign.stderr
  assert "Traceback" not in foreign.stderr
  assert _listing(base) == ["1"]


# `python -m export`, which sends itself a signal once the SavedModel is
# written and checked, before it is renamed into place: the stop arrives at
# the same point of every run. A SIGTERM is sent again as the stop removes
# the temporary folder, as an impatient supervisor might. SIGINT gets
# Python's own handler, as in a process started from a terminal.
_STOPPED_EXPORT = """
import shutil
import signal
import sys

import export
from export import __main__ as command

signum = getattr(signal, sys.argv.pop(1))
check, rmtree = export._check, shutil.rmtree


def check_then_stop(*args, **kwargs):
  check(*args, **kwargs)
  signal.raise_signal(signum)


def rmtree_after_another_sigterm(*args, **kwargs):
  signal.raise_signal(signal.SIGTERM)
  rmtree(*args, **kwargs)


export._check = check_then_stop
if signum == signal.SIGTERM:
  shutil.rmtree = rmtree_after_another_sigterm
signal.signal(signal.SIGINT, signal.default_int_handler)
command.run()
"""


@pytest.mark.parametrize("signum,how", [(signal.SIGINT, "interrupted"),
                                        (signal.SIGTERM, "terminated")])
def test_export_stopped_by_ctrl_c_or_sigterm_leaves_no_partial_version(
    run_dir, tmp_path, signum, how):
  base = tmp_path / "serving"
  export.export_generator(run_dir, str(base))
  (tmp_path / "stopped_export.py").write_text(_STOPPED_EXPORT)
  stopped = run_module(
      "stopped_export", [signum.name, f"--workdir={run_dir}",
                         f"--export_dir={base}"],
      timeout=180, cwd=tmp_path)
  assert stopped.returncode == 128 + signum, stopped.stderr
  assert (f"{how}: no version is left half-written in {base}; the newest "
          f"there is 1.") in stopped.stderr
  assert "Traceback" not in stopped.stderr
  assert "exported" not in stopped.stdout
  # The version being written and its temporary folder are gone; version 1
  # is whole.
  assert _listing(base) == ["1"]
  assert os.path.exists(base / "1" / "saved_model.pb")
