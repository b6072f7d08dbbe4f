import numpy as np
import pytest

from adversarial import bench
from adversarial import networks
from adversarial.config import PAPER_MNIST, get_preset

from conftest import run_module


def test_flop_counts_of_the_paper_pair():
  g, d = networks.build_networks(PAPER_MNIST, (28, 28, 1))
  assert bench.dense_flops(g) == 2 * (100 * 1200 + 1200 * 1200 + 1200 * 784)
  assert bench.dense_flops(d) == 2 * (784 * 1200 + 240 * 1200 + 240 * 1)


def test_conv_flops_count_every_output_position():
  config = get_preset("cifar10_conv").override(conv_filters=(8,))
  _, d = networks.build_networks(config, (32, 32, 3))
  # One 4x4x3 -> 8 conv at stride 2 (16 x 16 outputs), then 2048 -> 1.
  assert bench.dense_flops(d) == 2 * (16 * 16 * 4 * 4 * 3 * 8) + 2 * 2048


def test_plain_numpy_parzen_is_the_formula():
  from adversarial import evaluation
  rng = np.random.default_rng(0)
  x, mu = rng.uniform(size=(7, 20)), rng.uniform(size=(50, 20))
  np.testing.assert_allclose(
      bench.plain_numpy_parzen(x, mu, 0.3, batch_size=3),
      evaluation.parzen_log_likelihoods(x, mu, [0.3])[0], atol=1e-6)


def test_baseline_trains_both_nets():
  g, d = networks.build_networks(
      PAPER_MNIST.override(g_hidden=(8,), d_hidden=(4,), latent_dim=4),
      (28, 28, 1))
  import keras
  model = bench.KerasExampleGAN(g, d, 4)
  model.compile(keras.optimizers.SGD(0.1), keras.optimizers.SGD(0.1),
                keras.losses.BinaryCrossentropy(from_logits=True))
  before = [np.array(w) for w in model.weights]
  model.fit(np.random.default_rng(0).uniform(size=(16, 28, 28, 1)),
            batch_size=8, epochs=1, verbose=0)
  after = [np.array(w) for w in model.weights]
  assert all(not np.array_equal(a, b) for a, b in zip(before, after))


def test_step_clock_times_steady_steps_only(monkeypatch):
  ticks = iter([10.0, 10.5, 11.0, 11.5, 12.0])
  monkeypatch.setattr(bench.time, "perf_counter", lambda: next(ticks))
  clock = bench._StepClock()
  clock.on_train_begin()
  for step in range(5):
    clock.on_train_batch_end(step)
  # Four intervals of 0.5 s between five step ends; what came before the
  # first end or comes after the last is not counted.
  assert clock.seconds_per_step() == 0.5
  # Calls of 50 steps: Keras reports each call's last step.
  ticks = iter([10.0, 11.0, 12.0])
  clock.on_train_begin()
  for step in (49, 99, 149):
    clock.on_train_batch_end(step)
  assert clock.seconds_per_step() == 0.02


def test_interleaved_timing_needs_two_steps():
  with pytest.raises(ValueError, match="steps=1 is not accepted"):
    bench._time_interleaved({}, np.zeros((1, 2, 28, 28, 1), np.float32), 1, 1)


def test_baseline_runs_without_xla_where_keras_would_pick_it(monkeypatch):
  import keras
  # Keras's default jit_compile ("auto") picks XLA wherever a GPU is visible;
  # make it pick XLA here, as on a GPU machine.
  monkeypatch.setattr(keras.Model, "_resolve_auto_jit_compile",
                      lambda self: True)
  g, d = networks.build_networks(
      PAPER_MNIST.override(g_hidden=(8,), d_hidden=(4,), latent_dim=4),
      (28, 28, 1))
  plain = keras.Sequential([keras.layers.Dense(1)])
  plain.compile()
  assert plain.jit_compile is True
  model = bench.KerasExampleGAN(g, d, 4)
  model.compile(keras.optimizers.SGD(0.1), keras.optimizers.SGD(0.1),
                keras.losses.BinaryCrossentropy(from_logits=True))
  assert model.jit_compile is False


