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
  # pylearn2's MomentumAdjustor(0.7, start=1, saturate=250): its count is 1
  # during the first epoch (it runs once before training, then after each
  # epoch), so epoch k (1-based) has 0.5 + 0.2 (k - 1) / 249.
  m = optim.LinearMomentum(0.5, 0.7, 1, 250, updates_per_epoch=500)
  for t, epoch in ((0, 1), (499, 1), (500, 2), (500 * 124 + 7, 125),
                   (500 * 248 + 499, 249), (500 * 249, 250),
                   (500 * 900, 901)):
    want = 0.5 + 0.2 * min((epoch - 1) / 249, 1.0)
    assert float(m(t)) == pytest.approx(want, abs=1e-7), (t, epoch)
  assert float(m(500)) > 0.5 and float(m(500 * 249 - 1)) < 0.7


def test_momentum_one_epoch_later_with_first_epoch_0():
  late = optim.LinearMomentum(0.5, 0.7, 1, 250, updates_per_epoch=500,
                              first_epoch=0)
  on_time = optim.LinearMomentum(0.5, 0.7, 1, 250, updates_per_epoch=500)
  for epoch in (1, 2, 125, 250, 251, 900):   # 1-based
    t = 500 * (epoch - 1)
    want = 0.5 + 0.2 * min(max(epoch - 2, 0) / 249, 1.0)
    assert float(late(t)) == pytest.approx(want, abs=1e-7), epoch
    # The same as the authors' ramp one epoch earlier.
    if epoch > 1:
      assert float(late(t)) == float(on_time(t - 500))
  # A schedule saved without first_epoch counted from 0, and still does.
  saved = late.get_config()
  del saved["first_epoch"]
  assert optim.LinearMomentum.from_config(saved).first_epoch == 0
  again = optim.LinearMomentum.from_config(on_time.get_config())
  assert again.first_epoch == 1
  with pytest.raises(ValueError, match="first_epoch=2 is not accepted"):
    optim.LinearMomentum(first_epoch=2)


def test_scheduled_momentum_sgd_is_classical_momentum():
  w = keras.Variable(np.array([1.0, -2.0], np.float32))
  lr = optim.InverseExponentialDecay(0.1, 2.0)
  mom = optim.LinearMomentum(0.5, 0.9, 1, 3, updates_per_epoch=1)
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
