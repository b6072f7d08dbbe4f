"""Learned approximate inference (the paper's Section 7): an encoder
E(x) -> z fitted to a trained, fixed generator.

    encoder = build_encoder((28, 28, 1), latent_dim=100)
    fit_encoder(gan, encoder, steps=5000)
    z = encoder(images)              # G(z) reconstructs the images

E is trained as the authors' `inferer` was, on the generator's own samples:
draw z from the prior, make x = G(z) with G fixed, and regress z from x
(mean squared error). Samples are free, so E never sees the same pair twice.
With `pixel_weight` > 0 it also learns from real images, by the pixel error
of G(E(x)) (G still fixed), which fits E to where the data are rather than
where G's samples are.

`reconstruction_scores` measures G(E(x)) on held-out images against the best
of many random z, each test image paired with the nearest of the samples.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from adversarial import rng
from adversarial.gan import GAN, sample_prior
from adversarial.images import check_floats, IN_G_RANGE


def build_encoder(image_shape: Sequence[int], latent_dim: int,
                  hidden: Sequence[int] = (1200, 1200), seed: int = 0,
                  name: str = "encoder") -> keras.Model:
  """An MLP encoder: images [batch, H, W, C] -> z [batch, latent_dim]."""
  x = keras.Input(tuple(image_shape), name="image")
  h = keras.layers.Flatten()(x)
  for i, width in enumerate(hidden):
    h = keras.layers.Dense(
        width, activation="relu",
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed + i),
        name=f"h{i}")(h)
  z = keras.layers.Dense(
      latent_dim,
      kernel_initializer=keras.initializers.GlorotUniform(
          seed=seed + len(hidden)), name="z")(h)
  return keras.Model(x, z, name=name)


def check_unconditional(model) -> None:
  if type(model).__name__ != "GAN":
    raise ValueError(
        f"a {type(model).__name__} is not accepted: the encoder inverts an "
        f"unconditional generator G(z); expected a run trained without "
        f"--conditional or --masked.")


def fit_encoder(model: GAN, encoder: keras.Model, steps: int = 5000,
                batch_size: int = 100, learning_rate: float = 1e-3,
                seed: int = 0, real_images: Optional[np.ndarray] = None,
                pixel_weight: float = 0.0, average: Optional[bool] = None,
                jit_compile: bool = True) -> dict:
  """Fits `encoder` to invert the fixed generator of `model`.

  Args:
    model: a trained unconditional GAN (its weights are not changed).
    encoder: images -> z, e.g. `build_encoder`.
    steps: Adam steps.
    batch_size: samples (and real images) per step.
    learning_rate: Adam's step size.
    seed: seed of the z and of the real-image batches.
    real_images: [N, H, W, C] in G's output range, for `pixel_weight`.
    pixel_weight: weight of the pixel error of G(E(x)) on real images; 0 (the
      authors' inferer) trains on samples alone.
    average: which generator to invert (see `GAN.generate`).
    jit_compile: compile the step with XLA.

  Returns:
    {'latent_mse': per-step latent error of the last 100 steps, averaged,
     'pixel_mse': the same for the real-image term (or None), 'seconds'}.
  """
  check_unconditional(model)
  if pixel_weight < 0:
    raise ValueError(f"pixel_weight={pixel_weight} is not accepted: expected"
                     f" a weight >= 0.")
  if pixel_weight > 0 and real_images is None:
    raise ValueError("pixel_weight > 0 needs real_images: expected training "
                     "images in G's output range.")
  if real_images is not None:
    check_floats(real_images, "real_images", IN_G_RANGE)
  if steps < 1 or batch_size < 1:
    raise ValueError(f"steps={steps}, batch_size={batch_size} are not "
                     f"accepted: expected positive integers.")
  if not learning_rate > 0:
    raise ValueError(f"learning_rate={learning_rate} is not accepted: "
                     f"expected a step size > 0.")
  generator = model.pick_generator(average)
  optimizer = keras.optimizers.Adam(learning_rate)
  optimizer.build(encoder.trainable_variables)
  real = None if real_images is None else tf.constant(real_images, tf.float32)
  use_pixels = pixel_weight > 0

  def step(i):
    z = sample_prior([batch_size, model.latent_dim],
                     tf.stack([tf.constant(seed, tf.int64), 2 * i]),
                     model.prior)
    x = generator(z, training=False)
    with tf.GradientTape() as tape:
      latent = tf.reduce_mean(tf.square(encoder(x, training=True) - z))
      loss = latent
      pixel = tf.constant(0.0)
      if use_pixels:
        idx = tf.cast(rng.uniform([batch_size],
                                  tf.stack([tf.constant(seed, tf.int64),
                                            2 * i + 1])) *
                      tf.cast(tf.shape(real)[0], tf.float32), tf.int32)
        xr = tf.gather(real, idx)
        recon = generator(encoder(xr, training=True), training=False)
        pixel = tf.reduce_mean(tf.square(recon - xr))
        loss = latent + pixel_weight * pixel
    grads = tape.gradient(loss, encoder.trainable_variables)
    optimizer.apply_gradients(zip(grads, encoder.trainable_variables))
    return latent, pixel

  step_fn = tf.function(step, jit_compile=jit_compile)
  start = time.perf_counter()
  latents, pixels = [], []
  for i in range(steps):
    latent, pixel = step_fn(tf.constant(i, tf.int64))
    if i >= steps - 100:
      latents.append(float(latent))
      pixels.append(float(pixel))
  return {"latent_mse": float(np.mean(latents)),
          "pixel_mse": float(np.mean(pixels)) if use_pixels else None,
          "seconds": time.perf_counter() - start}


def encode(encoder: keras.Model, images, batch_size: int = 1000
           ) -> np.ndarray:
  """E(x) for `images` in G's output range, float32 [N, latent_dim]."""
  check_floats(images, what=IN_G_RANGE)
  return np.concatenate([
      np.asarray(encoder(images[i:i + batch_size], training=False))
      for i in range(0, len(images), batch_size)])


def reconstruct(model: GAN, encoder: keras.Model, images,
                average: Optional[bool] = None) -> np.ndarray:
  """G(E(x)), float32 like `images`."""
  generator = model.pick_generator(average)
  z = encode(encoder, images)
  return np.concatenate([
      np.asarray(generator(z[i:i + 1000], training=False))
      for i in range(0, len(z), 1000)])


def best_of_random(model: GAN, images: np.ndarray, num_candidates: int,
                   seed: int = 0, average: Optional[bool] = None
                   ) -> np.ndarray:
  """For each image, the nearest (squared pixel distance) of
  `num_candidates` samples G(z) with random z: the baseline an encoder has
  to beat."""
  check_floats(images, what=IN_G_RANGE)
  samples = model.generate(num_candidates, seed=seed, average=average)
  flat_s = samples.reshape(len(samples), -1).astype(np.float64)
  flat_x = images.reshape(len(images), -1).astype(np.float64)
  s_sq = (flat_s**2).sum(1)
  best = np.empty(len(images), np.int64)
  for i in range(0, len(images), 500):
    d = s_sq[None, :] - 2.0 * flat_x[i:i + 500] @ flat_s.T
    best[i:i + 500] = d.argmin(1)
  return samples[best]


@dataclasses.dataclass
class ReconstructionScores:
  """Mean squared pixel error per image (mean over pixels), with its
  standard error, of each way of reconstructing the test images."""
  encoder: float
  encoder_stderr: float
  best_of_random: float
  best_of_random_stderr: float
  mean_image: float
  num_images: int
  num_candidates: int
  latent_mse_on_samples: float

  def to_dict(self):
    return dataclasses.asdict(self)


def _mse(a, b):
  per = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64))**2,
                axis=tuple(range(1, np.ndim(a))))
  return float(per.mean()), float(per.std() / np.sqrt(len(per)))


