import dataclasses
import fcntl
import json
import os
import pathlib
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time

import keras
import numpy as np
import pytest

from adversarial import callbacks as callbacks_lib
from adversarial import cli as cli_lib
from adversarial import data as data_lib
from adversarial import evaluation
from adversarial import files
from adversarial import images as images_lib
from adversarial import train_lib
from adversarial.config import ConfigError

from conftest import (module_env, random_images, record_file_events,
                      run_module, small_config)

DATA = random_images(48)


def run(config, workdir, **kwargs):
  return train_lib.train(config, str(workdir), verbose=0, train_data=DATA,
                         **kwargs)


def weights(model):
  return [np.array(w) for w in model.weights]


def test_workdir_after_a_run(tmp_path):
  config = small_config(epochs=2)
  result = run(config, tmp_path)
  assert (result.initial_epoch, result.epochs_done) == (0, 2)
  assert set(result.history) >= {"d_loss", "g_loss", "d_real", "d_fake"}
  saved = json.loads((tmp_path / "config.json").read_text())
  assert saved["batch_size"] == 8 and saved["g_hidden"] == [16]
  state = callbacks_lib.read_state(str(tmp_path / "checkpoints"))
  assert state["epoch"] == 2 and os.path.exists(state["weights"])
  # 2 x 2 grid of 28 x 28 samples with 1-pixel padding.
  for epoch in (1, 2):
    png = images_lib.read_png(str(tmp_path / "samples" /
                                  f"epoch-{epoch:04d}.png"))
    assert png.shape == (2 * 29 + 1, 2 * 29 + 1, 1)
  assert os.listdir(tmp_path / "tensorboard" / "train")
  assert os.listdir(tmp_path / "tensorboard" / "samples")


class Interrupt(keras.callbacks.Callback):
  """Stops a run at (epoch, batch) the way a kill would: no cleanup."""

  def __init__(self, epoch, batch):
    super().__init__()
    self.at = (epoch, batch)
    self.epoch = 0

  def on_epoch_begin(self, epoch, logs=None):
    self.epoch = epoch

  def on_train_batch_end(self, batch, logs=None):
    # Keras reports the last step of each call (steps_per_execution).
    if self.epoch == self.at[0] and batch >= self.at[1]:
      raise KeyboardInterrupt


@pytest.mark.parametrize("update", ["simultaneous", "alternating"])
def test_interrupted_run_resumes_where_it_stopped_and_ends_the_same(
    tmp_path, update):
  config = small_config(epochs=3, update=update, k=2 if update ==
                        "alternating" else 1)
  whole = run(config, tmp_path / "whole")
  # One step a call, so the interrupt falls inside the epoch; the grouping
  # of steps into calls may change when a run resumes.
  with pytest.raises(KeyboardInterrupt):
    run(config.override(steps_per_execution=1), tmp_path / "part",
        callbacks=[Interrupt(1, 1)])
  # Epoch 1 was in progress: only it is lost.
  state = callbacks_lib.read_state(str(tmp_path / "part" / "checkpoints"))
  assert state["epoch"] == 1
  resumed = run(config, tmp_path / "part")
  assert resumed.model.steps_per_execution == 3
  assert resumed.initial_epoch == 1
  assert len(resumed.history["d_loss"]) == 2
  for a, b in zip(weights(whole.model), weights(resumed.model)):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(whole.model.generate(4),
                                resumed.model.generate(4))


def test_a_resumed_run_removes_what_stopped_writes_left(tmp_path):
  run(small_config(epochs=1), tmp_path)
  # What a run killed while it wrote each kind of file leaves behind.
  left = [tmp_path / "checkpoints" / "tmp-4242.weights.h5",
          tmp_path / "checkpoints" / "state.json.4242.tmp",
          tmp_path / "samples" / "epoch-0002.png.4242.tmp",
          tmp_path / "config.json.4242.tmp"]
  # An evaluation, which may run beside training, writing its record.
  theirs = tmp_path / "evaluation.json.4343.tmp"
  for path in left + [theirs]:
    path.write_bytes(b"cut short")
  assert run(small_config(epochs=2), tmp_path).epochs_done == 2
  assert not [p for p in left if p.exists()]
  assert theirs.read_bytes() == b"cut short"
  assert callbacks_lib.read_state(str(tmp_path / "checkpoints"))[
      "epoch"] == 2


def test_more_epochs_extend_the_same_run(tmp_path):
  run(small_config(epochs=1), tmp_path)
  more = run(small_config(epochs=2), tmp_path)
  assert (more.initial_epoch, more.epochs_done) == (1, 2)
  again = run(small_config(epochs=2), tmp_path)  # nothing left to do
  assert again.history == {} and again.initial_epoch == 2


def test_a_damaged_record_of_a_run_is_named_and_left_as_it_is(tmp_path):
  run(small_config(epochs=1), tmp_path)
  checkpoints = tmp_path / "checkpoints"
  state = checkpoints / callbacks_lib.STATE_FILE
  weights_file = pathlib.Path(callbacks_lib.weights_path(str(checkpoints), 1))
  whole, record = weights_file.read_bytes(), state.read_text()
  # The record training writes, cut short or missing a field.
  for text, why in (('{"epoch": 1, "wei', r"Unterminated string"),
                    ('{"epoch": 1}', r"it has no 'weights'"),
                    ('{"epoch": "1", "weights": "epoch-0001.weights.h5"}',
                     r"its 'epoch' is '1'"),
                    ("[1]", r"it holds no JSON object")):
    state.write_text(text)
    with pytest.raises(files.RunRecordError,
                       match=rf"state.json cannot be read \({why}.*\): "
                       r"expected the JSON object training writes there, "
                       r"with 'epoch' \(an integer\), 'weights' \(a file "
                       r"name\)"):
      run(small_config(epochs=2), tmp_path)
    assert state.read_text() == text
  state.write_text(record)
  # The checkpoint it names, gone or cut short.
  for damage, why in ((lambda: weights_file.unlink(),
                       r"the file does not exist"),
                      (lambda: weights_file.write_bytes(whole[:500]),
                       r".+")):
    damage()
    with pytest.raises(files.RunRecordError,
                       match=rf"workdir='.*' cannot go on from epoch 1: its "
                       rf"checkpoint .*epoch-0001.weights.h5, named by "
                       rf"checkpoints/state.json, cannot be loaded \({why}\)"
                       r". Expected the whole checkpoint"):
      run(small_config(epochs=2), tmp_path)
    assert callbacks_lib.read_state(str(checkpoints))["epoch"] == 1
    assert not os.path.exists(callbacks_lib.weights_path(str(checkpoints), 2))
  weights_file.write_bytes(whole)
  # The configuration, cut short or of no Config.
  config_file = tmp_path / "config.json"
  saved = config_file.read_text()
  for text, why in ((saved[:40], r".+"),
                    ('{"bogus": 1}', r"unknown config fields \['bogus'\]"),
                    ("[1]", r"list \[1\] is not accepted"),
                    (json.dumps(dict(json.loads(saved), seed="3")),
                     r"seed='3' is not accepted: expected an integer")):
    config_file.write_text(text)
    for act in (lambda: run(small_config(epochs=2), tmp_path),
                lambda: train_lib.restore(str(tmp_path))):
      with pytest.raises(files.RunRecordError,
                         match=rf"config.json cannot be read \({why}.*\): "
                         r"expected the run's configuration as training "
                         r"writes it"):
        act()
    assert config_file.read_text() == text
  config_file.write_text(saved)
  # Put back, the run goes on.
  assert run(small_config(epochs=2), tmp_path).epochs_done == 2