def test_matmul_peak_chain_is_sized_by_device(monkeypatch):
  import tensorflow as tf
  for gpus, size in (([], 1536), (["GPU:0"], 8192)):
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None, gpus=gpus: gpus if kind == "GPU"
                        else [])
    assert bench.matmul_size() == size
  monkeypatch.undo()
  # With no n given, the chain takes its size from matmul_size: eight
  # [n, n] x [n, n] matmuls of 2 n^3 FLOP each, in the median time.
  monkeypatch.setattr(bench, "matmul_size", lambda: 48)
  ends = []

  def median(fn, repeats):
    ends.append(float(fn()))
    return 0.5

  monkeypatch.setattr(bench, "_median_seconds", median)
  assert bench.matmul_peak() == 8 * 2 * 48**3 / 0.5
  assert len(ends) == 1 and np.isfinite(ends[0]) and ends[0] > 0


def test_bench_rows_for_each_precision(monkeypatch):
  import keras
  from adversarial import train_lib
  built = []
  build = train_lib.build_model

  def spy(config, *args, **kwargs):
    model = build(config, *args, **kwargs)
    built.append((config.precision, model))
    return model

  monkeypatch.setattr(train_lib, "build_model", spy)
  # Two steps a call, not the recipe's 50: the rows and the one-step twin
  # are the same, and ten models trace in half the time.
  tiny = PAPER_MNIST.override(g_hidden=(16,), d_hidden=(8,), d_pieces=2,
                              latent_dim=4, batch_size=4,
                              steps_per_execution=2)
  rows = bench.bench_model("tiny", tiny, (28, 28, 1), steps=2, repeats=1,
                           precisions=("float32", "mixed_bfloat16"))
  assert [(r["variant"], r["precision"]) for r in rows] == [
      ("simultaneous +XLA", "float32"),
      ("simultaneous +XLA 1 step/call", "float32"),
      ("simultaneous", "float32"),
      ("alternating +XLA", "float32"), ("alternating", "float32"),
      ("simultaneous +XLA bf16", "mixed_bfloat16"),
      ("simultaneous bf16", "mixed_bfloat16"),
      ("alternating +XLA bf16", "mixed_bfloat16"),
      ("alternating bf16", "mixed_bfloat16"),
      ("baseline (Keras example)", "float32")]
  assert all(r["ms_per_step"] > 0 and r["flops"] > 0 for r in rows)
  # Each model computes in its row's precision.
  for precision, model in built:
    dense = [l for l in model.generator.layers
             if isinstance(l, keras.layers.Dense)]
    assert dense[0].compute_dtype == bench.compute_dtype(precision)
  assert sorted({p for p, _ in built}) == ["float32", "mixed_bfloat16"]
  speedups = bench.speedups(rows)["speedup_over_baseline"]["tiny"]
  base = rows[-1]["steps_per_s"]
  assert speedups == {"float32": rows[0]["steps_per_s"] / base,
                      "mixed_bfloat16": rows[5]["steps_per_s"] / base}
  # The configuration's steps a call; its one-step-a-call twin and the
  # baseline run one.
  calls = {r["variant"]: m.steps_per_execution for (_, m), r in
           zip(built, rows)}
  assert calls["simultaneous +XLA"] == 2
  assert calls["simultaneous +XLA 1 step/call"] == 1


@pytest.mark.parametrize("update,k", [("simultaneous", 1), ("alternating", 1),
                                      ("alternating", 2), ("baseline", 1)])
def test_step_flops_are_the_dots_xla_runs(update, k):
  import keras
  import tensorflow as tf
  from adversarial import optim, train_lib
  config = PAPER_MNIST.override(update=update if update != "baseline"
                                else "alternating", k=k)
  if update == "baseline":
    g, d = networks.build_networks(config, (28, 28, 1))
    model = bench.KerasExampleGAN(g, d, config.latent_dim)
    model.compile(optim.make_optimizer(config, 10, "d"),
                  optim.make_optimizer(config, 10, "g"),
                  keras.losses.BinaryCrossentropy(from_logits=True))
  else:
    model = train_lib.build_model(config, (28, 28, 1), None, steps=10)
  step = tf.function(model.train_step, jit_compile=True)
  hlo = step.experimental_get_compiler_ir(tf.zeros([100, 28, 28, 1]))(
      stage="optimized_hlo")
  executed = sum(dot["flops"] for dot in bench.hlo_dots(hlo))
  assert executed > 0
  # D's one-unit output layer's gradients are not all dots in the HLO.
  np.testing.assert_allclose(
      bench.step_flops(config, model.generator, model.discriminator, 100),
      executed, rtol=1e-4)


