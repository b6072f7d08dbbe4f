"""`python -m module args` for the tests, without importing TensorFlow anew
for each command.

A command runs as `python -m` runs it: in a process of its own, with the
module executed as `__main__`, the environment and working directory it is
given, and its exit status and output captured as `subprocess.run` captures
them. The process is forked from a server (`multiprocessing`'s forkserver)
that has imported TensorFlow, Keras and TFDS once; importing them takes
about 6 s of CPU time, which every one of the suite's few dozen commands
would otherwise pay. The server imports no module of this package, so each
command defines its absl flags and reads its environment as a fresh process
does. Two things are the server's: the lines TensorFlow logs as it loads
(printed once, to the server's stderr) and the seed of str hashing, the
same in every forked command. Tests that signal a running command from
outside, or compare two processes' runs, start `python -m` itself.
"""

import atexit
import functools
import io
import json
import multiprocessing
import os
import runpy
import subprocess
import sys
import tempfile

# Imported by the server before it forks: third-party modules only, whose
# import reads no variable that a test sets.
PRELOAD = ["tensorflow", "keras", "tensorflow_datasets"]

_context = None


def _server():
  global _context
  if _context is None:
    _context = multiprocessing.get_context("forkserver")
    _context.set_forkserver_preload(PRELOAD)
  return _context


def _status(stop):
  """The exit status the interpreter gives an uncaught SystemExit."""
  if stop.code is None:
    return 0
  if isinstance(stop.code, int):
    return stop.code
  print(stop.code, file=sys.stderr)
  return 1


@functools.cache
def _fresh_interpreter(env):
  """The environment and sys.path that a fresh interpreter started in the
  environment `env` (pairs) runs in: the interpreter may add to the
  environment (LC_CTYPE, when it coerces the C locale), and the first entry
  of its path, which `python -m` makes the working directory, is left out."""
  shown = subprocess.run(
      [sys.executable, "-c",
       "import json, os, sys; print(json.dumps([dict(os.environ), sys.path]))"],
      env=dict(env), capture_output=True, text=True, check=True)
  environ, path = json.loads(shown.stdout)
  return environ, path[1:]


def _open_std_streams(env):
  """sys.stdout and sys.stderr on file descriptors 1 and 2, buffered as an
  interpreter started in `env` buffers them: stdout by line on a terminal
  and by block elsewhere, stderr by line, neither with PYTHONUNBUFFERED."""
  unbuffered = bool(env.get("PYTHONUNBUFFERED"))
  for name, fd in (("stdout", 1), ("stderr", 2)):
    old = getattr(sys, name)
    stream = io.TextIOWrapper(
        open(fd, "wb", buffering=0 if unbuffered else -1, closefd=False),
        encoding=old.encoding, errors=old.errors,
        line_buffering=not unbuffered and (fd == 2 or os.isatty(fd)),
        write_through=unbuffered)
    setattr(sys, name, stream)
    setattr(sys, f"__{name}__", stream)


def _main(module, args, cwd, fresh, out, err):
  """The forked process: `python -m module args` from here on."""
  env, path = fresh
  sys.stdout.flush()
  sys.stderr.flush()
  for fd, name in ((1, out), (2, err)):
    file = os.open(name, os.O_WRONLY | os.O_APPEND)
    os.dup2(file, fd)
    os.close(file)
  _open_std_streams(env)
  os.environ.clear()
  os.environ.update(env)
  tempfile.tempdir = None  # read from TMPDIR again, as a new process does
  os.chdir(cwd)
  sys.path[:] = [cwd, *path]
  sys.argv = [module, *args]  # runpy puts the module's file in argv[0]
  try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    status = 0
  except SystemExit as stop:
    status = _status(stop)
  except BaseException:  # printed as the interpreter prints it
    sys.excepthook(*sys.exc_info())
    status = 1
  try:
    atexit._run_exitfuncs()
  finally:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _read(name):
  with open(name) as file:
    return file.read()


def run_module(module, args, env, timeout, cwd=None, merge_stderr=False):
  """`subprocess.run([python, "-m", module, *args], env=env, cwd=cwd,
  capture_output=True, text=True, timeout=timeout)`, run in a forked process
  (with `merge_stderr`, stderr goes to stdout as with `stderr=STDOUT`)."""
  command = [sys.executable, "-m", module, *args]
  cwd = os.path.abspath(cwd or os.getcwd())
  with tempfile.TemporaryDirectory() as folder:
    out = os.path.join(folder, "stdout")
    err = out if merge_stderr else os.path.join(folder, "stderr")
    for name in {out, err}:
      open(name, "w").close()
    process = _server().Process(
        target=_main,
        args=(module, list(args), cwd,
              _fresh_interpreter(tuple(env.items())), out, err))
    process.start()
    process.join(timeout)
    timed_out = process.exitcode is None
    if timed_out:
      process.kill()
      process.join()
    stdout = _read(out)
    stderr = None if merge_stderr else _read(err)
  if timed_out:
    raise subprocess.TimeoutExpired(command, timeout, stdout, stderr)
  return subprocess.CompletedProcess(command, process.exitcode, stdout,
                                     stderr)
