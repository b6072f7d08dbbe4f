"""Generator and discriminator builders.

Data contract, for every builder here:
  * G maps z [batch_size, latent_dim] to images [batch_size, H, W, C] in the
    range of its output activation: [0, 1] for sigmoid, [-1, 1] for tanh.
  * D maps images [batch_size, H, W, C] to logits [batch_size, 1]; D(x) is
    sigmoid(logit), and the losses take logits.

`mlp_generator` and `mlp_discriminator` with their defaults are the paper's
MNIST pair (PAPER.md): G 100 -> 1200 ReLU -> 1200 ReLU -> 784 sigmoid, D
maxout 240x5 -> maxout 240x5 -> 1 with dropout. Every size, activation and
rate is a parameter, so the same builders serve other data.
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from adversarial import rng
from adversarial.config import TOY_DATASETS, Config, is_integer


@keras.saving.register_keras_serializable(package="adversarial")
class Maxout(keras.layers.Layer):
  """Maxout (Goodfellow et al., 2013): the max over `pieces` affine maps.

  h_i(x) = max_j (x W_ij + b_ij), for i in [0, units) and j in [0, pieces).
  The kernel is laid out [input_dim, units * pieces] as in pylearn2, so unit i
  takes columns i * pieces ... i * pieces + pieces - 1.

  Input: [batch_size, input_dim]. Output: [batch_size, units].
  """

  def __init__(self, units: int, pieces: int,
               kernel_initializer="glorot_uniform",
               bias_initializer="zeros", **kwargs):
    super().__init__(**kwargs)
    if units < 1 or pieces < 1:
      raise ValueError(
          f"Maxout(units={units}, pieces={pieces}) is not accepted: expected "
          f"positive integers.")
    self.units = int(units)
    self.pieces = int(pieces)
    self.kernel_initializer = keras.initializers.get(kernel_initializer)
    self.bias_initializer = keras.initializers.get(bias_initializer)

  def build(self, input_shape):
    input_dim = input_shape[-1]
    self.kernel = self.add_weight(
        name="kernel", shape=(input_dim, self.units * self.pieces),
        initializer=self.kernel_initializer)
    self.bias = self.add_weight(
        name="bias", shape=(self.units * self.pieces,),
        initializer=self.bias_initializer)

  def call(self, inputs):
    z = keras.ops.matmul(inputs, self.kernel) + self.bias
    z = keras.ops.reshape(z, (-1, self.units, self.pieces))
    return keras.ops.max(z, axis=-1)

  def compute_output_shape(self, input_shape):
    return (input_shape[0], self.units)

  def get_config(self):
    config = super().get_config()
    config.update(
        units=self.units, pieces=self.pieces,
        kernel_initializer=keras.initializers.serialize(
            self.kernel_initializer),
        bias_initializer=keras.initializers.serialize(self.bias_initializer))
    return config


@keras.saving.register_keras_serializable(package="adversarial")
class Dropout(keras.layers.Layer):
  """Inverted dropout whose masks are the same with and without XLA.

  Keras's `Dropout` draws with TensorFlow's random ops, which give other
  numbers under XLA than in ordinary kernels, so a jit-compiled run would see
  other masks than an eager one. This layer draws from `adversarial.rng`; its
  seed stream is a layer variable, saved and restored with the model.

  Input and output: any shape; identity outside training.
  """

  def __init__(self, rate: float, seed: Optional[int] = None, **kwargs):
    super().__init__(**kwargs)
    if not 0.0 <= rate < 1.0:
      raise ValueError(f"Dropout(rate={rate}) is not accepted: expected a "
                       f"rate in [0, 1).")
    self.rate = float(rate)
    self.seed = seed
    self.seed_generator = keras.random.SeedGenerator(seed)

  def call(self, inputs, training=False):
    if not training or self.rate == 0.0:
      return inputs
    seed = self.seed_generator.next()
    keep = rng.replica_rows(lambda shape: rng.keep_mask(shape, seed,
                                                        self.rate),
                            tf.shape(inputs))
    return tf.where(keep, inputs / (1.0 - self.rate), tf.zeros_like(inputs))

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    config = super().get_config()
    config.update(rate=self.rate, seed=self.seed)
    return config


def _uniform(scale: float, seed: int) -> keras.initializers.Initializer:
  return keras.initializers.RandomUniform(-scale, scale, seed=seed)


def logit_of_marginals(pixel_means: np.ndarray, activation: str = "sigmoid",
                       eps: float = 1e-7) -> np.ndarray:
  """G's output bias that makes G(z) start at the data's mean image.

  The authors initialise the sigmoid output bias to the logit of each pixel's
  mean over the training images (pylearn2's
  `init_sigmoid_bias_from_marginals`), clipped to [eps, 1 - eps].

  Args:
    pixel_means: per-pixel mean of the training images, in the range of
      `activation` ([0, 1] for sigmoid, [-1, 1] for tanh).
    activation: G's output activation.
    eps: clipping margin.

  Returns:
    float32 array, the same shape as `pixel_means`.
  """
  means = np.asarray(pixel_means, np.float64)
  if activation == "sigmoid":
    p = np.clip(means, eps, 1 - eps)
    return np.log(p / (1 - p)).astype(np.float32)
  if activation == "tanh":
    return np.arctanh(np.clip(means, -1 + eps, 1 - eps)).astype(np.float32)
  if activation == "linear":
    return means.astype(np.float32)
  raise ValueError(f"activation={activation!r} is not accepted: expected "
                   f"'sigmoid', 'tanh' or 'linear'.")


def mlp_generator(latent_dim: int = 100,
                  image_shape: Sequence[int] = (28, 28, 1),
                  hidden: Sequence[int] = (1200, 1200),
                  activation: str = "relu",
                  output_activation: str = "sigmoid",
                  init_scale: float = 0.05,
                  output_bias: Optional[np.ndarray] = None,
                  seed: int = 0,
                  condition_dim: int = 0,
                  name: str = "generator") -> keras.Model:
  """The paper's fully connected generator.

  Args:
    latent_dim: width of z.
    image_shape: (H, W, C) of the images it makes.
    hidden: widths of the hidden layers.
    activation: hidden activation.
    output_activation: 'sigmoid' ([0, 1] images), 'tanh' ([-1, 1]) or
      'linear'.
    init_scale: weights are drawn from U(-init_scale, init_scale); biases 0.
    output_bias: optional initial output bias, [H * W * C] or image_shape
      (see `logit_of_marginals`).
    seed: seed of the weight initialisers.
    condition_dim: width of a condition c (a one-hot label, or the visible
      pixels and the mask of a masked model) given to G beside z; 0 for
      none.
    name: the model's name.

  Returns:
    A functional `keras.Model`: z [batch_size, latent_dim] (and, with a
    condition, c [batch_size, condition_dim]: inputs [z, c]) ->
    images [batch_size, H, W, C] in the range of `output_activation`.
  """
  image_shape = tuple(int(d) for d in image_shape)
  size = int(np.prod(image_shape))
  z = keras.Input((latent_dim,), name="z")
  inputs, h = _with_condition(z, condition_dim)
  for i, width in enumerate(hidden):
    h = keras.layers.Dense(
        width, activation=activation,
        kernel_initializer=_uniform(init_scale, seed + i),
        name=f"h{i}")(h)
  if output_bias is None:
    bias_init = "zeros"
  else:
    bias = np.asarray(output_bias, np.float32).reshape(-1)
    if bias.shape != (size,):
      raise ValueError(
          f"output_bias has {bias.size} values: expected {size} "
          f"(one per value of an image of shape {image_shape}).")
    bias_init = keras.initializers.Constant(bias.tolist())
  # The output is float32 under mixed precision too: images are compared
  # with data in float32 and the sigmoid saturates in float16.
  x = keras.layers.Dense(
      size, activation=output_activation,
      kernel_initializer=_uniform(init_scale, seed + len(hidden)),
      bias_initializer=bias_init, name="output", dtype="float32")(h)
  x = keras.layers.Reshape(image_shape, name="image", dtype="float32")(x)
  return keras.Model(inputs, x, name=name)


def _with_condition(h, condition_dim: int):
  """(inputs, features): `h` alone, or [h, c] and their concatenation."""
  if not condition_dim:
    return h, h
  c = keras.Input((int(condition_dim),), name="condition")
  return [h, c], keras.layers.Concatenate(name="with_condition")([h, c])


def mlp_discriminator(image_shape: Sequence[int] = (28, 28, 1),
                      hidden: Sequence[int] = (240, 240),
                      pieces: int = 5,
                      input_dropout: float = 0.2,
                      hidden_dropout: float = 0.5,
                      init_scale: float = 0.005,
                      seed: int = 0,
                      condition_dim: int = 0,
                      name: str = "discriminator") -> keras.Model:
  """The paper's maxout discriminator.

  Dropout is inverted dropout, as pylearn2's `dropout_fprop` with
  include_prob p and scale 1/p: rate `input_dropout` on the flattened image,
  rate `hidden_dropout` on the input of each later layer.

  Args:
    image_shape: (H, W, C) of the images it judges.
    hidden: units of each maxout layer.
    pieces: pieces per maxout unit.
    input_dropout: dropout rate on the input.
    hidden_dropout: dropout rate before each later layer.
    init_scale: weights are drawn from U(-init_scale, init_scale); biases 0.
    seed: seed of the initialisers and of the dropout masks.
    condition_dim: width of a condition c given to D beside the image (after
      the image's input dropout; c itself is never dropped); 0 for none.
    name: the model's name.

  Returns:
    A functional `keras.Model`: images [batch_size, H, W, C] (and, with a
    condition, c [batch_size, condition_dim]: inputs [images, c]) ->
    logits [batch_size, 1].
  """
  x = keras.Input(tuple(image_shape), name="image")
  h = keras.layers.Flatten(name="flatten")(x)
  if input_dropout > 0:
    h = Dropout(input_dropout, seed=seed + 1000,
                             name="input_dropout")(h)
  inputs, h = _with_condition_after(x, h, condition_dim)
  for i, units in enumerate(hidden):
    if i > 0 and hidden_dropout > 0:
      h = Dropout(hidden_dropout, seed=seed + 1001 + i,
                               name=f"dropout{i}")(h)
    h = Maxout(units, pieces,
               kernel_initializer=_uniform(init_scale, seed + i),
               name=f"maxout{i}")(h)
  if hidden_dropout > 0:
    h = Dropout(hidden_dropout, seed=seed + 1001 + len(hidden),
                             name=f"dropout{len(hidden)}")(h)
  logits = keras.layers.Dense(
      1, kernel_initializer=_uniform(init_scale, seed + len(hidden)),
      name="logits", dtype="float32")(h)
  return keras.Model(inputs, logits, name=name)


def _with_condition_after(x, h, condition_dim: int):
  """(inputs, features) of a discriminator whose image input `x` has become
  features `h`: a condition joins `h`."""
  if not condition_dim:
    return x, h
  c = keras.Input((int(condition_dim),), name="condition")
  return [x, c], keras.layers.Concatenate(name="with_condition")([h, c])


def _check_conv_shape(image_shape: Sequence[int], layers: int) -> None:
  factor = 2 ** layers
  h, w = image_shape[0], image_shape[1]
  if h % factor or w % factor:
    raise ValueError(
        f"image_shape={tuple(image_shape)} is not accepted by a convolutional "
        f"pair with {layers} stride-2 layers: expected a height and width "
        f"divisible by {factor} (set conv_filters to fewer layers).")


def conv_generator(latent_dim: int = 100,
                   image_shape: Sequence[int] = (32, 32, 3),
                   filters: Sequence[int] = (64, 128, 256),
                   output_activation: str = "tanh",
                   init_scale: float = 0.02,
                   seed: int = 0,
                   condition_dim: int = 0,
                   name: str = "generator") -> keras.Model:
  """A "deconvolutional" generator: dense, then stride-2 transposed convs.

  z is projected to an (H / 2^n, W / 2^n, filters[-1]) map, then each
  transposed convolution doubles the resolution, halving through `filters`
  in reverse, with batch normalisation and ReLU; the last one makes the C
  channels. n = len(filters).

  A condition c [batch_size, condition_dim] joins z before the projection.

  Returns:
    z [batch_size, latent_dim] (or [z, c]) -> images [batch_size, H, W, C].
  """
  image_shape = tuple(int(d) for d in image_shape)
  n = len(filters)
  _check_conv_shape(image_shape, n)
  h0, w0 = image_shape[0] // 2**n, image_shape[1] // 2**n
  init = lambda i: keras.initializers.RandomNormal(0.0, init_scale,
                                                   seed=seed + i)
  z = keras.Input((latent_dim,), name="z")
  inputs, h = _with_condition(z, condition_dim)
  h = keras.layers.Dense(h0 * w0 * filters[-1], use_bias=False,
                         kernel_initializer=init(0), name="project")(h)
  h = keras.layers.Reshape((h0, w0, filters[-1]))(h)
  h = keras.layers.BatchNormalization(name="project_bn")(h)
  h = keras.layers.ReLU()(h)
  for i, width in enumerate(reversed(filters[:-1])):
    h = keras.layers.Conv2DTranspose(
        width, 4, strides=2, padding="same", use_bias=False,
        kernel_initializer=init(i + 1), name=f"deconv{i}")(h)
    h = keras.layers.BatchNormalization(name=f"deconv{i}_bn")(h)
    h = keras.layers.ReLU()(h)
  x = keras.layers.Conv2DTranspose(
      image_shape[-1], 4, strides=2, padding="same",
      activation=output_activation, kernel_initializer=init(n),
      name="output", dtype="float32")(h)
  return keras.Model(inputs, x, name=name)


def conv_discriminator(image_shape: Sequence[int] = (32, 32, 3),
                       filters: Sequence[int] = (64, 128, 256),
                       dropout: float = 0.0,
                       init_scale: float = 0.02,
                       seed: int = 0,
                       condition_dim: int = 0,
                       name: str = "discriminator") -> keras.Model:
  """A convolutional discriminator: stride-2 convs with leaky ReLU, then a
  linear logit. A condition c [batch_size, condition_dim] joins the
  flattened features before the logit.

  Returns:
    images [batch_size, H, W, C] (or [images, c]) -> logits [batch_size, 1].
  """
  _check_conv_shape(image_shape, len(filters))
  init = lambda i: keras.initializers.RandomNormal(0.0, init_scale,
                                                   seed=seed + i)
  x = keras.Input(tuple(image_shape), name="image")
  h = x
  for i, width in enumerate(filters):
    h = keras.layers.Conv2D(width, 4, strides=2, padding="same",
                            kernel_initializer=init(i), name=f"conv{i}")(h)
    h = keras.layers.LeakyReLU(0.2)(h)
    if dropout > 0:
      h = Dropout(dropout, seed=seed + 1000 + i)(h)
  h = keras.layers.Flatten()(h)
  inputs, h = _with_condition_after(x, h, condition_dim)
  logits = keras.layers.Dense(1, kernel_initializer=init(len(filters)),
                              name="logits", dtype="float32")(h)
  return keras.Model(inputs, logits, name=name)


def condition_dims(config: Config, image_shape: Sequence[int],
                   num_classes: int = 0) -> tuple[int, int]:
  """Widths of the conditions (G's, D's) of the model `config` describes.

  A conditional model gives both nets the one-hot label (`num_classes`
  wide). A masked model gives G the visible pixels and the mask, and D the
  mask. An unconditional model gives neither: (0, 0).
  """
  size = int(np.prod(image_shape))
  if config.conditional:
    if num_classes < 2:
      raise ValueError(
          f"num_classes={num_classes} is not accepted for a conditional "
          f"model: expected a dataset with at least 2 labels.")
    return num_classes, num_classes
  if config.masked:
    return 2 * size, size
  return 0, 0


def build_networks(config: Config, image_shape: Sequence[int],
                   pixel_means: Optional[np.ndarray] = None,
                   num_classes: int = 0
                   ) -> tuple[keras.Model, keras.Model]:
  """The (generator, discriminator) pair that `config` describes.

  Args:
    config: the run's configuration.
    image_shape: (H, W, C) of the data.
    pixel_means: per-pixel mean of the training data in G's output range; the
      MLP generator's output bias starts at its logit (the paper's init).
    num_classes: labels of the dataset, for a conditional model.

  Returns:
    (generator, discriminator), each a functional `keras.Model`.

  Raises:
    ConfigError: a bad value in `config` (`Config.validate`).
    ValueError: `image_shape` is not three positive integers, or (1,)
      for the 1-D toy data.
  """
  config.validate()
  toy = config.dataset in TOY_DATASETS
  shape = tuple(image_shape)
  if toy:
    fits = shape == (1,)
  else:
    fits = len(shape) == 3 and all(is_integer(n) and n > 0 for n in shape)
  if not fits:
    raise ValueError(
        f"image_shape={shape!r} is not accepted: expected "
        + (f"(1,) for dataset={config.dataset!r}, the 1-D toy data."
           if toy else "(height, width, channels), three positive integers, "
           "such as (28, 28, 1) for MNIST."))
  # Layers take their dtype policy when they are made: build under the
  # run's precision, then leave the global policy as it was.
  previous = keras.config.dtype_policy()
  keras.config.set_dtype_policy(config.precision)
  try:
    return _build_networks(config, image_shape, pixel_means, num_classes)
  finally:
    keras.config.set_dtype_policy(previous)


def _build_networks(config, image_shape, pixel_means, num_classes):
  seed = config.seed
  g_cond, d_cond = condition_dims(config, image_shape, num_classes)
  # A packed D (config.pack > 1) takes `pack` images stacked on channels.
  d_shape = tuple(image_shape[:-1]) + (image_shape[-1] * config.pack,)
  if config.architecture == "mlp":
    bias = None
    if pixel_means is not None:
      bias = logit_of_marginals(pixel_means, config.g_output)
    generator = mlp_generator(
        config.latent_dim, image_shape, config.g_hidden, config.g_activation,
        config.g_output, config.g_init_scale, bias, seed=seed,
        condition_dim=g_cond)
    discriminator = mlp_discriminator(
        d_shape, config.d_hidden, config.d_pieces, config.d_input_dropout,
        config.d_hidden_dropout, config.d_init_scale, seed=seed + 100,
        condition_dim=d_cond)
  else:
    generator = conv_generator(
        config.latent_dim, image_shape, config.conv_filters, config.g_output,
        config.g_init_scale, seed=seed, condition_dim=g_cond)
    discriminator = conv_discriminator(
        d_shape, config.conv_filters, config.d_hidden_dropout,
        config.d_init_scale, seed=seed + 100, condition_dim=d_cond)
  return generator, discriminator