def test_hlo_dots_reads_shapes_and_contractions():
  hlo = """
  %p0 = f32[100,784]{1,0} parameter(0)
  %p1 = f32[100,1200]{1,0} parameter(1)
  %w = f32[784,1200]{1,0} parameter(2)
  %dot.1 = f32[784,1200]{1,0} dot(%p0, %p1), lhs_contracting_dims={0}, rhs_contracting_dims={0}, metadata={}
  %MatMul.2 = f32[100,1200]{1,0} dot(%p0, %w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  """
  dots = bench.hlo_dots(hlo)
  assert [(d["lhs"], d["rhs"], d["lhs_contracting"], d["rhs_contracting"])
          for d in dots] == [([100, 784], [100, 1200], [0], [0]),
                             ([100, 784], [784, 1200], [1], [0])]
  assert [d["flops"] for d in dots] == [2 * 784 * 1200 * 100] * 2
  # Timed alone as einsums of the same contractions.
  assert [bench.einsum_equation(d) for d in dots] == ["ab,ad->bd",
                                                      "ab,bd->ad"]
  assert bench.time_dot(dots[0], repeats=1, inner=2) > 0


def test_hlo_dots_reads_a_gpus_split_dots_and_cublas_calls():
  # Lines of the paper step's optimised HLO on an H200 (metadata and tuning
  # configs cut): G's [100, 1200] x [1200, 1200] dot split into 4 batches
  # of 300 along the contraction, and a cuBLAS call (tuple output).
  hlo = (
      '%block_fusion.2 = f32[100,4,300]{2,1,0} fusion(%parameter_0.1, '
      '%parameter_1.1), kind=kCustom, calls=%Relu.1\n'
      '%block_fusion.3 = f32[4,300,1200]{2,1,0} fusion(%parameter_2), '
      'kind=kCustom, calls=%parameter_2\n'
      'ROOT %dot.16 = f32[4,100,1200]{2,1,0} dot(%block_fusion.2, '
      '%block_fusion.3), lhs_batch_dims={1}, lhs_contracting_dims={2}, '
      'rhs_batch_dims={0}, rhs_contracting_dims={1}, frontend_attributes='
      '{grad_x="false",grad_y="false"}\n'
      '%copy.5 = f32[1200,784]{1,0} copy(%arg6.1)\n'
      '%loop_multiply_fusion = f32[100,784]{1,0} fusion(%get-tuple-element.'
      '62, %gemm_fusion_MatMul_2.14, %arg7.1), kind=kInput\n'
      '%custom-call.2 = (f32[100,1200]{1,0}, s8[4076800]{0}) custom-call('
      '%loop_multiply_fusion, %copy.5), custom_call_target="__cublas$gemm", '
      'frontend_attributes={grad_x="true",grad_y="false"}, backend_config='
      '{"operation_queue_id":"0","wait_on_operation_queues":[],"gemm_backend'
      '_config":{"selected_algorithm":"-1","alpha_real":1,"beta":0,"dot_'
      'dimension_numbers":{"lhs_contracting_dimensions":["1"],"rhs_'
      'contracting_dimensions":["1"],"lhs_batch_dimensions":[],"rhs_batch_'
      'dimensions":[]},"alpha_imag":0,"epilogue":"DEFAULT"}}\n'
      '%custom-call.5 = f32[100,784]{1,0} custom-call(%copy.5, %copy.5), '
      'custom_call_target="SomethingElse"\n')
  dots = bench.hlo_dots(hlo)
  assert [(d["lhs"], d["rhs"], d["lhs_batch"], d["rhs_batch"],
           d["lhs_contracting"], d["rhs_contracting"]) for d in dots] == [
               ([100, 4, 300], [4, 300, 1200], [1], [0], [2], [1]),
               ([100, 784], [1200, 784], [], [], [1], [1])]
  # The split dot does the work of the whole [100, 1200] x [1200, 1200].
  assert [d["flops"] for d in dots] == [2 * 100 * 1200 * 1200,
                                        2 * 100 * 784 * 1200]
  assert [bench.einsum_equation(d) for d in dots] == ["abc,bcf->baf",
                                                      "ab,cb->ac"]
  assert bench.time_dot(dots[0], repeats=1, inner=2) > 0


