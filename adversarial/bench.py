r"""Benchmarks the training step, the input pipeline, sampling from an
export and the Parzen evaluation, against baselines measured in the same run.

Usage:

  python -m adversarial.bench [--steps=60] [--json] [--models=mlp,conv]
      [--tfds_manual_dir=DIR]

For the paper's MNIST model at batch 100 (and the convolutional pair), it
times the training step for each update rule with XLA on and off, and a
baseline: the same networks trained by a plain `train_step` written the way
the Keras example "GAN overriding `Model.train_step`" writes it (real and
fake images concatenated into one D batch, G run twice, no XLA). It prints
the speed-up over that baseline, and the arithmetic rate reached (from the
networks' FLOP count) against a float32 matmul peak measured in the same run.

Machines are shared and noisy: every figure here is the median of several
repeats, and each comparison is between figures of one run. Step times are
steady-state times (first to last step of a `fit` call; `_StepClock`).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from adversarial import config as config_lib
from adversarial import data as data_lib
from adversarial import evaluation
from adversarial import networks
from adversarial import optim
from adversarial import train_lib


class KerasExampleGAN(keras.Model):
  """The baseline: the Keras example's `train_step`, unchanged in shape.

  D is trained on one batch that concatenates G's samples (label 1) and real
  images (label 0); then G is trained through D with "misleading" labels on
  fresh samples. Noise from `keras.random.normal`; no XLA.
  """

  def __init__(self, generator, discriminator, latent_dim):
    super().__init__()
    self.generator = generator
    self.discriminator = discriminator
    self.latent_dim = latent_dim
    self.seed_generator = keras.random.SeedGenerator(1337)

  def compile(self, d_optimizer, g_optimizer, loss_fn):
    super().compile()
    self.d_optimizer = d_optimizer
    self.g_optimizer = g_optimizer
    self.loss_fn = loss_fn

  def train_step(self, real_images):
    batch_size = tf.shape(real_images)[0]
    random_latent_vectors = keras.random.normal(
        shape=(batch_size, self.latent_dim), seed=self.seed_generator)
    generated_images = self.generator(random_latent_vectors)
    combined_images = tf.concat([generated_images, real_images], axis=0)
    labels = tf.concat([tf.ones((batch_size, 1)), tf.zeros((batch_size, 1))],
                       axis=0)
    with tf.GradientTape() as tape:
      predictions = self.discriminator(combined_images)
      d_loss = self.loss_fn(labels, predictions)
    grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
    self.d_optimizer.apply_gradients(
        zip(grads, self.discriminator.trainable_weights))
    random_latent_vectors = keras.random.normal(
        shape=(batch_size, self.latent_dim), seed=self.seed_generator)
    misleading_labels = tf.zeros((batch_size, 1))
    with tf.GradientTape() as tape:
      predictions = self.discriminator(self.generator(random_latent_vectors))
      g_loss = self.loss_fn(misleading_labels, predictions)
    grads = tape.gradient(g_loss, self.generator.trainable_weights)
    self.g_optimizer.apply_gradients(
        zip(grads, self.generator.trainable_weights))
    return {"d_loss": d_loss, "g_loss": g_loss}


def dense_flops(model: keras.Model) -> int:
  """Multiply-adds x 2 of one example's forward pass through the Dense,
  Maxout and convolution layers of `model`."""
  total = 0
  for layer in model.layers:
    for w in layer.weights:
      if w.name != "kernel" and not w.path.endswith("kernel"):
        continue
      shape = w.shape
      if len(shape) == 2:
        total += 2 * shape[0] * shape[1]
      elif len(shape) == 4:
        out_hw = np.prod(layer.output.shape[1:3])
        if isinstance(layer, keras.layers.Conv2DTranspose):
          out_hw = np.prod(layer.input.shape[1:3])
        total += 2 * int(out_hw) * int(np.prod(shape))
  return int(total)


def step_flops(config, generator, discriminator, batch_size: int) -> int:
  """FLOPs of one training step, counting a backward pass as twice its
  forward pass.

  simultaneous: G forward and backward (3g), D forward and backward on the
    real and the fake batch (6d), and the fake batch's input gradient for G
    (2d): 3g + 8d per example.
  alternating (k = 1), and the Keras example: G forward for D's step (g), D
    forward and backward on both batches (6d); G forward and backward (3g)
    through D's forward and input gradient (3d): 4g + 9d.
  """
  g, d = dense_flops(generator), dense_flops(discriminator)
  if config.update == "simultaneous":
    return batch_size * (3 * g + 8 * d)
  return batch_size * (4 * g + 9 * d)


def matmul_peak(n: int = 1536, repeats: int = 5) -> float:
  """FLOP/s of a float32 [n, n] x [n, n] matmul chain, the machine's reach."""
  a = tf.random.stateless_uniform([n, n], [1, 2])
  b = tf.random.stateless_uniform([n, n], [3, 4])

  @tf.function
  def chain(a, b):
    for _ in range(8):
      a = tf.matmul(a, b) * (1.0 / n)
    return a

  chain(a, b).numpy()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    chain(a, b).numpy()
    times.append(time.perf_counter() - start)
  return 8 * 2 * n**3 / statistics.median(times)


