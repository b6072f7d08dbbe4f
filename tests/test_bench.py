import numpy as np

from adversarial import bench
from adversarial import networks
from adversarial.config import PAPER_MNIST, get_preset


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


def test_interleaved_timing_needs_two_steps():
  import pytest
  with pytest.raises(ValueError, match="steps=1 is not accepted"):
    bench._time_interleaved({}, np.zeros((1, 2, 28, 28, 1), np.float32), 1, 1)
