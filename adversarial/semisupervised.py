"""Semi-supervised learning with D's features (the paper's Section 7, item
4): a linear classifier on the hidden layers of a trained discriminator,
fitted to a few labelled images.

    table = semi_supervised_table(model, untrained_d, train, test,
                                  sizes=(100, 600, 1000, 3000))

The features are the outputs of every hidden layer of D (both maxout layers
of the paper's D, 480 numbers), computed without dropout. The classifier is
multinomial logistic regression with an L2 penalty on standardised features,
fitted full-batch to convergence; it is the same for every feature set, so
the table compares features: raw pixels, an untrained D (the same nets at
their initial weights), and the trained D.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from adversarial.config import is_integer
from adversarial.images import check_floats


def hidden_layers(discriminator: keras.Model) -> list:
  """D's hidden layers whose outputs are the features: the maxout layers of
  the MLP, or the convolutions of the conv net."""
  from adversarial.networks import Maxout
  layers = [l for l in discriminator.layers if isinstance(l, Maxout)]
  if not layers:
    layers = [l for l in discriminator.layers
              if isinstance(l, keras.layers.Conv2D)]
  if not layers:
    raise ValueError(f"discriminator {discriminator.name!r} has no maxout or "
                     f"convolution layers to take features from.")
  return layers


def discriminator_features(discriminator: keras.Model, images: np.ndarray,
                           batch_size: int = 1000) -> np.ndarray:
  """Concatenated, flattened outputs of D's hidden layers (inference mode),
  float32 [N, F]."""
  if len(discriminator.inputs) != 1:
    raise ValueError("a conditional discriminator is not accepted: expected "
                     "the D of an unconditional run, which sees images alone.")
  check_floats(images, what="images in G's output range, as D saw them in "
               "training: [0, 1] for its sigmoid")
  expected = tuple(discriminator.inputs[0].shape[1:])
  if tuple(np.shape(images)[1:]) != expected:
    raise ValueError(
        f"images of shape {tuple(np.shape(images)[1:])} for a discriminator "
        f"that takes {expected}: expected images of D's input shape. (The D "
        f"of a packed run, pack > 1, takes several images stacked on the "
        f"channel axis and has no features of one image.)")
  outputs = [keras.layers.Flatten(name=f"features_{i}")(l.output)
             for i, l in enumerate(hidden_layers(discriminator))]
  extractor = keras.Model(discriminator.inputs, outputs)
  parts = []
  for i in range(0, len(images), batch_size):
    out = extractor(images[i:i + batch_size], training=False)
    out = out if isinstance(out, (list, tuple)) else [out]
    parts.append(np.concatenate([np.asarray(o) for o in out], axis=1))
  return np.concatenate(parts).astype(np.float32)


def check_sizes(labels: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
  """The classes of `labels`, sorted; raises ValueError unless every
  labelled-set size in `sizes` can be drawn from `labels` with the same
  count of each class: a positive multiple of the number of classes, at
  most that number times the rarest class's count."""
  classes, counts = np.unique(labels, return_counts=True)
  most = len(classes) * int(counts.min())
  for size in sizes:
    whole = is_integer(size)
    if not whole or size < 1 or size % len(classes) or size > most:
      shown = int(size) if whole else repr(size)
      raise ValueError(
          f"size={shown} is not accepted: expected a positive multiple of "
          f"the {len(classes)} classes (the same count of each) of at most "
          f"{most} (the rarest class, {classes[counts.argmin()]}, has "
          f"{counts.min()} examples).")
  return classes


def balanced_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
  """Indices of `size` examples, size / classes of each class, drawn with
  `seed`."""
  classes = check_sizes(labels, [size])
  rng = np.random.default_rng(seed)
  per = size // len(classes)
  picks = [rng.choice(np.flatnonzero(labels == c), per, replace=False)
           for c in classes]
  return np.sort(np.concatenate(picks))