def poison(model):
  """Makes D's logit bias NaN: a NaN there reaches the losses on every
  backend (a NaN in a ReLU layer's kernel need not: oneDNN's fused
  MatMul+ReLU can map NaN to 0)."""
  bias = model.discriminator.get_layer("logits").bias
  bias.assign(np.full(bias.shape, np.nan, np.float32))


class PoisonAt(keras.callbacks.Callback):

  def __init__(self, epoch):
    super().__init__()
    self.epoch = epoch

  def on_epoch_begin(self, epoch, logs=None):
    if epoch == self.epoch:
      poison(self.model)


@pytest.mark.parametrize("calls, where", [(1, "step 1"), (3, "steps 1-3")])
def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(
    tmp_path, calls, where):
  with pytest.raises(callbacks_lib.TrainingDivergedError,
                     match=rf"diverged at epoch 2, {where}: .*nan.*"
                     r"epoch-0001.weights.h5 \(epoch 1\), is kept"):
    run(small_config(epochs=3, steps_per_execution=calls), tmp_path,
        callbacks=[PoisonAt(1)])
  state = callbacks_lib.read_state(str(tmp_path / "checkpoints"))
  assert state["epoch"] == 1
  model, _, record = train_lib.restore(str(tmp_path), "last")
  assert record["epoch"] == 1
  assert all(np.isfinite(w).all() for w in weights(model))
  assert not os.path.exists(tmp_path / "samples" / "epoch-0002.png")


class PoisonAtCall(keras.callbacks.Callback):
  """`poison` before the `call`-th call (1-based) of every epoch."""

  def __init__(self, call):
    super().__init__()
    self.call = call

  def on_epoch_begin(self, epoch, logs=None):
    self.calls = 0

  def on_train_batch_begin(self, batch, logs=None):
    self.calls += 1
    if self.calls == self.call:
      poison(self.model)


def test_nan_in_a_later_call_names_that_calls_steps(tmp_path):
  # 6 steps, 3 a call: calls of steps 1-3 and 4-6.
  with pytest.raises(callbacks_lib.TrainingDivergedError,
                     match=r"diverged at epoch 1, steps 4-6: .*nan"):
    run(small_config(epochs=1, steps_per_epoch=6, steps_per_execution=3),
        tmp_path, callbacks=[PoisonAtCall(2)])


def test_nan_in_a_short_last_call_names_its_step():
  # fit() of the user's own: 5 minibatches, 2 a call: steps 1-2, 3-4, 5.
  model = train_lib.build_model(small_config(), (28, 28, 1),
                                np.full((28, 28, 1), 0.5, np.float32), 5)
  model.compile(d_optimizer=model.d_optimizer, g_optimizer=model.g_optimizer,
                steps_per_execution=2)
  images = DATA.images[:40].astype(np.float32) / 255.0
  with pytest.raises(callbacks_lib.TrainingDivergedError,
                     match=r"diverged at epoch 1, step 5: .*nan"):
    model.fit(images, batch_size=8, epochs=1, verbose=0,
              callbacks=[PoisonAtCall(3), callbacks_lib.NaNGuard()])


class PoisonHidden(keras.callbacks.Callback):
  """NaN in G's first (ReLU) kernel, which the losses may not show."""

  def on_epoch_begin(self, epoch, logs=None):
    if epoch == 1:
      kernel = self.model.generator.get_layer("h0").kernel
      kernel.assign(np.full(kernel.shape, np.nan, np.float32))


def test_nan_weights_stop_the_run_before_their_checkpoint(tmp_path):
  with pytest.raises(callbacks_lib.TrainingDivergedError,
                     match=r"diverged at epoch 2, .*(nan|h0/kernel)"):
    run(small_config(epochs=3), tmp_path, callbacks=[PoisonHidden()])
  state = callbacks_lib.read_state(str(tmp_path / "checkpoints"))
  assert state["epoch"] == 1


def test_checkpoints_past_epoch_9999_keep_the_newest(tmp_path):
  model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
  checkpoint = callbacks_lib.EpochCheckpoint(str(tmp_path), keep=2)
  checkpoint.set_model(model)
  for epoch in (9997, 9998, 9999, 10000):  # epochs 9,998 to 10,001 done
    checkpoint.on_epoch_end(epoch, {"d_loss": 0.5})
  assert sorted(os.listdir(tmp_path)) == [
      "epoch-10000.weights.h5", "epoch-10001.weights.h5", "state.json"]
  state = callbacks_lib.read_state(str(tmp_path))
  assert state["epoch"] == 10001 and os.path.exists(state["weights"])


def test_a_packing_d_takes_k_minibatches_of_batch_size_each(tmp_path):
  # An alternating step takes k * batch_size images, k minibatches of
  # batch_size: a pack that divides batch_size packs every one of them,
  # whether or not it divides batch_size / k.
  config = small_config(update="alternating", k=3, pack=2, batch_size=4,
                        epochs=1)
  result = run(config, tmp_path / "packed")
  assert result.model.pack == 2
  assert result.model.discriminator.input_shape[-1] == 2
  assert all(np.isfinite(w).all() for w in weights(result.model))


class _TwoReplicas:
  """A strategy's replica count, which the batch checks read first."""
  num_replicas_in_sync = 2


def test_a_pack_must_divide_each_replicas_share_of_the_batch(tmp_path):
  config = small_config(pack=2, batch_size=6)
  with pytest.raises(ConfigError, match=r"pack=2 is not accepted with "
                     r"batch_size=6 on 2 replicas: .*each replica's share "
                     r"of the batch \(3 images\)"):
    run(config, tmp_path / "run", strategy=_TwoReplicas())
  assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_workdir_that_cannot_hold_a_run_is_refused_before_any_work(
    tmp_path, monkeypatch):
  loads = []
  monkeypatch.setattr(data_lib, "load_array",
                      lambda *a, **k: loads.append(a) or DATA)
  afile = tmp_path / "afile"
  afile.write_text("notes")
  with pytest.raises(ConfigError, match=r"workdir='.*afile' is a file: "
                     r"expected a directory"):
    train_lib.train(small_config(), str(afile), verbose=0)
  with pytest.raises(ConfigError, match=r"workdir='.*afile/run' cannot be "
                     r"made: '.*afile' is a file"):
    train_lib.train(small_config(), str(afile / "run"), verbose=0)
  assert afile.read_text() == "notes" and not loads
  # Evaluation says the same of a file it is given as a run.
  with pytest.raises(FileNotFoundError, match=r"workdir='.*afile' is not a "
                     r"directory: expected the work directory"):
    train_lib.restore(str(afile))


