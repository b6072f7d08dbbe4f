r"""Trains adversarial nets.

Usage:

  # The paper's MNIST model (Table 1), on data TFDS prepares offline from the
  # four original MNIST files:
  python -m adversarial.train --dataset=mnist --workdir=/tmp/gan \
      --config=paper_mnist --tfds_manual_dir=path/to/mnist

  # Rerunning the same command resumes from the last checkpoint (after
  # Ctrl-C, SIGTERM or a crash alike).

  # The conditional model p(x | c) of Section 7 (one sample row per class):
  python -m adversarial.train --dataset=mnist --workdir=/tmp/cgan --conditional

  # A short run of Algorithm 1 as printed, k = 2, with Adam:
  python -m adversarial.train --workdir=/tmp/gan2 --update=alternating --k=2 \
      --optimizer=adam --learning_rate=2e-4 --epochs=5

Flags override the preset's values; `--config` names the preset. The work
directory receives config.json, checkpoints/, samples/ and tensorboard/.
"""

import os
import sys

from absl import app
from absl import flags

from adversarial import cli

_CONFIG = flags.DEFINE_string(
    "config", "paper_mnist", "Named preset (adversarial.config.PRESETS).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory of the run.",
                               required=True)
_DATASET = flags.DEFINE_string(
    "dataset", None, "TFDS image dataset (mnist, fashion_mnist, cifar10, ...)"
    " or toy_gaussian.")
_EPOCHS = flags.DEFINE_integer("epochs", None, "Epochs to train in all.")
_STEPS = flags.DEFINE_integer(
    "steps_per_epoch", None, "Generator steps per epoch (default: one pass).")
_BATCH = flags.DEFINE_integer("batch_size", None, "Minibatch size m.")
_K = flags.DEFINE_integer("k", None, "D steps per G step (alternating).")
_UPDATE = flags.DEFINE_string(
    "update", None, "simultaneous (authors' code) or alternating (Alg. 1).")
_G_LOSS = flags.DEFINE_string("g_loss", None, "non_saturating or minimax.")
_OPTIMIZER = flags.DEFINE_string("optimizer", None, "sgd, adam, rmsprop, ...")
_LR = flags.DEFINE_float("learning_rate", None, "Initial learning rate.")
_SEED = flags.DEFINE_integer("seed", None, "Seed of every random source.")
_JIT = flags.DEFINE_bool("jit_compile", None, "Compile the step with XLA.")
_CALLS = flags.DEFINE_integer(
    "steps_per_execution", None, "Training steps per call into TensorFlow "
    "(at most; a divisor of the epoch's steps), one XLA program with "
    "--jit_compile. Default 50.")
_MANUAL_DIR = flags.DEFINE_string(
    "tfds_manual_dir", None,
    "TFDS manual download directory: prepare the dataset offline from its "
    "original files. Default: $ADVERSARIAL_TFDS_MANUAL_DIR.")
_DATA_DIR = flags.DEFINE_string(
    "tfds_data_dir", None,
    "TFDS data_dir. Default: $ADVERSARIAL_TFDS_DATA_DIR or TFDS's own.")
_CONDITIONAL = flags.DEFINE_bool(
    "conditional", None, "Train p(x | label): the label goes to G and D.")
_MASKED = flags.DEFINE_bool(
    "masked", None, "Train every conditional p(x_S | x_not-S) with random "
    "masks S (inpainting); see --set=mask_kinds=...")
_PRECISION = flags.DEFINE_enum(
    "mixed_precision", None, ["float32", "mixed_float16", "mixed_bfloat16"],
    "Numeric precision of the nets: float16 or bfloat16 compute with float32 "
    "variables, logits and losses (float16 adds loss scaling).")
_STRATEGY = flags.DEFINE_enum(
    "strategy", None, ["default", "mirrored", "multi_worker", "tpu"],
    "tf.distribute strategy: one device, all local GPUs, several hosts "
    "(TF_CONFIG), or a TPU. --batch_size is the global batch.")
_RESTARTS = flags.DEFINE_integer(
    "collapse_restarts", None, "Times a run whose D rejects every sample "
    "(mean D(G(z)) below collapse_d_fake for collapse_epochs epochs in a "
    "row) goes back to its best checkpoint, or its start, with new noise; "
    "0: never (the paper's loop).", lower_bound=0)
_SET = flags.DEFINE_multi_string(
    "set", [], "Any other Config field, as name=value, e.g. "
    "--set=g_hidden=256,256 --set=d_input_dropout=0.1")
