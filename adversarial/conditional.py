"""The conditional model p(x | c) of the paper's Section 7: the class label
goes to both nets.

    gan = ConditionalGAN(generator, discriminator, num_classes=10)
    gan.compile(d_optimizer=..., g_optimizer=...)
    gan.fit(dataset_of_image_label_pairs, epochs=...)
    sevens = gan.generate(16, seed=0, labels=[7] * 16)

The nets are the usual ones built with a condition input
(`networks.build_networks` with `config.conditional`): G maps [z, one_hot(c)]
to images and D maps [images, one_hot(c)] to logits. Each minibatch's
samples are made for the labels of its real images, so G sees the data's
class frequencies, and D judges each image, real or generated, together with
its label. Everything else (update rules, losses, checkpoints, the weight
average) is `GAN`'s.
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from adversarial.config import is_integer
from adversarial.gan import GAN, check_sampling


@keras.saving.register_keras_serializable(package="adversarial")
class ConditionalGAN(GAN):
  """A `GAN` whose nets both take the class label.

  The dataset yields (images, labels) with integer labels in
  [0, num_classes).

  Args:
    generator: [z, one-hot label] -> images.
    discriminator: [images, one-hot label] -> logits.
    num_classes: number of labels.
    **kwargs: `GAN`'s arguments (`pack` must stay 1).
  """

  packs_images = False

  def __init__(self, generator, discriminator, num_classes: int = 10,
               **kwargs):
    if not is_integer(num_classes) or num_classes < 2:
      raise ValueError(f"num_classes={num_classes!r} is not accepted: "
                       f"expected an integer >= 2.")
    super().__init__(generator, discriminator, **kwargs)
    for name, net in (("generator", generator),
                      ("discriminator", discriminator)):
      inputs = getattr(net, "inputs", None) or ()
      width = inputs[1].shape[-1] if len(inputs) > 1 else None
      if width is not None and width != num_classes:
        raise ValueError(
            f"num_classes={num_classes} is not accepted: the {name}'s "
            f"condition input takes {width} values; expected the number of "
            f"classes it was built for, {width}.")
    self.num_classes = num_classes

  def get_config(self):
    config = super().get_config()
    config["num_classes"] = self.num_classes
    return config

  def _unpack(self, data):
    if (not isinstance(data, (tuple, list)) or len(data) < 2 or
        data[1] is None):
      raise ValueError(
          "ConditionalGAN trains on (images, labels) batches: expected a "
          "dataset of pairs, e.g. tf.data.Dataset.from_tensor_slices("
          "(images, labels)).")
    return data[0], data[1]

  def one_hot(self, labels) -> tf.Tensor:
    """[batch] integer labels in [0, num_classes) -> [batch, num_classes].

    Labels given one-hot, or as anything but one integer per image, are
    refused where their shape is known; labels out of range by an assert
    that runs before any weight moves (XLA drops asserts: a compiled step
    would take such a label as no class at all).
    """
    labels = tf.convert_to_tensor(labels)
    shape = labels.shape
    if (not labels.dtype.is_integer or shape.rank not in (None, 1, 2) or
        (shape.rank == 2 and shape[-1] not in (None, 1))):
      raise ValueError(
          f"labels of dtype {labels.dtype.name} and shape {shape} are not "
          f"accepted: expected integer labels in [0, {self.num_classes}), "
          f"one per image ([batch] or [batch, 1]), not one-hot vectors.")
    labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
    check = tf.debugging.assert_less(
        tf.cast(labels, tf.uint32), tf.cast(self.num_classes, tf.uint32),
        message=f"labels must be in [0, {self.num_classes})")
    with tf.control_dependencies([check]):
      return tf.one_hot(labels, self.num_classes, dtype=tf.float32)

  def _condition(self, images, source):
    del images
    return self.one_hot(source)

  def _chunk(self, cond, start, stop):
    return cond[start:stop]

  def _fake(self, z, cond, training):
    return self.generator([z, cond], training=training)

  def _logits(self, images, cond, training):
    return self.discriminator([images, cond], training=training)

  def call(self, inputs, training=False):
    """[z, one-hot labels] -> images."""
    return self.generator(inputs, training=training)

  def default_labels(self, num_samples: int) -> np.ndarray:
    """Labels in blocks: the first num_samples / num_classes samples of class
    0, then class 1, and so on (a square grid of 10 x 10 has one row per
    class)."""
    return (np.arange(num_samples) * self.num_classes) // max(num_samples, 1)

  def labels_in_shares(self, num_samples: int,
                       shares: Sequence[float]) -> np.ndarray:
    """Labels in blocks, class 0 first, with counts in proportion to
    `shares` (largest remainders get the leftover samples).

    Sampled with the training set's class shares, the model is a model of
    p(x) = sum_c p(c) p(x | c), which is what an unconditional score such as
    the Parzen estimate of the test images measures.
    """
    shares = np.asarray(shares, np.float64).reshape(-1)
    if (len(shares) != self.num_classes or not np.isfinite(shares).all() or
        (shares < 0).any() or shares.sum() <= 0):
      raise ValueError(
          f"shares={shares.tolist()} is not accepted: expected "
          f"{self.num_classes} non-negative numbers with a positive sum.")
    exact = num_samples * shares / shares.sum()
    counts = np.floor(exact).astype(np.int64)
    leftover = num_samples - counts.sum()
    counts[np.argsort(counts - exact, kind="stable")[:leftover]] += 1
    return np.repeat(np.arange(self.num_classes), counts)

  def generate(self, num_samples: int, seed: int = 0,
               batch_size: int = 1000, average: Optional[bool] = None,
               labels: Optional[Sequence[int]] = None) -> np.ndarray:
    """Samples of G for `labels` (by default `default_labels`), the same for
    the same seed and labels.

    Returns:
      float32 array [num_samples, H, W, C] in G's output range.
    """
    check_sampling(num_samples, seed, batch_size)
    if labels is None:
      labels = self.default_labels(num_samples)
    given = np.asarray(labels).reshape(-1)
    if given.size and not (np.issubdtype(given.dtype, np.integer) or
                           np.issubdtype(given.dtype, np.floating) and
                           np.all(given == np.round(given))):
      raise ValueError(
          f"labels of dtype {given.dtype} ({given[:4].tolist()}"
          f"{'...' if given.size > 4 else ''}) are not accepted: expected "
          f"integer labels in [0, {self.num_classes}), one per sample.")
    labels = given.astype(np.int64)
    if len(labels) != num_samples:
      raise ValueError(f"{len(labels)} labels for num_samples={num_samples}: "
                       f"expected one label per sample.")
    bad = labels[(labels < 0) | (labels >= self.num_classes)]
    if bad.size:
      raise ValueError(f"label {int(bad[0])} is not accepted: expected "
                       f"labels in [0, {self.num_classes}).")
    net = self.pick_generator(average)
    z = self.noise_for_seed(num_samples, seed)
    c = self.one_hot(labels)
    out = [net([z[i:i + batch_size], c[i:i + batch_size]], training=False)
           for i in range(0, num_samples, batch_size)]
    return np.concatenate([np.asarray(o) for o in out], axis=0)
