"""tf.distribute: MirroredStrategy over two logical CPUs, and a two-worker
MultiWorkerMirroredStrategy on loopback. Each runs in processes of its own
(tests/distributed_run.py): a process fixes its devices when it first uses
TensorFlow."""

import json
import os
import socket
import subprocess
import sys

import numpy as np

from conftest import REPO

TESTS = os.path.dirname(os.path.abspath(__file__))


def env(**extra):
  return dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{TESTS}",
              TF_CPP_MIN_LOG_LEVEL="2", **extra)


def arrays(path):
  with np.load(path) as f:
    return [f[k] for k in f.files]


def test_mirrored_over_two_devices_matches_one_device(tmp_path):
  proc = subprocess.run(
      [sys.executable, os.path.join(TESTS, "distributed_run.py"), "mirrored",
       str(tmp_path)], env=env(), capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  one = arrays(tmp_path / "one.npz")
  two = arrays(tmp_path / "two.npz")
  resumed = arrays(tmp_path / "resumed.npz")
  assert len(one) == len(two) > 10
  # Weights, the weight average, optimiser-free random-stream states: the
  # global batch of 8 split 4 + 4 gives one device's result.
  for a, b in zip(one, two):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
  assert any(np.abs(a).max() > 0 for a in one)
  # Stopped after one epoch and resumed under the strategy: the same run.
  for a, b in zip(two, resumed):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def free_ports(n):
  socks = [socket.socket() for _ in range(n)]
  for s in socks:
    s.bind(("localhost", 0))
  ports = [s.getsockname()[1] for s in socks]
  for s in socks:
    s.close()
  return ports


def test_multi_worker_keeps_workers_equal_and_one_checkpoint(tmp_path):
  workers = [f"localhost:{p}" for p in free_ports(2)]
  workdir = tmp_path / "run"
  procs = []
  for i in range(2):
    tf_config = json.dumps({"cluster": {"worker": workers},
                            "task": {"type": "worker", "index": i}})
    procs.append(subprocess.Popen(
        [sys.executable, os.path.join(TESTS, "distributed_run.py"), "worker",
         str(workdir), str(tmp_path / f"w{i}.npz")],
        env=env(TF_CONFIG=tf_config), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True))
  outs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
  w0, w1 = arrays(tmp_path / "w0.npz"), arrays(tmp_path / "w1.npz")
  for a, b in zip(w0, w1):
    np.testing.assert_array_equal(a, b)
  # One set of files, written by the chief (worker 0); both workers resumed
  # from its epoch-1 checkpoint.
  names = sorted(os.listdir(workdir / "checkpoints"))
  assert names == ["epoch-0001.weights.h5", "epoch-0002.weights.h5",
                   "state.json"]
  state = json.loads((workdir / "checkpoints" / "state.json").read_text())
  assert state["epoch"] == 2
