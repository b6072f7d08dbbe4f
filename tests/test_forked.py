"""The tests' forked commands (`forked`) run as `python -m` runs them."""

import json
import os
import subprocess
import sys

import pytest

import forked

PROBE = '''
import atexit, json, os, sys, tempfile
atexit.register(print, "at exit")
print(json.dumps({"name": __name__, "argv": sys.argv, "cwd": os.getcwd(),
                  "path": sys.path, "env": dict(os.environ),
                  "package": "adversarial" in sys.modules,
                  "tty": sys.stdout.isatty(), "tmp": tempfile.gettempdir()}))
print("to stderr", file=sys.stderr)
if sys.argv[1] == "raise":
  raise ValueError("no such thing")
sys.exit(int(sys.argv[1]) if sys.argv[1].isdigit() else sys.argv[1])
'''


def without_frames(text):
  """The lines of `text` but a traceback's frames (runpy's differ)."""
  return [line for line in text.splitlines() if not line.startswith("  ")]


@pytest.mark.parametrize("ending", ["0", "3", "a message", "raise"])
@pytest.mark.parametrize("unbuffered", [False, True])
def test_a_forked_command_is_the_command_run_by_python(tmp_path, ending,
                                                        unbuffered):
  (tmp_path / "probe.py").write_text(PROBE)
  (tmp_path / "tmp").mkdir()
  env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(tmp_path / "lib"),
         "TMPDIR": str(tmp_path / "tmp"), "PROBE": "1"}
  if unbuffered:
    env["PYTHONUNBUFFERED"] = "1"
  module, argv = "probe", [ending, "--flag=x"]

  def python(**streams):
    return subprocess.run([sys.executable, "-m", module, *argv], env=env,
                          cwd=tmp_path, text=True, timeout=60, **streams)

  real = python(capture_output=True)
  fork = forked.run_module(module, argv, env, timeout=60, cwd=tmp_path)
  assert fork.returncode == real.returncode
  assert real.returncode == {"0": 0, "3": 3}.get(ending, 1)
  assert fork.stdout == real.stdout
  shown = json.loads(fork.stdout.splitlines()[0])
  assert shown["name"] == "__main__" and shown["tmp"] == env["TMPDIR"]
  assert {k: shown["env"][k] for k in env} == env
  assert shown["argv"] == [str(tmp_path / "probe.py"), ending, "--flag=x"]
  assert not shown["package"]
  assert fork.stdout.endswith("at exit\n")
  assert without_frames(fork.stderr) == without_frames(real.stderr)
  assert fork.stderr.startswith("to stderr\n")
  # Both streams in one, in the order the process's buffering gives: the
  # line on stderr before the block of stdout, unless unbuffered.
  merged = forked.run_module(module, argv, env, timeout=60, cwd=tmp_path,
                             merge_stderr=True)
  real = python(stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  assert merged.stderr is None
  assert without_frames(merged.stdout) == without_frames(real.stdout)
  assert (merged.stdout.splitlines()[0] == "to stderr") != unbuffered
