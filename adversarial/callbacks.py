"""Callbacks of a training run: checkpoints that resume exactly, sample grids,
and a guard that stops a diverged run before it overwrites good weights."""

from __future__ import annotations

import glob
import json
import math
import os
import re
from typing import Optional

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from adversarial.config import is_integer, is_number
from adversarial import data as data_lib
from adversarial.files import renamed_into_place
from adversarial.files import RunRecordError
from adversarial.files import write_text_atomic
from adversarial import images as images_lib

STATE_FILE = "state.json"
RESTARTS_FILE = "restarts.json"
BEST_FILE = "best.json"
# The weights a run starts from, kept when a collapsed run may go back to
# its start (`Config.collapse_restarts`).
INITIAL_WEIGHTS = "initial.weights.h5"


class TrainingDivergedError(RuntimeError):
  """A loss became NaN or infinite; the last good checkpoint is kept."""


def read_state(checkpoint_dir: str) -> Optional[dict]:
  """The last complete checkpoint's record, or None when there is none.

  Returns:
    {'epoch': epochs completed, 'weights': path of the weights file, ...}.

  Raises:
    RunRecordError: the record is not one training writes.
  """
  return _read_record(checkpoint_dir, STATE_FILE,
                      {"epoch": "an integer", "weights": "a file name"})


def _read_record(checkpoint_dir: str, name: str,
                 fields: dict) -> Optional[dict]:
  record = _read_json(checkpoint_dir, name, fields)
  if record is not None:
    record["weights"] = os.path.join(checkpoint_dir, record["weights"])
  return record


# What each field of a record must be, by the words `_read_json` uses.
_KINDS = {
    "an integer": is_integer,
    "a number": is_number,
    "a file name": lambda v: isinstance(v, str),
    "a list": lambda v: isinstance(v, list),
}


def _read_json(checkpoint_dir: str, name: str,
               fields: dict) -> Optional[dict]:
  """The JSON object in `checkpoint_dir/name`, which must hold `fields`
  ({name: kind}, a kind of `_KINDS`); None when there is no such file."""
  path = os.path.join(checkpoint_dir, name)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      record = json.load(f)
    if isinstance(record, dict):
      missing = [repr(k) for k in fields if k not in record]
      wrong = [f"its {k!r} is {record[k]!r}" for k, kind in fields.items()
               if k in record and not _KINDS[kind](record[k])]
      why = (f"it has no {', '.join(missing)}" if missing else
             "; ".join(wrong) or None)
    else:
      why = "it holds no JSON object"
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    why = str(e) or type(e).__name__
  if why:
    raise RunRecordError.of(
        path, why, "the JSON object training writes there, with " +
        ", ".join(f"{k!r} ({kind})" for k, kind in fields.items()))
  return record


def save_weights_atomic(model, path: str) -> None:
  """`model.save_weights` under a temporary name, renamed into place."""
  tmp = os.path.join(os.path.dirname(path), f"tmp-{os.getpid()}.weights.h5")
  with renamed_into_place(tmp, path):
    model.save_weights(tmp)


def weights_path(checkpoint_dir: str, epoch: int) -> str:
  return os.path.join(checkpoint_dir, f"epoch-{epoch:04d}.weights.h5")


def best_weights_name(epoch: int) -> str:
  """The file name of the best checkpoint when it is `epoch`'s: a new name
  for each, so that `best.json` names the weights it describes whenever a
  run is stopped."""
  return f"best-epoch-{epoch:04d}.weights.h5"


def epoch_of(path: str) -> Optional[int]:
  """The epoch in a checkpoint's name as `weights_path` or
  `best_weights_name` writes it (`epoch-0107.weights.h5`,
  `best-epoch-0107.weights.h5`: 107); None for any other name."""
  match = re.fullmatch(r"(?:best-)?epoch-(\d+)\.weights\.h5",
                       os.path.basename(path))
  return int(match.group(1)) if match else None