def test_hlo_dots_reads_onednn_matmul_calls():
  # Lines of the paper step's optimised HLO on a CPU under TensorFlow 2.16,
  # whose XLA hands the dots to oneDNN (metadata cut): G's first layer with
  # its bias and ReLU fused, a gradient through W (transpose_b) and the
  # gradient of W (transpose_a) with an addend.
  config = ('backend_config={"outer_dimension_partitions":[],"onednn_matmul_'
            'config":{"transpose_a":%s,"transpose_b":%s,"fused_ops":[%s],'
            '"bias_broadcast":true,"alpha_typecast":0}}')
  hlo = "\n".join([
      "%z = f32[100,100]{1,0} parameter(0)",
      "%w = f32[100,1200]{1,0} parameter(1)",
      "%b = f32[1200]{0} parameter(2)",
      "%h = f32[100,1200]{1,0} parameter(3)",
      "%v = f32[240,1200]{1,0} parameter(4)",
      "%x = f32[100,240]{1,0} parameter(5)",
      "%c.1 = f32[100,1200]{1,0} custom-call(f32[100,100]{1,0} %z, "
      "f32[100,1200]{1,0} %w, f32[1200]{0} %b), custom_call_target="
      '"__onednn$matmul", ' + config % ("false", "false", '"BIAS","RELU"'),
      "%c.2 = f32[100,240]{1,0} custom-call(f32[100,1200]{1,0} %h, "
      "f32[240,1200]{1,0} %v), custom_call_target=\"__onednn$matmul\", "
      + config % ("false", "true", ""),
      "%c.3 = f32[240,1200]{1,0} custom-call(f32[100,240]{1,0} %x, "
      "f32[100,1200]{1,0} %h, f32[240,1200]{1,0} %v), custom_call_target="
      '"__onednn$matmul", ' + config % ("true", "false", '"SUM"'),
  ])
  dots = bench.hlo_dots(hlo)
  assert [(d["lhs"], d["rhs"], d["lhs_contracting"], d["rhs_contracting"])
          for d in dots] == [([100, 100], [100, 1200], [1], [0]),
                             ([100, 1200], [240, 1200], [1], [1]),
                             ([100, 240], [100, 1200], [0], [0])]
  assert [d["flops"] for d in dots] == [2 * 100 * 1200 * 100,
                                        2 * 100 * 240 * 1200,
                                        2 * 240 * 1200 * 100]
  assert [bench.einsum_equation(d) for d in dots] == ["ab,bd->ad",
                                                      "ab,cb->ac",
                                                      "ab,ad->bd"]


def test_hlo_dots_reads_operands_printed_with_shapes_and_refuses_the_rest():
  hlo = ("%a = f32[2,3]{1,0} parameter(0)\n%b = f32[3,4]{1,0} parameter(1)\n"
         "%d = f32[2,4]{1,0} dot(f32[2,3]{1,0} %a, f32[3,4]{1,0} %b), "
         "lhs_contracting_dims={1}, rhs_contracting_dims={0}\n")
  assert [(d["lhs"], d["rhs"], d["flops"]) for d in bench.hlo_dots(hlo)] == [
      ([2, 3], [3, 4], 2 * 2 * 4 * 3)]
  # A dot it cannot read is an error, not a dot left out of the count.
  with pytest.raises(ValueError, match="cannot read"):
    bench.hlo_dots(hlo + "%e = f32[2,4]{1,0} dot(%a)\n")


