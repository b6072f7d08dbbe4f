r"""Benchmarks the training step, the input pipeline, sampling from an
export and the Parzen evaluation, against baselines measured in the same run.

Usage:

  python -m adversarial.bench [--steps=150] [--json] [--models=mlp,conv]
      [--precisions=float32,mixed_bfloat16] [--tfds_manual_dir=DIR]

For the paper's MNIST model at batch 100 (and the convolutional pair), it
times the training step for each update rule with XLA on and off, in each
precision asked for (float32 alone on a CPU unless told; float32 and both
mixed policies on a GPU), the default step also with one step a call into
TensorFlow (the package runs `Config.steps_per_execution` steps a call, as
one XLA program), and a baseline: the same networks trained by a
plain `train_step` written the way the Keras example "GAN overriding
`Model.train_step`" writes it (real and fake images concatenated into one D
batch, G run twice, float32, no XLA). It prints the speed-up over that
baseline, and the arithmetic rate reached (from the networks' FLOP count)
against a matmul peak, in the row's compute dtype, measured in the same run.

Machines are shared and noisy: every figure here is the median of several
repeats, and each comparison is between figures of one run. Step times are
steady-state times (from the end of a `fit` call's first call of its
train function to the end of its last; `_StepClock`).
"""

from __future__ import annotations

import json
import os
import re
import resource
import statistics
import sys
import tempfile
import time
from typing import Optional

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
    # No XLA, as the baseline is meant to be. Keras's default ("auto")
    # turns XLA on wherever a GPU is visible, which would make the baseline
    # on a GPU a different program from the one on a CPU.
    super().compile(jit_compile=False)
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


def layer_flops(model: keras.Model) -> list[int]:
  """Multiply-adds x 2 of one example's forward pass through each Dense,
  Maxout and convolution layer of `model`, in the order the layers run."""
  flops = []
  for layer in model.layers:
    for w in layer.weights:
      if w.name != "kernel" and not w.path.endswith("kernel"):
        continue
      shape = w.shape
      if len(shape) == 2:
        flops.append(2 * shape[0] * shape[1])
      elif len(shape) == 4:
        out_hw = np.prod(layer.output.shape[1:3])
        if isinstance(layer, keras.layers.Conv2DTranspose):
          out_hw = np.prod(layer.input.shape[1:3])
        flops.append(2 * int(out_hw) * int(np.prod(shape)))
  return [int(f) for f in flops]


def dense_flops(model: keras.Model) -> int:
  """Multiply-adds x 2 of one example's forward pass through the Dense,
  Maxout and convolution layers of `model`."""
  return sum(layer_flops(model))


def step_flops(config, generator, discriminator, batch_size: int) -> int:
  """FLOPs of the matmuls and convolutions one training step needs.

  Each layer costs its forward pass (f), its weight gradient (f) and, where
  a gradient flows on below it, its input gradient (f). Below a net's first
  layer none does unless G's loss goes on into G: with g and d the nets'
  forward FLOPs and g1, d1 their first layers', a net trained on its own
  input costs 3f - f1, and D on G's images in G's step 2d (forward and every
  input gradient).

  simultaneous: G (3g - g1); D on real images (3d - d1); D on G's images for
    D's gradient (3d - d1) and its input gradients again for G's loss, which
    sends another gradient back (d): 3g - g1 + 7d - 2d1 per example.
  alternating: per D step, G forward (g) and D on both batches (6d - 2d1);
    then G (3g - g1) through D (2d). With k = 1, as in the Keras example:
    4g - g1 + 8d - 2d1 per example.

  These are the dot FLOPs in XLA's optimised HLO of the step (a test checks
  it). Counting every backward pass as twice its forward pass (3g + 8d,
  4g + 9d) would put the paper's MLP 23% and 18% higher.
  """
  gl, dl = layer_flops(generator), layer_flops(discriminator)
  g, g1, d, d1 = sum(gl), gl[0], sum(dl), dl[0]
  if config.update == "simultaneous":
    return batch_size * (3 * g - g1 + 7 * d - 2 * d1)
  # A batch of k minibatches of m: one D step on each, one G step on m.
  k = config.k
  return batch_size // k * (k * (g + 6 * d - 2 * d1) + 3 * g - g1 + 2 * d)


