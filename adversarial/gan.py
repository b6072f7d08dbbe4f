"""The adversarial nets model: a `keras.Model` whose `train_step` plays the
minimax game of Goodfellow et al. (2014).

    gan = GAN(generator, discriminator, update="simultaneous")
    gan.compile(d_optimizer=..., g_optimizer=..., jit_compile=True)
    gan.fit(images, epochs=...)
    samples = gan.generate(100, seed=0)

Two update rules are offered:
  * "simultaneous" (the default, and the authors' code): one minibatch, one z
    and one set of D's dropout masks; D's loss and G's loss come from the same
    forward pass and both nets are updated from it.
  * "alternating" (Algorithm 1 as printed): k discriminator steps, each on a
    fresh minibatch and fresh z, then one generator step on fresh z. Each
    `train_step` is one outer iteration of Algorithm 1, so it takes a batch of
    k * m images and splits it into k minibatches of m.
"""

from __future__ import annotations

import math
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from adversarial import losses
from adversarial import rng
from adversarial.config import PRIORS, UPDATES

SQRT3 = math.sqrt(3.0)


def check_prior(prior: str) -> None:
  """Raises ValueError unless `prior` is one of `config.PRIORS`."""
  if prior not in PRIORS:
    raise ValueError(f"prior={prior!r} is not accepted: expected one of "
                     f"{', '.join(repr(p) for p in PRIORS)}.")


def sample_prior(shape, seed, prior: str = "uniform") -> tf.Tensor:
  """Draws z from the noise prior, statelessly.

  The same seed gives the same z on every device and with or without XLA
  (see `adversarial.rng`).

  Args:
    shape: [batch_size, latent_dim].
    seed: int32/int64 tensor of shape [2].
    prior: 'uniform' for U(-sqrt 3, sqrt 3) (zero mean, unit variance, the
      paper's), or 'normal' for N(0, 1).

  Returns:
    float32 tensor of `shape`.
  """
  check_prior(prior)
  if prior == "uniform":
    return rng.uniform(shape, seed, -SQRT3, SQRT3)
  return rng.normal(shape, seed)


def sample_prior_rows(seeds, latent_dim: int, prior: str = "uniform"
                      ) -> tf.Tensor:
  """z [len(seeds), latent_dim], row i a function of seeds[i] alone: the z of
  `GAN.generate(1, seed=seeds[i])`."""
  check_prior(prior)
  if prior == "uniform":
    return rng.uniform_rows(seeds, latent_dim, -SQRT3, SQRT3)
  return rng.normal_rows(seeds, latent_dim)


