"""Every conditional p(x_S | x_not-S) in one model (the paper's Section 7):
a GAN trained with random masks S.

    gan = MaskedGAN(generator, discriminator, mask_kinds=("pixels", "block",
                                                          "half", "all"))
    gan.compile(...)
    gan.fit(images, ...)
    filled = gan.complete(images, masks, seed=0)

A mask m [batch, H, W, 1] is 1 on the missing pixels S and 0 on the visible
ones. For each training image a mask is drawn from one of `mask_kinds`:

  pixels  each pixel missing with a rate drawn from U(0.25, 0.75);
  block   a rectangle of 1/4 to 3/4 of the height and width, anywhere;
  half    the top, bottom, left or right half;
  all     the whole image (the model is then also an ordinary generator).

G sees the visible pixels x * (1 - m), the mask and z, and its output fills
in S only: the completion is m * G(...) + (1 - m) * x, so the visible pixels
are never changed. D sees an image (real, or a completion) together with the
mask, and learns which pixels to doubt. One set of parameters serves every S.
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from adversarial import quality
from adversarial import rng
from adversarial.config import MASK_KINDS
from adversarial.gan import GAN, check_sampling

# The masks of the completion demo and its measurement.
DEMO_MASKS = ("bottom_half", "right_half", "block")


def parse_kinds(kinds) -> tuple[str, ...]:
  """'pixels,block' or a sequence -> a tuple of MASK_KINDS; raises
  ValueError naming a bad kind."""
  if isinstance(kinds, str):
    kinds = [k.strip() for k in kinds.split(",") if k.strip()]
  kinds = tuple(kinds)
  bad = [k for k in kinds if k not in MASK_KINDS]
  if not kinds or bad:
    raise ValueError(f"mask kinds {list(kinds)} are not accepted: expected "
                     f"one or more of {', '.join(MASK_KINDS)}.")
  return kinds


def _rows_cols(height: int, width: int):
  rows = tf.range(height, dtype=tf.float32)[None, :, None]
  cols = tf.range(width, dtype=tf.float32)[None, None, :]
  return rows, cols


def _rect(top, left, bh, bw, height, width):
  """[B, H, W] bool: inside the rectangle of each row's (top, left, bh, bw)."""
  rows, cols = _rows_cols(height, width)
  e = lambda v: v[:, None, None]
  return ((rows >= e(top)) & (rows < e(top + bh)) & (cols >= e(left)) &
          (cols < e(left + bw)))


def sample_masks(batch_size, height: int, width: int, kinds: Sequence[str],
                 seed) -> tf.Tensor:
  """Random masks, one kind per example drawn uniformly from `kinds`.

  Args:
    batch_size: number of masks (a scalar tensor or int).
    height, width: image size.
    kinds: a subset of MASK_KINDS.
    seed: int tensor [2]; the same seed gives the same masks everywhere.

  Returns:
    float32 [batch_size, height, width, 1], 1 on missing pixels.
  """
  kinds = parse_kinds(kinds)
  seed = tf.cast(seed, tf.int64)
  u = rng.uniform(tf.stack([tf.cast(batch_size, tf.int32), 8]), seed)
  kind = tf.minimum(tf.cast(u[:, 0] * len(kinds), tf.int32), len(kinds) - 1)
  h, w = float(height), float(width)
  # pixels
  rate = 0.25 + 0.5 * u[:, 1]
  pixel_u = rng.uniform(tf.stack([tf.cast(batch_size, tf.int32), height,
                                  width]), seed + tf.constant([0, 1],
                                                              tf.int64))
  pixels = pixel_u < rate[:, None, None]
  # block
  bh = tf.floor(h / 4 + u[:, 2] * (h / 2 + 1))
  bw = tf.floor(w / 4 + u[:, 3] * (w / 2 + 1))
  top = tf.floor(u[:, 4] * (h - bh + 1))
  left = tf.floor(u[:, 5] * (w - bw + 1))
  block = _rect(top, left, bh, bw, height, width)
  # half: 0 top, 1 bottom, 2 left, 3 right
  side = tf.minimum(tf.cast(u[:, 6] * 4, tf.int32), 3)
  half = _half(side, height, width)
  everything = tf.ones_like(pixels)
  by_kind = {"pixels": pixels, "block": block, "half": half,
             "all": everything}
  mask = tf.zeros_like(pixels)
  for i, name in enumerate(kinds):
    mask = tf.where((kind == i)[:, None, None], by_kind[name], mask)
  return tf.cast(mask, tf.float32)[..., None]


