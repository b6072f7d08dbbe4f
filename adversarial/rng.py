"""Counter-based random numbers that are bit-identical everywhere.

TensorFlow's stateless random ops give different numbers under XLA than in
ordinary kernels, even with `alg="philox"` named, so a jit-compiled training
step would draw other noise and other dropout masks than an eager one, and a
served model other samples than the trained one. The draws here are built
from exact integer arithmetic (the murmur3 finaliser over a counter), which
every backend and device computes the same way: the same seed gives the same
bits and dropout masks on CPU, GPU, with or without XLA, and the same z up to
an ulp where XLA fuses the scaling into a multiply-add.

Seeds are int tensors of shape [2], such as `keras.random.SeedGenerator`'s
`next()`, whose state is saved with the model.
"""

from __future__ import annotations

import math

import tensorflow as tf

_MASK = 0xFFFFFFFF


def _mul32(h, c: int):
  """(h * c) mod 2^32 for h in [0, 2^32), without int64 overflow."""
  lo, hi = c & 0xFFFF, c >> 16
  return (h * lo + tf.bitwise.left_shift((h * hi) & 0xFFFF, 16)) & _MASK


def _fmix32(h):
  """murmur3's 32-bit finaliser: a bijection that mixes every bit."""
  h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, 16))
  h = _mul32(h, 0x85EBCA6B)
  h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, 13))
  h = _mul32(h, 0xC2B2AE35)
  return tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, 16))


def _bits(seed0, seed1, counter):
  """32-bit hashes of (seed0, seed1, counter), elementwise, broadcasting."""
  seed0 = tf.cast(seed0, tf.int64) & _MASK
  seed1 = tf.cast(seed1, tf.int64) & _MASK
  key0 = _fmix32((seed0 * 0x9E3779B9 + 0x7F4A7C15) & _MASK)
  key1 = _fmix32(tf.bitwise.bitwise_xor(
      tf.bitwise.bitwise_xor(seed1, key0), tf.constant(0x165667B1, tf.int64)))
  h = _fmix32((counter + key1) & _MASK)
  h = _fmix32(tf.bitwise.bitwise_xor(h, key0))
  return _fmix32((h + key1 * 3) & _MASK)


# The hash compiled alone by XLA: one fused loop instead of some sixty
# integer kernels, each a pass over the whole tensor, where the caller runs
# without XLA. The arithmetic is exact, so the bits are the same. Only
# training uses it (dropout masks): a SavedModel that holds it would need
# XLA wherever it is served.
_compiled_bits = tf.function(_bits, jit_compile=True)


def random_bits(shape, seed, compiled: bool = False) -> tf.Tensor:
  """Uniform 32-bit integers, int64 tensor of `shape`, a function of
  (seed, position) alone. `compiled`: hash with XLA even where the caller
  runs without it (same bits)."""
  seed = tf.cast(seed, tf.int64)
  n = tf.reduce_prod(tf.cast(shape, tf.int64))
  counter = tf.range(n, dtype=tf.int64)
  bits = (_compiled_bits if compiled else _bits)(seed[0], seed[1], counter)
  return tf.reshape(bits, shape)


def _to_unit(bits):
  return tf.cast(tf.bitwise.right_shift(bits, 8), tf.float32) * (
      1.0 / (1 << 24))


def uniform_rows(seeds, width: int, minval: float = 0.0,
                 maxval: float = 1.0, stream: int = 0) -> tf.Tensor:
  """[len(seeds), width] uniforms; row i equals
  `uniform([1, width], [seeds[i], stream])`. Different streams of one seed
  are independent draws."""
  seeds = tf.reshape(tf.cast(seeds, tf.int64), [-1, 1])
  counter = tf.range(width, dtype=tf.int64)[None, :]
  return minval + (maxval - minval) * _to_unit(_bits(seeds, stream, counter))


def normal_rows(seeds, width: int) -> tf.Tensor:
  """[len(seeds), width] normals; row i equals `normal([1, width],
  [seeds[i], 0])`."""
  u = uniform_rows(seeds, 2 * width)
  return _box_muller(u[:, :width], u[:, width:])


def _box_muller(u1, u2):
  # 1 - u1 is in (0, 1], so the log is finite.
  return tf.sqrt(-2.0 * tf.math.log(1.0 - u1)) * tf.cos(2.0 * math.pi * u2)


def uniform(shape, seed, minval: float = 0.0, maxval: float = 1.0
            ) -> tf.Tensor:
  """float32 uniform on [minval, maxval), exact on every backend (24-bit
  grid)."""
  return minval + (maxval - minval) * _to_unit(random_bits(shape, seed))


def normal(shape, seed) -> tf.Tensor:
  """float32 standard normal by Box-Muller. The uniforms are exact; the
  transcendental functions may differ by an ulp between backends."""
  u = uniform(tf.concat([[2], tf.cast(shape, tf.int32)], 0), seed)
  return _box_muller(u[0], u[1])


def keep_mask(shape, seed, rate: float) -> tf.Tensor:
  """bool mask, True with probability 1 - rate (dropout's kept units)."""
  threshold = int(round(rate * 2**32))
  return random_bits(shape, seed, compiled=True) >= threshold


def replica_rows(draw, shape) -> tf.Tensor:
  """`draw(shape)` as this replica's rows of the global batch.

  Under a `tf.distribute` strategy with n replicas, each replica holds
  shape[0] rows of a global batch of n * shape[0]. Drawing the global batch
  and keeping this replica's rows makes each row's noise (z, dropout masks)
  the same as one device drawing for the whole global batch, and different
  between replicas. With one replica it is `draw(shape)`.

  Args:
    draw: shape -> tensor, a function of its seed and the shape alone.
    shape: this replica's shape, batch first.
  """
  ctx = tf.distribute.get_replica_context()
  n = ctx.num_replicas_in_sync if ctx is not None else 1
  if n == 1:
    return draw(shape)
  shape = tf.cast(shape, tf.int32)
  rows = shape[0]
  full = draw(tf.concat([[rows * n], shape[1:]], 0))
  start = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * rows
  return full[start:start + rows]
