import keras
import numpy as np
import pytest

from adversarial import optim
from adversarial.config import PAPER_MNIST

from conftest import small_config


def test_learning_rate_schedule_is_the_papers():
  s = optim.InverseExponentialDecay(0.1, 1.000004, 1e-6)
  np.testing.assert_allclose(float(s(0)), 0.1, rtol=1e-6)
  np.testing.assert_allclose(float(s(1)), 0.1 / 1.000004, rtol=1e-6)
  np.testing.assert_allclose(float(s(500_000)), 0.1 / 1.000004**500_000,
                             rtol=1e-4)
  assert float(s(10**8)) == pytest.approx(1e-6)  # the floor


def test_annealing_divides_by_its_own_factor_after_its_step():
  plain = optim.InverseExponentialDecay(0.1, 1.000004, 1e-6)
  s = optim.InverseExponentialDecay(0.1, 1.000004, 1e-6, anneal_step=300_000,
                                    anneal_factor=1.0001)
  for t in (0, 1000, 300_000):
    assert float(s(t)) == pytest.approx(float(plain(t)), rel=1e-6)
  at = 0.1 / 1.000004**300_000
  np.testing.assert_allclose(float(s(300_001)), at / 1.0001, rtol=1e-5)
  np.testing.assert_allclose(float(s(340_000)), at / 1.0001**40_000,
                             rtol=1e-4)
  assert float(s(10**7)) == pytest.approx(1e-6)  # the floor still holds
  again = optim.InverseExponentialDecay.from_config(s.get_config())
  assert float(again(340_000)) == float(s(340_000))


def test_momentum_rises_linearly_from_epoch_1_to_250():
  m = optim.LinearMomentum(0.5, 0.7, 1, 250, updates_per_epoch=500)
  assert float(m(0)) == pytest.approx(0.5)           # epoch 0
  assert float(m(500 * 1 + 499)) == pytest.approx(0.5)  # epoch 1
  assert float(m(500 * 125)) == pytest.approx(0.5 + 0.2 * 124 / 249)
  assert float(m(500 * 250)) == pytest.approx(0.7)
  assert float(m(500 * 900)) == pytest.approx(0.7)


def test_scheduled_momentum_sgd_is_classical_momentum():
  w = keras.Variable(np.array([1.0, -2.0], np.float32))
  lr = optim.InverseExponentialDecay(0.1, 2.0)
  mom = optim.LinearMomentum(0.5, 0.9, 0, 2, updates_per_epoch=1)
  opt = optim.ScheduledMomentumSGD(lr, mom)
  opt.build([w])
  g = np.array([0.5, 1.0], np.float32)
  v = np.zeros(2)
  expected = w.numpy().astype(np.float64)
  for t in range(4):
    mu = 0.5 + 0.4 * min(1.0, t / 2)
    v = mu * v - (0.1 / 2.0**t) * g
    expected = expected + v
    opt.apply_gradients([(g, w)])
  np.testing.assert_allclose(w.numpy(), expected, rtol=1e-5)


def test_make_optimizer_paper_and_others():
  sgd = optim.make_optimizer(PAPER_MNIST, 500, "d_optimizer")
  assert isinstance(sgd, optim.ScheduledMomentumSGD)
  assert sgd.momentum_schedule.updates_per_epoch == 500
  adam = optim.make_optimizer(small_config(optimizer="adam", lr_decay=1.0,
                                           min_learning_rate=0.0,
                                           learning_rate=2e-4), 10, "g")
  assert isinstance(adam, keras.optimizers.Adam)
  assert adam.beta_1 == 0.5
  assert float(adam.learning_rate) == pytest.approx(2e-4)
  rms = optim.make_optimizer(small_config(optimizer="rmsprop"), 10, "g")
  assert isinstance(rms, keras.optimizers.RMSprop)


def test_optimizer_serialises():
  sgd = optim.make_optimizer(PAPER_MNIST, 500, "d_optimizer")
  again = keras.saving.deserialize_keras_object(
      keras.saving.serialize_keras_object(sgd))
  assert isinstance(again, optim.ScheduledMomentumSGD)
  assert again.momentum_schedule.get_config() == (
      sgd.momentum_schedule.get_config())
  assert float(again.learning_rate) == pytest.approx(0.1)