def _row(variant, precision, ms, gpu_mb=None):
  return dict(model="paper MNIST MLP", variant=variant, precision=precision,
              ms_per_step=ms, steps_per_s=1e3 / ms, images_per_s=1e5 / ms,
              flops=2.8e9, gflops_per_s=2.8e3 / ms, of_matmul_peak=0.5,
              peak_rss_mb=1000.0, peak_gpu_mb=gpu_mb)


def test_table_prints_speedups_per_precision_and_gpu_memory():
  rows = [_row("simultaneous +XLA", "float32", 20.0),
          _row("simultaneous +XLA fp16", "mixed_float16", 10.0),
          _row("baseline (Keras example)", "float32", 40.0)]
  result = {"device": "CPU", "matmul_peak_gflops": {"float32": 200.0},
            "rows": rows, **bench.speedups(rows)}
  table = bench.format_table(result)
  assert "paper MNIST MLP, float32: 2.00x" in table
  assert "paper MNIST MLP, mixed_float16: 4.00x" in table
  assert "GPU MB" not in table
  for r, mb in zip(rows, (512.0, 300.0, 700.0)):
    r["peak_gpu_mb"] = mb
  table = bench.format_table(result)
  assert "GPU MB" in table
  assert table.splitlines()[4].rstrip().endswith("300")


def test_step_breakdown_times_the_default_steps_parts():
  tiny = PAPER_MNIST.override(g_hidden=(32,), d_hidden=(16,), d_pieces=2,
                              latent_dim=8, batch_size=10,
                              steps_per_execution=5)
  b = bench.step_breakdown(tiny, (28, 28, 1), steps=2, repeats=1)
  assert all(b[k] > 0 for k in ("fit_ms", "train_step_ms",
                                "train_steps_in_one_program_ms",
                                "forward_backward_ms", "dots_alone_ms"))
  assert b["steps_per_call"] == 5
  # G: z -> 32 -> 784; D: 784 -> 16 x 2 -> 1, with the one-unit output's
  # gradients partly not dots (as in the HLO check above).
  g, d = networks.build_networks(tiny.override(update="simultaneous"),
                                 (28, 28, 1))
  np.testing.assert_allclose(
      b["dot_flops"],
      bench.step_flops(tiny.override(update="simultaneous"), g, d, 10),
      rtol=0.01)
  assert b["dots"] >= 12


@pytest.mark.parametrize("flag,value", [("models", "cnn"), ("skip", "export2"),
                                        ("precisions", "fp8")])
def test_bad_bench_flags_are_named(flag, value):
  from adversarial.config import ConfigError
  args = {"models": ["mlp"], "skip": [], "precisions": []}
  args[flag] = [value]
  with pytest.raises(ConfigError, match=f"--{flag}={value} is not accepted: "
                     "expected any of"):
    bench.check_flags(**args)
  args[flag] = []
  bench.check_flags(**args)


@pytest.mark.parametrize("flag,message", [
    ("--repeats=0", "flag --repeats=0: 0 is not a positive integer"),
    ("--steps=1", "flag --steps=1: 1 is not integer >= 2"),
])
def test_bench_counts_are_bounded_when_the_flags_are_read(flag, message):
  proc = run_module("adversarial.bench", [flag])
  assert proc.returncode != 0
  assert message in proc.stderr
  assert "Traceback" not in proc.stderr


def test_data_that_cannot_be_prepared_fails_before_anything_is_timed(
    tmp_path, monkeypatch, wrong_mnist_files):
  from adversarial.data import DataUnavailableError
  manual = wrong_mnist_files

  def timed(*args, **kwargs):
    raise AssertionError("timing started")

  monkeypatch.setattr(bench, "matmul_peak", timed)
  with pytest.raises(DataUnavailableError, match="could not prepare"):
    bench.run_all(manual_dir=str(manual), data_dir=str(tmp_path / "tfds"),
                  models=("mlp",), precisions=("float32",))
  # With the pipeline skipped the data is not needed.
  with pytest.raises(AssertionError, match="timing started"):
    bench.run_all(manual_dir=str(manual), data_dir=str(tmp_path / "tfds"),
                  models=("mlp",), precisions=("float32",),
                  skip=("pipeline",))