@keras.saving.register_keras_serializable(package="adversarial")
class GAN(keras.Model):
  """A generator and a discriminator trained against each other by `fit()`.

  Calling the model runs the generator: `gan(z)` -> images.

  Args:
    generator: a `keras.Model`, z [batch_size, latent_dim] -> images.
    discriminator: a `keras.Model`, images -> logits [batch_size, 1].
    latent_dim: width of z; read from the generator when None.
    prior: 'uniform' (U(-sqrt 3, sqrt 3), the paper's) or 'normal'.
    update: 'simultaneous' (the authors' code, default) or 'alternating'
      (Algorithm 1).
    k: discriminator steps per generator step, for 'alternating'.
    g_loss: 'non_saturating' (-log D(G(z)), the paper's practice) or
      'minimax' (log(1 - D(G(z)))).
    label_smoothing: one-sided smoothing of D's real targets; 0 is the paper.
    seed: seed of the noise stream.
  """

  def __init__(self, generator: keras.Model, discriminator: keras.Model,
               latent_dim: Optional[int] = None, prior: str = "uniform",
               update: str = "simultaneous", k: int = 1,
               g_loss: str = "non_saturating", label_smoothing: float = 0.0,
               seed: int = 0, **kwargs):
    super().__init__(**kwargs)
    check_prior(prior)
    if update not in UPDATES:
      raise ValueError(f"update={update!r} is not accepted: expected one of "
                       f"{', '.join(repr(u) for u in UPDATES)}.")
    if not isinstance(k, int) or k < 1:
      raise ValueError(f"k={k!r} is not accepted: expected an integer >= 1 "
                       f"(discriminator steps per generator step).")
    if update == "simultaneous" and k != 1:
      raise ValueError(f"k={k} is not accepted with update='simultaneous': "
                       f"the simultaneous update makes one step of each net; "
                       f"use update='alternating' for k > 1.")
    self.generator = generator
    self.discriminator = discriminator
    self.latent_dim = int(latent_dim or generator.input_shape[-1])
    self.prior = prior
    self.update = update
    self.k = k
    self.g_loss_name = g_loss
    self.g_loss_fn = losses.get_generator_loss(g_loss)
    self.label_smoothing = float(label_smoothing)
    self.seed = int(seed)
    self.noise_seed = keras.random.SeedGenerator(seed, name="noise_seed")
    self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
    self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
    self.d_real_tracker = keras.metrics.Mean(name="d_real")
    self.d_fake_tracker = keras.metrics.Mean(name="d_fake")
    self.d_optimizer = None
    self.g_optimizer = None
    self.built = True

  # Keras plumbing -------------------------------------------------------------

  def compile(self, d_optimizer="sgd", g_optimizer="sgd", **kwargs):
    """Sets each net's optimiser; other arguments go to `keras.Model.compile`
    (`jit_compile=True` for XLA, `run_eagerly=True` to debug).

    Both optimisers are built here, on their own net's variables, so that
    checkpoints and `load_weights` find their slots before the first step.
    """
    kwargs.setdefault("optimizer", None)
    super().compile(**kwargs)
    self.d_optimizer = keras.optimizers.get(d_optimizer)
    self.g_optimizer = keras.optimizers.get(g_optimizer)
    if self.d_optimizer is self.g_optimizer:
      raise ValueError("d_optimizer and g_optimizer are the same object: each "
                       "net needs its own optimiser (its own slots and step "
                       "count).")
    self.d_optimizer.build(self.discriminator.trainable_variables)
    self.g_optimizer.build(self.generator.trainable_variables)
    self._gan_compile_config = dict(
        d_optimizer=keras.saving.serialize_keras_object(self.d_optimizer),
        g_optimizer=keras.saving.serialize_keras_object(self.g_optimizer))

  def get_compile_config(self):
    return getattr(self, "_gan_compile_config", {})

  def compile_from_config(self, config):
    self.compile(
        d_optimizer=keras.saving.deserialize_keras_object(
            config["d_optimizer"]),
        g_optimizer=keras.saving.deserialize_keras_object(
            config["g_optimizer"]))

  @property
  def metrics(self):
    return [self.d_loss_tracker, self.g_loss_tracker, self.d_real_tracker,
            self.d_fake_tracker]

  def get_config(self):
    return dict(
        name=self.name,
        generator=keras.saving.serialize_keras_object(self.generator),
        discriminator=keras.saving.serialize_keras_object(self.discriminator),
        latent_dim=self.latent_dim, prior=self.prior, update=self.update,
        k=self.k, g_loss=self.g_loss_name,
        label_smoothing=self.label_smoothing, seed=self.seed)

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    generator = keras.saving.deserialize_keras_object(config.pop("generator"))
    discriminator = keras.saving.deserialize_keras_object(
        config.pop("discriminator"))
    return cls(generator, discriminator, **config)

  def random_states(self) -> list:
    """The state of every random stream of the model: the noise stream and
    each dropout layer's, in a fixed order."""
    weights = {id(w) for w in self.weights}
    return [v for v in self.variables if id(v) not in weights]

  # Keras saves layer weights and optimiser slots but not the seed
  # generators' states. Saving them with the model makes `save_weights`,
  # `ModelCheckpoint` and `BackupAndRestore` resume the same noise and
  # dropout streams, so a resumed run ends where an uninterrupted one would.
  def save_own_variables(self, store):
    for i, state in enumerate(self.random_states()):
      store[f"{i}"] = state.numpy()

  def load_own_variables(self, store):
    states = self.random_states()
    if len(store.keys()) != len(states):
      raise ValueError(
          f"the saved model has {len(store.keys())} random-stream states, "
          f"this GAN has {len(states)}: expected weights saved from a GAN "
          f"with the same networks.")
    for i, state in enumerate(states):
      state.assign(np.asarray(store[f"{i}"]))

  def call(self, z, training=False):
    return self.generator(z, training=training)

  # Sampling -------------------------------------------------------------------

  def sample_noise(self, batch_size) -> tf.Tensor:
    """z [batch_size, latent_dim] from the prior, advancing the noise stream."""
    return sample_prior([batch_size, self.latent_dim], self.noise_seed.next(),
                        self.prior)

  def noise_for_seed(self, num_samples: int, seed: int) -> tf.Tensor:
    """z [num_samples, latent_dim], a function of `seed` alone."""
    return sample_prior([num_samples, self.latent_dim],
                        tf.constant([seed, 0], tf.int64), self.prior)

  def generate(self, num_samples: int, seed: int = 0,
               batch_size: int = 1000) -> np.ndarray:
    """Samples of G (inference mode), the same for the same seed.

    Returns:
      float32 array [num_samples, H, W, C] in G's output range.
    """
    z = self.noise_for_seed(num_samples, seed)
    out = [self.generator(z[i:i + batch_size], training=False)
           for i in range(0, num_samples, batch_size)]
    return np.concatenate([np.asarray(o) for o in out], axis=0)

  # Training -------------------------------------------------------------------

  def _track(self, d_loss, g_loss, real_logits, fake_logits):
    self.d_loss_tracker.update_state(d_loss)
    self.g_loss_tracker.update_state(g_loss)
    self.d_real_tracker.update_state(tf.sigmoid(real_logits))
    self.d_fake_tracker.update_state(tf.sigmoid(fake_logits))
    return {m.name: m.result() for m in self.metrics}

  def _d_loss(self, real_logits, fake_logits):
    return losses.discriminator_loss(real_logits, fake_logits,
                                     self.label_smoothing)

  def train_step(self, data):
    # Labels, weights or other features after the images are not used by the
    # unconditional game.
    images = data[0] if isinstance(data, (tuple, list)) else data
    if self.update == "simultaneous":
      return self._simultaneous_step(images)
    return self._alternating_step(images)

  def _simultaneous_step(self, images):
    batch_size = tf.shape(images)[0]
    z = self.sample_noise(batch_size)
    with tf.GradientTape(persistent=True) as tape:
      fake = self.generator(z, training=True)
      real_logits = self.discriminator(images, training=True)
      # G's loss reuses these logits: the same z and the same dropout masks
      # as D's, as in the authors' AdversaryCost2.
      fake_logits = self.discriminator(fake, training=True)
      d_loss = self._d_loss(real_logits, fake_logits)
      g_loss = self.g_loss_fn(fake_logits)
    d_vars = self.discriminator.trainable_variables
    g_vars = self.generator.trainable_variables
    # Both gradients are taken before either net moves: neither update sees
    # the other's result.
    d_grads = tape.gradient(d_loss, d_vars)
    g_grads = tape.gradient(g_loss, g_vars)
    del tape
    self.d_optimizer.apply_gradients(zip(d_grads, d_vars))
    self.g_optimizer.apply_gradients(zip(g_grads, g_vars))
    return self._track(d_loss, g_loss, real_logits, fake_logits)

  def discriminator_step(self, real):
    """One step of D on a minibatch of data and as many fresh samples of G.

    Returns:
      (d_loss, real_logits, fake_logits) of the step.
    """
    m = tf.shape(real)[0]
    # G's forward pass needs no gradient here: only D moves.
    fake = self.generator(self.sample_noise(m), training=True)
    d_vars = self.discriminator.trainable_variables
    with tf.GradientTape() as tape:
      real_logits = self.discriminator(real, training=True)
      fake_logits = self.discriminator(fake, training=True)
      d_loss = self._d_loss(real_logits, fake_logits)
    self.d_optimizer.apply_gradients(
        zip(tape.gradient(d_loss, d_vars), d_vars))
    return d_loss, real_logits, fake_logits

  def generator_step(self, batch_size):
    """One step of G on `batch_size` fresh samples, judged by the current D.

    Returns:
      (g_loss, fake_logits) of the step.
    """
    g_vars = self.generator.trainable_variables
    with tf.GradientTape() as tape:
      fake_logits = self.discriminator(
          self.generator(self.sample_noise(batch_size), training=True),
          training=True)
      g_loss = self.g_loss_fn(fake_logits)
    # D is read, never updated, in G's step.
    self.g_optimizer.apply_gradients(zip(tape.gradient(g_loss, g_vars), g_vars))
    return g_loss, fake_logits

  def _alternating_step(self, images):
    batch_size = tf.shape(images)[0]
    tf.debugging.assert_equal(
        batch_size % self.k, 0,
        message=f"update='alternating' with k={self.k} takes batches of "
        f"k * m images (k minibatches of m); the batch size is not a "
        f"multiple of k")
    m = batch_size // self.k
    # Algorithm 1: k steps of D, each on its own minibatch and fresh z.
    for i in range(self.k):
      d_loss, real_logits, fake_logits = self.discriminator_step(
          images[i * m:(i + 1) * m])
    g_loss, _ = self.generator_step(m)
    return self._track(d_loss, g_loss, real_logits, fake_logits)

  def test_step(self, data):
    images = data[0] if isinstance(data, (tuple, list)) else data
    batch_size = tf.shape(images)[0]
    fake_logits = self.discriminator(
        self.generator(self.sample_noise(batch_size)))
    real_logits = self.discriminator(images)
    return self._track(self._d_loss(real_logits, fake_logits),
                       self.g_loss_fn(fake_logits), real_logits, fake_logits)