def epoch_checkpoints(checkpoint_dir: str) -> list:
  """[(epoch, path)] of the checkpoints `weights_path` wrote in
  `checkpoint_dir`, oldest first by the epoch in the name (past epoch 9,999
  the names grow a digit and no longer sort as text does)."""
  found = glob.glob(os.path.join(checkpoint_dir, "epoch-*.weights.h5"))
  return sorted((epoch_of(p), p) for p in found if epoch_of(p) is not None)


class EpochCheckpoint(keras.callbacks.Callback):
  """Saves the whole training state at the end of every epoch.

  The weights file holds both nets, both optimisers (slots and step counts,
  hence the learning-rate and momentum schedules) and every random stream.
  Each file is written under a temporary name and renamed into place, and
  `state.json` is replaced only after it: a run killed at any moment leaves
  the last complete checkpoint to resume from.
  """

  def __init__(self, checkpoint_dir: str, keep: int = 2):
    super().__init__()
    self.checkpoint_dir = checkpoint_dir
    self.keep = keep

  def on_epoch_end(self, epoch, logs=None):
    os.makedirs(self.checkpoint_dir, exist_ok=True)
    done = epoch + 1
    final = weights_path(self.checkpoint_dir, done)
    save_weights_atomic(self.model, final)
    write_state(self.checkpoint_dir, done, final,
                {k: float(v) for k, v in (logs or {}).items()})
    for _, old in epoch_checkpoints(self.checkpoint_dir)[:-self.keep]:
      os.remove(old)


class NaNGuard(keras.callbacks.Callback):
  """Stops training at the first non-finite loss, with a message that says
  where it happened and which checkpoint is kept.

  It raises `TrainingDivergedError` from inside the batch, so no later
  callback (checkpoint, samples) runs on the diverged weights. At the end of
  each epoch, before the checkpoint, it also checks every weight.
  """

  def __init__(self, checkpoint_dir: Optional[str] = None):
    super().__init__()
    self.checkpoint_dir = checkpoint_dir
    self._epoch = 0
    self._calls = 0

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch = epoch
    self._calls = 0

  def on_train_batch_end(self, batch, logs=None):
    # One call per `steps_per_execution` steps, the epoch's last call
    # perhaps shorter. The steps are counted here rather than read from
    # `batch`, which Keras versions set to a call's first or last step.
    del batch
    self._calls += 1
    bad = {k: float(v) for k, v in (logs or {}).items()
           if not math.isfinite(float(v))}
    if bad:
      per_call = int(getattr(self.model, "steps_per_execution", 1) or 1)
      last = self._calls * per_call
      if (self.params or {}).get("steps"):
        last = min(last, self.params["steps"])
      first = (self._calls - 1) * per_call + 1
      steps = f"step {last}" if first == last else f"steps {first}-{last}"
      self._stop(f"{steps}: " +
                 ", ".join(f"{k}={v}" for k, v in bad.items()))

  def on_epoch_end(self, epoch, logs=None):
    # A NaN weight need not reach the losses (a fused MatMul+ReLU may map it
    # to 0), so the weights are checked before the epoch's checkpoint.
    bad = [w.path for w in self.model.weights
           if not np.isfinite(np.asarray(w)).all()]
    if bad:
      self._stop(f"the end of the epoch: non-finite weights in "
                 f"{', '.join(bad[:3])}" + (" ..." if len(bad) > 3 else ""))

  def _stop(self, where: str):
    kept = "no checkpoint had been written yet"
    if self.checkpoint_dir:
      state = read_state(self.checkpoint_dir)
      if state:
        kept = (f"the last good checkpoint, {state['weights']} (epoch "
                f"{state['epoch']}), is kept")
    raise TrainingDivergedError(
        f"training diverged at epoch {self._epoch + 1}, {where}. Training "
        f"stopped; {kept}. Lower the learning rate (or change the "
        f"optimiser) and rerun.")


class TrainingCollapsedError(RuntimeError):
  """An epoch's mean D(G(z)) fell below the collapse threshold.

  Attributes:
    epoch: the collapsed epoch (1-based).
    d_fake: its mean D(G(z)).
  """

  def __init__(self, message: str, epoch: int, d_fake: float):
    super().__init__(message)
    self.epoch = epoch
    self.d_fake = d_fake


