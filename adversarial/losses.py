"""Pure loss functions of the minimax game, on discriminator logits.

The value function of Goodfellow et al. (2014), eq. 1, is

    V(D, G) = E_x[log D(x)] + E_z[log(1 - D(G(z)))],

with D(x) = sigmoid(logit). Every loss here is written with softplus or
`sigmoid_cross_entropy_with_logits` so that it stays finite for logits of any
size: log D = -softplus(-l) and log(1 - D) = -softplus(l).
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf


def _flat(logits: tf.Tensor) -> tf.Tensor:
  return tf.reshape(tf.cast(logits, tf.float32), [-1])


def discriminator_loss(real_logits: tf.Tensor, fake_logits: tf.Tensor,
                       label_smoothing: float = 0.0) -> tf.Tensor:
  """D's loss: the negated value function, halved as in the authors' code.

      L_D = 0.5 * (-E[log D(x)] - E[log(1 - D(G(z)))])
          = 0.5 * (CE(1, D(x)) + CE(0, D(G(z))))

  Minimising L_D is D's ascent on V (Algorithm 1). The 0.5 is the authors'
  (`AdversaryCost2`): it halves D's effective learning rate relative to G's.

  Args:
    real_logits: [batch_size] or [batch_size, 1] logits of D on data.
    fake_logits: [batch_size] or [batch_size, 1] logits of D on G(z).
    label_smoothing: one-sided smoothing of the real targets (1 - s); 0 is the
      paper.

  Returns:
    A float32 scalar.
  """
  real = _flat(real_logits)
  fake = _flat(fake_logits)
  real_loss = tf.nn.sigmoid_cross_entropy_with_logits(
      labels=tf.fill(tf.shape(real), 1.0 - label_smoothing), logits=real)
  fake_loss = tf.nn.sigmoid_cross_entropy_with_logits(
      labels=tf.zeros_like(fake), logits=fake)
  return 0.5 * (tf.reduce_mean(real_loss) + tf.reduce_mean(fake_loss))


def minimax_generator_loss(fake_logits: tf.Tensor) -> tf.Tensor:
  """G's loss as the game states it: L_G = E[log(1 - D(G(z)))].

  G minimises the value function directly. Early in training, when D rejects
  G's samples with confidence, this saturates: its gradient vanishes as
  D(G(z)) -> 0 (Section 3 of the paper).

  Args:
    fake_logits: [batch_size] or [batch_size, 1] logits of D on G(z).

  Returns:
    A float32 scalar, <= 0.
  """
  return tf.reduce_mean(-tf.nn.softplus(_flat(fake_logits)))


def non_saturating_generator_loss(fake_logits: tf.Tensor) -> tf.Tensor:
  """G's non-saturating loss: L_G = -E[log D(G(z))].

  The trick of Section 3 of the paper, and what the authors' code trains:
  G maximises log D(G(z)) instead of minimising log(1 - D(G(z))). It has the
  same fixed point and strong gradients early in training.

  Args:
    fake_logits: [batch_size] or [batch_size, 1] logits of D on G(z).

  Returns:
    A float32 scalar, >= 0.
  """
  return tf.reduce_mean(tf.nn.softplus(-_flat(fake_logits)))


GENERATOR_LOSSES: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    "non_saturating": non_saturating_generator_loss,
    "minimax": minimax_generator_loss,
}


def get_generator_loss(name: str) -> Callable[[tf.Tensor], tf.Tensor]:
  """The generator loss called `name`; raises ValueError naming the choices."""
  if name not in GENERATOR_LOSSES:
    raise ValueError(
        f"g_loss={name!r} is not accepted: expected one of "
        f"{', '.join(repr(n) for n in GENERATOR_LOSSES)}.")
  return GENERATOR_LOSSES[name]
