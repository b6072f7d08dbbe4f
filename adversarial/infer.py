r"""Fits an encoder E(x) -> z to a trained generator and measures how well
G(E(x)) reconstructs test images (the paper's Section 7, item 2).

Usage:

  python -m adversarial.infer --workdir=runs/mnist [--steps=5000]

Writes <workdir>/inference/: encoder.weights.h5, inference.json (the scores)
and reconstructions.png (rows of test images x, G(E(x)) and the best of the
random samples).
"""

import json
import os

from absl import app
from absl import flags

from adversarial import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory of a run.",
                               required=True)
_CHECKPOINT = cli.define_checkpoint_flag()
_STEPS = flags.DEFINE_integer("steps", 5000, "Encoder training steps.",
                              lower_bound=1)
_BATCH = flags.DEFINE_integer("batch_size", 100, "Samples per step.",
                              lower_bound=1)
_LR = flags.DEFINE_float("learning_rate", 1e-3, "Adam step size.")
flags.register_validator("learning_rate", lambda v: v > 0,
                         "expected Adam's step size, a number > 0")
_PIXEL_WEIGHT = flags.DEFINE_float(
    "pixel_weight", 0.0, "Weight of the pixel error of G(E(x)) on real "
    "training images; 0 trains on G's samples alone (the authors' inferer).",
    lower_bound=0)
_NUM_TEST = flags.DEFINE_integer("num_test", 1000, "Test images scored, "
                                 "a fixed subset drawn over the test split.",
                                 lower_bound=1)
_CANDIDATES = flags.DEFINE_integer(
    "num_candidates", 10_000, "Random z of the best-of-random baseline.",
    lower_bound=1)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of every random draw.")
_MANUAL_DIR, _DATA_DIR = cli.define_data_flags()
flags.adopt_module_key_flags(cli)  # --helpshort lists them.


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  import numpy as np
  from adversarial.files import write_text_atomic
  from adversarial import callbacks as callbacks_lib
  from adversarial import data as data_lib
  from adversarial import images as images_lib
  from adversarial import inference
  from adversarial import quality
  from adversarial import train_lib
  model, config, record = cli.restore_or_exit(
      _WORKDIR.value, _CHECKPOINT.value,
      cli.data_dirs(_MANUAL_DIR, _DATA_DIR))
  try:
    train_lib.check_image_run(config, _WORKDIR.value, "learned inference")
    inference.check_unconditional(model)
  except ValueError as e:
    raise SystemExit(f"error: {e}") from None
  to_model = lambda a: np.asarray(data_lib.to_model_range(a, config.g_output))
  train = to_model(data_lib.load_array(config, config.train_split).images)
  test = to_model(quality.subset(
      data_lib.load_array(config, config.test_split).images,
      _NUM_TEST.value))
  encoder = inference.build_encoder(train.shape[1:], model.latent_dim,
                                    seed=_SEED.value)
  fit = inference.fit_encoder(
      model, encoder, steps=_STEPS.value, batch_size=_BATCH.value,
      learning_rate=_LR.value, seed=_SEED.value, real_images=train,
      pixel_weight=_PIXEL_WEIGHT.value, jit_compile=config.jit_compile)
  scores = inference.reconstruction_scores(
      model, encoder, test, train.mean(0), _CANDIDATES.value, _SEED.value)
  out = os.path.join(_WORKDIR.value, "inference")
  os.makedirs(out, exist_ok=True)
  callbacks_lib.save_weights_atomic(
      encoder, os.path.join(out, "encoder.weights.h5"))
  result = dict(scores.to_dict(), fit=fit, steps=_STEPS.value,
                pixel_weight=_PIXEL_WEIGHT.value, epoch=record.get("epoch"),
                checkpoint=record["weights"])
  write_text_atomic(os.path.join(out, "inference.json"),
                    json.dumps(result, indent=2))
  shown = test[:12]
  rows = np.concatenate([
      shown, inference.reconstruct(model, encoder, shown),
      inference.best_of_random(model, shown, _CANDIDATES.value, _SEED.value)])
  picture = images_lib.grid(data_lib.to_unit_range(rows, config.g_output),
                            rows=3)
  images_lib.write_png(os.path.join(out, "reconstructions.png"),
                       images_lib.zoom(picture, 2))
  print(f"encoder fitted in {fit['seconds']:.0f} s ({_STEPS.value} steps); "
        f"latent MSE on fresh samples {scores.latent_mse_on_samples:.3f} "
        f"(predicting 0: 1.0)")
  print(f"test reconstruction MSE per pixel ({scores.num_images} images): "
        f"G(E(x)) {scores.encoder:.4f} +/- {scores.encoder_stderr:.4f}; best "
        f"of {scores.num_candidates} random z {scores.best_of_random:.4f} +/- "
        f"{scores.best_of_random_stderr:.4f}; mean image "
        f"{scores.mean_image:.4f}")
  print(f"written to {out}/ (inference.json, reconstructions.png)")


if __name__ == "__main__":
  cli.run(main)