class CollapseGuard(keras.callbacks.Callback):
  """Watches for D rejecting every sample.

  At the end of each epoch it compares the epoch's mean D(G(z)) (`d_fake`)
  with `threshold`. After `epochs` epochs in a row below it, with `stop`,
  it raises `TrainingCollapsedError` before any later callback runs, so the
  collapsed epoch is neither scored nor checkpointed; without `stop` it
  logs a warning once. Runs of the recipe and its variants that recovered
  from their early dip spent at most one epoch below 0.002 (the lowest
  0.0017); those that collapsed fell through it and kept falling, to 1e-5.

  Args:
    threshold: the mean D(G(z)) below which an epoch counts.
    epochs: epochs in a row below `threshold` that make a collapse.
    stop: raise (True) or warn (False).
    below: epochs in a row already below `threshold` when training starts
      (a resumed run's last epoch may be one).
  """

  def __init__(self, threshold: float, epochs: int = 2, stop: bool = True,
               below: int = 0):
    super().__init__()
    self.threshold = threshold
    self.epochs = epochs
    self.stop = stop
    self.below = below
    self._warned = False

  def on_epoch_end(self, epoch, logs=None):
    d_fake = (logs or {}).get("d_fake")
    if d_fake is None:
      return
    d_fake = float(d_fake)
    self.below = self.below + 1 if d_fake < self.threshold else 0
    if self.below < self.epochs:
      return
    message = (f"epoch {epoch + 1}: mean D(G(z)) = {d_fake:.3g}, below "
               f"collapse_d_fake={self.threshold} for {self.below} epochs "
               f"in a row (D rejects every sample)")
    if self.stop:
      self.below = 0
      raise TrainingCollapsedError(message, epoch + 1, d_fake)
    if not self._warned:
      self._warned = True
      logging.warning("Training collapsed at %s. No run in this state has "
                      "been seen to recover. The same command with "
                      "--collapse_restarts=3 added resumes the run and takes "
                      "it back to its best checkpoint with new noise; or "
                      "train with another --seed in a new work directory.",
                      message)


def read_restarts(checkpoint_dir: str) -> list:
  """The run's restarts after a collapse, oldest first: [{'epoch': the
  collapsed epoch, 'd_fake': its mean D(G(z)), 'back_to': the epoch gone
  back to (0: the start), 'val_parzen': the best checkpoint's score when
  that was where it went}, ...]."""
  record = _read_json(checkpoint_dir, RESTARTS_FILE, {"restarts": "a list"})
  return [] if record is None else record["restarts"]


def write_restarts(checkpoint_dir: str, restarts: list) -> None:
  write_text_atomic(os.path.join(checkpoint_dir, RESTARTS_FILE),
                    json.dumps({"restarts": restarts}, indent=2) + "\n")


def write_state(checkpoint_dir: str, epoch: int, weights: str,
                logs: Optional[dict] = None) -> None:
  """Points `state.json` at `weights` (a file in `checkpoint_dir`), the
  checkpoint a resumed run starts from after `epoch` epochs."""
  write_text_atomic(
      os.path.join(checkpoint_dir, STATE_FILE),
      json.dumps({"epoch": epoch, "weights": os.path.basename(weights),
                  "logs": logs or {}}, indent=2) + "\n")


