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
from adversarial.config import is_integer, PRIORS, UPDATES
from adversarial.images import check_floats, IN_G_RANGE

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


def sample_label_rows(seeds, shares) -> tf.Tensor:
  """int64 labels [len(seeds)], label i drawn from the distribution `shares`
  (k non-negative numbers) by seeds[i] alone, on a stream apart from z's:
  the condition of a served model of p(x) = sum_c p(c) p(x | c)."""
  shares = tf.constant(np.asarray(shares, np.float64) / np.sum(shares),
                       tf.float64)
  bounds = tf.cast(tf.math.cumsum(shares)[:-1], tf.float32)
  u = rng.uniform_rows(seeds, 1, stream=1)[:, 0]
  return tf.searchsorted(bounds, u, side="right", out_type=tf.int64)


def check_sampling(num_samples, seed, batch_size) -> None:
  """Raises ValueError unless `num_samples` and `batch_size` are positive
  integers and `seed` an integer (a seed of z, as `GAN.generate` takes)."""
  for name, value in (("num_samples", num_samples),
                      ("batch_size", batch_size)):
    if not is_integer(value) or value < 1:
      raise ValueError(f"{name}={value!r} is not accepted: expected a "
                       f"positive integer.")
  if not is_integer(seed) or not -2**63 <= seed < 2**63:
    raise ValueError(f"seed={seed!r} is not accepted: expected an integer "
                     f"(64-bit).")


def _declared(model, which: str) -> Optional[tuple]:
  """The shape, less the batch axis, of the first of a model's declared
  `inputs` or `outputs` (`which`); None where the model declares none, as a
  subclassed or unbuilt one does until it is called."""
  try:
    tensors = getattr(model, which)
    first = tensors[0] if isinstance(tensors, (list, tuple)) else tensors
    return tuple(first.shape[1:])
  except (AttributeError, IndexError, TypeError, ValueError):
    return None


def check_nets_fit(generator, discriminator, pack: int = 1) -> None:
  """Raises ValueError where D cannot take G's images (in packs of `pack`)
  or gives other than one logit per input, as far as the nets' declared
  shapes tell: functional and sequential models declare them, subclassed
  models are checked when they first run. A net with several inputs (a
  condition beside the image) takes the image first."""
  image = _declared(generator, "outputs")
  d_in = _declared(discriminator, "inputs")
  d_out = _declared(discriminator, "outputs")
  if image and d_in and None not in image + d_in:
    judged = image[:-1] + (image[-1] * pack,)
    if judged != d_in:
      packs = f" in packs of {pack} ({list(judged)})" if pack > 1 else ""
      raise ValueError(
          f"the generator's images, {list(image)}{packs}, do not fit the "
          f"discriminator's input, {list(d_in)}: expected a discriminator "
          f"that takes the generator's images.")
  if d_out is not None and d_out != (1,):
    raise ValueError(
        f"the discriminator's output, {list(d_out)} per input, is not "
        f"accepted: expected one logit per input ([batch_size, 1]).")


def check_batch_multiple(images, multiple: int, message: str) -> tf.Tensor:
  """`images`, checked to hold a batch that is a multiple of `multiple`.

  A batch size known while the step is traced is checked then, with a
  ValueError that names it. An unknown one (a retraced step, a dataset's
  partial last batch) is checked by an assert that the returned tensor
  depends on, so that nothing computed from it runs first. XLA drops graph
  asserts, so a compiled step does without that one.
  """
  if multiple == 1:
    return images
  count = images.shape[0]
  if count is not None:
    if count % multiple:
      raise ValueError(f"{message}: got a batch of {count} images.")
    return images
  check = tf.debugging.assert_equal(tf.shape(images)[0] % multiple, 0,
                                    message=message)
  with tf.control_dependencies([check]):
    return tf.identity(images)


