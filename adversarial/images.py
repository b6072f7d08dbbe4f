"""Image grids and PNG files (TensorFlow's own PNG encoder; no plotting
library)."""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
import tensorflow as tf

from adversarial.config import is_integer
from adversarial.files import write_bytes_atomic


# What the package's models take as images, in the messages of
# `check_floats`: floats on G's scale.
IN_G_RANGE = "images in G's output range, [0, 1] for its sigmoid"


def check_floats(values, name: str = "images",
                 what: str = "images in [0, 1]") -> None:
  """Raises ValueError where `values` (an array, a tensor, or what
  np.asarray takes) is not of a floating-point dtype: uint8 pixels, 0-255,
  where `what` is on G's scale (0-1 for its sigmoid) would be judged,
  scored or drawn 255-fold."""
  dtype = getattr(values, "dtype", None)
  if dtype is None:
    dtype = np.asarray(values).dtype
  if hasattr(dtype, "is_floating"):  # A TensorFlow dtype.
    floating = dtype.is_floating
  else:
    floating = np.issubdtype(dtype, np.floating)
  if not floating:
    raise ValueError(f"{name} of dtype {getattr(dtype, 'name', dtype)} are "
                     f"not accepted: expected floating-point {what} (uint8 "
                     f"pixels divided by 255).")


def grid(images: np.ndarray, rows: Optional[int] = None,
         pad: int = 1, pad_value: float = 1.0) -> np.ndarray:
  """Tiles images into one picture.

  Args:
    images: float [N, H, W, C] in [0, 1] (C = 1 or 3).
    rows: rows of the grid; about sqrt(N) when None.
    pad: pixels between tiles.
    pad_value: brightness of the padding, in [0, 1].

  Returns:
    uint8 [rows * (H + pad) + pad, cols * (W + pad) + pad, C].
  """
  given = np.asarray(images)
  check_floats(given)  # uint8 pixels would all clip to white.
  images = given.astype(np.float32)
  if images.ndim != 4 or not len(images):
    raise ValueError(f"images of shape {images.shape} are not accepted: "
                     f"expected [N, H, W, C] with N >= 1.")
  n, h, w, c = images.shape
  if rows is not None and not (is_integer(rows) and rows >= 1):
    raise ValueError(f"rows={rows!r} is not accepted: expected a positive "
                     f"integer, or None for about sqrt(N).")
  rows = rows or max(1, int(np.floor(np.sqrt(n))))
  cols = int(np.ceil(n / rows))
  out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c),
                pad_value, np.float32)
  for i in range(n):
    r, col = divmod(i, cols)
    y, x = pad + r * (h + pad), pad + col * (w + pad)
    out[y:y + h, x:x + w] = images[i]
  return np.round(np.clip(out, 0.0, 1.0) * 255).astype(np.uint8)


def zoom(picture: np.ndarray, factor: int) -> np.ndarray:
  """Nearest-neighbour enlargement of [H, W, C] by an integer factor."""
  return np.repeat(np.repeat(picture, factor, axis=0), factor, axis=1)


def write_png(path: str, picture: np.ndarray) -> None:
  """Writes uint8 [H, W, C] as a PNG, atomically (`write_bytes_atomic`: two
  evaluations of one run may write its grid at once)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  write_bytes_atomic(
      path, tf.io.encode_png(np.asarray(picture, np.uint8)).numpy())


def read_png(path: str) -> np.ndarray:
  """uint8 [H, W, C] from a PNG file."""
  return tf.io.decode_png(tf.io.read_file(path)).numpy()