def linear_probe(train_x: np.ndarray, train_y: np.ndarray,
                 test_x: np.ndarray, test_y: np.ndarray, l2: float = 1e-3,
                 steps: int = 500, learning_rate: float = 0.05) -> float:
  """Test error of multinomial logistic regression fitted to (train_x,
  train_y): features standardised with the training set's statistics,
  weights from zero, full-batch Adam. Deterministic."""
  mean = train_x.mean(0)
  std = train_x.std(0) + 1e-6
  xs = tf.constant((train_x - mean) / std, tf.float32)
  xt = tf.constant((test_x - mean) / std, tf.float32)
  classes = int(max(train_y.max(), test_y.max())) + 1
  w = tf.Variable(tf.zeros([xs.shape[1], classes]))
  b = tf.Variable(tf.zeros([classes]))
  y = tf.constant(train_y, tf.int32)
  opt = keras.optimizers.Adam(learning_rate)

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      logits = xs @ w + b
      loss = tf.reduce_mean(
          tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits)) + (
              l2 * tf.reduce_sum(tf.square(w)))
    opt.apply_gradients(zip(tape.gradient(loss, [w, b]), [w, b]))

  for _ in range(steps):
    step()
  predicted = np.argmax(np.asarray(xt @ w + b), axis=1)
  return float(np.mean(predicted != test_y))


@dataclasses.dataclass
class SemiSupervisedTable:
  """Test error (mean and std over draws of the labelled set) of the linear
  classifier on each feature set, for each number of labels."""
  sizes: list
  draws: int
  errors: dict        # {features: {size: [error per draw]}}

  def summary(self) -> dict:
    return {name: {str(n): {"mean": float(np.mean(e)),
                            "std": float(np.std(e))}
                   for n, e in rows.items()}
            for name, rows in self.errors.items()}

  def to_dict(self):
    return {"sizes": self.sizes, "draws": self.draws,
            "errors": {k: {str(n): e for n, e in v.items()}
                       for k, v in self.errors.items()},
            "summary": self.summary()}


def semi_supervised_table(feature_sets: dict, train_labels: np.ndarray,
                          test_labels: np.ndarray,
                          sizes: Sequence[int] = (100, 600, 1000, 3000),
                          draws: int = 3, seed: int = 0,
                          l2: float = 1e-3) -> SemiSupervisedTable:
  """Runs `linear_probe` on every feature set for every labelled-set size.

  Args:
    feature_sets: {name: (train features [N, F], test features [M, F])}.
    train_labels, test_labels: int labels.
    sizes: numbers of labelled training images (multiples of the classes).
    draws: labelled sets drawn per size (seeds seed, seed + 1, ...); every
      feature set sees the same draws.
    seed: first draw's seed.
    l2: the classifier's penalty.
  """
  if draws < 1:
    raise ValueError(f"draws={draws} is not accepted: expected a positive "
                     f"integer.")
  if l2 < 0:
    raise ValueError(f"l2={l2} is not accepted: expected a penalty >= 0.")
  check_sizes(train_labels, sizes)
  errors = {name: {} for name in feature_sets}
  for n in sizes:
    subsets = [balanced_subset(train_labels, n, seed + d)
               for d in range(draws)]
    for name, (train_f, test_f) in feature_sets.items():
      errors[name][n] = [
          linear_probe(train_f[idx], train_labels[idx], test_f, test_labels,
                       l2=l2) for idx in subsets]
  return SemiSupervisedTable(list(sizes), draws, errors)


def format_table(table: SemiSupervisedTable) -> str:
  """A Markdown table of test errors in percent."""
  head = "| features | " + " | ".join(f"{n} labels" for n in table.sizes)
  lines = [head + " |", "|---" * (len(table.sizes) + 1) + "|"]
  for name, rows in table.errors.items():
    cells = [f"{100 * np.mean(rows[n]):.1f} +/- {100 * np.std(rows[n]):.1f}"
             for n in table.sizes]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return "\n".join(lines)