class _StepClock(keras.callbacks.Callback):
  """The time at the end of every training step of one `fit` call."""

  def on_train_begin(self, logs=None):
    self.ends = []

  def on_train_batch_end(self, batch, logs=None):
    self.ends.append(time.perf_counter())

  def seconds_per_step(self) -> float:
    """Steady-state seconds per step: from the end of the first step to the
    end of the last, so neither the set-up of `fit` nor its tear-down
    counts. The tear-down can wait seconds for tf.data's autotuning thread
    (a call often ends exactly 2.55 s after its iterator was made), which
    would swamp a short call and means nothing for a long run."""
    return (self.ends[-1] - self.ends[0]) / (len(self.ends) - 1)


def _time_interleaved(models: dict, batches: np.ndarray, steps: int,
                      repeats: int) -> dict:
  """Median steady-state seconds per step of `fit` for each model, timed in
  round-robin rounds so that a slow spell of a shared machine falls on every
  variant alike."""
  if steps < 2:
    raise ValueError(f"steps={steps} is not accepted: expected at least 2 "
                     f"timed steps per round.")
  ds = tf.data.Dataset.from_tensor_slices(batches).repeat()
  for model in models.values():
    model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)  # trace, compile
  times = {name: [] for name in models}
  clock = _StepClock()
  for _ in range(repeats):
    for name, model in models.items():
      model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0,
                callbacks=[clock])
      times[name].append(clock.seconds_per_step())
  return {name: statistics.median(t) for name, t in times.items()}


def _peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_model(name, config, image_shape, steps, repeats) -> list[dict]:
  """Rows for one model: each update rule with XLA on and off, and the
  baseline."""
  batch = config.batch_size
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(8, batch) + tuple(image_shape)).astype(
      np.float32)
  if config.g_output == "tanh":
    images = images * 2 - 1
  models, flops = {}, {}
  for update in ("simultaneous", "alternating"):
    for jit in (True, False):
      cfg = config.override(update=update, jit_compile=jit, k=1)
      variant = f"{update}{' +XLA' if jit else ''}"
      models[variant] = train_lib.build_model(cfg, image_shape, None,
                                              steps=500)
      flops[variant] = step_flops(cfg, models[variant].generator,
                                  models[variant].discriminator, batch)
  cfg = config.override(update="alternating")
  generator, discriminator = networks.build_networks(cfg, image_shape)
  baseline = KerasExampleGAN(generator, discriminator, config.latent_dim)
  baseline.compile(
      d_optimizer=optim.make_optimizer(cfg, 500, "d"),
      g_optimizer=optim.make_optimizer(cfg, 500, "g"),
      loss_fn=keras.losses.BinaryCrossentropy(from_logits=True))
  models["baseline (Keras example)"] = baseline
  # The example runs G twice and D on 2m then m images, as alternating does.
  flops["baseline (Keras example)"] = step_flops(cfg, generator,
                                                 discriminator, batch)
  seconds = _time_interleaved(models, images, steps, repeats)
  return [dict(model=name, variant=variant,
               ms_per_step=1e3 * seconds[variant],
               steps_per_s=1 / seconds[variant],
               images_per_s=batch / seconds[variant], flops=flops[variant],
               peak_rss_mb=_peak_rss_mb())
          for variant in models]