def matmul_size() -> int:
  """The side of the matmul-peak chain: 1536 on a CPU (about 0.2 s a chain
  in float32 on two cores), 8192 on a GPU, where a 1536 chain is bound by
  kernel launches and the wait for its result rather than by arithmetic
  (on an H200 it ran at 14-17 TFLOP/s in float32 and 23-31 in 16 bits)."""
  return 8192 if tf.config.list_physical_devices("GPU") else 1536


def matmul_peak(n: Optional[int] = None, repeats: int = 5,
                dtype="float32") -> float:
  """FLOP/s of an [n, n] x [n, n] matmul chain in `dtype`, the machine's
  reach at that precision; n defaults to `matmul_size()`."""
  n = n or matmul_size()
  a = tf.cast(tf.random.stateless_uniform([n, n], [1, 2]), dtype)
  b = tf.cast(tf.random.stateless_uniform([n, n], [3, 4]), dtype)

  @tf.function
  def chain(a, b):
    for _ in range(8):
      a = tf.matmul(a, b) * (1.0 / n)
    # One number back to the host: the chain's end without an [n, n] copy.
    return a[0, 0]

  return 8 * 2 * n**3 / _median_seconds(lambda: chain(a, b).numpy(), repeats)


def _median_seconds(fn, repeats: int) -> float:
  """Median wall-clock seconds of `fn()` over `repeats` calls, after one
  call that traces, compiles and warms it."""
  fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


class _StepClock(keras.callbacks.Callback):
  """The time at the end of every call of one `fit` call's train function,
  and the index of the last step it ran (Keras reports one batch end per
  call of `steps_per_execution` steps)."""

  def on_train_begin(self, logs=None):
    self.ends = []

  def on_train_batch_end(self, batch, logs=None):
    self.ends.append((batch, time.perf_counter()))

  def seconds_per_step(self) -> float:
    """Steady-state seconds per step: from the end of the first call to the
    end of the last, over the steps between, so neither the set-up of `fit`
    nor its tear-down counts. The tear-down can wait seconds for tf.data's
    autotuning thread (a call often ends exactly 2.55 s after its iterator
    was made), which would swamp a short call and means nothing for a long
    run."""
    (first, start), (last, end) = self.ends[0], self.ends[-1]
    return (end - start) / (last - first)