class SampleGrid(keras.callbacks.Callback):
  """Writes a grid of G's samples from one fixed z at the end of each epoch:
  `<sample_dir>/epoch-NNNN.png`, and the same picture to TensorBoard."""

  def __init__(self, sample_dir: str, rows: int = 10, seed: int = 0,
               output_activation: str = "sigmoid",
               tensorboard_dir: Optional[str] = None):
    super().__init__()
    self.sample_dir = sample_dir
    self.rows = rows
    self.seed = seed
    self.output_activation = output_activation
    self.tensorboard_dir = tensorboard_dir
    self._writer = None

  def picture(self) -> np.ndarray:
    samples = self.model.generate(self.rows * self.rows, seed=self.seed)
    return images_lib.grid(
        data_lib.to_unit_range(samples, self.output_activation), self.rows)

  def on_epoch_end(self, epoch, logs=None):
    picture = self.picture()
    images_lib.write_png(
        os.path.join(self.sample_dir, f"epoch-{epoch + 1:04d}.png"), picture)
    if self.tensorboard_dir:
      if self._writer is None:
        self._writer = tf.summary.create_file_writer(self.tensorboard_dir)
      with self._writer.as_default():
        tf.summary.image("samples", picture[None], step=epoch + 1)
      self._writer.flush()

  def on_train_end(self, logs=None):
    if self._writer is not None:
      self._writer.close()
      self._writer = None


class ParzenMonitor(keras.callbacks.Callback):
  """The authors' per-epoch validation score, and the best checkpoint.

  At the end of each epoch it scores validation images under a Parzen window
  on `num_samples` samples from one fixed z (sigma picked from the paper's
  grid), adds `val_parzen` and `val_sigma` to the epoch's logs, and saves the
  weights as `best-epoch-NNNN.weights.h5` (`best_weights_name`), then points
  `best.json` at them and removes the earlier best's file, when the score is
  the best so far: a run stopped between the two writes keeps the earlier
  best whole, its record and weights together. Evaluation and export use
  that checkpoint by default: the sister conditional-GAN paper stopped at
  the best validation log-likelihood. A model with a weight average is
  scored on it, and the trained G's score is logged beside it as
  `val_parzen_raw`. A conditional model's samples are drawn for `labels`
  when given (`ConditionalGAN.default_labels` when not).
  """

  def __init__(self, validation: np.ndarray, checkpoint_dir: str,
               num_samples: int = 10_000, seed: int = 0,
               output_activation: str = "sigmoid",
               labels: Optional[np.ndarray] = None):
    super().__init__()
    self.labels = labels
    self.validation = validation
    self.checkpoint_dir = checkpoint_dir
    self.num_samples = num_samples
    self.seed = seed
    self.output_activation = output_activation

  def on_epoch_end(self, epoch, logs=None):
    from adversarial import evaluation
    score, sigma = evaluation.validation_monitor_score(
        self.model, self.validation, self.num_samples, self.seed,
        self.output_activation, labels=self.labels)
    if logs is not None:
      logs["val_parzen"] = score
      logs["val_sigma"] = sigma
      if getattr(self.model, "ema_generator", None) is not None:
        # The trained G beside its weight average, which `score` is of.
        logs["val_parzen_raw"], _ = evaluation.validation_monitor_score(
            self.model, self.validation, self.num_samples, self.seed,
            self.output_activation, average=False, labels=self.labels)
    best = read_best(self.checkpoint_dir)
    if math.isfinite(score) and (best is None or score > best["val_parzen"]):
      os.makedirs(self.checkpoint_dir, exist_ok=True)
      name = best_weights_name(epoch + 1)
      save_weights_atomic(self.model, os.path.join(self.checkpoint_dir, name))
      write_text_atomic(
          os.path.join(self.checkpoint_dir, BEST_FILE),
          json.dumps({"epoch": epoch + 1, "val_parzen": score,
                      "val_sigma": sigma, "weights": name},
                     indent=2) + "\n")
      # The earlier best's weights (and those of a best written by a run
      # stopped before its record was).
      for old in glob.glob(os.path.join(self.checkpoint_dir,
                                        "best*.weights.h5")):
        if os.path.basename(old) != name:
          os.remove(old)


def read_best(checkpoint_dir: str) -> Optional[dict]:
  """The best checkpoint's record ({'epoch', 'val_parzen', 'val_sigma',
  'weights'}), or None.

  Raises:
    RunRecordError: the record is not one training writes.
  """
  return _read_record(checkpoint_dir, BEST_FILE,
                      {"epoch": "an integer", "val_parzen": "a number",
                       "weights": "a file name"})