_VERBOSE = flags.DEFINE_integer(
    "verbose", None, "0 silent, 1 progress bar, 2 one line per epoch. "
    "Default: 1 when the output is a terminal, 2 when it goes to a file or "
    "a pipe (a log then holds no progress bars).",
    lower_bound=0, upper_bound=2)
_THREADS = flags.DEFINE_integer(
    "threads", None, "CPU threads within an op (intra-op) and across "
    "independent ops (inter-op). Default: TensorFlow's, one per core. Give "
    "each of several runs sharing a machine its share of the cores.",
    lower_bound=1)


def config_from_flags():
  """The preset named by --config with every flag that was given applied."""
  from adversarial import config as config_lib
  overrides = {
      "dataset": _DATASET.value, "epochs": _EPOCHS.value,
      "steps_per_epoch": _STEPS.value, "batch_size": _BATCH.value,
      "k": _K.value, "update": _UPDATE.value, "g_loss": _G_LOSS.value,
      "optimizer": _OPTIMIZER.value, "learning_rate": _LR.value,
      "seed": _SEED.value, "jit_compile": _JIT.value,
      "steps_per_execution": _CALLS.value,
      "conditional": _CONDITIONAL.value, "masked": _MASKED.value,
      "precision": _PRECISION.value, "strategy": _STRATEGY.value,
      "collapse_restarts": _RESTARTS.value,
  }
  overrides = {k: v for k, v in overrides.items() if v is not None}
  overrides.update(cli.data_dirs(_MANUAL_DIR, _DATA_DIR))
  overrides.update(config_lib.parse_assignments(_SET.value))
  return config_lib.get_preset(_CONFIG.value).override(**overrides).validate()


def verbosity() -> int:
  """Keras's `fit` verbosity: --verbose, else a progress bar only when the
  output is a terminal."""
  if _VERBOSE.value is not None:
    return _VERBOSE.value
  return 1 if sys.stdout.isatty() else 2


def set_threads(n: int):
  """Sizes TensorFlow's thread pools to `n` threads each; must run before
  TensorFlow executes its first op in the process."""
  import tensorflow as tf
  tf.config.threading.set_intra_op_parallelism_threads(n)
  tf.config.threading.set_inter_op_parallelism_threads(n)
  print(f"threads: {tf.config.threading.get_intra_op_parallelism_threads()} "
        f"intra-op, {tf.config.threading.get_inter_op_parallelism_threads()}"
        f" inter-op")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _THREADS.value is not None:
    set_threads(_THREADS.value)
  from adversarial import train_lib
  from adversarial.callbacks import TrainingCollapsedError
  from adversarial.callbacks import TrainingDivergedError
  from adversarial.files import RunRecordError
  try:
    config = config_from_flags()
    result = train_lib.train(config, _WORKDIR.value, verbose=verbosity())
  except (TrainingDivergedError, TrainingCollapsedError, RunRecordError,
          train_lib.WorkdirInUseError) as e:
    raise SystemExit(f"error: {e}") from None
  except OSError as e:  # A full disk, a file size limit, a lost mount.
    raise SystemExit(f"error: training stopped: {cli.io_failure(e)}. "
                     f"{kept_message(_WORKDIR.value, mended=True)}") from None
  print(summary(result, _WORKDIR.value))


def summary(result, workdir: str) -> str:
  """The line a finished call of `train` prints: the epochs done before and
  after it, and how often it went back after a collapse."""
  went_back = (f", going back {result.restarts} time(s) after a collapse "
               f"(checkpoints/restarts.json)" if result.restarts else "")
  return (f"trained epochs {result.initial_epoch}..{result.epochs_done}"
          f"{went_back}; work directory: {workdir}")


def kept_message(workdir: str, mended: bool = False) -> str:
  """What a stopped run keeps, and how to go on: at once after Ctrl-C or
  SIGTERM, or once the cause is `mended` after a failed read or write."""
  from adversarial import callbacks as callbacks_lib
  state = callbacks_lib.read_state(os.path.join(workdir, "checkpoints"))
  then = "once that is mended, the same command" if mended else (
      "the same command")
  if state is None:
    return f"{workdir} holds no epoch yet; {then} starts the run again."
  return (f"{workdir} keeps its checkpoint of epoch {state['epoch']}; "
          f"{then} resumes from there.")


def run():
  """Console-script entry point (`adversarial-train`)."""
  cli.run(main, stopped=lambda: kept_message(_WORKDIR.value))


if __name__ == "__main__":
  run()