def _time_interleaved(models: dict, batches: np.ndarray, steps: int,
                      repeats: int) -> dict:
  """Median steady-state seconds per step of `fit` for each model, timed in
  round-robin rounds so that a slow spell of a shared machine falls on every
  variant alike. Each round runs `steps` steps of each model, rounded up to
  whole calls of its `steps_per_execution` and to at least two calls."""
  if steps < 2:
    raise ValueError(f"steps={steps} is not accepted: expected at least 2 "
                     f"timed steps per round.")
  ds = tf.data.Dataset.from_tensor_slices(batches).repeat()

  def whole_calls(model, steps):
    per_call = model.steps_per_execution
    return max(2, -(-steps // per_call)) * per_call

  for model in models.values():
    # Trace and compile (every call of a model runs the same programs).
    model.fit(ds, steps_per_epoch=whole_calls(model, 3), epochs=1, verbose=0)
  times = {name: [] for name in models}
  clock = _StepClock()
  for _ in range(repeats):
    for name, model in models.items():
      model.fit(ds, steps_per_epoch=whole_calls(model, steps), epochs=1,
                verbose=0, callbacks=[clock])
      times[name].append(clock.seconds_per_step())
  return {name: statistics.median(t) for name, t in times.items()}


def _peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _gpu_memory(reset: bool = False):
  """Peak bytes allocated on the first GPU since the last reset, in MiB;
  None without a GPU."""
  if not tf.config.list_physical_devices("GPU"):
    return None
  if reset:
    tf.config.experimental.reset_memory_stats("GPU:0")
    return None
  return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20


def compute_dtype(precision: str) -> str:
  """The dtype the nets' matmuls run in under a `Config.precision`."""
  return keras.DTypePolicy(precision).compute_dtype


def default_precisions() -> tuple:
  """float32 alone on a CPU; float32 and both mixed policies on a GPU, where
  16-bit matmuls run on tensor cores."""
  if tf.config.list_physical_devices("GPU"):
    return ("float32", "mixed_float16", "mixed_bfloat16")
  return ("float32",)


def bench_model(name, config, image_shape, steps, repeats,
                precisions=("float32",)) -> list[dict]:
  """Rows for one model: each update rule with XLA on and off in each of
  `precisions`, and the baseline (float32, as the Keras example is)."""
  batch = config.batch_size
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(8, batch) + tuple(image_shape)).astype(
      np.float32)
  if config.g_output == "tanh":
    images = images * 2 - 1
  _gpu_memory(reset=True)
  models, flops, precision_of = {}, {}, {}
  for precision in precisions:
    for update in ("simultaneous", "alternating"):
      for jit in (True, False):
        cfg = config.override(update=update, jit_compile=jit, k=1,
                              precision=precision)
        variant = _variant(update, jit, precision)
        models[variant] = train_lib.build_model(cfg, image_shape, None,
                                                steps=500)
        flops[variant] = step_flops(cfg, models[variant].generator,
                                    models[variant].discriminator, batch)
        precision_of[variant] = precision
        if (precision == "float32" and update == "simultaneous" and jit and
            models[variant].steps_per_execution > 1):
          # The default step with one step a call, as Keras's default runs
          # it: one XLA program launched per step.
          single = variant + " 1 step/call"
          models[single] = train_lib.build_model(
              cfg.override(steps_per_execution=1), image_shape, None,
              steps=500)
          flops[single], precision_of[single] = flops[variant], precision
  cfg = config.override(update="alternating", precision="float32")
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
  precision_of["baseline (Keras example)"] = "float32"
  seconds = _time_interleaved(models, images, steps, repeats)
  return [dict(model=name, variant=variant, precision=precision_of[variant],
               ms_per_step=1e3 * seconds[variant],
               steps_per_s=1 / seconds[variant],
               images_per_s=batch / seconds[variant], flops=flops[variant],
               peak_rss_mb=_peak_rss_mb(), peak_gpu_mb=_gpu_memory())
          for variant in models]


def _variant(update: str, jit: bool, precision: str) -> str:
  """A row's name: 'simultaneous +XLA', 'alternating bf16', ..."""
  short = {"float32": "", "mixed_float16": " fp16",
           "mixed_bfloat16": " bf16"}[precision]
  return f"{update}{' +XLA' if jit else ''}{short}"


# An instruction that multiplies matrices: a `dot`, or on a GPU, where XLA
# hands most dots to cuBLAS, a custom call whose first two operands are the
# dot's and whose backend config holds its dimension numbers (its output
# may be a tuple: the product, then cuBLAS's workspace), or a oneDNN matmul
# call (its first two operands, then perhaps a bias or an addend).
# Operands may be printed with their shapes ("f32[100,784]{1,0} %p0").
_OPERAND = r"(?:\w+\[[\d,]*\]\S* )?%([\w.\-]+)"
_MATMUL = re.compile(r"= \(?\w+\[([\d,]*)\][^=\n]*? (?:dot|custom-call)\("
                     + _OPERAND + ", " + _OPERAND)
_SHAPE = re.compile(r"%([\w.\-]+) = \w+\[([\d,]*)\]")


def _dims(text: str) -> list[int]:
  return [int(v) for v in re.findall(r"\d+", text)]


def _dimension_numbers(line: str, side: str, kind: str) -> list[int]:
  """`{side}_{kind}_dims={...}` of a dot, or the same list in a cuBLAS
  call's backend config; [] where there is none (no batch dimensions)."""
  m = (re.search(side + "_" + kind + r"_dims=\{([\d,]*)\}", line) or
       re.search(f'"{side}_{kind}_dimensions":' + r"\[([^\]]*)\]", line))
  return _dims(m.group(1)) if m else []


def _onednn_dimension_numbers(line: str, lhs: list, rhs: list) -> dict:
  """The dimension numbers of a oneDNN matmul call (XLA's CPU backend of
  some TensorFlow releases emits these in place of dots): a matrix product
  of the last two dimensions, each operand transposed where its config
  says, batched over the dimensions before them."""
  def transposed(name):
    m = re.search(f'"{name}":(true|false)', line)
    return m is not None and m.group(1) == "true"
  lhs_rank, rhs_rank = len(lhs), len(rhs)
  return dict(
      lhs_batch=list(range(lhs_rank - 2)),
      rhs_batch=list(range(rhs_rank - 2)),
      lhs_contracting=[lhs_rank - (2 if transposed("transpose_a") else 1)],
      rhs_contracting=[rhs_rank - (1 if transposed("transpose_b") else 2)])


def hlo_dots(hlo: str) -> list[dict]:
  """Every dot of an HLO module's text, `dot` instructions, cuBLAS calls and
  oneDNN matmul calls alike: the operands' shapes, their batch and
  contracted dimensions and the dot's FLOPs (2 x multiply-adds). A GPU's
  HLO splits some dots into batches along the contraction (and may pad
  it), so its FLOPs can exceed the network's by the padding."""
  shapes = {m.group(1): _dims(m.group(2)) for m in _SHAPE.finditer(hlo)}
  dots = []
  for line in hlo.splitlines():
    onednn = 'custom_call_target="__onednn$matmul"' in line
    if (" dot(" not in line and not onednn and
        'custom_call_target="__cublas$' not in line):
      continue
    m = _MATMUL.search(line)
    if m is None:
      raise ValueError(f"an HLO line with a dot that hlo_dots cannot read: "
                       f"{line.strip()[:200]!r}")
    lhs, rhs = shapes[m.group(2)], shapes[m.group(3)]
    dot = dict(lhs=lhs, rhs=rhs)
    if onednn:
      dot.update(_onednn_dimension_numbers(line, lhs, rhs))
    else:
      for side in ("lhs", "rhs"):
        for kind in ("batch", "contracting"):
          dot[f"{side}_{kind}"] = _dimension_numbers(line, side, kind)
    dot["flops"] = 2 * int(np.prod(_dims(m.group(1)))) * int(
        np.prod([lhs[i] for i in dot["lhs_contracting"]]))
    dots.append(dot)
  return dots


def einsum_equation(dot: dict) -> str:
  """The `tf.einsum` equation of a dot of `hlo_dots`: batch and contracted
  dimensions share a letter; the output is the batch dimensions, then the
  lhs's free dimensions, then the rhs's, as in HLO."""
  letters = iter("abcdefghijklmnop")
  lhs_l = [next(letters) for _ in dot["lhs"]]
  rhs_l = [next(letters) for _ in dot["rhs"]]
  for shared in ("batch", "contracting"):
    for i, j in zip(dot[f"lhs_{shared}"], dot[f"rhs_{shared}"]):
      rhs_l[j] = lhs_l[i]
  lhs_bound = dot["lhs_batch"] + dot["lhs_contracting"]
  rhs_bound = dot["rhs_batch"] + dot["rhs_contracting"]
  out = ([lhs_l[i] for i in dot["lhs_batch"]] +
         [c for i, c in enumerate(lhs_l) if i not in lhs_bound] +
         [c for j, c in enumerate(rhs_l) if j not in rhs_bound])
  return f"{''.join(lhs_l)},{''.join(rhs_l)}->{''.join(out)}"


def time_dot(dot: dict, repeats: int = 5, inner: int = 50) -> float:
  """Median seconds of one dot of `hlo_dots`, compiled alone by XLA (run
  `inner` times inside one call, so a call's dispatch is spread)."""
  equation = einsum_equation(dot)
  a = tf.random.stateless_uniform(dot["lhs"], [1, 2])
  b = tf.random.stateless_uniform(dot["rhs"], [3, 4])

  scale_lhs = np.prod(dot["lhs"]) <= np.prod(dot["rhs"])

  @tf.function(jit_compile=True)
  def run(a, b):
    def body(i, out):
      # Scaling the smaller operand by the counter makes every round's dot
      # a new one; each round's result replaces the last, so nothing but
      # the dot and that scaling runs.
      c = tf.cast(i + 1, a.dtype)
      x, y = (a * c, b) if scale_lhs else (a, b * c)
      return i + 1, tf.einsum(equation, x, y)
    shape = tf.shape(tf.einsum(equation, a, b))
    return tf.while_loop(lambda i, _: i < inner, body,
                         (tf.constant(0), tf.zeros(shape)))[1]

  return _median_seconds(lambda: run(a, b).numpy(), repeats) / inner


def step_breakdown(config, image_shape, steps: int = 200,
                   repeats: int = 5) -> dict:
  """Where the default step's time goes (simultaneous update, XLA), in
  milliseconds per step: `fit`; the compiled `train_step` called from Python,
  one XLA program a step; `train_step` run `steps_per_execution` times in one
  XLA program (as `fit` runs it, without the input pipeline and `fit`'s
  loop); the forward and backward passes alone (no optimiser update, no
  metrics), as many times in one program; and the step's dots, each compiled
  and timed alone, summed."""
  config = config.override(update="simultaneous", jit_compile=True)
  batch = config.batch_size
  images = np.random.default_rng(0).uniform(
      size=(8, batch) + tuple(image_shape)).astype(np.float32)
  model = train_lib.build_model(config, image_shape, None, steps=500)
  fit_s = _time_interleaved({"fit": model}, images, steps, repeats)["fit"]
  n = model.steps_per_execution

  step = tf.function(model.train_step, jit_compile=True)
  x = tf.constant(images[0])

  def gradients(x):
    z = model.sample_noise(batch)
    with tf.GradientTape(persistent=True) as tape:
      fake = model.generator(z, training=True)
      real_logits = model.discriminator(x, training=True)
      fake_logits = model.discriminator(fake, training=True)
      d_loss = model._d_loss(real_logits, fake_logits)
      g_loss = model.g_loss_fn(fake_logits)
    grads = (tape.gradient(d_loss, model.discriminator.trainable_variables) +
             tape.gradient(g_loss, model.generator.trainable_variables))
    # One number that needs every gradient, so none is pruned.
    return tf.add_n([tf.reduce_sum(g) for g in grads])

  def logs_sum(x):
    return tf.add_n(list(model.train_step(x).values()))

  def in_one_program(fn):
    """fn(x) n times in one XLA program; each result feeds a running sum,
    so no run is pruned."""
    @tf.function(jit_compile=True, autograph=False)
    def run(x):
      return tf.while_loop(lambda i, _: i < n,
                           lambda i, total: (i + 1, total + fn(x)),
                           [tf.constant(0), tf.constant(0.0)])[1]
    return run

  def per_step(fn, runs_per_call=1):
    calls = max(1, steps // runs_per_call)

    def timed():
      for _ in range(calls):
        out = fn(x)
      tf.nest.map_structure(lambda t: t.numpy(), out)
    return _median_seconds(timed, repeats) / (calls * runs_per_call)

  dots = hlo_dots(step.experimental_get_compiler_ir(x)(stage="optimized_hlo"))
  dot_flops = sum(d["flops"] for d in dots)
  dots_s = sum(time_dot(d) for d in dots)
  return dict(fit_ms=1e3 * fit_s, steps_per_call=n,
              train_step_ms=1e3 * per_step(step),
              train_steps_in_one_program_ms=1e3 * per_step(
                  in_one_program(logs_sum), n),
              forward_backward_ms=1e3 * per_step(in_one_program(gradients), n),
              dots=len(dots), dot_flops=dot_flops, dots_alone_ms=1e3 * dots_s,
              dots_gflops_per_s=dot_flops / dots_s / 1e9)


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


MODELS = ("mlp", "conv")
PARTS = ("breakdown", "pipeline", "export", "parzen")


def check_flags(models, skip, precisions) -> None:
  """Raises `config.ConfigError` naming the first value the flags do not
  accept and what they do."""
  for name, values, accepted in (("models", models, MODELS),
                                 ("skip", skip, PARTS),
                                 ("precisions", precisions,
                                  config_lib.PRECISIONS)):
    for value in values:
      if value not in accepted:
        raise config_lib.ConfigError(
            f"--{name}={value} is not accepted: expected any of "
            f"{', '.join(accepted)}.")


def run_all(steps: int = 150, repeats: int = 5, models=MODELS,
            manual_dir=None, data_dir=None, skip=(),
            precisions=None) -> dict:
  precisions = tuple(precisions or default_precisions())
  check_flags(models, skip, precisions)
  paper = config_lib.PAPER_MNIST.override(tfds_manual_dir=manual_dir,
                                          tfds_data_dir=data_dir)
  if "pipeline" not in skip:
    # Data TFDS cannot prepare fails here, not after minutes of timing.
    data_lib.prepare(paper)
  # Each row's arithmetic rate is set against the peak of the dtype its
  # matmuls run in.
  peaks = {dtype: matmul_peak(dtype=dtype) for dtype in
           sorted({"float32"} | {compute_dtype(p) for p in precisions})}
  rows = []
  if "mlp" in models:
    rows += bench_model("paper MNIST MLP", paper, (28, 28, 1), steps, repeats,
                        precisions)
  if "conv" in models:
    conv = config_lib.get_preset("cifar10_conv")
    # Ten steps a call: rounds of three calls stay short at this model's
    # 0.1-0.2 s a step, and a call's own cost is small beside ten steps.
    rows += bench_model("conv 32x32x3", conv.override(steps_per_execution=10),
                        (32, 32, 3), max(steps // 5, 20), repeats, precisions)
  for row in rows:
    row["gflops_per_s"] = row["flops"] * row["steps_per_s"] / 1e9
    row["of_matmul_peak"] = (row["gflops_per_s"] * 1e9 /
                             peaks[compute_dtype(row["precision"])])
  result = {"device": _device(),
            "matmul_peak_gflops": {k: v / 1e9 for k, v in peaks.items()},
            "rows": rows}
  result.update(speedups(rows))
  if "mlp" in models and "breakdown" not in skip:
    result["breakdown"] = step_breakdown(paper, (28, 28, 1))
  if "pipeline" not in skip:
    result["input_pipeline"] = bench_pipeline(paper)
  if "export" not in skip:
    result["export_sampling"] = bench_export(paper, (28, 28, 1))
  if "parzen" not in skip:
    result["parzen"] = bench_parzen()
  return result


def speedups(rows) -> dict:
  """The default step (simultaneous +XLA) in each precision over the
  baseline of the same model: {"speedup_over_baseline": {model:
  {precision: x}}}."""
  out = {}
  for name in dict.fromkeys(r["model"] for r in rows):
    mine = [r for r in rows if r["model"] == name]
    base = next(r for r in mine if r["variant"].startswith("baseline"))
    for r in mine:
      if r["variant"] == _variant("simultaneous", True, r["precision"]):
        out.setdefault(name, {})[r["precision"]] = (r["steps_per_s"] /
                                                    base["steps_per_s"])
  return {"speedup_over_baseline": out}


def _device() -> str:
  gpus = tf.config.list_physical_devices("GPU")
  if gpus:
    details = tf.config.experimental.get_device_details(gpus[0])
    return details.get("device_name", "GPU")
  return f"CPU ({os.cpu_count()} cores visible)"


def format_table(result: dict) -> str:
  peaks = "; ".join(f"{dtype} matmul peak {gflops:.1f} GFLOP/s"
                    for dtype, gflops in result["matmul_peak_gflops"].items())
  lines = [f"device: {result['device']}; {peaks}", "",
           f"{'model':<18} {'variant':<30} {'ms/step':>8} {'steps/s':>8} "
           f"{'images/s':>9} {'GFLOP/s':>8} {'of peak':>8} {'RSS MB':>7}"]
  # Peak GPU memory of each model's rows (all its variants and the
  # baseline), where there is a GPU; RSS is the process's peak so far.
  gpu = any(r.get("peak_gpu_mb") is not None for r in result["rows"])
  if gpu:
    lines[-1] += f" {'GPU MB':>7}"
  for r in result["rows"]:
    lines.append(
        f"{r['model']:<18} {r['variant']:<30} {r['ms_per_step']:8.1f} "
        f"{r['steps_per_s']:8.1f} {r['images_per_s']:9.0f} "
        f"{r['gflops_per_s']:8.1f} {100 * r['of_matmul_peak']:7.0f}% "
        f"{r['peak_rss_mb']:7.0f}" +
        (f" {r['peak_gpu_mb']:7.0f}" if gpu else ""))
  lines.append("")
  for name, by_precision in result.get("speedup_over_baseline", {}).items():
    for precision, s in by_precision.items():
      lines.append(f"speed-up of the default step (simultaneous +XLA) over "
                   f"the baseline, {name}, {precision}: {s:.2f}x")
  if "breakdown" in result:
    b = result["breakdown"]
    lines.append(
        f"where the default step's time goes, paper MNIST MLP, float32, ms "
        f"per step: fit() {b['fit_ms']:.1f}; train_step, one program a step "
        f"{b['train_step_ms']:.1f}; train_step, {b['steps_per_call']} in one "
        f"program {b['train_steps_in_one_program_ms']:.1f}; forward and "
        f"backward alone, {b['steps_per_call']} in one program "
        f"{b['forward_backward_ms']:.1f}; its {b['dots']} dots "
        f"({b['dot_flops'] / 1e9:.2f} GFLOP), each compiled alone, "
        f"{b['dots_alone_ms']:.1f} ({b['dots_gflops_per_s']:.0f} GFLOP/s)")
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
  from absl import app
  from absl import flags
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from adversarial import cli
  f = flags.FLAGS
  dirs = cli.data_dirs(f["tfds_manual_dir"], f["tfds_data_dir"])
  # run_all checks the flags' values before it times anything.
  result = run_all(
      steps=f.steps, repeats=f.repeats, models=tuple(f.models),
      manual_dir=dirs.get("tfds_manual_dir"),
      data_dir=dirs.get("tfds_data_dir"),
      skip=tuple(f.skip), precisions=tuple(f.precisions) or None)
  if f.json:
    json.dump(result, sys.stdout, indent=2)
    print()
  else:
    print(format_table(result))


# Flags are defined only when run as a program, so importing the module
# defines none.
if __name__ == "__main__":
  from absl import flags
  from adversarial import cli
  flags.DEFINE_integer("steps", 150, "Steps per repeat (MLP; rounded up to "
                       "whole calls of steps_per_execution).", lower_bound=2)
  flags.DEFINE_integer("repeats", 5, "Repeats; the median is reported.",
                       lower_bound=1)
  flags.DEFINE_list("models", list(MODELS), "mlp, conv.")
  flags.DEFINE_list("skip", [], "Parts to skip: breakdown, pipeline, "
                    "export, parzen.")
  flags.DEFINE_list(
      "precisions", [], "Precisions of the package's steps: float32, "
      "mixed_float16, mixed_bfloat16. Default: float32 on a CPU, all three "
      "on a GPU. The baseline is float32.")
  flags.DEFINE_bool("json", False, "Print JSON instead of a table.")
  flags.DEFINE_string("tfds_manual_dir", None, "TFDS manual directory.")
  flags.DEFINE_string("tfds_data_dir", None, "TFDS data_dir.")
  cli.run(main)