def reconstruction_scores(model: GAN, encoder: keras.Model,
                          test_images: np.ndarray, mean_image: np.ndarray,
                          num_candidates: int = 10_000, seed: int = 0,
                          average: Optional[bool] = None
                          ) -> ReconstructionScores:
  """G(E(x)) against the best of `num_candidates` random z and against the
  mean image, on `test_images` (G's output range); also E's latent error on
  fresh samples G(z) (the prior's variance, 1, is what predicting 0 gets)."""
  if len(test_images) < 1 or num_candidates < 1:
    raise ValueError(f"{len(test_images)} test images and num_candidates="
                     f"{num_candidates} are not accepted: expected at least "
                     f"one of each.")
  enc, enc_se = _mse(reconstruct(model, encoder, test_images, average),
                     test_images)
  rand, rand_se = _mse(best_of_random(model, test_images, num_candidates,
                                      seed, average), test_images)
  mean, _ = _mse(np.broadcast_to(mean_image, test_images.shape), test_images)
  z = np.asarray(model.noise_for_seed(2000, seed + 1))
  x = np.asarray(model.pick_generator(average)(z, training=False))
  latent = float(np.mean((encode(encoder, x) - z)**2))
  return ReconstructionScores(enc, enc_se, rand, rand_se, mean,
                              len(test_images), num_candidates, latent)
