import numpy as np
import pytest

from adversarial import inference
from adversarial import train_lib

from conftest import small_config

SHAPE = (28, 28, 1)


def make(**changes):
  config = small_config(g_init_scale=0.5, **changes)
  means = np.full(SHAPE, 0.2, np.float32)
  return train_lib.build_model(config, SHAPE, means, steps=3)


def test_encoder_learns_to_invert_the_generator():
  model = make()
  encoder = inference.build_encoder(SHAPE, model.latent_dim, hidden=(64,))
  z = np.asarray(model.noise_for_seed(200, 99))
  x = np.asarray(model.generator(z))
  before_latent = np.mean((inference.encode(encoder, x) - z)**2)
  before_pixels = np.mean((inference.reconstruct(model, encoder, x) - x)**2)
  weights = [np.array(w) for w in model.weights]
  fit = inference.fit_encoder(model, encoder, steps=300, batch_size=64,
                              jit_compile=False)
  after_latent = np.mean((inference.encode(encoder, x) - z)**2)
  after_pixels = np.mean((inference.reconstruct(model, encoder, x) - x)**2)
  assert after_latent < 0.5 * before_latent
  assert after_pixels < 0.5 * before_pixels
  assert np.isfinite(fit["latent_mse"]) and fit["pixel_mse"] is None
  # G and D are fixed.
  for a, b in zip(weights, model.weights):
    np.testing.assert_array_equal(a, np.array(b))


def test_pixel_term_trains_on_real_images():
  model = make()
  rng = np.random.default_rng(0)
  real = np.asarray(model.generate(64, seed=5)) + rng.normal(
      0, 0.01, (64,) + SHAPE).astype(np.float32)
  encoder = inference.build_encoder(SHAPE, model.latent_dim, hidden=(64,))
  fit = inference.fit_encoder(model, encoder, steps=50, batch_size=16,
                              real_images=real, pixel_weight=10.0,
                              jit_compile=False)
  assert fit["pixel_mse"] is not None and np.isfinite(fit["pixel_mse"])
  with pytest.raises(ValueError, match="needs real_images"):
    inference.fit_encoder(model, encoder, steps=1, pixel_weight=1.0)
  with pytest.raises(ValueError, match="learning_rate=0.0 is not accepted: "
                     "expected a step size > 0"):
    inference.fit_encoder(model, encoder, steps=1, learning_rate=0.0)


def test_best_of_random_is_the_nearest_sample():
  model = make()
  x = np.asarray(model.generate(5, seed=11))
  best = inference.best_of_random(model, x, 50, seed=0)
  samples = model.generate(50, seed=0)
  d = ((x[:, None] - samples[None])**2).sum(axis=(2, 3, 4))
  np.testing.assert_allclose(best, samples[d.argmin(1)])
  encoder = inference.build_encoder(SHAPE, model.latent_dim, hidden=(8,))
  scores = inference.reconstruction_scores(model, encoder, x, x.mean(0),
                                           num_candidates=50)
  assert scores.encoder == pytest.approx(
      np.mean((inference.reconstruct(model, encoder, x) - x)**2), rel=1e-5)
  assert scores.best_of_random == pytest.approx(np.mean(d.min(1)) / x[0].size,
                                                rel=1e-5)
  assert scores.num_images == 5 and scores.num_candidates == 50
  with pytest.raises(ValueError, match="num_candidates=0 are not accepted"):
    inference.reconstruction_scores(model, encoder, x, x.mean(0),
                                    num_candidates=0)
  with pytest.raises(ValueError, match="0 test images .* not accepted"):
    inference.reconstruction_scores(model, encoder, x[:0], x.mean(0))
  # uint8 pixels against G's [0, 1], wherever images are given.
  pixels = (x * 255).astype(np.uint8)
  for act in (lambda: inference.best_of_random(model, pixels, 50),
              lambda: inference.reconstruct(model, encoder, pixels),
              lambda: inference.reconstruction_scores(model, encoder, pixels,
                                                      x.mean(0), 50),
              lambda: inference.fit_encoder(model, encoder, steps=1,
                                            real_images=pixels,
                                            pixel_weight=1.0)):
    with pytest.raises(ValueError, match=r"of dtype uint8 are not accepted: "
                       r"expected floating-point images in G's output "
                       r"range"):
      act()


def test_conditional_models_are_refused():
  model = train_lib.build_model(small_config(conditional=True), SHAPE, None,
                                steps=3, num_classes=10)
  with pytest.raises(ValueError, match="unconditional generator"):
    inference.fit_encoder(model, inference.build_encoder(SHAPE, 8), steps=1)