def pack_images(images, pack: int) -> tf.Tensor:
  """[n, H, W, C] -> [n / pack, H, W, pack * C]: images pack * i ...
  pack * i + pack - 1 stacked on the channel axis, in that order.

  n must be a multiple of `pack`.
  """
  height, width, channels = images.shape[1:]
  images = check_batch_multiple(
      images, pack, f"D judges packs of {pack} images; the minibatch size "
      f"is not a multiple of {pack}")
  x = tf.reshape(images, [-1, pack, height, width, channels])
  x = tf.transpose(x, [0, 2, 3, 1, 4])
  return tf.reshape(x, [-1, height, width, pack * channels])


def _per_replica(loss):
  """A replica's share of a loss: the optimisers sum the replicas'
  gradients, so each replica's mean loss is divided by their number, and the
  step equals one device's on the global batch."""
  ctx = tf.distribute.get_replica_context()
  n = ctx.num_replicas_in_sync if ctx is not None else 1
  return loss if n == 1 else loss / float(n)


def _check_image_dtype(images) -> None:
  """Refuses images of an integer dtype (uint8 pixels, as
  keras.datasets.mnist gives them): D would judge 0-255 against G's 0-1
  and learn nothing but the scale."""
  check_floats(images, what=IN_G_RANGE)


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
    ema_decay: when > 0, the model also keeps an exponential moving average
      of G's weights, `ema_generator`, updated after every generator step
      with this decay (0.999 averages over about 1,000 steps). Sampling,
      evaluation and export use it (`sampler`); training never reads it.
    ema_warmup: when True, the decay after G's t-th update is
      min(ema_decay, (1 + t) / (10 + t)), as in
      `tf.train.ExponentialMovingAverage` with `num_updates`: the average
      spans about the last tenth of the updates until that reaches
      1 / (1 - ema_decay), instead of keeping G's initial weights in it for
      the first few multiples of that many updates.
    pack: images D judges at once (PacGAN, Lin et al. 2018): D's input has
      `pack` times the images' channels, and each minibatch of real or of
      generated images reaches it as groups of `pack` consecutive images
      (`pack_images`). 1 is the paper's D.
  """

  # Whether D may judge packs of images (`pack` > 1). Subclasses whose D
  # also takes a condition per image set it to False.
  packs_images = True

  def __init__(self, generator: keras.Model, discriminator: keras.Model,
               latent_dim: Optional[int] = None, prior: str = "uniform",
               update: str = "simultaneous", k: int = 1,
               g_loss: str = "non_saturating", label_smoothing: float = 0.0,
               seed: int = 0, ema_decay: float = 0.0, pack: int = 1,
               ema_warmup: bool = False, instance_noise: float = 0.0,
               instance_noise_steps: int = 0, **kwargs):
    super().__init__(**kwargs)
    check_prior(prior)
    if not is_integer(pack) or pack < 1:
      raise ValueError(f"pack={pack!r} is not accepted: expected an integer "
                       f">= 1 (images D judges at once).")
    if pack != 1 and not self.packs_images:
      raise ValueError(
          f"pack={pack!r} is not accepted by {type(self).__name__}: its "
          f"discriminator also takes a condition per image, which packing "
          f"does not cover; expected pack=1.")
    if not 0.0 <= ema_decay < 1.0:
      raise ValueError(f"ema_decay={ema_decay!r} is not accepted: expected a "
                       f"decay in [0, 1) (0 keeps no average).")
    if update not in UPDATES:
      raise ValueError(f"update={update!r} is not accepted: expected one of "
                       f"{', '.join(repr(u) for u in UPDATES)}.")
    if not is_integer(k) or k < 1:
      raise ValueError(f"k={k!r} is not accepted: expected an integer >= 1 "
                       f"(discriminator steps per generator step).")
    if update == "simultaneous" and k != 1:
      raise ValueError(f"k={k} is not accepted with update='simultaneous': "
                       f"the simultaneous update makes one step of each net; "
                       f"use update='alternating' for k > 1.")
    check_nets_fit(generator, discriminator, pack)
    self.generator = generator
    self.discriminator = discriminator
    if latent_dim is None:
      # A conditional generator's inputs are [z, c]; z comes first.
      inputs = getattr(generator, "inputs", None)
      latent_dim = (inputs[0].shape[-1] if inputs
                    else generator.input_shape[-1])
    self.latent_dim = int(latent_dim)
    self.prior = prior
    self.update = update
    self.k = k
    self.g_loss_name = g_loss
    self.g_loss_fn = losses.get_generator_loss(g_loss)
    self.label_smoothing = float(label_smoothing)
    self.seed = int(seed)
    self.noise_seed = keras.random.SeedGenerator(seed, name="noise_seed")
    self.ema_decay = float(ema_decay)
    self.ema_warmup = bool(ema_warmup)
    self.pack = pack
    if not (instance_noise >= 0.0 and math.isfinite(instance_noise)):
      raise ValueError(f"instance_noise={instance_noise!r} is not accepted: "
                       f"expected a standard deviation >= 0 (0: none).")
    if instance_noise > 0 and not (is_integer(instance_noise_steps) and
                                   instance_noise_steps >= 1):
      raise ValueError(
          f"instance_noise_steps={instance_noise_steps!r} is not accepted: "
          f"expected an integer >= 1 (D's updates over which the noise "
          f"fades to 0).")
    self.instance_noise = float(instance_noise)
    self.instance_noise_steps = int(instance_noise_steps)
    # Its own stream, made only when used: a model without instance noise
    # keeps the random streams (and checkpoints) it always had.
    self.instance_noise_seed = None
    if self.instance_noise > 0:
      self.instance_noise_seed = keras.random.SeedGenerator(
          seed + 7919, name="instance_noise_seed")
    self.ema_generator = None
    if self.ema_decay > 0:
      self.ema_generator = keras.models.clone_model(generator)
      self.ema_generator.set_weights(generator.get_weights())
      self.ema_generator.trainable = False
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
    (`jit_compile=True` for XLA, `run_eagerly=True` to debug), except
    `optimizer`, `loss` and `metrics` (and their weighted forms), which the
    game's steps would never use: they raise ValueError.

    Both optimisers are built here, on their own net's variables, so that
    checkpoints and `load_weights` find their slots before the first step.
    When the nets compute in float16 (the `mixed_float16` policy), each
    optimiser is wrapped in a `LossScaleOptimizer` unless it is one already,
    so a compile of the user's own keeps the loss scaling.
    """
    for name, net in (("generator", self.generator),
                      ("discriminator", self.discriminator)):
      if not net.weights:
        raise ValueError(
            f"the {name} has no weights yet: expected a built net (a "
            f"subclassed model makes its weights when first called, so call "
            f"it once on a batch of its inputs before compile), since each "
            f"optimiser is built here on its net's weights.")
    if "optimizer" in kwargs:
      raise ValueError(
          f"optimizer={kwargs['optimizer']!r} is not accepted: each net has "
          f"its own optimiser; expected d_optimizer=... and g_optimizer=... "
          f"(two objects, or two names such as 'adam').")
    taken = sorted(set(kwargs) & {"loss", "loss_weights", "metrics",
                                  "weighted_metrics"})
    if taken:
      raise ValueError(
          f"{', '.join(f'{k}={kwargs[k]!r}' for k in taken)} is not "
          f"accepted: the game has its own losses (the GAN's g_loss and "
          f"label_smoothing set them) and metrics (d_loss, g_loss, d_real, "
          f"d_fake); expected d_optimizer, g_optimizer and Keras's other "
          f"compile arguments (jit_compile, steps_per_execution, ...).")
    super().compile(optimizer=None, **kwargs)
    self.d_optimizer = self._with_loss_scaling(
        keras.optimizers.get(d_optimizer))
    self.g_optimizer = self._with_loss_scaling(
        keras.optimizers.get(g_optimizer))
    if self.d_optimizer is self.g_optimizer:
      raise ValueError("d_optimizer and g_optimizer are the same object: each "
                       "net needs its own optimiser (its own slots and step "
                       "count).")
    self.d_optimizer.build(self.discriminator.trainable_variables)
    self.g_optimizer.build(self.generator.trainable_variables)
    self._gan_compile_config = dict(
        d_optimizer=keras.saving.serialize_keras_object(self.d_optimizer),
        g_optimizer=keras.saving.serialize_keras_object(self.g_optimizer))

  def computes_in_float16(self) -> bool:
    """Whether any layer of G or D computes in float16."""
    return any(getattr(layer.dtype_policy, "compute_dtype", None) == "float16"
               for net in (self.generator, self.discriminator)
               for layer in net.layers)

  def _with_loss_scaling(self, optimizer):
    if (self.computes_in_float16() and not isinstance(
        optimizer, keras.optimizers.LossScaleOptimizer)):
      return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer

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

  def make_train_function(self, force=False):
    """Keras's train function, except that with XLA and
    `steps_per_execution` = n > 1 on one device, each call runs its n steps
    as one XLA program (a loop over the n minibatches, stacked), not as n
    XLA programs launched by a TensorFlow loop.

    The steps are the same: each is `train_step` on the next minibatch, in
    order. A call with fewer than n minibatches left, or with minibatches of
    different sizes, runs them one by one. Under a distribution strategy,
    for data that is not a `tf.data` iterator (`train_on_batch`), and for
    nets with convolutions (on a CPU, 20 steps of the convolutional pair
    took 145 s inside one XLA loop against 3.9 s one program a step),
    Keras's own function runs. The logs of a call are the metrics' results
    after its last step, which is what this model's `train_step` returns.
    """
    if self.train_function is not None and not force:
      return self.train_function
    super().make_train_function(force=True)
    if (self.steps_per_execution > 1 and self.jit_compile and
        not self.run_eagerly and not any(
            _convolutional(net)
            for net in (self.generator, self.discriminator))):
      self.train_function = _steps_in_one_program(self, self.train_function)
    return self.train_function

  def get_config(self):
    return dict(
        name=self.name,
        generator=keras.saving.serialize_keras_object(self.generator),
        discriminator=keras.saving.serialize_keras_object(self.discriminator),
        latent_dim=self.latent_dim, prior=self.prior, update=self.update,
        k=self.k, g_loss=self.g_loss_name,
        label_smoothing=self.label_smoothing, seed=self.seed,
        ema_decay=self.ema_decay, pack=self.pack,
        ema_warmup=self.ema_warmup, instance_noise=self.instance_noise,
        instance_noise_steps=self.instance_noise_steps)

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

  def reseed_random_states(self, salt: int) -> None:
    """Moves every random stream to a new key, a function of its old key and
    `salt` (> 0), keeping its counter: after a restart from a checkpoint the
    run draws other noise and dropout masks than it drew from there before,
    and the same salt gives the same draws."""
    if not is_integer(salt) or salt < 1:
      raise ValueError(f"salt={salt!r} is not accepted: expected an integer "
                       f">= 1 (0 would leave the streams as they are).")
    for state in self.random_states():
      key, counter = (int(v) for v in np.asarray(state))
      state.assign(np.array([(key + salt * 1_000_003) % 2**32, counter],
                            dtype=state.dtype))

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
    """z [batch_size, latent_dim] from the prior, advancing the noise stream.

    Under a distribution strategy, each replica gets its rows of the global
    batch's z (see `rng.replica_rows`)."""
    seed = self.noise_seed.next()
    return rng.replica_rows(
        lambda shape: sample_prior(shape, seed, self.prior),
        tf.stack([tf.cast(batch_size, tf.int32), self.latent_dim]))

  def noise_for_seed(self, num_samples: int, seed: int) -> tf.Tensor:
    """z [num_samples, latent_dim], a function of `seed` alone."""
    return sample_prior([num_samples, self.latent_dim],
                        tf.constant([seed, 0], tf.int64), self.prior)

  @property
  def sampler(self) -> keras.Model:
    """The generator that samples: the weight average when the model keeps
    one, G itself otherwise."""
    if self.ema_generator is not None:
      return self.ema_generator
    return self.generator

  def pick_generator(self, average: Optional[bool] = None) -> keras.Model:
    """The weight average (True), the trained G (False) or `sampler` (None)."""
    if average and self.ema_generator is None:
      raise ValueError("average=True needs a model that keeps a weight "
                       "average: expected ema_decay > 0.")
    if average is None:
      return self.sampler
    return self.ema_generator if average else self.generator

  def generate(self, num_samples: int, seed: int = 0,
               batch_size: int = 1000, average: Optional[bool] = None
               ) -> np.ndarray:
    """Samples of G (inference mode), the same for the same seed.

    Args:
      num_samples: how many.
      seed: seed of their z.
      batch_size: images per forward pass.
      average: True for the weight average `ema_generator`, False for the
        trained G; None for `sampler`.

    Returns:
      float32 array [num_samples, H, W, C] in G's output range.
    """
    check_sampling(num_samples, seed, batch_size)
    net = self.pick_generator(average)
    z = self.noise_for_seed(num_samples, seed)
    out = [net(z[i:i + batch_size], training=False)
           for i in range(0, num_samples, batch_size)]
    return np.concatenate([np.asarray(o) for o in out], axis=0)

  # Training -------------------------------------------------------------------

  def _track(self, d_loss, g_loss, real_logits, fake_logits):
    self.d_loss_tracker.update_state(d_loss)
    self.g_loss_tracker.update_state(g_loss)
    self.d_real_tracker.update_state(tf.sigmoid(real_logits))
    self.d_fake_tracker.update_state(tf.sigmoid(fake_logits))
    logs = {m.name: m.result() for m in self.metrics}
    if isinstance(tf.distribute.get_strategy(),
                  tf.distribute.MultiWorkerMirroredStrategy):
      # Keras reduces a multi-worker step's outputs with a mean over axis
      # 0, which a scalar lacks; one-element vectors reduce to the scalar.
      logs = {k: tf.reshape(v, [1]) for k, v in logs.items()}
    return logs

  def _d_loss(self, real_logits, fake_logits):
    return losses.discriminator_loss(real_logits, fake_logits,
                                     self.label_smoothing)

  # The hooks a conditional model overrides. `cond` is whatever a model's
  # nets are conditioned on for one minibatch; the unconditional game has
  # none.

  def _unpack(self, data):
    """(images, condition source) of a batch from the dataset."""
    # Labels, weights or other features after the images are not used by the
    # unconditional game.
    images = data[0] if isinstance(data, (tuple, list)) else data
    return images, None

  def _condition(self, images, source):
    """The condition of a minibatch: None for the unconditional game."""
    del images, source
    return None

  def _chunk(self, cond, start, stop):
    """The condition of rows [start, stop) of a minibatch."""
    del start, stop
    return cond

  def _fake(self, z, cond, training):
    """G's images for z under `cond`."""
    del cond
    return self.generator(z, training=training)

  def _logits(self, images, cond, training):
    """D's logits for `images` under `cond` (one per pack of images)."""
    del cond
    if self.pack > 1:
      images = pack_images(images, self.pack)
    return self.discriminator(images, training=training)

  def _noisy(self, images):
    """`images` with instance noise added, as D sees them in training:
    N(0, s^2) per pixel, s falling linearly from `instance_noise` to 0 over
    D's first `instance_noise_steps` updates, then none."""
    if self.instance_noise_seed is None:
      return images
    done = tf.cast(self.d_optimizer.iterations, tf.float32)
    scale = self.instance_noise * tf.maximum(
        0.0, 1.0 - done / float(self.instance_noise_steps))
    seed = self.instance_noise_seed.next()
    noise = rng.replica_rows(lambda shape: rng.normal(shape, seed),
                             tf.shape(images))
    return images + tf.cast(scale, images.dtype) * tf.cast(noise,
                                                           images.dtype)

  def train_step(self, data):
    images, source = self._unpack(data)
    _check_image_dtype(images)
    cond = self._condition(images, source)
    if self.update == "simultaneous":
      return self._simultaneous_step(images, cond)
    return self._alternating_step(images, cond)

  def _simultaneous_step(self, images, cond=None):
    batch_size = tf.shape(images)[0]
    z = self.sample_noise(batch_size)
    with tf.GradientTape(persistent=True) as tape:
      fake = self._fake(z, cond, training=True)
      real_logits = self._logits(self._noisy(images), cond, training=True)
      # G's loss reuses these logits: the same z and the same dropout masks
      # as D's, as in the authors' AdversaryCost2.
      fake_logits = self._logits(self._noisy(fake), cond, training=True)
      d_loss = self._d_loss(real_logits, fake_logits)
      g_loss = self.g_loss_fn(fake_logits)
      # Loss scaling (float16): the identity for other optimisers.
      d_scaled = self.d_optimizer.scale_loss(_per_replica(d_loss))
      g_scaled = self.g_optimizer.scale_loss(_per_replica(g_loss))
    d_vars = self.discriminator.trainable_variables
    g_vars = self.generator.trainable_variables
    # Both gradients are taken before either net moves: neither update sees
    # the other's result.
    d_grads = tape.gradient(d_scaled, d_vars)
    g_grads = tape.gradient(g_scaled, g_vars)
    del tape
    self.d_optimizer.apply_gradients(zip(d_grads, d_vars))
    self.g_optimizer.apply_gradients(zip(g_grads, g_vars))
    self._update_average()
    return self._track(d_loss, g_loss, real_logits, fake_logits)

  def discriminator_step(self, real, cond=None):
    """One step of D on a minibatch of data and as many fresh samples of G.

    Returns:
      (d_loss, real_logits, fake_logits) of the step.
    """
    m = tf.shape(real)[0]
    # G's forward pass needs no gradient here: only D moves.
    fake = self._fake(self.sample_noise(m), cond, training=True)
    d_vars = self.discriminator.trainable_variables
    with tf.GradientTape() as tape:
      real_logits = self._logits(self._noisy(real), cond, training=True)
      fake_logits = self._logits(self._noisy(fake), cond, training=True)
      d_loss = self._d_loss(real_logits, fake_logits)
      d_scaled = self.d_optimizer.scale_loss(_per_replica(d_loss))
    self.d_optimizer.apply_gradients(
        zip(tape.gradient(d_scaled, d_vars), d_vars))
    return d_loss, real_logits, fake_logits

  def generator_step(self, batch_size, cond=None):
    """One step of G on `batch_size` fresh samples, judged by the current D.

    Returns:
      (g_loss, fake_logits) of the step.
    """
    g_vars = self.generator.trainable_variables
    with tf.GradientTape() as tape:
      fake_logits = self._logits(self._noisy(
          self._fake(self.sample_noise(batch_size), cond, training=True)),
          cond, training=True)
      g_loss = self.g_loss_fn(fake_logits)
      g_scaled = self.g_optimizer.scale_loss(_per_replica(g_loss))
    # D is read, never updated, in G's step.
    self.g_optimizer.apply_gradients(
        zip(tape.gradient(g_scaled, g_vars), g_vars))
    self._update_average()
    return g_loss, fake_logits

  def _alternating_step(self, images, cond=None):
    images = check_batch_multiple(
        images, self.k, f"update='alternating' with k={self.k} takes "
        f"batches of k * m images (k minibatches of m); the batch size is "
        f"not a multiple of k")
    m = tf.shape(images)[0] // self.k
    # Algorithm 1: k steps of D, each on its own minibatch and fresh z.
    for i in range(self.k):
      d_loss, real_logits, fake_logits = self.discriminator_step(
          images[i * m:(i + 1) * m], self._chunk(cond, i * m, (i + 1) * m))
    # G's step takes its conditions (if any) from the first minibatch.
    g_loss, _ = self.generator_step(m, self._chunk(cond, 0, m))
    return self._track(d_loss, g_loss, real_logits, fake_logits)

  def test_step(self, data):
    images, source = self._unpack(data)
    _check_image_dtype(images)
    cond = self._condition(images, source)
    batch_size = tf.shape(images)[0]
    fake_logits = self._logits(
        self._fake(self.sample_noise(batch_size), cond, training=False),
        cond, training=False)
    real_logits = self._logits(images, cond, training=False)
    return self._track(self._d_loss(real_logits, fake_logits),
                       self.g_loss_fn(fake_logits), real_logits, fake_logits)

  def _update_average(self):
    """ema <- decay * ema + (1 - decay) * G, for every weight of G; called
    after G's update, so the optimiser's count includes it."""
    if self.ema_generator is None:
      return
    decay = self.ema_decay
    if self.ema_warmup:
      t = tf.cast(self.g_optimizer.iterations, tf.float32)
      decay = tf.minimum(decay, (1.0 + t) / (10.0 + t))
    for avg, w in zip(self.ema_generator.weights, self.generator.weights):
      avg.assign(decay * avg + (1.0 - decay) * tf.cast(w, avg.dtype))