def bench_pipeline(config, batches: int = 200) -> dict:
  """Images per second of the training input pipeline alone (MNIST)."""
  data = data_lib.load_array(config, config.train_split)
  ds = data_lib.train_dataset(config.override(epochs=1), data)
  it = iter(ds)
  next(it)
  start = time.perf_counter()
  for _ in range(batches):
    next(it)
  seconds = time.perf_counter() - start
  return dict(batches=batches, images_per_s=batches * config.batch_size /
              seconds)


def bench_export(config, image_shape) -> dict:
  """Latency at batch 1 and throughput at batch 1,000 of `serving_default`
  of an exported generator (a freshly initialised paper model)."""
  import export
  with tempfile.TemporaryDirectory() as tmp:
    workdir = os.path.join(tmp, "run")
    os.makedirs(os.path.join(workdir, "checkpoints"))
    model = train_lib.build_model(config, image_shape, None, steps=500)
    model.save_weights(os.path.join(workdir, "checkpoints", "w.weights.h5"))
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json())
    path = export.export_generator(
        workdir, os.path.join(tmp, "serving"),
        checkpoint=os.path.join(workdir, "checkpoints", "w.weights.h5"))
    fn = tf.saved_model.load(path).signatures["serving_default"]
    z1 = tf.zeros([1, config.latent_dim])
    z1000 = tf.zeros([1000, config.latent_dim])
    fn(z=z1), fn(z=z1000)
    lat = []
    for _ in range(50):
      start = time.perf_counter()
      fn(z=z1)["images"].numpy()
      lat.append(time.perf_counter() - start)
    thr = []
    for _ in range(5):
      start = time.perf_counter()
      fn(z=z1000)["images"].numpy()
      thr.append(time.perf_counter() - start)
  return dict(batch1_ms=1e3 * statistics.median(lat),
              batch1000_images_per_s=1000 / statistics.median(thr))


def plain_numpy_parzen(x, mu, sigma, batch_size=10):
  """The authors' formula as a direct port: a [batch, N, d] tensor per
  batch of x."""
  out = []
  for i in range(0, len(x), batch_size):
    a = (x[i:i + batch_size, None, :] - mu[None, :, :]) / sigma
    e = -0.5 * (a**2).sum(2)
    m = e.max(1, keepdims=True)
    out.append(m[:, 0] + np.log(np.exp(e - m).mean(1)))
  return np.concatenate(out) - mu.shape[1] * np.log(sigma * np.sqrt(2 * np.pi))


def bench_parzen(num_samples=10_000, num_test=10_000, num_val=1_000,
                 plain_points=100) -> dict:
  """The full paper evaluation (10 sigmas on validation, one on test) with
  the package's estimator, against the plain NumPy port timed on
  `plain_points` test points and scaled to the same work."""
  rng = np.random.default_rng(0)
  samples = rng.uniform(size=(num_samples, 784)).astype(np.float32)
  val = rng.uniform(size=(num_val, 784)).astype(np.float32)
  test = rng.uniform(size=(num_test, 784)).astype(np.float32)
  start = time.perf_counter()
  evaluation.parzen_estimate(samples, val, test)
  ours = time.perf_counter() - start
  start = time.perf_counter()
  plain_numpy_parzen(test[:plain_points].astype(np.float64),
                     samples.astype(np.float64), 0.2)
  per_point_sigma = (time.perf_counter() - start) / plain_points
  plain = per_point_sigma * (num_val * 10 + num_test)
  return dict(ours_s=ours, plain_numpy_s_estimated=plain,
              speedup=plain / ours)


