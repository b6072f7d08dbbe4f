r"""The paper's figures, as PNG files.

Usage:

  python -m adversarial.figures --workdir=runs/paper --out=figures \
      [--checkpoint=best] [--toy_steps=4000] [--tfds_manual_dir=DIR] \
      [--tfds_data_dir=DIR]

writes
  figure1_toy.png          the 1-D toy: p_data, p_g and D(x) at four stages
                           of training (needs matplotlib)
  figure2_neighbours.png   samples, each with its nearest training image
                           beside it (framed in yellow)
  figure3_interpolation.png  rows of G(z) along lines between pairs of z
                           (a conditional run: one class a row)

Figure 1 trains its own toy model (preset `toy_1d`); Figures 2 and 3 use the
run in --workdir.
"""

from __future__ import annotations

import io
import math
import os
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from adversarial import files
from adversarial import images as images_lib
from adversarial.config import is_integer

YELLOW = np.array([1.0, 0.85, 0.0], np.float32)


def _rgb(images: np.ndarray) -> np.ndarray:
  images = np.asarray(images, np.float32)
  return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def _frame(image: np.ndarray, colour=YELLOW, width: int = 1) -> np.ndarray:
  out = image.copy()
  out[:width], out[-width:] = colour, colour
  out[:, :width], out[:, -width:] = colour, colour
  return out


def neighbours_figure(samples: np.ndarray, train: np.ndarray,
                      columns: int = 6) -> np.ndarray:
  """Figure 2: each sample (left) with its nearest training image (right,
  framed).

  Args:
    samples: [N, H, W, C] in [0, 1].
    train: [M, H, W, C] in [0, 1].
    columns: pairs per row.

  Returns:
    uint8 RGB picture.
  """
  from adversarial import quality
  _, index = quality.nearest_distances(samples, train)
  tiles = []
  for sample, nearest in zip(_rgb(samples), _rgb(train[index])):
    tiles.extend([sample, _frame(nearest)])
  rows = math.ceil(len(samples) / columns)
  return images_lib.grid(np.stack(tiles), rows=rows, pad=1)


def interpolation_figure(model, pairs: int = 8, steps: int = 11,
                         seed: int = 0, output_activation: str = "sigmoid"
                         ) -> np.ndarray:
  """Figure 3: one row per pair (z0, z1), G((1 - t) z0 + t z1) for t from 0
  to 1 in `steps` steps. A conditional model draws row r for class r mod
  num_classes; a masked model fills in the whole image."""
  from adversarial import data as data_lib
  ends = np.asarray(model.noise_for_seed(2 * pairs, seed)).reshape(
      pairs, 2, -1)
  t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[None, :, None]
  z = ((1 - t) * ends[:, :1] + t * ends[:, 1:]).reshape(pairs * steps, -1)
  x = np.asarray(sample_from_noise(model, z, np.repeat(np.arange(pairs),
                                                       steps)))
  return images_lib.grid(data_lib.to_unit_range(x, output_activation),
                         rows=pairs)


def sample_from_noise(model, z: np.ndarray, rows: np.ndarray) -> tf.Tensor:
  """The sampling generator at the given z. A conditional model draws row
  i for class rows[i] mod num_classes; a masked model fills in every
  pixel, as its `generate` does."""
  from adversarial.conditional import ConditionalGAN
  from adversarial.masked import MaskedGAN
  z = tf.convert_to_tensor(z, tf.float32)
  if isinstance(model, ConditionalGAN):
    labels = np.asarray(rows) % model.num_classes
    return model.sampler([z, model.one_hot(labels)], training=False)
  if isinstance(model, MaskedGAN):
    blank = tf.zeros((len(z),) + model.image_shape)
    masks = tf.ones((len(z),) + model.image_shape[:2] + (1,))
    return model.fill(model.sampler, z, blank, masks)
  return model.sampler(z, training=False)


def normal_pdf(x, mean, std):
  return np.exp(-0.5 * ((x - mean) / std)**2) / (std * math.sqrt(2 * math.pi))


def kde(samples: np.ndarray, grid: np.ndarray, bandwidth: float = None
        ) -> np.ndarray:
  """Gaussian kernel density of 1-D samples on `grid` (Scott's bandwidth)."""
  samples = np.asarray(samples, np.float64).ravel()
  if bandwidth is None:
    bandwidth = 1.06 * max(samples.std(), 1e-3) * len(samples)**-0.2
  z = (grid[:, None] - samples[None, :]) / bandwidth
  return np.exp(-0.5 * z**2).sum(1) / (len(samples) * bandwidth *
                                       math.sqrt(2 * math.pi))


def toy_snapshots(config, stages: Sequence[int], grid: np.ndarray,
                  num_samples: int = 5000) -> list[dict]:
  """Trains the 1-D toy GAN of `config` and records, after each number of
  generator steps in `stages`, p_g (a KDE of G's samples) and D(x) on
  `grid`."""
  from adversarial import data as data_lib
  from adversarial import train_lib
  data = data_lib.load_array(config, config.train_split)
  model = train_lib.build_model(config, (1,), None, steps=100)
  batches = iter(data_lib.train_dataset(
      config.override(steps_per_epoch=max(stages), epochs=1), data))
  step_fn = tf.function(model.train_step, jit_compile=config.jit_compile)
  snapshots, done = [], 0
  xs = tf.constant(grid[:, None].astype(np.float32))
  for stage in sorted(stages):
    while done < stage:
      step_fn(next(batches))
      done += 1
    g = model.generate(num_samples, seed=1).ravel()
    snapshots.append({
        "step": done, "p_g": kde(g, grid), "g_samples": g,
        "d": tf.sigmoid(model.discriminator(xs)).numpy().ravel()})
  return snapshots


