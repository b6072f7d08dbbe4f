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


@pytest.mark.parametrize("ending", ["0", "3", "a message", "raise"])
def test_a_forked_command_is_the_command_run_by_python(tmp_path, ending):
  (tmp_path / "probe.py").write_text(PROBE)
  (tmp_path / "tmp").mkdir()
  env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(tmp_path / "lib"),
         "TMPDIR": str(tmp_path / "tmp"), "PROBE": "1"}
  args = ["probe", [ending, "--flag=x"]]
  real = subprocess.run([sys.executable, "-m", *args[:1], *args[1]],
                        env=env, cwd=tmp_path, capture_output=True,
                        text=True, timeout=60)
  fork = forked.run_module(*args, env, timeout=60, cwd=tmp_path)
  assert fork.returncode == real.returncode
  assert real.returncode == {"0": 0, "3": 3}.get(ending, 1)
  assert fork.stdout == real.stdout
  shown = json.loads(fork.stdout.splitlines()[0])
  assert shown["name"] == "__main__" and shown["tmp"] == env["TMPDIR"]
  assert {k: shown["env"][k] for k in env} == env
  assert shown["argv"] == [str(tmp_path / "probe.py"), ending, "--flag=x"]
  assert not shown["package"]
  assert fork.stdout.endswith("at exit\n")
  # The traceback's frames above the probe's differ (runpy's); its end and
  # the messages do not.
  assert fork.stderr.splitlines()[-1] == real.stderr.splitlines()[-1]
  assert fork.stderr.startswith("to stderr\n")
  merged = forked.run_module(*args, env, timeout=60, cwd=tmp_path,
                             merge_stderr=True)
  assert merged.stderr is None
  assert merged.stdout.splitlines()[1] == "to stderr"