def _convolutional(model: keras.Model) -> bool:
  """Whether `model` or any model inside it has a convolution layer."""
  return any("Conv" in type(layer).__name__ or
             (hasattr(layer, "layers") and _convolutional(layer))
             for layer in model.layers)


def _steps_in_one_program(model: keras.Model, keras_function):
  """A train function that runs `model.steps_per_execution` steps of a call
  in one XLA program (see `GAN.make_train_function`); `keras_function` takes
  the calls it does not cover."""
  n = model.steps_per_execution

  @tf.function(jit_compile=True, reduce_retracing=True, autograph=False)
  def all_steps(batches):
    stacked = tf.nest.map_structure(lambda *t: tf.stack(t), *batches)

    def body(i):
      model.train_step(tf.nest.map_structure(lambda t: t[i], stacked))
      return i + 1

    tf.while_loop(lambda i: i < n, body, [tf.constant(0)])

  one_step = tf.function(model.train_step, jit_compile=True,
                         reduce_retracing=True, autograph=False)

  def batch_size(data):
    return tf.shape(tf.nest.flatten(data)[0])[0]

  @tf.function(reduce_retracing=True, autograph=False)
  def call(iterator):
    optionals = [iterator.get_next_as_optional() for _ in range(n)]

    def same_sizes():
      sizes = tf.stack([batch_size(o.get_value()) for o in optionals])
      return tf.reduce_all(tf.equal(sizes, sizes[0]))

    whole = tf.cond(tf.reduce_all([o.has_value() for o in optionals]),
                    same_sizes, lambda: tf.constant(False))

    def at_once():
      all_steps([o.get_value() for o in optionals])
      return tf.constant(True)

    def one_by_one():
      # A loop over the minibatches there are, each picked by its index:
      # one compiled step in the graph, not one for each of the n (each
      # traced, n of them about double the first call's time at n = 50).
      spec = iterator.element_spec
      pick = [lambda o=o: tf.nest.flatten(o.get_value(), expand_composites=True)
              for o in optionals]
      present = tf.stack([o.has_value() for o in optionals])

      def step(i):
        one_step(tf.nest.pack_sequence_as(spec, tf.switch_case(i, pick),
                                          expand_composites=True))
        return tf.constant(True)

      def body(i):
        tf.cond(present[i], lambda: step(i), lambda: tf.constant(False))
        return i + 1

      tf.while_loop(lambda i: i < n, body, [tf.constant(0)])
      return tf.constant(True)

    with tf.control_dependencies([tf.cond(whole, at_once, one_by_one)]):
      logs = model.get_metrics_result()
      return logs, optionals[0].has_value()

  def function(iterator):
    if (not isinstance(iterator, tf.data.Iterator) or
        model.distribute_strategy.num_replicas_in_sync != 1 or
        tf.distribute.has_strategy()):
      return keras_function(iterator)
    logs, ran = call(iterator)
    if not ran:
      raise StopIteration
    return logs

  # The compiled programs: a whole call's steps, and one step; and the
  # graph that calls them.
  function.all_steps, function.one_step, function.call = (all_steps, one_step,
                                                          call)
  return function