def _half(side, height: int, width: int):
  rows, cols = _rows_cols(height, width)
  e = lambda v: v[:, None, None]
  return (((e(side) == 0) & (rows < height // 2)) |
          ((e(side) == 1) & (rows >= height - height // 2)) |
          ((e(side) == 2) & (cols < width // 2)) |
          ((e(side) == 3) & (cols >= width - width // 2)))


def demo_masks(kind: str, num: int, height: int, width: int,
               seed: int = 0) -> np.ndarray:
  """Masks of one demo kind: 'bottom_half', 'right_half' or 'block' (a
  random square of half the height and width, seeded). float32
  [num, height, width, 1]."""
  if kind not in DEMO_MASKS:
    raise ValueError(f"kind={kind!r} is not accepted: expected one of "
                     f"{', '.join(DEMO_MASKS)}.")
  if kind in ("bottom_half", "right_half"):
    side = tf.fill([num], 1 if kind == "bottom_half" else 3)
    mask = _half(side, height, width)
  else:
    u = rng.uniform([num, 2], tf.constant([seed, 7], tf.int64))
    bh, bw = float(height // 2), float(width // 2)
    top = tf.floor(u[:, 0] * (height - bh + 1))
    left = tf.floor(u[:, 1] * (width - bw + 1))
    mask = _rect(top, left, tf.fill([num], bh), tf.fill([num], bw), height,
                 width)
  return np.asarray(tf.cast(mask, tf.float32)[..., None])


@keras.saving.register_keras_serializable(package="adversarial")
class MaskedGAN(GAN):
  """A `GAN` that completes images: G fills in the masked pixels.

  Args:
    generator: [z, concat(flat visible pixels, flat mask)] -> images.
    discriminator: [images, flat mask] -> logits.
    mask_kinds: the kinds of training masks (see the module doc).
    **kwargs: `GAN`'s arguments; `seed` also seeds the mask stream; `pack`
      must stay 1.
  """

  packs_images = False

  def __init__(self, generator, discriminator,
               mask_kinds: Sequence[str] = MASK_KINDS, **kwargs):
    super().__init__(generator, discriminator, **kwargs)
    self.mask_kinds = parse_kinds(mask_kinds)
    self.image_shape = tuple(int(d) for d in generator.output_shape[1:])
    if len(self.image_shape) != 3:
      raise ValueError(f"a masked model needs image outputs [H, W, C]: the "
                       f"generator's output shape is {self.image_shape}.")
    self.mask_seed = keras.random.SeedGenerator(self.seed + 7919,
                                                name="mask_seed")

  def get_config(self):
    config = super().get_config()
    config["mask_kinds"] = list(self.mask_kinds)
    return config

  def _condition(self, images, source):
    del source
    h, w = self.image_shape[0], self.image_shape[1]
    masks = sample_masks(tf.shape(images)[0], h, w, self.mask_kinds,
                         self.mask_seed.next())
    return images, masks

  def _chunk(self, cond, start, stop):
    images, masks = cond
    return images[start:stop], masks[start:stop]

  def _flat_mask(self, masks):
    full = tf.broadcast_to(masks, tf.concat(
        [tf.shape(masks)[:1], self.image_shape], 0))
    return tf.reshape(full, [tf.shape(masks)[0], -1])

  def fill(self, net, z, images, masks, training=False):
    """`images` with the pixels where `masks` is 1 filled in by `net` (G or
    its weight average, `sampler`) at noise `z`; the other pixels unchanged.
    """
    batch = tf.shape(images)[0]
    visible = tf.reshape(images * (1.0 - masks), [batch, -1])
    out = net([z, tf.concat([visible, self._flat_mask(masks)], 1)],
              training=training)
    return masks * out + (1.0 - masks) * images

  def _fake(self, z, cond, training):
    images, masks = cond
    return self.fill(self.generator, z, images, masks, training)

  def _logits(self, images, cond, training):
    _, masks = cond
    return self.discriminator([images, self._flat_mask(masks)],
                              training=training)

  def call(self, inputs, training=False):
    """[z, images, masks] -> completions."""
    z, images, masks = inputs
    return self.fill(self.generator, z, images, masks, training)

  def complete(self, images, masks, seed: int = 0, batch_size: int = 1000,
               average: Optional[bool] = None) -> np.ndarray:
    """Completions of `images` where `masks` is 1, the same for the same
    seed; visible pixels are returned unchanged.

    Args:
      images: [N, H, W, C] in G's output range.
      masks: [N, H, W, 1], 1 on the pixels to fill in.
      seed: seed of the completions' z (another seed, another completion).
      batch_size: images per forward pass.
      average: which generator (see `GAN.generate`).

    Returns:
      float32 [N, H, W, C].
    """
    images = np.asarray(images, np.float32)
    masks = np.asarray(masks, np.float32)
    if images.shape[1:] != self.image_shape:
      raise ValueError(f"images of shape {images.shape[1:]} are not accepted:"
                       f" expected [N, {', '.join(map(str, self.image_shape))}]"
                       f".")
    if masks.shape != images.shape[:3] + (1,):
      raise ValueError(f"masks of shape {masks.shape} are not accepted: "
                       f"expected {images.shape[:3] + (1,)}, one [H, W, 1] "
                       f"mask per image.")
    binary = np.isin(masks, (0.0, 1.0))
    if not binary.all():
      bad = masks[~binary][0]
      raise ValueError(
          f"masks holding {float(bad)!r} are not accepted: expected 1 on "
          f"the pixels to fill in and 0 on those that stay visible.")
    check_sampling(len(images), seed, batch_size)  # images as num_samples
    net = self.pick_generator(average)
    z = self.noise_for_seed(len(images), seed)
    out = [self.fill(net, z[i:i + batch_size], images[i:i + batch_size],
                     masks[i:i + batch_size], False)
           for i in range(0, len(images), batch_size)]
    return np.concatenate([np.asarray(o) for o in out], axis=0)

  def generate(self, num_samples: int, seed: int = 0,
               batch_size: int = 1000, average: Optional[bool] = None
               ) -> np.ndarray:
    """Samples with nothing visible: the conditional for S = every pixel,
    which the model learns when 'all' is among its mask kinds."""
    check_sampling(num_samples, seed, batch_size)
    blank = np.zeros((num_samples,) + self.image_shape, np.float32)
    masks = np.ones((num_samples,) + self.image_shape[:2] + (1,), np.float32)
    return self.complete(blank, masks, seed, batch_size, average)


def classifier_accuracy(classifier, images_unit: np.ndarray,
                        labels: np.ndarray) -> float:
  """Share of `images_unit` ([0, 1] range) that `classifier` labels right."""
  return float(np.mean(quality.predicted_classes(classifier, images_unit) ==
                       labels))


def completion_scores(model: MaskedGAN, classifier, images: np.ndarray,
                      labels: np.ndarray, mean_image: np.ndarray,
                      kinds: Sequence[str] = DEMO_MASKS,
                      completions: int = 5, seed: int = 0,
                      to_unit=lambda x: x) -> dict:
  """How often `classifier` gives completed digits their true label.

  For each demo mask kind: the accuracy on the original images, on the
  images with the missing part filled by the mean training image (the
  baseline), and on `completions` completions of the model (mean and each).

  Args:
    model: a trained MaskedGAN.
    classifier: images in [0, 1] -> logits.
    images: test images in G's output range; labels: their labels.
    mean_image: the mean training image in G's output range.
    kinds: DEMO_MASKS to score.
    completions: completions per input (seeds seed, seed + 1, ...).
    seed: seed of the block masks and of the first completion.
    to_unit: G's output range -> [0, 1].
  """
  if len(images) < 1 or completions < 1:
    raise ValueError(f"{len(images)} images and completions={completions} "
                     f"are not accepted: expected at least one of each.")
  h, w = images.shape[1], images.shape[2]
  original = classifier_accuracy(classifier, to_unit(images), labels)
  out = {}
  for kind in kinds:
    masks = demo_masks(kind, len(images), h, w, seed)
    mean_fill = masks * mean_image[None] + (1 - masks) * images
    per_draw = [classifier_accuracy(
        classifier, to_unit(model.complete(images, masks, seed=seed + c)),
        labels) for c in range(completions)]
    out[kind] = {"original": original,
                 "mean_fill": classifier_accuracy(classifier,
                                                  to_unit(mean_fill), labels),
                 "completed": float(np.mean(per_draw)),
                 "completed_per_draw": per_draw,
                 "missing_share": float(masks.mean())}
  return out


def completion_figure(model: MaskedGAN, images: np.ndarray, kind: str,
                      completions: int = 5, seed: int = 0,
                      to_unit=lambda x: x) -> np.ndarray:
  """One row per input: the original, the input with its missing part grey,
  then `completions` completions. Returns the grid picture (uint8)."""
  from adversarial import images as images_lib
  n, h, w = images.shape[:3]
  masks = demo_masks(kind, n, h, w, seed)
  shown = masks * 0.5 + (1 - masks) * to_unit(images)
  columns = [to_unit(images), shown] + [
      to_unit(model.complete(images, masks, seed=seed + c))
      for c in range(completions)]
  tiles = np.stack(columns, axis=1).reshape((-1,) + images.shape[1:])
  return images_lib.grid(tiles, rows=n)