def test_a_workdir_given_as_a_url_is_refused_before_any_work(
    tmp_path, monkeypatch):
  # os.makedirs would take 'gs://b/run' for the local path gs:/b/run.
  monkeypatch.chdir(tmp_path)
  loads = []
  monkeypatch.setattr(data_lib, "load_array",
                      lambda *a, **k: loads.append(a) or DATA)
  for url in ("gs://bucket/runs/a", "s3://bucket/a", "hdfs://host/a"):
    scheme = url.split(":")[0]
    with pytest.raises(ConfigError, match=rf"workdir='{url}' is not "
                       rf"accepted: expected a folder of the file system: "
                       rf"files are written under a temporary name and "
                       rf"renamed into place, which {scheme}:// storage does "
                       rf"not do in one step"):
      train_lib.train(small_config(), url, verbose=0)
    with pytest.raises(ValueError, match=rf"workdir='{url}' is not "
                       rf"accepted: expected a folder of the file system"):
      train_lib.restore(url)
  assert os.listdir(tmp_path) == [] and not loads
  # A local folder whose name holds the letters is one.
  train_lib.train(small_config(epochs=1), "gs_runs/a", verbose=0,
                  train_data=DATA)
  assert train_lib.restore("gs_runs/a", "last")[2]["epoch"] == 1


def test_a_validation_split_that_cannot_be_read_writes_nothing(
    tmp_path, mnist_dirs):
  manual, data_dir = mnist_dirs
  config = small_config(monitor_samples=50, val_split="test[:0]",
                        tfds_manual_dir=manual, tfds_data_dir=data_dir)
  with pytest.raises(ConfigError, match=r"split='test\[:0\]' .* holds no "
                     r"examples"):
    run(config, tmp_path / "run")
  # Nothing written, so the corrected command starts the run.
  assert not (tmp_path / "run").exists()
  fixed = run(config.override(val_split="test[:100]"), tmp_path / "run")
  assert fixed.epochs_done == 2
  assert callbacks_lib.read_best(str(tmp_path / "run" / "checkpoints"))


def test_workdir_of_another_configuration_is_refused_untouched(tmp_path):
  run(small_config(epochs=1), tmp_path)
  before = (tmp_path / "config.json").read_text()
  with pytest.raises(ConfigError, match=r"different configuration \(k: "
                     r"saved 1, requested 2.*update: saved 'simultaneous'"):
    run(small_config(epochs=2, update="alternating", k=2), tmp_path)
  assert (tmp_path / "config.json").read_text() == before
  assert callbacks_lib.read_state(str(tmp_path / "checkpoints"))["epoch"] == 1


def test_a_run_another_process_trains_is_refused_untouched(
    tmp_path, monkeypatch, caplog):
  run(small_config(epochs=1), tmp_path)
  before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
  # Another process's lock on the folder, as a training process holds it.
  fd = os.open(tmp_path, os.O_RDONLY)
  fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  try:
    with pytest.raises(train_lib.WorkdirInUseError,
                       match=rf"workdir='{tmp_path}' is in use: another "
                       r"process is training in it"):
      run(small_config(epochs=2), tmp_path)
  finally:
    os.close(fd)
  assert {p: p.read_bytes() for p in tmp_path.rglob("*")
          if p.is_file()} == before
  # A training process holds the lock until it returns, and no longer.
  held = []

  class TryTheLock(keras.callbacks.Callback):

    def on_epoch_end(self, epoch, logs=None):
      fd = os.open(tmp_path, os.O_RDONLY)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.append(False)
      except BlockingIOError:
        held.append(True)
      finally:
        os.close(fd)
  assert run(small_config(epochs=2), tmp_path,
             callbacks=[TryTheLock()]).epochs_done == 2
  assert held == [True]
  assert run(small_config(epochs=3), tmp_path).epochs_done == 3
  # Where folders cannot be locked (NFS), training goes on, with a warning.

  def no_flock(*args):
    raise OSError(9, "Bad file descriptor")
  monkeypatch.setattr(fcntl, "flock", no_flock)
  assert run(small_config(epochs=4), tmp_path).epochs_done == 4
  assert "cannot be locked ([Errno 9] Bad file descriptor)" in caplog.text


class StopInFirstEpoch(keras.callbacks.Callback):

  def on_train_batch_end(self, batch, logs=None):
    raise KeyboardInterrupt


def test_a_start_stopped_before_its_first_checkpoint_takes_a_new_config(
    tmp_path):
  # Stopped in its first epoch, a run has its config.json and its clusters,
  # but no checkpoint.
  first = small_config(epochs=1, conditional=True, clusters=3, seed=1)
  with pytest.raises(KeyboardInterrupt):
    run(first, tmp_path / "a", callbacks=[StopInFirstEpoch()])
  assert (tmp_path / "a" / data_lib.CLUSTERS_FILE).exists()
  assert not callbacks_lib.read_state(str(tmp_path / "a" / "checkpoints"))
  # Started again with other settings, it is the new configuration's run:
  # the same as one started in a new directory, clusters and all.
  second = first.override(clusters=4, seed=2, learning_rate=0.05)
  again = run(second, tmp_path / "a")
  fresh = run(second, tmp_path / "b")
  assert json.loads((tmp_path / "a" / "config.json").read_text()) == (
      json.loads((tmp_path / "b" / "config.json").read_text()))
  a, b = (train_lib.cluster_prior(str(tmp_path / d)) for d in "ab")
  assert len(a.centres) == 4
  np.testing.assert_array_equal(a.centres, b.centres)
  for x, y in zip(weights(again.model), weights(fresh.model)):
    np.testing.assert_array_equal(x, y)
  # Once an epoch is kept, another configuration is refused as before.
  with pytest.raises(ConfigError, match=r"different configuration \(seed: "
                     r"saved 2, requested 1"):
    run(second.override(seed=1), tmp_path / "a")


def test_annealing_added_to_a_run_at_its_epoch_is_the_annealed_run(tmp_path):
  # A run resumed with anneal_epoch set where it stands trains exactly as a
  # run with that schedule from the start.
  annealed = small_config(epochs=3, anneal_epoch=1, anneal_decay=1.5)
  whole = run(annealed, tmp_path / "whole")
  run(small_config(epochs=1), tmp_path / "part")
  resumed = run(annealed, tmp_path / "part")
  assert resumed.initial_epoch == 1
  for a, b in zip(weights(whole.model), weights(resumed.model)):
    np.testing.assert_array_equal(a, b)
  saved = json.loads((tmp_path / "part" / "config.json").read_text())
  assert (saved["anneal_epoch"], saved["anneal_decay"]) == (1, 1.5)
  # Without annealing the same three epochs end elsewhere.
  plain = run(small_config(epochs=3), tmp_path / "plain")
  assert any(not np.array_equal(a, b) for a, b in
             zip(weights(whole.model), weights(plain.model)))
  # An annealing that would have started before the epochs done is refused,
  # and so is dropping one that has started.
  with pytest.raises(ConfigError, match=r"anneal_epoch=2, anneal_decay=1.5 "
                     r"\(saved: 0, 1.0\) is not accepted .*done 3 epochs"
                     r".*expected anneal_epoch=0 or >= 3"):
    run(small_config(epochs=4, anneal_epoch=2, anneal_decay=1.5),
        tmp_path / "plain")
  with pytest.raises(ConfigError, match=r"anneal_epoch=0, anneal_decay=1.0 "
                     r"\(saved: 1, 1.5\)"):
    run(small_config(epochs=4), tmp_path / "whole")


