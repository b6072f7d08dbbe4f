"""Flags and steps shared by the binaries that read a training run
(`evaluate`, `infer`, `complete`, `semisup`) and by `train`."""

from __future__ import annotations

import os
import re
import signal
import sys
from typing import Callable, Optional, Sequence

from absl import flags

MANUAL_DIR_ENV = "ADVERSARIAL_TFDS_MANUAL_DIR"
DATA_DIR_ENV = "ADVERSARIAL_TFDS_DATA_DIR"


def define_data_flags():
  """--tfds_manual_dir and --tfds_data_dir of a binary that reads a run.

  Returns:
    (manual_dir flag, data_dir flag), for `data_dirs`.
  """
  manual = flags.DEFINE_string(
      "tfds_manual_dir", None, f"TFDS manual download directory. Default: "
      f"${MANUAL_DIR_ENV}, or the run's.")
  data = flags.DEFINE_string(
      "tfds_data_dir", None, f"TFDS data_dir. Default: ${DATA_DIR_ENV}, or "
      f"the run's.")
  return manual, data


def define_checkpoint_flag():
  """--checkpoint of a binary that reads a run (`train_lib.restore`)."""
  return flags.DEFINE_string(
      "checkpoint", "best", "best (the best epoch by the validation Parzen "
      "score), last, the name of a checkpoint the run keeps "
      "(epoch-0100.weights.h5), or the path of a .weights.h5 file.")


def data_dirs(manual_flag, data_flag) -> dict:
  """The data directories given by flag, else by environment variable:
  {'tfds_manual_dir': ..., 'tfds_data_dir': ...}, leaving out those given
  by neither."""
  dirs = {"tfds_manual_dir": manual_flag.value or os.environ.get(
              MANUAL_DIR_ENV),
          "tfds_data_dir": data_flag.value or os.environ.get(DATA_DIR_ENV)}
  return {k: v for k, v in dirs.items() if v}


def parse_numbers(flag: str, values: Sequence[str],
                  kind: type = float) -> list:
  """A list flag's values as numbers of `kind` (float or int); one that is
  not such a number is an `app.UsageError` naming the flag's value."""
  from absl import app
  try:
    return [kind(v) for v in values]
  except ValueError:
    what = "integers" if kind is int else "numbers"
    raise app.UsageError(f"--{flag}={','.join(values)} is not accepted: "
                         f"expected {what} separated by commas.") from None


def restore_or_exit(workdir: str, checkpoint: str, dirs: dict):
  """`train_lib.restore`, with the run's data directories replaced by
  `dirs`; a missing run or checkpoint exits with its message.

  Returns:
    (model, config, record).
  """
  from adversarial import train_lib
  try:
    model, config, record = train_lib.restore(workdir, checkpoint)
  except (FileNotFoundError, ValueError) as e:
    raise SystemExit(f"error: {e}") from None
  return model, config.override(**dirs), record


def io_failure(error: OSError) -> str:
  """An OSError in a line: the file and the system's reason, where h5py
  and TensorFlow put them in messages of many lines."""
  name = error.filename
  if name is None:
    found = re.search(r"(?:filename|name) = '([^']+)'", str(error))
    name = found and found.group(1)
  why = (os.strerror(error.errno) if error.errno else
         (str(error).strip().splitlines() or [type(error).__name__])[0])
  return f"{name}: {why}" if name else why


USAGE_HINT = "Pass --helpshort or --helpfull to see help on flags."

# What a binary stopped by Ctrl-C or SIGTERM has left, unless it says more
# (`run`'s `stopped`): every file the package writes is written under a
# temporary name and renamed into place once whole, and the temporary file
# is removed as the stop unwinds.
STOPPED = ("stopped before it finished; no file it was writing is left "
           "half-written, and files written before are as they were.")


class Terminated(KeyboardInterrupt):
  """SIGTERM arrived: the binary stops as after Ctrl-C."""


def stop_on_sigterm():
  """Makes SIGTERM (`docker stop`, Kubernetes, a batch scheduler's time
  limit) stop a binary as Ctrl-C does: the TensorFlow call in hand ends,
  the files being written are removed as the stop unwinds, and the process
  says what it keeps. Without this it would end at once and silently,
  leaving its temporary files behind. A second SIGTERM while it stops is
  ignored, so that the stop finishes; SIGKILL still ends it at once."""
  def handler(signum, frame):
    del signum, frame
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated()
  signal.signal(signal.SIGTERM, handler)


def run(main, stopped: Optional[Callable[[], str]] = None):
  """`absl.app.run(main)`, where a setting found bad after the flags were
  read (`ConfigError`, `app.UsageError`), a dataset TFDS could not prepare
  or a file that could not be read or written ends the process with its
  message and exit status 1 instead of a traceback. A bad setting prints
  its message and where help is, as absl does for a flag it cannot parse,
  not the whole list of flags above it.

  Ctrl-C and SIGTERM (`stop_on_sigterm`) end it with a line on stderr,
  "interrupted: " or "terminated: " and what `stopped()` says is kept
  (default `STOPPED`), and the shell's status for the signal, 130 or 143,
  instead of a traceback or a silent exit.

  Logging shows warnings and errors unless --verbosity is given: absl's
  default under `app.run`, INFO, adds TensorFlow's and TFDS's notes (each
  dataset read, each SavedModel asset written) to what the binaries print,
  and the package itself logs nothing below a warning."""
  from absl import app
  from absl import logging

  def guarded(argv):
    from adversarial.config import ConfigError
    from adversarial.data import DataUnavailableError
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)
    stop_on_sigterm()
    try:
      return main(argv)
    except (ConfigError, app.UsageError) as e:
      raise SystemExit(f"error: {e}\n{USAGE_HINT}") from None
    except DataUnavailableError as e:
      raise SystemExit(f"error: {e}") from None
    except OSError as e:  # A full disk, a file size limit, a lost mount.
      raise SystemExit(f"error: {io_failure(e)}") from None
    except KeyboardInterrupt as e:
      signum = (signal.SIGTERM if isinstance(e, Terminated)
                else signal.SIGINT)
      how = "terminated" if signum == signal.SIGTERM else "interrupted"
      print(f"{how}: {stopped() if stopped else STOPPED}", file=sys.stderr)
      sys.exit(128 + signum)

  app.run(guarded)
