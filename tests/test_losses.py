import numpy as np
import tensorflow as tf

from adversarial import losses

LOGITS = np.array([-2.0, -0.5, 0.5, 3.0], np.float32)


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def test_discriminator_loss_golden():
  real, fake = LOGITS, LOGITS[::-1]
  # 0.5 * (mean(-log D(x)) + mean(-log(1 - D(G(z))))) by hand.
  expected = 0.5 * (np.mean(-np.log(_sigmoid(real))) +
                    np.mean(-np.log(1 - _sigmoid(fake))))
  got = losses.discriminator_loss(real, fake).numpy()
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  np.testing.assert_allclose(got, 1.0309173327, rtol=1e-6)


def test_generator_losses_golden():
  ns = losses.non_saturating_generator_loss(LOGITS).numpy()
  mm = losses.minimax_generator_loss(LOGITS).numpy()
  np.testing.assert_allclose(ns, np.mean(-np.log(_sigmoid(LOGITS))),
                             rtol=1e-6)
  np.testing.assert_allclose(mm, np.mean(np.log(1 - _sigmoid(LOGITS))),
                             rtol=1e-6)
  np.testing.assert_allclose(ns, 0.9059173327, rtol=1e-6)
  np.testing.assert_allclose(mm, -1.1559173327, rtol=1e-6)


def test_label_smoothing_changes_real_targets_only():
  smooth = losses.discriminator_loss(LOGITS, LOGITS, label_smoothing=0.1)
  real = np.mean(-(0.9 * np.log(_sigmoid(LOGITS)) +
                   0.1 * np.log(1 - _sigmoid(LOGITS))))
  fake = np.mean(-np.log(1 - _sigmoid(LOGITS)))
  np.testing.assert_allclose(smooth.numpy(), 0.5 * (real + fake), rtol=1e-6)


def test_losses_are_finite_and_exact_for_huge_logits():
  big = tf.constant([[-1e4], [1e4]], tf.float32)
  assert np.isfinite(losses.discriminator_loss(big, big).numpy())
  # -log sigmoid(-1e4) = 1e4 exactly; -log sigmoid(1e4) = 0.
  np.testing.assert_allclose(
      losses.non_saturating_generator_loss(big).numpy(), 5e3, rtol=1e-6)
  np.testing.assert_allclose(
      losses.minimax_generator_loss(big).numpy(), -5e3, rtol=1e-6)
  with tf.GradientTape() as tape:
    tape.watch(big)
    g = tape.gradient(losses.non_saturating_generator_loss(big), big)
  assert np.all(np.isfinite(g.numpy()))


def test_minimax_saturates_where_non_saturating_does_not():
  # When D rejects G's samples (logit -10), log(1 - D) has a vanishing
  # gradient and -log D a strong one: Section 3 of the paper.
  logit = tf.constant([-10.0])
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(logit)
    mm = losses.minimax_generator_loss(logit)
    ns = losses.non_saturating_generator_loss(logit)
  assert abs(tape.gradient(mm, logit).numpy()[0]) < 1e-4
  assert abs(tape.gradient(ns, logit).numpy()[0]) > 0.99


def test_unknown_generator_loss_is_named():
  import pytest
  with pytest.raises(ValueError, match="'wasserstein'.*non_saturating"):
    losses.get_generator_loss("wasserstein")
