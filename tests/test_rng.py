import numpy as np
import tensorflow as tf

from adversarial import rng


def test_same_seed_same_numbers_other_seed_other_numbers():
  a = rng.random_bits([1000], tf.constant([1, 2])).numpy()
  b = rng.random_bits([1000], tf.constant([1, 2])).numpy()
  c = rng.random_bits([1000], tf.constant([1, 3])).numpy()
  d = rng.random_bits([1000], tf.constant([2, 2])).numpy()
  np.testing.assert_array_equal(a, b)
  assert (a == c).mean() < 0.01 and (a == d).mean() < 0.01
  assert a.min() >= 0 and a.max() < 2**32


def test_bits_are_uniform_and_uncorrelated():
  bits = rng.random_bits([200_000], tf.constant([7, 0])).numpy()
  # Each byte of the words is uniform: chi-square over 256 bins.
  for shift in (0, 8, 16, 24):
    counts = np.bincount((bits >> shift) & 255, minlength=256)
    chi2 = ((counts - counts.mean())**2 / counts.mean()).sum()
    assert chi2 < 350, (shift, chi2)  # 255 dof: p < 1e-4 above ~350
  u = bits / 2**32
  assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.01
  other = rng.random_bits([200_000], tf.constant([7, 1])).numpy() / 2**32
  assert abs(np.corrcoef(u, other)[0, 1]) < 0.01


def test_identical_under_xla():
  seed = tf.Variable([3, 9], dtype=tf.int64)
  bits = lambda: rng.random_bits([64, 33], seed.value())
  np.testing.assert_array_equal(tf.function(bits)().numpy(),
                                tf.function(bits, jit_compile=True)().numpy())
  fn = lambda: (rng.uniform([64, 33], seed.value(), -1.0, 2.0),
                rng.normal([500], seed.value()),
                rng.keep_mask([10, 10], seed.value(), 0.3))
  plain = [t.numpy() for t in tf.function(fn)()]
  xla = [t.numpy() for t in tf.function(fn, jit_compile=True)()]
  # The integers are exact; floats may differ by an ulp where XLA fuses a
  # multiply-add.
  np.testing.assert_allclose(plain[0], xla[0], rtol=0, atol=3e-7)
  np.testing.assert_allclose(plain[1], xla[1], rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(plain[2], xla[2])
  assert plain[0].min() >= -1.0 and plain[0].max() < 2.0


def test_compiled_hash_gives_the_same_bits():
  # Dropout masks hash with XLA even in a step run without it.
  seed = tf.constant([5, 11], tf.int64)
  plain = rng.random_bits([100, 784], seed).numpy()
  compiled = rng.random_bits([100, 784], seed, compiled=True).numpy()
  np.testing.assert_array_equal(plain, compiled)
  in_graph = tf.function(
      lambda: rng.random_bits([100, 784], seed, compiled=True))().numpy()
  np.testing.assert_array_equal(plain, in_graph)
  np.testing.assert_array_equal(
      rng.keep_mask([100, 784], seed, 0.2).numpy(),
      plain >= int(round(0.2 * 2**32)))


def test_keep_mask_rate():
  mask = rng.keep_mask([100_000], tf.constant([0, 0]), 0.2).numpy()
  assert abs(mask.mean() - 0.8) < 0.005
  assert rng.keep_mask([100], tf.constant([0, 0]), 0.0).numpy().all()


def test_rows_equal_single_draws():
  seeds = tf.constant([0, 5, 2**31 + 7], tf.int64)
  rows = rng.uniform_rows(seeds, 6, -2.0, 2.0).numpy()
  normals = rng.normal_rows(seeds, 6).numpy()
  for i, s in enumerate(seeds.numpy()):
    one = rng.uniform([1, 6], tf.constant([s, 0], tf.int64), -2.0, 2.0)
    np.testing.assert_array_equal(rows[i], one.numpy()[0])
    np.testing.assert_allclose(
        normals[i], rng.normal([1, 6], tf.constant([s, 0], tf.int64))
        .numpy()[0], rtol=1e-6)


def test_label_rows_follow_the_shares_on_their_own_stream():
  from adversarial.gan import sample_label_rows
  shares = [0.5, 0.0, 0.2, 0.3]
  seeds = tf.range(40_000, dtype=tf.int64)
  labels = sample_label_rows(seeds, shares).numpy()
  counts = np.bincount(labels, minlength=4) / len(labels)
  np.testing.assert_allclose(counts, shares, atol=0.01)
  assert counts[1] == 0
  # A function of each seed alone, as z is.
  np.testing.assert_array_equal(
      sample_label_rows(tf.constant([17, 3], tf.int64), shares).numpy(),
      labels[[17, 3]])
  # Drawn apart from z: z's first coordinate does not set the label.
  u = rng.uniform_rows(seeds, 1).numpy()[:, 0]
  assert abs(np.corrcoef(u, labels)[0, 1]) < 0.02
  np.testing.assert_array_equal(
      rng.uniform_rows(seeds[:5], 3, stream=1).numpy()[:, 0],
      rng.uniform_rows(seeds[:5], 1, stream=1).numpy()[:, 0])
