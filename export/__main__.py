r"""Exports a training run's generator for TF Serving.

Usage:

  python -m export --workdir=runs/mnist --export_dir=serving/gan \
      [--checkpoint=best|last|PATH] [--version=N]

Writes <export_dir>/<version>/ (the next integer version when --version is
not given) atomically; an existing version is never overwritten. Serve it
with TF Serving's `--model_base_path=<export_dir>` (see BUILD.md).
"""

from absl import app
from absl import flags

from adversarial import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory of a run.",
                               required=True)
_EXPORT_DIR = flags.DEFINE_string(
    "export_dir", None, "Base directory of the served model.", required=True)
_CHECKPOINT = cli.define_checkpoint_flag()
_VERSION = flags.DEFINE_integer("version", None,
                                "Version number (default: next free).")
_MODEL_NAME = flags.DEFINE_string(
    "model_name", "generator", "Model name in the warm-up requests.")
flags.adopt_module_key_flags(cli)  # --helpshort lists them.


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  import export
  try:
    path = export.export_generator(
        _WORKDIR.value, _EXPORT_DIR.value, checkpoint=_CHECKPOINT.value,
        version=_VERSION.value, model_name=_MODEL_NAME.value)
  except (FileNotFoundError, ValueError, export.ExportError) as e:
    raise SystemExit(f"error: {e}") from None
  print(f"exported the generator to {path}")


def stopped() -> str:
  """What an export stopped by Ctrl-C or SIGTERM leaves: the version it was
  writing is removed as the stop unwinds, or was renamed into place whole
  if the stop came after that."""
  import export
  newest = export.next_version(_EXPORT_DIR.value) - 1
  there = f"the newest there is {newest}" if newest else "it holds none"
  return f"no version is left half-written in {_EXPORT_DIR.value}; {there}."


def run():
  """Console-script entry point."""
  cli.run(main, stopped=stopped)


if __name__ == "__main__":
  run()