def toy_figure(config, stages=(0, 50, 150, 4000), path: str = None):
  """Figure 1: panels of p_data (black dots), p_g (green) and D (blue
  dashes) at several stages of training. Needs matplotlib."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  lo, hi = config.toy_mean - 4 * config.toy_std, config.toy_mean + 4 * max(
      config.toy_std, 1.0)
  grid = np.linspace(min(lo, -2.5), hi, 400)
  snaps = toy_snapshots(config, stages, grid)
  p_data = normal_pdf(grid, config.toy_mean, config.toy_std)
  fig, axes = plt.subplots(1, len(snaps), figsize=(4 * len(snaps), 3.2),
                           sharey=True)
  for ax, snap, letter in zip(axes, snaps, "abcdefgh"):
    ax.plot(grid, p_data, "k:", lw=2, label="p_data")
    ax.plot(grid, snap["p_g"], "g-", lw=1.5, label="p_g")
    ax.plot(grid, snap["d"], "b--", lw=1.5, label="D(x)")
    ax.axhline(0.5, color="0.8", lw=0.8)
    ax.set_title(f"({letter}) after {snap['step']} G steps")
    ax.set_ylim(0, 1.6)
  axes[0].legend(loc="upper left", fontsize=8)
  fig.tight_layout()
  if path:
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=90)
    files.write_bytes_atomic(path, png.getvalue())
  plt.close(fig)
  return snaps


def write_figures(workdir: str, out: str, checkpoint: str = "best",
                  toy_steps: int = 4000, seed: int = 0,
                  data_dirs: Optional[dict] = None) -> list[str]:
  """Writes the three figures into `out`; returns their paths.

  Args:
    workdir: a training run's directory.
    out: the folder for the PNG files; created when the run and checkpoint
      are found.
    checkpoint: 'best', 'last' or a `.weights.h5` path.
    toy_steps: generator steps of Figure 1's toy; 0 leaves Figure 1 out.
    seed: seed of the samples and of the interpolations' z.
    data_dirs: TFDS directories in place of the run's (`cli.data_dirs`).

  Raises:
    FileNotFoundError: no such run or checkpoint.
    ValueError: a negative `toy_steps`, or an `out` that cannot be made a
      folder.
  """
  from adversarial import config as config_lib
  from adversarial import data as data_lib
  from adversarial import train_lib
  if not is_integer(toy_steps) or toy_steps < 0:
    raise ValueError(f"toy_steps={toy_steps!r} is not accepted: expected 0 "
                     f"(no Figure 1) or a positive number of steps.")
  if why := files.not_local("out", out):
    raise ValueError(why)
  model, config, _ = train_lib.restore(workdir, checkpoint)
  train_lib.check_image_run(config, workdir, "Figures 2 and 3")
  config = config.override(**(data_dirs or {}))
  try:
    os.makedirs(out, exist_ok=True)
  except OSError as e:
    raise ValueError(f"out={out!r} cannot be created: {e}; expected a "
                     f"writable folder.") from None
  paths = []
  train = data_lib.load_array(config, config.train_split)
  unit = lambda x: data_lib.to_unit_range(
      np.asarray(data_lib.to_model_range(x, config.g_output)), config.g_output)
  samples = data_lib.to_unit_range(model.generate(24, seed=seed),
                                   config.g_output)
  path = os.path.join(out, "figure2_neighbours.png")
  images_lib.write_png(path, images_lib.zoom(
      neighbours_figure(samples, unit(train.images)), 2))
  paths.append(path)
  path = os.path.join(out, "figure3_interpolation.png")
  images_lib.write_png(path, images_lib.zoom(interpolation_figure(
      model, seed=seed, output_activation=config.g_output), 2))
  paths.append(path)
  if toy_steps:
    path = os.path.join(out, "figure1_toy.png")
    stages = sorted({0, toy_steps // 80, toy_steps // 25, toy_steps})
    toy_figure(config_lib.get_preset("toy_1d"), stages, path)
    paths.append(path)
  return paths


def main(argv):
  from absl import app
  from absl import flags
  from adversarial import cli
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    paths = write_figures(
        flags.FLAGS.workdir, flags.FLAGS.out, flags.FLAGS.checkpoint,
        flags.FLAGS.toy_steps,
        data_dirs=cli.data_dirs(flags.FLAGS["tfds_manual_dir"],
                                flags.FLAGS["tfds_data_dir"]))
  except (FileNotFoundError, ValueError) as e:
    raise SystemExit(f"error: {e}") from None
  for p in paths:
    print(f"wrote {p}")


# The flags live here, not at module level, so that importing the library
# defines none (the training binary defines flags of the same names).
if __name__ == "__main__":
  from absl import flags
  from adversarial import cli
  cli.define_data_flags()
  flags.DEFINE_string("workdir", None, "Work directory of a run.",
                      required=True)
  flags.DEFINE_string("out", "figures", "Folder for the PNG files.")
  cli.define_checkpoint_flag()
  flags.adopt_module_key_flags(cli)  # --helpshort lists them.
  flags.DEFINE_integer("toy_steps", 4000,
                       "Generator steps of the Figure 1 toy (0: skip it).")
  cli.run(main)
