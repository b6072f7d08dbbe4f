"""`train(config, workdir)`: the library entry point of a training run.

A work directory holds one run:

    config.json              the run's Config
    checkpoints/             epoch-NNNN.weights.h5 and state.json (see
                             callbacks.EpochCheckpoint)
    samples/epoch-NNNN.png   G's samples from one fixed z, each epoch
    tensorboard/             scalars (train/) and sample images (samples/)

Calling `train` again on the same directory resumes from the last checkpoint
and ends where an uninterrupted run would have.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import re
from typing import Optional, Sequence
import warnings

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from adversarial import callbacks as callbacks_lib
from adversarial import data as data_lib
from adversarial import evaluation
from adversarial import files
from adversarial import networks
from adversarial import optim
from adversarial.config import Config, ConfigError
from adversarial.conditional import ConditionalGAN
from adversarial.gan import GAN
from adversarial.masked import MaskedGAN

CONFIG_FILE = "config.json"


@dataclasses.dataclass
class TrainResult:
  """What `train` returns.

  Attributes:
    model: the trained GAN, compiled.
    history: per-epoch metrics of the epochs run by this call.
    initial_epoch: epochs already done when this call started.
    epochs_done: epochs done when it ended.
    restarts: times this call took the run back after a collapse
      (`collapse_restarts`; each is in `checkpoints/restarts.json`).
  """
  model: GAN
  history: dict
  initial_epoch: int
  epochs_done: int
  restarts: int = 0


def _check_can_hold_a_run(workdir: str) -> None:
  """Raises `ConfigError` if `workdir` is not a directory, or is missing and
  cannot be made: found before any work, not when the first file is
  written."""
  if why := files.not_local("workdir", workdir):
    raise ConfigError(why)
  if os.path.isdir(workdir):
    parent, what = workdir, "is not writable"
  elif os.path.exists(workdir):
    raise ConfigError(f"workdir={workdir!r} is a file: expected a directory "
                      f"(a new one, or a run's to resume).")
  else:
    # The nearest folder above it that exists is where it would be made.
    parent = os.path.dirname(os.path.abspath(workdir))
    while not os.path.exists(parent):
      parent = os.path.dirname(parent)
    what = f"cannot be made in {parent!r}"
    if not os.path.isdir(parent):
      raise ConfigError(f"workdir={workdir!r} cannot be made: {parent!r} is "
                        f"a file; expected a directory path.")
  if not os.access(parent, os.W_OK | os.X_OK):
    raise ConfigError(f"workdir={workdir!r} {what} (no permission to write "
                      f"there): expected a directory this user can write.")


def check_workdir(config: Config, workdir: str) -> None:
  """Raises `ConfigError` if `workdir` holds a run of another configuration,
  or cannot hold a run (a file, or a place this user cannot write).

  Fields that may change between the calls of one run (`epochs`, the TFDS
  directories) are not compared. The annealing (`anneal_epoch`,
  `anneal_decay`) may change while neither the saved nor the requested
  schedule has started annealing by the epochs done: the run so far is then
  the requested configuration's run.
  """
  _check_can_hold_a_run(workdir)
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return
  saved = _read_config(path)
  diff = saved.differences(config)
  if diff and set(diff) <= {"anneal_epoch", "anneal_decay"}:
    state = callbacks_lib.read_state(os.path.join(workdir, "checkpoints"))
    done = int(state["epoch"]) if state else 0
    if not any(0 < c.anneal_epoch < done for c in (saved, config)):
      return
    raise ConfigError(
        f"anneal_epoch={config.anneal_epoch!r}, anneal_decay="
        f"{config.anneal_decay!r} (saved: {saved.anneal_epoch!r}, "
        f"{saved.anneal_decay!r}) is not accepted for workdir={workdir!r}: "
        f"it has done {done} epochs, and a schedule that anneals before that "
        f"would not be the one it trained under; expected anneal_epoch=0 or "
        f">= {done}, with the saved anneal_epoch, if any, also >= {done}.")
  if diff and not _has_trained(workdir):
    # A start stopped before its first epoch ended: nothing was trained
    # under the saved configuration, so the new one takes its place.
    logging.warning("workdir=%s holds no trained epoch: its configuration "
                    "is replaced (%s).", workdir,
                    ", ".join(f"{k}: {a!r} -> {b!r}"
                              for k, (a, b) in sorted(diff.items())))
    return
  if diff:
    lines = ", ".join(f"{k}: saved {a!r}, requested {b!r}"
                      for k, (a, b) in sorted(diff.items()))
    raise ConfigError(
        f"workdir={workdir!r} holds a run of a different configuration "
        f"({lines}): expected the same configuration to resume it, or a new "
        f"work directory for a new run.")


def _has_trained(workdir: str) -> bool:
  """Whether `workdir` holds anything of a trained epoch: a checkpoint, a
  best checkpoint's record or a restart's."""
  checkpoint_dir = os.path.join(workdir, "checkpoints")
  return any(os.path.exists(os.path.join(checkpoint_dir, name)) for name in (
      callbacks_lib.STATE_FILE, callbacks_lib.BEST_FILE,
      callbacks_lib.RESTARTS_FILE)) or bool(
          callbacks_lib.epoch_checkpoints(checkpoint_dir))


def build_model(config: Config, image_shape: Sequence[int],
                pixel_means: Optional[np.ndarray], steps: int,
                num_classes: int = 0) -> GAN:
  """The compiled GAN of `config`, with `steps` generator steps per epoch: a
  `ConditionalGAN` (`config.conditional`, `num_classes` labels), a
  `MaskedGAN` (`config.masked`) or a `GAN`."""
  generator, discriminator = networks.build_networks(
      config, image_shape, pixel_means, num_classes)
  kwargs = dict(latent_dim=config.latent_dim, prior=config.prior,
                update=config.update, k=config.k, g_loss=config.g_loss,
                label_smoothing=config.label_smoothing, seed=config.seed,
                ema_decay=config.ema_decay, ema_warmup=config.ema_warmup)
  if config.pack > 1:
    kwargs["pack"] = config.pack
  d_steps = steps * (config.k if config.update == "alternating" else 1)
  if config.instance_noise > 0:
    kwargs.update(instance_noise=config.instance_noise,
                  instance_noise_steps=config.instance_noise_epochs * d_steps)
  if config.conditional:
    model = ConditionalGAN(generator, discriminator, num_classes=num_classes,
                           **kwargs)
  elif config.masked:
    model = MaskedGAN(generator, discriminator,
                      mask_kinds=config.mask_kinds, **kwargs)
  else:
    model = GAN(generator, discriminator, **kwargs)
  model.compile(
      d_optimizer=optim.make_optimizer(config, d_steps, "d_optimizer"),
      g_optimizer=optim.make_optimizer(config, steps, "g_optimizer"),
      jit_compile=config.jit_compile,
      # Under a tf.distribute strategy, one step a call: Keras's multi-step
      # loop over a distributed iterator failed under MirroredStrategy over
      # two CPU devices (InvalidArgumentError in its while loop's cond).
      steps_per_execution=(
          1 if tf.distribute.has_strategy() else
          steps_per_call(config.steps_per_execution, steps)))
  return model


def steps_per_call(most: int, steps: int) -> int:
  """The largest divisor of an epoch's `steps` that is at most `most`: the
  steps of each call into TensorFlow, so that every epoch ends on a call."""
  return max(d for d in range(1, min(most, steps) + 1) if steps % d == 0)


def make_strategy(name: str) -> tf.distribute.Strategy:
  """The `tf.distribute` strategy a run trains under.

  Args:
    name: 'default' (one device), 'mirrored' (every local GPU, or the CPU),
      'multi_worker' (MultiWorkerMirroredStrategy; the cluster comes from
      the TF_CONFIG environment variable) or 'tpu' (TPUStrategy on the TPU
      that TPUClusterResolver finds).
  """
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  if name == "tpu":
    try:
      resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
      tf.config.experimental_connect_to_cluster(resolver)
      tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as e:
      raise ConfigError(
          f"strategy='tpu' is not accepted here: no TPU was found "
          f"({type(e).__name__}: {e}). Expected a machine with a TPU (or "
          f"TPU_NAME naming one), or strategy 'default', 'mirrored' or "
          f"'multi_worker'.") from None
    return tf.distribute.TPUStrategy(resolver)
  raise ConfigError(f"strategy={name!r} is not accepted: expected one of "
                    f"'default', 'mirrored', 'multi_worker', 'tpu'.")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes the run's files: always, except on the
  non-chief workers of a multi-worker cluster (the chief, or worker 0 where
  the cluster has no chief, writes)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not getattr(resolver, "task_type", None):
    return True
  cluster = resolver.cluster_spec().as_dict()
  if "chief" in cluster:
    return resolver.task_type == "chief"
  return resolver.task_type == "worker" and resolver.task_id == 0


def train(config: Config, workdir: str, verbose="auto",
          callbacks: Sequence[keras.callbacks.Callback] = (),
          train_data: Optional[data_lib.ArrayData] = None,
          strategy: Optional[tf.distribute.Strategy] = None) -> TrainResult:
  """Trains (or resumes) the run of `config` in `workdir`.

  Args:
    config: the run's configuration; validated here.
    workdir: the run's directory; created if missing.
    verbose: Keras's `fit` verbosity (1: a progress bar).
    callbacks: more callbacks for `fit`.
    train_data: the training split, when the caller has it in memory already;
      loaded from `config` otherwise.
    strategy: a `tf.distribute` strategy to train under, in place of the one
      `config.strategy` names (e.g. a MirroredStrategy over chosen devices).

  Returns:
    A `TrainResult`.

  Raises:
    ConfigError: a bad value in `config`, or a workdir of another run.
    WorkdirInUseError: another process is training in `workdir`.
    files.RunRecordError: a file of the run cannot be read.
    callbacks.TrainingDivergedError: a loss became NaN; the last good
      checkpoint is kept.
  """
  # The work directory stays locked from before its checkpoint is read until
  # training ends.
  with contextlib.ExitStack() as held:
    return _train(held, config, workdir, verbose, callbacks, train_data,
                  strategy)


class WorkdirInUseError(RuntimeError):
  """Another process is training in the work directory."""


@contextlib.contextmanager
def _locked(workdir: str):
  """Holds an exclusive lock on the folder `workdir` (flock, which the
  system lets go when the process ends, however it ends): two processes
  training the same run would each resume from the same checkpoint and
  replace the other's.

  Raises:
    WorkdirInUseError: another process holds it.
  """
  try:
    import fcntl
  except ImportError:  # No flock on this system: no lock.
    yield
    return
  fd = os.open(workdir, os.O_RDONLY)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise WorkdirInUseError(
          f"workdir={workdir!r} is in use: another process is training in "
          f"it. Expected one training process per work directory: once that "
          f"one ends (or is stopped), the same command resumes the "
          f"run.") from None
    except OSError as e:  # No flock on folders here (NFS): no lock.
      logging.warning("workdir=%s cannot be locked (%s): a second process "
                      "training it would not be stopped.", workdir, e)
    yield
  finally:
    os.close(fd)


# The temporary files of training's writes (`files.temporary_name`, and
# `callbacks.save_weights_atomic`'s for checkpoints): a run stopped while
# it wrote one leaves it behind. Only training writes these, so once a run
# holds the directory's lock they are leftovers; the files `evaluate`
# writes beside config.json are not among them.
_LEFTOVERS = (os.path.join("checkpoints", "tmp-*.weights.h5"),
              os.path.join("checkpoints", "*.tmp"),
              os.path.join("samples", "*.tmp"),
              f"{CONFIG_FILE}.*.tmp", f"{data_lib.CLUSTERS_FILE}.*.tmp")


def _remove_leftovers(workdir: str) -> None:
  """Removes the temporary files that stopped writes of the run left."""
  for pattern in _LEFTOVERS:
    for path in glob.glob(os.path.join(glob.escape(workdir), pattern)):
      logging.info("Removing %s, left by a write that was stopped.", path)
      os.remove(path)


def _train(held: contextlib.ExitStack, config: Config, workdir: str, verbose,
           callbacks, train_data, strategy) -> TrainResult:
  """`train`, the work directory's lock entered into `held`."""
  config.validate()
  data_lib.check_dataset(config)
  check_workdir(config, workdir)

  if train_data is None:
    train_data = data_lib.load_array(config, config.train_split)
  steps = data_lib.steps_per_epoch(config, len(train_data))
  image_shape = train_data.images.shape[1:]
  # The paper's output-bias init, for images: G starts at the mean image.
  means = (data_lib.pixel_means(train_data, config.g_output)
           if config.architecture == "mlp" and len(image_shape) == 3
           else None)
  classes = condition_classes(config)
  strategy = strategy or make_strategy(config.strategy)
  if config.batch_size % strategy.num_replicas_in_sync:
    raise ConfigError(
        f"batch_size={config.batch_size} is not accepted with "
        f"{strategy.num_replicas_in_sync} replicas: expected a multiple of "
        f"the replica count (the global batch is split evenly).")
  if (config.batch_size // strategy.num_replicas_in_sync) % config.pack:
    raise ConfigError(
        f"pack={config.pack} is not accepted with batch_size="
        f"{config.batch_size} on {strategy.num_replicas_in_sync} replicas: "
        f"expected a pack size that divides each replica's share of the "
        f"batch ({config.batch_size // strategy.num_replicas_in_sync} "
        f"images).")
  with strategy.scope():
    model = build_model(config, image_shape, means, steps, classes)
  chief = is_chief(strategy)
  # Only the chief writes, so only the chief locks; a new directory is
  # locked once it is made.
  locked = chief and os.path.isdir(workdir)
  if locked:
    held.enter_context(_locked(workdir))
    _remove_leftovers(workdir)

  checkpoint_dir = os.path.join(workdir, "checkpoints")
  state = callbacks_lib.read_state(checkpoint_dir)
  initial_epoch = 0
  if state is not None:
    _load_recorded(model, state["epoch"], state["weights"],
                   f"named by checkpoints/{callbacks_lib.STATE_FILE}", workdir)
    initial_epoch = int(state["epoch"])
  prior = found = None
  if config.clusters:
    # The clusters stand in for the labels. Found at a start, and read back
    # on resume (a start before any checkpoint, perhaps of a replaced
    # configuration, finds them again); every worker finds the same ones
    # (the same seed and data).
    path = os.path.join(workdir, data_lib.CLUSTERS_FILE)
    if state is not None and os.path.exists(path):
      prior = data_lib.ClusterPrior.load(path)
    else:
      prior = found = data_lib.cluster_prior(config, train_data)
    train_data = dataclasses.replace(
        train_data, labels=prior.assign(train_data.images))
  # The monitor's images, read before anything is written: a split that
  # cannot be read stops the start with the directory as it was.
  validation = None
  if (chief and config.monitor_samples and config.monitor_val_examples and
      config.val_split and len(image_shape) == 3):
    validation = data_lib.load_array(config, config.val_split)
  # Written after the checks and the restore: a failed start leaves the
  # directory as it was.
  if chief:
    os.makedirs(workdir, exist_ok=True)
    if not locked:
      held.enter_context(_locked(workdir))
    files.write_text_atomic(os.path.join(workdir, CONFIG_FILE),
                            config.to_json())
    if found is not None:
      found.save(path)
    if config.collapse_restarts and state is None:
      # The start a collapsed run may go back to (`_go_back`).
      os.makedirs(checkpoint_dir, exist_ok=True)
      callbacks_lib.save_weights_atomic(
          model, os.path.join(checkpoint_dir, callbacks_lib.INITIAL_WEIGHTS))
  if initial_epoch >= config.epochs:
    return TrainResult(model, {}, initial_epoch, initial_epoch)

  # The collapse guard runs before the monitor and the checkpoint, so that a
  # collapsed epoch is neither scored nor saved. A resumed run whose last
  # epoch was below the threshold has that epoch counted already.
  last_d_fake = ((state or {}).get("logs") or {}).get("d_fake")
  below = int(last_d_fake is not None and
              float(last_d_fake) < config.collapse_d_fake)
  run_callbacks = [callbacks_lib.NaNGuard(checkpoint_dir),
                   callbacks_lib.CollapseGuard(
                       config.collapse_d_fake, config.collapse_epochs,
                       stop=config.collapse_restarts > 0, below=below)]
  if not chief:
    # Other workers train in step with the chief and write nothing.
    run_callbacks.extend(callbacks)
    return _fit(model, config, train_data, initial_epoch, steps,
                run_callbacks, verbose, checkpoint_dir, chief)
  if validation is not None:
    run_callbacks.append(callbacks_lib.ParzenMonitor(
        evaluation.flatten_unit(
            data_lib.to_model_range(
                validation.images[:config.monitor_val_examples],
                config.g_output), config.g_output),
        checkpoint_dir, config.monitor_samples, seed=config.seed + 1,
        output_activation=config.g_output,
        # A model conditioned on clusters is scored as the model of p(x) it
        # is: its samples drawn in the clusters' shares.
        labels=None if prior is None else model.labels_in_shares(
            config.monitor_samples, prior.shares)))
  run_callbacks += [
      callbacks_lib.EpochCheckpoint(checkpoint_dir,
                                    keep=config.checkpoints_to_keep),
      keras.callbacks.TensorBoard(os.path.join(workdir, "tensorboard"),
                                  write_graph=False),
  ]
  if len(image_shape) == 3:
    run_callbacks.append(callbacks_lib.SampleGrid(
        os.path.join(workdir, "samples"), rows=config.sample_grid_rows,
        seed=config.seed, output_activation=config.g_output,
        tensorboard_dir=os.path.join(workdir, "tensorboard", "samples")))
  run_callbacks.extend(callbacks)
  return _fit(model, config, train_data, initial_epoch, steps, run_callbacks,
              verbose, checkpoint_dir, chief)


def _barrier(strategy: tf.distribute.Strategy) -> None:
  """Returns once every replica of every worker gets here: the chief arrives
  only after its callbacks have written the last checkpoint, so no worker
  reads the work directory before it is complete."""
  if strategy.num_replicas_in_sync > 1:
    strategy.reduce("SUM", strategy.run(lambda: tf.constant(1.0)),
                    axis=None)


def _fit(model, config, train_data, initial_epoch, steps, run_callbacks,
         verbose, checkpoint_dir, chief) -> TrainResult:
  """`model.fit` from `initial_epoch` to the end, going back after each
  collapse (`CollapseGuard`, `_go_back`) while restarts are left."""
  first_epoch, restarts = initial_epoch, 0
  while True:
    try:
      result = _fit_once(model, config, train_data, initial_epoch, steps,
                         run_callbacks, verbose)
    except callbacks_lib.TrainingCollapsedError as collapse:
      initial_epoch = _go_back(model, config, checkpoint_dir, chief,
                               collapse)
      restarts += 1
      continue
    return dataclasses.replace(result, initial_epoch=first_epoch,
                               restarts=restarts)


def _go_back(model, config, checkpoint_dir, chief, collapse) -> int:
  """Takes the run back after `collapse`: to its best checkpoint, or to its
  start (`callbacks.INITIAL_WEIGHTS`) when it has collapsed from that best
  checkpoint before, which then was already doomed. The random streams move
  to new keys (the restart's number is the salt), and the restored state
  becomes the checkpoint a resumed run starts from.

  Returns:
    The epochs done at that checkpoint, where training starts again.

  Raises:
    TrainingCollapsedError: no restart is left, or there is no checkpoint to
      go back to.
  """
  restarts = callbacks_lib.read_restarts(checkpoint_dir)
  best = callbacks_lib.read_best(checkpoint_dir)
  start = os.path.join(checkpoint_dir, callbacks_lib.INITIAL_WEIGHTS)
  # Every worker has read the record before the chief adds to it.
  _barrier(model.distribute_strategy)
  tried = best is not None and any(
      r.get("back_to") == best["epoch"] and
      r.get("val_parzen") == best["val_parzen"] for r in restarts)
  if best is None or tried:
    target = (0, start) if os.path.exists(start) else None
  else:
    target = (int(best["epoch"]), best["weights"])
  if len(restarts) >= config.collapse_restarts or target is None:
    why = (f"all {config.collapse_restarts} restarts (collapse_restarts) "
           f"are spent" if target else
           f"there is no checkpoint to go back to ({start} is written at "
           f"the start of a run with collapse_restarts > 0)")
    kept = ("" if best is None else
            f"; the best checkpoint, {best['weights']} (epoch "
            f"{best['epoch']}), is kept")
    raise callbacks_lib.TrainingCollapsedError(
        f"training collapsed at {collapse}, and {why}. Training "
        f"stopped{kept}. Train with another seed.", collapse.epoch,
        collapse.d_fake) from None
  back_to, weights = target
  _load_recorded(model, back_to, weights,
                 f"the best, named by checkpoints/{callbacks_lib.BEST_FILE}"
                 if back_to else "the run's start",
                 os.path.dirname(checkpoint_dir))
  model.reseed_random_states(len(restarts) + 1)
  logging.warning("Training collapsed at %s. Going back to %s with new "
                  "noise and dropout streams: restart %d of %d.", collapse,
                  f"the best checkpoint (epoch {back_to})" if back_to else
                  "the start of the run", len(restarts) + 1,
                  config.collapse_restarts)
  if chief:
    # The restart's checkpoint is written before the record of it and the
    # record before `state.json`, and the collapsed epochs' checkpoints go
    # last: a run killed at any point resumes from a complete checkpoint.
    path = callbacks_lib.weights_path(checkpoint_dir, back_to)
    callbacks_lib.save_weights_atomic(model, path)
    restarts.append({"epoch": collapse.epoch, "d_fake": collapse.d_fake,
                     "back_to": back_to,
                     "val_parzen": best["val_parzen"] if back_to else None})
    callbacks_lib.write_restarts(checkpoint_dir, restarts)
    callbacks_lib.write_state(checkpoint_dir, back_to, path)
    for epoch, old in callbacks_lib.epoch_checkpoints(checkpoint_dir):
      if epoch > back_to:
        os.remove(old)
  _barrier(model.distribute_strategy)
  return back_to


def _fit_once(model, config, train_data, initial_epoch, steps, run_callbacks,
              verbose) -> TrainResult:
  dataset = data_lib.train_dataset(config, train_data, initial_epoch)
  if config.strategy == "multi_worker":
    # Each worker takes its share of every global batch.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    dataset = dataset.with_options(options)
  history = model.fit(dataset, epochs=config.epochs,
                      initial_epoch=initial_epoch, steps_per_epoch=steps,
                      callbacks=run_callbacks, verbose=verbose,
                      shuffle=False)
  _barrier(model.distribute_strategy)
  return TrainResult(model, history.history, initial_epoch, config.epochs)


def load_config(workdir: str) -> Config:
  """The Config saved in `workdir`.

  Raises:
    FileNotFoundError: there is none.
    files.RunRecordError: the file holds no Config this package writes.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"workdir={workdir!r} holds no {CONFIG_FILE}: expected the work "
        f"directory of a training run (python -m adversarial.train "
        f"--workdir=...).")
  return _read_config(path)


def _read_config(path: str) -> Config:
  """The Config in a run's `config.json`.

  Raises:
    files.RunRecordError: the file holds no Config this package writes.
  """
  try:
    with open(path) as f:
      return Config.from_json(f.read())
  except (OSError, ValueError) as e:
    # ValueError: not JSON (UnicodeDecodeError, JSONDecodeError), or no
    # Config's fields (ConfigError).
    raise files.RunRecordError.of(
        path, str(e).rstrip("."), "the run's configuration as training "
        "writes it (Config.to_json)") from None


def check_image_run(config: Config, workdir: str, use: str) -> None:
  """Raises ValueError for a run of the 1-D toy data, whose samples are
  numbers, not images, where `use` (what the caller makes) needs images."""
  if config.dataset in data_lib.TOY_DATASETS:
    raise ValueError(
        f"the run in {workdir!r} is of the 1-D toy data (dataset="
        f"{config.dataset!r}), whose samples are numbers, not images: "
        f"expected a run of an image dataset for {use}.")


def resolve_checkpoint(workdir: str, checkpoint: str = "best") -> dict:
  """The checkpoint record that `checkpoint` names in `workdir`.

  Args:
    workdir: a training run's directory.
    checkpoint: 'best' (the best validation Parzen score; the last checkpoint
      where no score was kept), 'last', the name of a file in the run's
      checkpoints/ folder (such as 'epoch-0100.weights.h5'), or the path of
      a `.weights.h5` file.

  Returns:
    {'weights': path, 'epoch': epoch or None, ...}; a path's epoch is read
    from its name when it is one the run's checkpoints have.
  """
  checkpoint_dir = os.path.join(workdir, "checkpoints")
  if checkpoint in ("best", "last"):
    record = None
    if checkpoint == "best":
      record = callbacks_lib.read_best(checkpoint_dir)
    if record is None:
      record = callbacks_lib.read_state(checkpoint_dir)
    if record is None:
      raise FileNotFoundError(
          f"workdir={workdir!r} holds no checkpoint yet: expected "
          f"{os.path.join(checkpoint_dir, callbacks_lib.STATE_FILE)} (train "
          f"first, or pass the path of a .weights.h5 file).")
    return record
  own = os.path.join(checkpoint_dir, checkpoint)
  if not os.path.isfile(checkpoint) and os.path.isfile(own):
    checkpoint = own  # The name of one of the run's checkpoints.
  if not os.path.isfile(checkpoint):
    kept = sorted(n for n in (os.listdir(checkpoint_dir)
                              if os.path.isdir(checkpoint_dir) else ())
                  if n.endswith(".weights.h5"))
    if len(kept) > 6:
      kept = kept[:2] + [f"... ({len(kept) - 5} more)"] + kept[-3:]
    raise FileNotFoundError(
        f"checkpoint={checkpoint!r} does not exist: expected 'best', 'last', "
        f"the name of a checkpoint the run keeps"
        + (f" ({', '.join(kept)} in {checkpoint_dir})" if kept else "")
        + " or the path of a .weights.h5 file.")
  if not checkpoint.endswith(".weights.h5"):
    raise ValueError(f"checkpoint={checkpoint!r} is not accepted: expected "
                     f"a .weights.h5 file, as training writes.")
  return {"weights": checkpoint, "epoch": callbacks_lib.epoch_of(checkpoint)}


def restore(workdir: str, checkpoint: str = "best") -> tuple[GAN, Config, dict]:
  """Rebuilds the GAN of a work directory and loads a checkpoint into it.

  Args:
    workdir: a training run's directory.
    checkpoint: 'best', 'last' or a `.weights.h5` path (see
      `resolve_checkpoint`).

  Returns:
    (model, config, record): the compiled GAN, the run's Config and the
    checkpoint's record.

  A run still training in `workdir` may replace the checkpoint that 'best'
  or 'last' names while the model is built (a new best removes the earlier
  best's file; each epoch removes the oldest it keeps): its record is then
  read again and the checkpoint it names now is loaded.
  """
  if why := files.not_local("workdir", workdir):
    raise ValueError(why)
  if not os.path.isdir(workdir):
    what = "is not a directory" if os.path.exists(workdir) else (
        "does not exist")
    raise FileNotFoundError(f"workdir={workdir!r} {what}: expected the work "
                            f"directory of a training run.")
  config = load_config(workdir)
  record = resolve_checkpoint(workdir, checkpoint)
  classes = condition_classes(config)
  model = build_model(config, image_shape(config), None, steps=1,
                      num_classes=classes)
  rereads = _REREADS
  while True:
    failure = _try_load(model, record["weights"])
    if failure is None:
      return model, config, record
    if checkpoint not in ("best", "last") or os.path.exists(
        record["weights"]):
      raise _load_error(record["weights"], workdir, failure)
    newer = resolve_checkpoint(workdir, checkpoint)
    if newer["weights"] == record["weights"] or not rereads:
      raise FileNotFoundError(
          f"checkpoint={checkpoint!r} names {record['weights']}, which does "
          f"not exist: expected the file training wrote there (restore it, "
          f"or name another checkpoint the run keeps).")
    record, rereads = newer, rereads - 1


# How often `restore` reads a record again whose checkpoint a running
# training replaced: once per epoch that ends while the model loads.
_REREADS = 5


def _load_error(weights: str, workdir: str, failure: tuple) -> ValueError:
  """The error for a checkpoint that did not load (`_try_load`'s failure):
  it says which file does not fit which run, where Keras lists every object
  it could not load."""
  unreadable, why = failure
  if unreadable:
    return ValueError(
        f"checkpoint={weights!r} cannot be read ({why}): expected a whole "
        f".weights.h5 file, as training writes.")
  return ValueError(
      f"checkpoint={weights!r} does not fit the run in workdir={workdir!r} "
      f"({why}): expected a checkpoint written by a run of the same networks "
      f"(the run's config.json).")


def _load_recorded(model: GAN, epoch: int, weights: str, what: str,
                   workdir: str) -> None:
  """Loads the run's own checkpoint of `epoch`, where it resumes or goes
  back to; `what` says which record names it.

  Raises:
    files.RunRecordError: the file is gone or does not load.
  """
  failure = (_try_load(model, weights) if os.path.isfile(weights) else
             (True, "the file does not exist"))
  if failure is None:
    return
  raise files.RunRecordError(
      f"workdir={workdir!r} cannot go on from epoch {epoch}: its "
      f"checkpoint {weights}, {what}, cannot be loaded "
      f"({failure[1]}). Expected the whole checkpoint training wrote there: "
      f"restore it, or train in a new work directory.")


def _try_load(model: GAN, weights: str) -> Optional[tuple]:
  """`model.load_weights(weights)`; None when it loaded, else (unreadable,
  why): True for a file that is not a whole HDF5 file, False for one whose
  variables do not fit the model."""
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
      model.load_weights(weights)
    except OSError as e:  # h5py: not an HDF5 file, or one cut short.
      return True, _load_failure(e)
    except ValueError as e:
      return False, _load_failure(e)
  # Keras's warnings of a file that loaded (none for a matching one).
  for w in caught:
    warnings.showwarning(w.message, w.category, w.filename, w.lineno)
  return None


def _load_failure(error: Exception) -> str:
  """The reason in Keras's message for a weights file that did not load:
  the first variable whose shape differs, or its example error, or the
  message's first line."""
  text = str(error).strip()
  shapes = re.search(r"variable\.shape=(\(.*?\)), Received: "
                     r"value\.shape=(\(.*?\))", text)
  if shapes:
    path = re.search(r"Target variable: <Variable path=([^,]+)", text)
    return (f"its {path.group(1) if path else 'variable'} has shape "
            f"{shapes.group(2)} where the run's has {shapes.group(1)}")
  example = re.search(r"Example error message for object <([^>]*)>:\s*"
                      r"(.+)", text)
  if example:
    return f"{example.group(1)}: {example.group(2).strip().rstrip('.')}"
  return text.splitlines()[0] if text else type(error).__name__


def condition_classes(config: Config) -> int:
  """Values of a conditional model's c: `config.clusters`, or the dataset's
  labels; 0 for an unconditional model."""
  if not config.conditional:
    return 0
  return config.clusters or data_lib.num_classes(config)


def cluster_prior(workdir: str) -> data_lib.ClusterPrior:
  """The clusters a run with `clusters` > 0 found when it started."""
  return data_lib.ClusterPrior.load(
      os.path.join(workdir, data_lib.CLUSTERS_FILE))


def image_shape(config: Config) -> tuple:
  """(H, W, C) of the dataset's images, from its TFDS metadata (no data is
  read), or (1,) for the toy."""
  if config.dataset in data_lib.TOY_DATASETS:
    return (1,)
  import tensorflow_datasets as tfds
  builder = tfds.builder(config.dataset, data_dir=config.tfds_data_dir)
  return tuple(builder.info.features["image"].shape)