def test_bad_input_fails_before_any_work(tmp_path):
  with pytest.raises(ConfigError, match="batch_size=0"):
    run(small_config(batch_size=0), tmp_path / "w")
  with pytest.raises(ConfigError, match="dataset='nope'"):
    train_lib.train(small_config(dataset="nope"), str(tmp_path / "w"))
  # A strategy this machine cannot give: no TPU here.
  with pytest.raises(ConfigError, match="strategy='tpu' is not accepted "
                     "here: no TPU was found"):
    run(small_config(strategy="tpu"), tmp_path / "w")
  assert not os.path.exists(tmp_path / "w")


def test_restore_errors_name_what_is_missing(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    train_lib.restore(str(tmp_path / "none"))
  run(small_config(epochs=1), tmp_path)
  with pytest.raises(FileNotFoundError, match=r"checkpoint='x.weights.h5' "
                     r"does not exist: .* the run keeps \(.*"
                     r"epoch-0001.weights.h5 in "):
    train_lib.restore(str(tmp_path), "x.weights.h5")


def test_a_checkpoint_that_does_not_fit_the_run_is_named(tmp_path):
  run(small_config(epochs=1), tmp_path / "a")
  run(small_config(epochs=1, g_hidden=(12,)), tmp_path / "b")
  other = callbacks_lib.weights_path(str(tmp_path / "b" / "checkpoints"), 1)
  # Nets of other sizes: the first variable that differs, not Keras's list
  # of every object it could not load.
  with pytest.raises(ValueError, match=r"checkpoint='.*epoch-0001.weights"
                     r".h5' does not fit the run in workdir='.*a' \(its \S+ "
                     r"has shape \((12, 16|8, 12|12, 784|12)\) where the run's "
                     r"has \((16, 16|8, 16|16, 784|16)\)\): expected a "
                     r"checkpoint written by a run of the same networks") as e:
    train_lib.restore(str(tmp_path / "a"), other)
  assert "List of objects" not in str(e.value)
  own = callbacks_lib.weights_path(str(tmp_path / "a" / "checkpoints"), 1)
  cut = tmp_path / "cut.weights.h5"
  cut.write_bytes(pathlib.Path(own).read_bytes()[:500])
  with pytest.raises(ValueError, match=r"checkpoint='.*cut.weights.h5' "
                     r"cannot be read \(.+\): expected a whole .weights.h5 "
                     r"file"):
    train_lib.restore(str(tmp_path / "a"), str(cut))
  renamed = tmp_path / "a.h5"
  shutil.copy(own, renamed)
  with pytest.raises(ValueError, match=r"checkpoint='.*a.h5' is not "
                     r"accepted: expected a .weights.h5 file"):
    train_lib.restore(str(tmp_path / "a"), str(renamed))


def test_a_checkpoint_named_by_path_keeps_its_epoch(tmp_path):
  run(small_config(epochs=1), tmp_path)
  own = callbacks_lib.weights_path(str(tmp_path / "checkpoints"), 1)
  assert train_lib.resolve_checkpoint(str(tmp_path), own) == {
      "weights": own, "epoch": 1}
  # Or by its name in the run's checkpoints/ folder.
  assert train_lib.resolve_checkpoint(
      str(tmp_path), "epoch-0001.weights.h5") == {"weights": own, "epoch": 1}
  copy = tmp_path / "kept.weights.h5"
  shutil.copy(own, copy)
  assert train_lib.resolve_checkpoint(str(tmp_path), str(copy))[
      "epoch"] is None
  assert callbacks_lib.epoch_of("/a/epoch-0107.weights.h5") == 107
  assert callbacks_lib.epoch_of("/a/best-epoch-0107.weights.h5") == 107
  assert callbacks_lib.epoch_of("/a/epoch-0107.weights.h5.tmp") is None


@pytest.mark.parametrize("checkpoint", ["last", "best"])
def test_restore_follows_a_checkpoint_training_replaced_as_it_loaded(
    tmp_path, monkeypatch, checkpoint):
  run(small_config(epochs=2), tmp_path)
  checkpoints = str(tmp_path / "checkpoints")
  if checkpoint == "best":  # As ParzenMonitor keeps one.
    name = callbacks_lib.best_weights_name(1)
    shutil.copy(callbacks_lib.weights_path(checkpoints, 1),
                os.path.join(checkpoints, name))
    files.write_text_atomic(
        os.path.join(checkpoints, callbacks_lib.BEST_FILE),
        json.dumps({"epoch": 1, "val_parzen": 1.0, "weights": name}))
  record = train_lib.resolve_checkpoint(str(tmp_path), checkpoint)
  later = train_lib.restore(str(tmp_path), "epoch-0002.weights.h5")[0]
  build = train_lib.build_model
  replaced = []

  def build_while_training_goes_on(*args, **kwargs):
    # An epoch of the running training ends between reading the record and
    # opening the checkpoint it names: the new one takes its place.
    model = build(*args, **kwargs)
    if not replaced:
      os.remove(record["weights"])
      newer = os.path.join(checkpoints, "best-epoch-0003.weights.h5"
                           if checkpoint == "best" else
                           "epoch-0003.weights.h5")
      later.save_weights(newer)
      if checkpoint == "best":
        files.write_text_atomic(
            os.path.join(checkpoints, callbacks_lib.BEST_FILE),
            json.dumps({"epoch": 3, "val_parzen": 2.0,
                        "weights": os.path.basename(newer)}))
      else:
        callbacks_lib.write_state(checkpoints, 3, newer)
      replaced.append(newer)
    return model

  monkeypatch.setattr(train_lib, "build_model", build_while_training_goes_on)
  model, _, got = train_lib.restore(str(tmp_path), checkpoint)
  assert got["epoch"] == 3 and got["weights"] == replaced[0]
  for a, b in zip(weights(model), weights(later)):
    np.testing.assert_array_equal(a, b)
  # A checkpoint gone while its record still names it is a damaged run:
  # named, not looked for again and again.
  os.remove(replaced[0])
  with pytest.raises(FileNotFoundError, match=rf"checkpoint='{checkpoint}' "
                     rf"names {re.escape(replaced[0])}, which does not "
                     rf"exist: expected the file training wrote there"):
    train_lib.restore(str(tmp_path), checkpoint)
  # Named by path, a file that is gone is not replaced by another.
  with pytest.raises(FileNotFoundError, match="does not exist"):
    train_lib.restore(str(tmp_path), replaced[0])


# The command line ---------------------------------------------------------

TINY = ["--set=g_hidden=32", "--set=d_hidden=16", "--set=d_pieces=2",
        "--set=latent_dim=8", "--batch_size=20"]


def train_cli(args, mnist_dirs, timeout=120):
  """`python -m adversarial.train args` run to its end, stderr in stdout."""
  return run_module("adversarial.train", args, mnist_dirs, timeout,
                    merge_stderr=True)


def cli(args, mnist_dirs, **kwargs):
  """`python -m adversarial.train args` started, for a test to signal or
  to start with `preexec_fn`."""
  return subprocess.Popen(
      [sys.executable, "-m", "adversarial.train", *args],
      env=module_env(mnist_dirs),
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def wait_into_next_epoch(state_file, done=0, timeout=240):
  """Waits until a run's `state_file` records an epoch after `done`, then
  0.2 s more: into the epoch after that one, far from its end."""
  deadline = time.time() + timeout
  while time.time() < deadline and not (
      state_file.exists() and
      json.loads(state_file.read_text())["epoch"] > done):
    time.sleep(0.05)
  time.sleep(0.2)


def test_cli_trains_real_mnist_end_to_end(tmp_path, mnist_dirs):
  workdir = tmp_path / "run"
  proc = train_cli(["--dataset=mnist", f"--workdir={workdir}", "--epochs=2",
                    "--steps_per_epoch=30", "--set=monitor_samples=1000",
                    "--set=ema_decay=0.9", "--verbosity=0", *TINY],
                   mnist_dirs, timeout=300)
  out = proc.stdout
  assert proc.returncode == 0, out
  # Asked for, TFDS's notes on the data it reads are logged.
  assert "Reusing dataset mnist" in out
  assert "Epoch 2/2" in out and "val_parzen" in out
  # Output to a pipe: one line an epoch, no progress bar.
  assert "30/30 - " in out and "\u2501" not in out and "\x1b[" not in out
  assert "trained epochs 0..2" in out
  state = callbacks_lib.read_state(str(workdir / "checkpoints"))
  assert state["epoch"] == 2
  assert np.isfinite(state["logs"]["val_parzen"])
  best = callbacks_lib.read_best(str(workdir / "checkpoints"))
  assert best["epoch"] in (1, 2) and os.path.exists(best["weights"])
  grid = images_lib.read_png(str(workdir / "samples" / "epoch-0002.png"))
  assert grid.shape == (10 * 29 + 1, 10 * 29 + 1, 1)
  assert json.loads((workdir / "config.json").read_text())[
      "steps_per_epoch"] == 30
  manual, data_dir = mnist_dirs
  # The data directories as flags this time, not in the environment.
  ev = run_module(
      "adversarial.evaluate",
      [f"--workdir={workdir}", "--num_samples=2000", "--num_test=2000",
       "--generator=trained", f"--tfds_manual_dir={manual}",
       f"--tfds_data_dir={data_dir}"], timeout=300)
  assert ev.returncode == 0, ev.stdout + ev.stderr
  assert "Parzen-window log-likelihood:" in ev.stdout
  # By default they are not: warnings and errors only.
  assert "Reusing dataset mnist" not in ev.stdout + ev.stderr
  result = json.loads((workdir / "evaluation.json").read_text())
  assert result["num_samples"] == 2000 and result["num_test"] == 2000
  # Kept under its time and checkpoint as well, with G itself named.
  kept, = (workdir / "evaluations").glob("*.json")
  assert kept.name.endswith(f"-epoch-{result['epoch']:04d}-trained.json")
  assert json.loads(kept.read_text()) == result
  assert f"(kept as {kept})" in ev.stdout
  assert result["epoch"] == best["epoch"]
  scores = {float(k): v for k, v in result["validation"].items()}
  assert len(scores) == 10 and result["sigma"] == max(scores, key=scores.get)
  assert np.isfinite(result["mean"]) and result["stderr"] > 0
  q = result["quality"]
  assert np.isfinite(q["frechet_distance"]) and len(q["class_histogram"]) == 10
  assert sum(q["class_histogram"]) == pytest.approx(1.0, abs=1e-3)
  assert "digits present" in ev.stdout
  ref = result["reference"]
  assert ref["num_samples"] == 2000 and np.isfinite(ref["mean"])
  # It depends on the data alone: kept in the data folder for the next
  # evaluation (all but the seconds, which are this evaluation's).
  untimed = lambda r: {k: v for k, v in r.items() if k != "seconds"}
  kept = [untimed(json.loads(p.read_text())) for p in (
      pathlib.Path(data_lib.cache_root(data_dir)) /
      evaluation.REFERENCE_FOLDER).glob("2000_on_2000_*.json")]
  assert untimed(ref) in kept
  assert sorted(result["by_class"]) == sorted(ref["by_class"]) == [
      str(c) for c in range(10)]
  assert "training images as the samples (reference)" in ev.stdout
  # Two epochs of a tiny net stay far below real images: nothing to flag.
  assert "above_reference" in result and result["above_reference"] is None
  assert "above real training images" not in ev.stdout
  assert "test label" in ev.stdout
  # The grid shown is of the scored samples: the trained G's at the best
  # epoch, not the weight average the training's grids show.
  assert result["weight_average"] is False
  assert f"samples: {workdir / 'evaluation.png'}" in ev.stdout
  model = train_lib.restore(str(workdir), "best")[0]
  picked = np.arange(100) * 20  # 100 of the 2,000, evenly spaced
  scored = model.generate(2000, seed=0, average=False)[picked]
  shown = images_lib.read_png(str(workdir / "evaluation.png"))
  np.testing.assert_array_equal(shown, images_lib.grid(scored, rows=10))
  average = model.generate(2000, seed=0, average=True)[picked]
  assert not np.array_equal(shown, images_lib.grid(average, rows=10))


def test_cli_killed_mid_epoch_resumes_and_ends_as_an_unbroken_run(
    tmp_path, mnist_dirs):
  # Two processes share the machine: one thread pool of one thread each.
  args = ["--dataset=mnist", "--epochs=3", "--steps_per_epoch=1000",
          "--set=monitor_samples=0", "--verbose=0", "--threads=1", *TINY]
  whole = cli(args + [f"--workdir={tmp_path / 'whole'}"], mnist_dirs)
  killed_dir = tmp_path / "killed"
  victim = cli(args + [f"--workdir={killed_dir}"], mnist_dirs)
  state_file = killed_dir / "checkpoints" / "state.json"
  wait_into_next_epoch(state_file)
  victim.send_signal(signal.SIGKILL)
  victim.communicate()
  assert victim.returncode == -signal.SIGKILL
  epoch = json.loads(state_file.read_text())["epoch"]
  assert 1 <= epoch < 3
  resumed = cli(args + [f"--workdir={killed_dir}"], mnist_dirs)
  out, _ = resumed.communicate(timeout=300)
  assert resumed.returncode == 0, out
  assert f"trained epochs {epoch}..3" in out
  assert "threads: 1 intra-op, 1 inter-op" in out
  out, _ = whole.communicate(timeout=300)
  assert whole.returncode == 0, out
  a = train_lib.restore(str(tmp_path / "whole"), "last")[0]
  b = train_lib.restore(str(killed_dir), "last")[0]
  for x, y in zip(weights(a), weights(b)):
    np.testing.assert_array_equal(x, y)


def test_cli_stopped_by_ctrl_c_or_sigterm_says_where_it_resumes(
    tmp_path, mnist_dirs):
  workdir = tmp_path / "run"
  # Far more epochs than it runs: on a loaded machine this process may wake
  # from its sleep only seconds later, and the run must still be training.
  command = ["--dataset=mnist", "--epochs=200", "--steps_per_epoch=1000",
             "--set=monitor_samples=0", "--verbose=0", *TINY,
             f"--workdir={workdir}"]
  # A shell starts background jobs with SIGINT ignored, and Python keeps an
  # ignored SIGINT ignored: give the run the default handler, as a terminal
  # does.
  proc = cli(command, mnist_dirs,
             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
  state_file = workdir / "checkpoints" / "state.json"
  wait_into_next_epoch(state_file)
  proc.send_signal(signal.SIGINT)
  out, _ = proc.communicate(timeout=120)
  epoch = json.loads(state_file.read_text())["epoch"]
  assert proc.returncode == 130, out
  assert (f"interrupted: {workdir} keeps its checkpoint of epoch {epoch}; "
          f"the same command resumes from there.") in out
  assert "Traceback" not in out
  # Resumed, then sent SIGTERM (docker stop, a scheduler's time limit) in
  # a later epoch, it stops as after Ctrl-C, with the shell's status 143.
  proc = cli(command, mnist_dirs)
  wait_into_next_epoch(state_file, done=epoch)
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 128 + signal.SIGTERM, out
  resumed_at, epoch = epoch, json.loads(state_file.read_text())["epoch"]
  assert epoch > resumed_at
  assert (f"terminated: {workdir} keeps its checkpoint of epoch {epoch}; "
          f"the same command resumes from there.") in out
  assert "Traceback" not in out
  assert not list(workdir.glob("checkpoints/tmp*"))
  # Resumed where no file of its size can be written (a full disk), it ends
  # with the file and the reason, keeping its checkpoint.

  def small_files():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
  proc = cli(command, mnist_dirs, preexec_fn=small_files)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 1, out
  assert re.search(rf"error: training stopped: {workdir}/\S+: File too "
                   rf"large\. {workdir} keeps its checkpoint of epoch "
                   rf"{epoch}; once that is mended, the same command resumes "
                   rf"from there\.", out), out
  assert "Traceback" not in out
  assert json.loads(state_file.read_text())["epoch"] == epoch
  assert not list(workdir.glob("checkpoints/tmp*"))
  # Its checkpoint lost, the same command ends with the message.
  os.remove(state_file.parent / json.loads(state_file.read_text())["weights"])
  proc = train_cli(command, mnist_dirs)
  out = proc.stdout
  assert proc.returncode == 1, out
  assert (f"error: workdir='{workdir}' cannot go on from epoch {epoch}: its "
          f"checkpoint ") in out
  assert "Traceback" not in out


@pytest.mark.parametrize("flag,message", [
    ("--dataset=mnist_typo", "dataset='mnist_typo' is not accepted"),
    ("--batch_size=0", "batch_size=0 is not accepted"),
    ("--k=0", "k=0 is not accepted"),
    ("--g_loss=hinge", "g_loss='hinge' is not accepted"),
    ("--optimizer=sgdd", "optimizer='sgdd' is not accepted"),
    ("--config=paper", "config='paper' is not a known preset"),
])
def test_cli_bad_input_is_named(tmp_path, flag, message):
  from absl import flags
  from adversarial import train as train_bin
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["train", f"--workdir={tmp_path}", flag])
  try:
    with pytest.raises(ConfigError, match=message):
      cfg = train_bin.config_from_flags()
      data_lib.check_dataset(cfg)
  finally:
    flags.FLAGS.unparse_flags()


def test_the_last_line_says_how_often_the_run_went_back():
  from adversarial import train as train_bin
  done = train_lib.TrainResult(None, {}, 10, 12)
  assert train_bin.summary(done, "w") == (
      "trained epochs 10..12; work directory: w")
  went_back = dataclasses.replace(done, restarts=2)
  assert train_bin.summary(went_back, "w") == (
      "trained epochs 10..12, going back 2 time(s) after a collapse "
      "(checkpoints/restarts.json); work directory: w")


def test_a_failed_read_or_write_is_told_in_a_line():
  assert cli_lib.io_failure(OSError(28, "No space left on device",
                                    "/runs/a/config.json")) == (
      "/runs/a/config.json: No space left on device")
  # h5py's message of many lines names the file inside it.
  h5py_error = OSError(27, "Can't synchronously write data (file write "
                       "failed: time = Sat Dec  5 20:31:22 2026\n, filename "
                       "= '/runs/a/checkpoints/tmp-1.weights.h5', errno = "
                       "27, error message = 'File too large')")
  assert cli_lib.io_failure(h5py_error) == (
      "/runs/a/checkpoints/tmp-1.weights.h5: File too large")
  assert cli_lib.io_failure(OSError("the mount went away\nmore")) == (
      "the mount went away")


def test_cli_exits_non_zero_with_the_message(tmp_path, mnist_dirs):
  proc = train_cli([f"--workdir={tmp_path}", "--batch_size=-5"], mnist_dirs)
  out = proc.stdout
  assert proc.returncode != 0
  assert "batch_size=-5 is not accepted: expected a positive integer" in out
  # The message and where help is, not absl's list of every flag above it.
  assert cli_lib.USAGE_HINT in out
  assert "Work directory of the run." not in out
  assert not os.listdir(tmp_path)
  proc = train_cli([f"--workdir={tmp_path}", "--threads=0"], mnist_dirs)
  out = proc.stdout
  assert proc.returncode != 0
  assert "--threads=0: 0 is not a positive integer" in out
  assert not os.listdir(tmp_path)


def test_cli_ends_with_the_message_when_tfds_cannot_prepare_the_data(
    tmp_path, mnist_dirs, wrong_mnist_files):
  proc = train_cli([f"--workdir={tmp_path / 'run'}", "--dataset=mnist",
                    f"--tfds_manual_dir={wrong_mnist_files}",
                    f"--tfds_data_dir={tmp_path / 'tfds'}"], mnist_dirs)
  out = proc.stdout
  assert proc.returncode == 1, out
  assert "error: TFDS could not prepare dataset 'mnist'" in out
  assert "--tfds_manual_dir" in out
  assert "Traceback" not in out


def test_batches_that_do_not_split_across_replicas_are_refused(tmp_path):

  class TwoReplicas:
    num_replicas_in_sync = 2

  with pytest.raises(ConfigError, match="batch_size=9 .* 2 replicas"):
    train_lib.train(small_config(batch_size=9), str(tmp_path), verbose=0,
                    train_data=DATA, strategy=TwoReplicas())
  assert not os.path.exists(tmp_path / "config.json")


# The collapse guard ---------------------------------------------------------


class RejectAll(keras.callbacks.Callback):
  """Makes D reject every image (a logit bias of -30) at the start of epoch
  `epoch` (0-based), the first `times` times that epoch is trained."""

  def __init__(self, epoch=1, times=1):
    super().__init__()
    self.epoch = epoch
    self.times = times

  def on_epoch_begin(self, epoch, logs=None):
    if epoch == self.epoch and self.times > 0:
      self.times -= 1
      bias = self.model.discriminator.get_layer("logits").bias
      bias.assign(np.full(bias.shape, -30.0, np.float32))


def guarded_config(mnist_dirs, **changes):
  # The guard goes back to the monitor's best checkpoint: the monitor scores
  # real validation digits.
  manual, data_dir = mnist_dirs
  return small_config(**{
      **dict(epochs=3, collapse_restarts=2, collapse_epochs=1,
             monitor_samples=100,
             monitor_val_examples=50, tfds_manual_dir=manual,
             tfds_data_dir=data_dir), **changes})


# Mean D(G(z)) of the first epochs of two runs on MNIST: the unconditional
# wider D with seed 1 (`paper_mnist_ema_long` with d_hidden=480,480), which
# recovered from its dip, and `clustered_mnist_long` with seed 1, which
# collapsed (REPRODUCTION.md, "The first epochs").
RECOVERED = [0.2419, 0.0683, 0.0404, 0.0276, 0.0075, 0.0017, 0.0133, 0.0434,
             0.0711, 0.1086]
COLLAPSED = [0.2214, 0.0548, 0.0382, 0.0189, 0.0064, 0.0016, 0.000653,
             0.000317]


def guard_epochs(guard, d_fakes):
  for epoch, d_fake in enumerate(d_fakes):
    guard.on_epoch_end(epoch, {"d_fake": d_fake})


def test_collapse_guard_counts_epochs_in_a_row_below_its_threshold():
  guard_epochs(callbacks_lib.CollapseGuard(0.002, epochs=2), RECOVERED)
  with pytest.raises(callbacks_lib.TrainingCollapsedError,
                     match=r"epoch 7: mean D\(G\(z\)\) = 0.000653, below "
                     r"collapse_d_fake=0.002 for 2 epochs in a row") as e:
    guard_epochs(callbacks_lib.CollapseGuard(0.002, epochs=2), COLLAPSED)
  assert (e.value.epoch, e.value.d_fake) == (7, 0.000653)
  # One epoch below is enough with epochs=1, or after a resume whose last
  # epoch was below.
  for guard in (callbacks_lib.CollapseGuard(0.002, epochs=1),
                callbacks_lib.CollapseGuard(0.002, epochs=2, below=1)):
    with pytest.raises(callbacks_lib.TrainingCollapsedError, match="epoch 1"):
      guard_epochs(guard, [0.0017])
  # Without stop it warns and trains on.
  guard_epochs(callbacks_lib.CollapseGuard(0.002, stop=False), COLLAPSED)


def test_a_collapsed_epoch_goes_back_to_the_best_checkpoint_with_new_noise(
    tmp_path, mnist_dirs):
  config = guarded_config(mnist_dirs)
  result = run(config, tmp_path / "a", callbacks=[RejectAll(epoch=1)])
  assert (result.initial_epoch, result.epochs_done) == (0, 3)
  assert result.restarts == 1
  checkpoints = str(tmp_path / "a" / "checkpoints")
  [restart] = callbacks_lib.read_restarts(checkpoints)
  assert restart["epoch"] == 2 and restart["back_to"] == 1
  assert restart["d_fake"] < 1e-9
  state = callbacks_lib.read_state(checkpoints)
  assert state["epoch"] == 3 and os.path.exists(state["weights"])
  # The collapsed epoch was neither scored nor kept; its retrained
  # successor was.
  assert callbacks_lib.read_best(checkpoints)["epoch"] in (1, 2, 3)
  # After the restart the streams are the first restart's: the noise key is
  # the seed's moved by one salt.
  noise = np.asarray(result.model.noise_seed.state)
  assert noise[0] == config.seed + 1_000_003
  # A run that went back trains on from the checkpoint with other noise than
  # it drew from there the first time: its weights differ from a run whose
  # epoch 2 never collapsed.
  plain = run(config, tmp_path / "plain")
  assert not callbacks_lib.read_restarts(str(tmp_path / "plain" /
                                             "checkpoints"))
  assert any(not np.allclose(a, b) for a, b in
             zip(weights(result.model), weights(plain.model)))
  # The same seed and the same collapse give the same run.
  again = run(config, tmp_path / "b", callbacks=[RejectAll(epoch=1)])
  for a, b in zip(weights(result.model), weights(again.model)):
    np.testing.assert_array_equal(a, b)


def test_a_run_that_keeps_collapsing_stops_when_its_restarts_are_spent(
    tmp_path, mnist_dirs):
  with pytest.raises(callbacks_lib.TrainingCollapsedError,
                     match=r"collapsed at epoch 2: mean D\(G\(z\)\) = .*below "
                     r"collapse_d_fake=0.002.*all 2 restarts "
                     r"\(collapse_restarts\) are spent.*best checkpoint, "
                     r".*best-epoch-0001.weights.h5 \(epoch 1\), is kept"):
    run(guarded_config(mnist_dirs), tmp_path,
        callbacks=[RejectAll(epoch=1, times=3)])
  checkpoints = str(tmp_path / "checkpoints")
  # The first restart went back to the best checkpoint (epoch 1); collapsed
  # again from there, the second went back to the start of the run.
  assert [r["back_to"] for r in callbacks_lib.read_restarts(checkpoints)] == [
      1, 0]
  assert os.path.exists(os.path.join(checkpoints,
                                     callbacks_lib.INITIAL_WEIGHTS))
  # What a resume starts from is complete: epoch 1 of the last attempt.
  state = callbacks_lib.read_state(checkpoints)
  assert state["epoch"] == 1 and os.path.exists(state["weights"])
  assert not os.path.exists(callbacks_lib.weights_path(checkpoints, 2))
  # Resumed with a restart more, it goes back once more and then trains on.
  result = run(guarded_config(mnist_dirs, collapse_restarts=3), tmp_path,
               callbacks=[RejectAll(epoch=1, times=1)])
  assert result.epochs_done == 3
  assert len(callbacks_lib.read_restarts(checkpoints)) == 3
  assert callbacks_lib.read_state(checkpoints)["epoch"] == 3


def test_a_run_stopped_while_it_keeps_a_new_best_keeps_the_old_one(
    tmp_path, mnist_dirs, monkeypatch):
  # Every epoch scores better than the last, so every epoch is a new best.
  scores = iter(range(100))
  monkeypatch.setattr(evaluation, "validation_monitor_score",
                      lambda *args, **kwargs: (float(next(scores)), 0.2))
  config = guarded_config(mnist_dirs, collapse_restarts=0, epochs=1)
  run(config, tmp_path)
  checkpoints = str(tmp_path / "checkpoints")
  first = callbacks_lib.read_best(checkpoints)
  assert first["epoch"] == 1
  with open(first["weights"], "rb") as f:
    first_bytes = f.read()

  # The run is stopped after epoch 2's best weights are written and before
  # best.json names them.
  write = callbacks_lib.write_text_atomic

  def stopped(path, text):
    if path.endswith(callbacks_lib.BEST_FILE):
      raise RuntimeError("stopped")
    write(path, text)

  monkeypatch.setattr(callbacks_lib, "write_text_atomic", stopped)
  with pytest.raises(RuntimeError, match="stopped"):
    run(config.override(epochs=2), tmp_path)
  # The record and its weights are still epoch 1's, together.
  kept = callbacks_lib.read_best(checkpoints)
  assert kept == first
  with open(kept["weights"], "rb") as f:
    assert f.read() == first_bytes
  # Resumed, epoch 2 is kept as the best, and only its weights remain.
  monkeypatch.setattr(callbacks_lib, "write_text_atomic", write)
  run(config.override(epochs=2), tmp_path)
  best = callbacks_lib.read_best(checkpoints)
  assert best["epoch"] == 2
  assert sorted(p.name for p in (tmp_path / "checkpoints").glob(
      "best*.weights.h5")) == ["best-epoch-0002.weights.h5"]
  assert os.path.basename(best["weights"]) == "best-epoch-0002.weights.h5"
  # Named as a file of the run, the best checkpoint keeps its epoch.
  assert train_lib.resolve_checkpoint(
      str(tmp_path), "best-epoch-0002.weights.h5") == {
          "weights": best["weights"], "epoch": 2}
  # A run whose best checkpoint has the name earlier versions gave it,
  # best.weights.h5, reads it through best.json and drops it for the next.
  os.rename(best["weights"], os.path.join(checkpoints, "best.weights.h5"))
  record = json.loads((tmp_path / "checkpoints" / "best.json").read_text())
  (tmp_path / "checkpoints" / "best.json").write_text(
      json.dumps(dict(record, weights="best.weights.h5")))
  assert train_lib.resolve_checkpoint(str(tmp_path), "best") == dict(
      record, weights=os.path.join(checkpoints, "best.weights.h5"))
  run(config.override(epochs=3), tmp_path)
  assert callbacks_lib.read_best(checkpoints)["epoch"] == 3
  assert sorted(p.name for p in (tmp_path / "checkpoints").glob(
      "best*.weights.h5")) == ["best-epoch-0003.weights.h5"]


def test_without_restarts_a_collapse_is_only_logged(tmp_path, mnist_dirs,
                                                    caplog):
  with caplog.at_level("WARNING"):
    result = run(guarded_config(mnist_dirs, collapse_restarts=0), tmp_path,
                 callbacks=[RejectAll(epoch=1)])
  assert result.epochs_done == 3
  assert "Training collapsed at epoch 2: mean D(G(z))" in caplog.text
  assert ("The same command with --collapse_restarts=3 added resumes the "
          "run" in caplog.text)
  checkpoints = str(tmp_path / "checkpoints")
  assert not callbacks_lib.read_restarts(checkpoints)
  # As the warning says: resumed with the guard on, a collapse takes the run
  # back, and it trains on to its end.
  assert result.restarts == 0
  resumed = run(guarded_config(mnist_dirs, collapse_restarts=3, epochs=4),
                tmp_path, callbacks=[RejectAll(epoch=3)])
  assert (resumed.initial_epoch, resumed.epochs_done) == (3, 4)
  assert resumed.restarts == 1
  [restart] = callbacks_lib.read_restarts(checkpoints)
  assert restart["epoch"] == 4 and 1 <= restart["back_to"] <= 3
  assert callbacks_lib.read_state(checkpoints)["epoch"] == 4


def test_a_write_that_fails_leaves_the_old_file(tmp_path, monkeypatch):
  path = str(tmp_path / "config.json")
  files.write_text_atomic(path, "old\n")

  def fail(fd):
    raise OSError("disk full")

  monkeypatch.setattr(os, "fsync", fail)
  with pytest.raises(OSError, match="disk full"):
    files.write_text_atomic(path, "new, cut short")
  with open(path) as f:
    assert f.read() == "old\n"
  assert os.listdir(tmp_path) == ["config.json"]
  monkeypatch.undo()
  files.write_text_atomic(path, "new\n")
  with open(path) as f:
    assert f.read() == "new\n"


def test_a_result_is_kept_unless_its_folder_cannot_be_written(tmp_path,
                                                             caplog):
  path = str(tmp_path / "kept" / "result.txt")
  computed = []

  def compute():
    computed.append(1)
    return "result"

  def read(p):
    with open(p) as f:
      text = f.read()
    return text if text == "result" else None

  keep = lambda write: files.kept(path, read, compute, write, "result")
  assert keep(files.write_text_atomic) == "result" and len(computed) == 1
  assert keep(files.write_text_atomic) == "result" and len(computed) == 1
  files.write_text_atomic(path, "another")  # read() says it is not one
  assert keep(files.write_text_atomic) == "result" and len(computed) == 2
  os.remove(path)

  def read_only(p, result):
    raise PermissionError(f"read-only file system: {p!r}")

  with caplog.at_level("WARNING"):
    assert keep(read_only) == "result" and len(computed) == 3
  assert "Could not keep the result in" in caplog.text
  assert not os.path.exists(path)


def test_a_result_needed_by_two_at_once_is_computed_once(tmp_path):
  path = str(tmp_path / "kept" / "result.txt")
  computed, got = [], []

  def compute():
    computed.append(1)
    time.sleep(1.0)  # long enough for the other to ask meanwhile
    return "result"

  def read(p):
    with open(p) as f:
      return f.read()

  def need():
    got.append(files.kept(path, read, compute, files.write_text_atomic,
                          "result"))

  # Two readers at once, as two evaluations on a fresh data folder: one
  # computes and keeps it, the other waits and reads it.
  both = [threading.Thread(target=need) for _ in range(2)]
  both[0].start()
  time.sleep(0.2)
  both[1].start()
  for t in both:
    t.join()
  assert got == ["result", "result"] and len(computed) == 1
  assert os.listdir(tmp_path / "kept") == ["result.txt"]


def test_every_file_is_synced_before_it_takes_its_name(tmp_path,
                                                      monkeypatch):
  # A sample grid, as every atomic writer goes through renamed_into_place.
  events = record_file_events(monkeypatch)
  path = tmp_path / "grid.png"
  images_lib.write_png(str(path), np.zeros((4, 4, 1), np.uint8))
  tmp = f"{path}.{os.getpid()}.tmp"
  assert events == [("fsync", tmp), ("replace", tmp, str(path)),
                    ("fsync", str(tmp_path))]
  assert images_lib.read_png(str(path)).shape == (4, 4, 1)
