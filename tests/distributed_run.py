"""Runs of the distribution tests, in processes of their own: TensorFlow's
devices and collectives are fixed when a process first uses them.

  python distributed_run.py mirrored OUT_DIR
      trains the same small run on one device and on a MirroredStrategy over
      two logical CPUs (and once more stopped after one epoch and resumed),
      and writes the weights to OUT_DIR/<name>.npz.
  TF_CONFIG=... python distributed_run.py worker WORKDIR OUT_FILE
      one worker of a MultiWorkerMirroredStrategy run: trains one epoch,
      then resumes for a second from the checkpoint the chief wrote, and
      writes its weights to OUT_FILE.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

from adversarial import train_lib

from conftest import random_images, small_config


def config(**changes):
  # Dropout and the weight average on: their noise and updates must follow
  # the global batch too.
  return small_config(batch_size=8, steps_per_epoch=3, ema_decay=0.5,
                      jit_compile=False, **changes)


def save(path, model):
  np.savez(path, *[np.array(w) for w in model.weights],
           *[np.array(s) for s in model.random_states()])


def mirrored(out):
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
  data = random_images(48)
  one = train_lib.train(config(epochs=2), os.path.join(out, "one"),
                        verbose=0, train_data=data)
  save(os.path.join(out, "one.npz"), one.model)
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  two = train_lib.train(config(epochs=2), os.path.join(out, "two"),
                        verbose=0, train_data=data, strategy=strategy)
  assert two.model.distribute_strategy.num_replicas_in_sync == 2
  save(os.path.join(out, "two.npz"), two.model)
  train_lib.train(config(epochs=1), os.path.join(out, "resumed"), verbose=0,
                  train_data=data, strategy=strategy)
  resumed = train_lib.train(config(epochs=2), os.path.join(out, "resumed"),
                            verbose=0, train_data=data, strategy=strategy)
  assert resumed.initial_epoch == 1
  save(os.path.join(out, "resumed.npz"), resumed.model)


def worker(workdir, out):
  strategy = tf.distribute.MultiWorkerMirroredStrategy()
  data = random_images(48)
  cfg = config(epochs=1, strategy="multi_worker")
  train_lib.train(cfg, workdir, verbose=0, train_data=data,
                  strategy=strategy)
  # `train` returns on every worker only after the chief has written the
  # epoch's checkpoint, so each worker resumes from it.
  result = train_lib.train(cfg.override(epochs=2), workdir, verbose=0,
                           train_data=data, strategy=strategy)
  assert result.initial_epoch == 1, result.initial_epoch
  save(out, result.model)


if __name__ == "__main__":
  if sys.argv[1] == "mirrored":
    mirrored(sys.argv[2])
  else:
    worker(sys.argv[2], sys.argv[3])