def run_all(steps: int = 60, repeats: int = 5, models=("mlp", "conv"),
            manual_dir=None, data_dir=None, skip=()) -> dict:
  paper = config_lib.PAPER_MNIST.override(tfds_manual_dir=manual_dir,
                                          tfds_data_dir=data_dir)
  peak = matmul_peak()
  rows = []
  if "mlp" in models:
    rows += bench_model("paper MNIST MLP", paper, (28, 28, 1), steps, repeats)
  if "conv" in models:
    conv = config_lib.get_preset("cifar10_conv")
    rows += bench_model("conv 32x32x3", conv, (32, 32, 3), max(steps // 3, 5),
                        repeats)
  for row in rows:
    row["gflops_per_s"] = row["flops"] * row["steps_per_s"] / 1e9
    row["of_matmul_peak"] = row["gflops_per_s"] * 1e9 / peak
  result = {"device": _device(), "matmul_peak_gflops": peak / 1e9,
            "rows": rows}
  for name in {r["model"] for r in rows}:
    mine = [r for r in rows if r["model"] == name]
    base = next(r for r in mine if r["variant"].startswith("baseline"))
    default = next(r for r in mine if r["variant"] == "simultaneous +XLA")
    result.setdefault("speedup_over_baseline", {})[name] = (
        default["steps_per_s"] / base["steps_per_s"])
  if "pipeline" not in skip:
    result["input_pipeline"] = bench_pipeline(paper)
  if "export" not in skip:
    result["export_sampling"] = bench_export(paper, (28, 28, 1))
  if "parzen" not in skip:
    result["parzen"] = bench_parzen()
  return result


def _device() -> str:
  gpus = tf.config.list_physical_devices("GPU")
  if gpus:
    details = tf.config.experimental.get_device_details(gpus[0])
    return details.get("device_name", "GPU")
  return f"CPU ({os.cpu_count()} cores visible)"


def format_table(result: dict) -> str:
  lines = [f"device: {result['device']}; float32 matmul peak "
           f"{result['matmul_peak_gflops']:.1f} GFLOP/s", "",
           f"{'model':<18} {'variant':<26} {'ms/step':>8} {'steps/s':>8} "
           f"{'images/s':>9} {'GFLOP/s':>8} {'of peak':>8} {'RSS MB':>7}"]
  for r in result["rows"]:
    lines.append(
        f"{r['model']:<18} {r['variant']:<26} {r['ms_per_step']:8.1f} "
        f"{r['steps_per_s']:8.1f} {r['images_per_s']:9.0f} "
        f"{r['gflops_per_s']:8.1f} {100 * r['of_matmul_peak']:7.0f}% "
        f"{r['peak_rss_mb']:7.0f}")
  lines.append("")
  for name, s in result.get("speedup_over_baseline", {}).items():
    lines.append(f"speed-up of the default step (simultaneous +XLA) over the "
                 f"baseline, {name}: {s:.2f}x")
  if "input_pipeline" in result:
    lines.append(f"input pipeline alone: "
                 f"{result['input_pipeline']['images_per_s']:.0f} images/s")
  if "export_sampling" in result:
    e = result["export_sampling"]
    lines.append(f"exported SavedModel: batch 1 {e['batch1_ms']:.2f} ms, "
                 f"batch 1000 {e['batch1000_images_per_s']:.0f} images/s")
  if "parzen" in result:
    p = result["parzen"]
    lines.append(f"Parzen evaluation (10,000 samples, 10 sigmas on 1,000 "
                 f"validation + 10,000 test): {p['ours_s']:.1f} s; plain "
                 f"NumPy port (timed on 100 points, scaled): "
                 f"{p['plain_numpy_s_estimated']:.0f} s "
                 f"({p['speedup']:.0f}x)")
  return "\n".join(lines)


def main(argv):
  from absl import flags
  del argv
  f = flags.FLAGS
  result = run_all(
      steps=f.steps, repeats=f.repeats, models=tuple(f.models),
      manual_dir=(f.tfds_manual_dir or
                  os.environ.get("ADVERSARIAL_TFDS_MANUAL_DIR")),
      data_dir=(f.tfds_data_dir or os.environ.get("ADVERSARIAL_TFDS_DATA_DIR")),
      skip=tuple(f.skip))
  if f.json:
    json.dump(result, sys.stdout, indent=2)
    print()
  else:
    print(format_table(result))


# Flags are defined only when run as a program, so importing the module
# defines none.
if __name__ == "__main__":
  from absl import app
  from absl import flags
  flags.DEFINE_integer("steps", 60, "Timed steps per repeat (MLP).")
  flags.DEFINE_integer("repeats", 5, "Repeats; the median is reported.")
  flags.DEFINE_list("models", ["mlp", "conv"], "mlp, conv.")
  flags.DEFINE_list("skip", [], "Parts to skip: pipeline, export, parzen.")
  flags.DEFINE_bool("json", False, "Print JSON instead of a table.")
  flags.DEFINE_string("tfds_manual_dir", None, "TFDS manual directory.")
  flags.DEFINE_string("tfds_data_dir", None, "TFDS data_dir.")
  app.run(main)
