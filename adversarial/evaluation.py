"""The Parzen-window log-likelihood estimate behind the paper's Table 1.

For test points x and generator samples mu_j (j < N) in d dimensions,

    log p(x) = logmeanexp_j(-||x - mu_j||^2 / (2 sigma^2))
               - d * log(sigma * sqrt(2 pi)),

with sigma chosen on validation data from numpy.logspace(-1, 0, 10), as the
authors' `parzen_ll.py` does. Squared distances come from
||x||^2 + ||mu||^2 - 2 x.mu, one chunk of x at a time against all samples, so
no [n, N, d] tensor is ever made; the distances of a chunk serve every sigma.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import math
import os
import time
from typing import Iterator, Optional, Sequence

import numpy as np
import tensorflow as tf

from adversarial import data as data_lib
from adversarial import images as images_lib
from adversarial import quality as quality_lib

PAPER_SIGMAS = tuple(float(s) for s in np.logspace(-1, 0, 10))
# How a conditional run's samples are labelled for scoring, and what each
# way draws.
CLASS_SHARES = {"uniform": "a block of each class",
                "train": "the training set's class shares"}


@tf.function(reduce_retracing=True)
def _chunk_log_kernels(x, mu, mu_sq, inv_two_var):
  """[len(sigmas), chunk] of logsumexp_j(-||x - mu_j||^2 / (2 sigma^2))."""
  x_sq = tf.reduce_sum(tf.square(x), axis=1, keepdims=True)
  d2 = x_sq + mu_sq[None, :] - 2.0 * tf.matmul(x, mu, transpose_b=True)
  d2 = tf.maximum(d2, 0.0)
  return tf.map_fn(
      lambda c: tf.reduce_logsumexp(-d2 * c, axis=1), inv_two_var,
      fn_output_signature=x.dtype)


def check_sigmas(sigmas: Sequence[float]) -> np.ndarray:
  """`sigmas` as a float64 vector; raises ValueError naming them unless they
  are one or more positive, finite kernel widths."""
  try:
    values = np.asarray(sigmas, np.float64)
    good = (values.ndim == 1 and len(values) > 0
            and bool(np.all(np.isfinite(values) & (values > 0))))
  except (TypeError, ValueError):
    good = False
  if not good:
    raise ValueError(f"sigmas={sigmas!r} is not accepted: "
                     f"expected one or more positive, finite kernel widths, "
                     f"such as the paper's grid numpy.logspace(-1, 0, 10) "
                     f"or one sigma, [0.2154].")
  return values


_OTHER = {"points": "samples", "samples": "points"}


def _points(name: str, values, dtype) -> np.ndarray:
  """`values` as [n, d] of `dtype`, refused where there are none, any is
  not finite (a NaN would make every estimate NaN), or they are integers
  (uint8 pixels: 0-255 against a generator's 0-1)."""
  given = np.asarray(values)
  images_lib.check_floats(given, name, f"values on one scale with the "
                          f"{_OTHER[name]}, such as images in [0, 1]")
  values = given.astype(dtype)
  if values.ndim < 2 or not len(values) or not values[0].size:
    raise ValueError(f"{name} of shape {values.shape} are not accepted: "
                     f"expected [n, ...] with n >= 1 points of at least one "
                     f"value.")
  values = values.reshape(len(values), -1)
  if not np.isfinite(values).all():
    bad = int(np.argmin(np.isfinite(values).all(axis=1)))
    raise ValueError(f"{name} hold values that are not finite (the first "
                     f"in row {bad}): expected finite numbers, e.g. a "
                     f"generator's outputs from weights that have not "
                     f"diverged.")
  return values


def parzen_log_likelihoods(x: np.ndarray, samples: np.ndarray,
                           sigmas: Sequence[float],
                           chunk_size: int = 500,
                           dtype=np.float64) -> np.ndarray:
  """Per-point Parzen-window log-likelihoods for each sigma.

  Args:
    x: [n, ...] points to score (flattened to [n, d]).
    samples: [N, ...] generator samples, the kernel centres (same d).
    sigmas: kernel widths.
    chunk_size: points scored at once; memory is O(chunk_size * N).
    dtype: float64 (default) keeps the error under 1e-3 nats even at
      sigma = 0.1, where a distance is divided by 0.02; float32 is about
      twice as fast and good to about 1e-2 nats, enough to rank epochs.

  Returns:
    float64 [len(sigmas), n], in nats.
  """
  x, mu = _points("points", x, dtype), _points("samples", samples, dtype)
  if x.shape[1] != mu.shape[1]:
    raise ValueError(f"points of dimension {x.shape[1]} and samples of "
                     f"dimension {mu.shape[1]}: expected the same dimension.")
  sigmas = check_sigmas(sigmas)
  n, d = x.shape
  mu_t = tf.constant(mu)
  mu_sq = tf.reduce_sum(tf.square(mu_t), axis=1)
  inv = tf.constant(1.0 / (2.0 * sigmas**2), mu.dtype)
  out = np.empty((len(sigmas), n), np.float64)
  for start in range(0, n, chunk_size):
    chunk = tf.constant(x[start:start + chunk_size])
    out[:, start:start + chunk_size] = _chunk_log_kernels(
        chunk, mu_t, mu_sq, inv).numpy()
  out -= math.log(len(mu))
  out -= d * np.log(sigmas * math.sqrt(2 * math.pi))[:, None]
  return out


@dataclasses.dataclass
class ParzenResult:
  """A Parzen-window estimate: mean log-likelihood of the test points, its
  standard error, the sigma chosen on validation, and every sigma's
  validation score."""
  mean: float
  stderr: float
  sigma: float
  num_samples: int
  num_test: int
  validation: dict
  seconds: float = 0.0
  # Mean log-likelihood of the test points of each label, when labels are
  # given: where the estimate gains and loses.
  by_class: Optional[dict] = None

  def to_dict(self):
    return dataclasses.asdict(self)


def select_sigma(validation: np.ndarray, samples: np.ndarray,
                 sigmas: Sequence[float] = PAPER_SIGMAS,
                 chunk_size: int = 500, dtype=np.float64
                 ) -> tuple[float, dict]:
  """The sigma of `sigmas` with the best mean validation log-likelihood.

  Returns:
    (sigma, {sigma: mean validation log-likelihood}).
  """
  scores = parzen_log_likelihoods(validation, samples, sigmas,
                                  chunk_size, dtype).mean(axis=1)
  table = {float(s): float(v) for s, v in zip(sigmas, scores)}
  return float(sigmas[int(np.argmax(scores))]), table


def parzen_estimate(samples: np.ndarray, validation: np.ndarray,
                    test: np.ndarray,
                    sigmas: Sequence[float] = PAPER_SIGMAS,
                    chunk_size: int = 500,
                    test_labels: Optional[np.ndarray] = None
                    ) -> ParzenResult:
  """The paper's estimate: sigma by validation, then the test mean and its
  standard error std / sqrt(n_test).

  Args:
    samples: [N, ...] generator samples (the paper: 10,000).
    validation: [n_val, ...] validation points (the paper: MNIST train images
      50,000-50,999).
    test: [n_test, ...] test points (the paper: the 10,000 MNIST test images).
    sigmas: the grid (the paper: numpy.logspace(-1, 0, 10)).
    test_labels: [n_test] labels of the test points; when given, the result
      also holds the mean log-likelihood of each label's points.
  """
  start = time.perf_counter()
  sigma, table = select_sigma(validation, samples, sigmas, chunk_size)
  ll = parzen_log_likelihoods(test, samples, [sigma], chunk_size)[0]
  by_class = None
  if test_labels is not None:
    labels = np.asarray(test_labels).reshape(-1)
    if len(labels) != len(ll):
      raise ValueError(f"{len(labels)} test labels for {len(ll)} test "
                       f"points: expected one label per point.")
    by_class = {int(c): float(ll[labels == c].mean())
                for c in np.unique(labels)}
  return ParzenResult(
      mean=float(ll.mean()), stderr=float(ll.std() / math.sqrt(len(ll))),
      sigma=sigma, num_samples=len(samples), num_test=len(ll),
      validation=table, seconds=time.perf_counter() - start,
      by_class=by_class)


REFERENCE_FOLDER = "reference"


def reference_estimate(references: np.ndarray, validation: np.ndarray,
                       test: np.ndarray,
                       sigmas: Sequence[float] = PAPER_SIGMAS,
                       test_labels: Optional[np.ndarray] = None,
                       cache_dir: Optional[str] = None) -> dict:
  """`parzen_estimate(references, ...).to_dict()`: the estimate with real
  images (`references`, e.g. training images) as the samples.

  It depends on the data alone, so it is kept in `cache_dir/reference/`
  (when given) under a digest of the images, the labels and the sigmas,
  and every evaluation against the same data reads it (10,000 training
  images scored on the 10,000 MNIST test images take about 5.4 s on 2
  cores, in float64); a file that is unreadable or not of these data is
  computed again. The `seconds` returned are those this call took.
  """
  import json
  import os

  from adversarial.files import arrays_digest, kept, write_text_atomic

  start = time.perf_counter()
  sigmas = check_sigmas(sigmas)
  compute = lambda: parzen_estimate(references, validation, test, sigmas,
                                    test_labels=test_labels).to_dict()
  if cache_dir is None:
    return compute()
  arrays = [references, validation, test, sigmas]
  if test_labels is not None:
    arrays.append(test_labels)
  path = os.path.join(cache_dir, REFERENCE_FOLDER,
                      f"{len(references)}_on_{len(test)}_"
                      f"{arrays_digest(*arrays)}.json")

  def read(path):
    with open(path) as f:
      result = json.load(f)
    # JSON's keys are strings: back to the sigmas and labels they were.
    result["validation"] = {float(k): float(v)
                            for k, v in result["validation"].items()}
    if result["by_class"] is not None:
      result["by_class"] = {int(k): float(v)
                            for k, v in result["by_class"].items()}
    if (result["num_samples"], result["num_test"],
        len(result["validation"]), result["by_class"] is None) == (
            len(references), len(test), len(sigmas), test_labels is None):
      return result
    return None

  result = kept(path, read, compute,
                lambda path, r: write_text_atomic(path,
                                                  json.dumps(r, indent=2)),
                "reference estimate")
  # The seconds this call took, the digest included: a kept result's own
  # are those of its computation, in an earlier evaluation.
  return dict(result, seconds=time.perf_counter() - start)


def flatten_unit(images, output_activation: str = "sigmoid") -> np.ndarray:
  """Images in G's output range -> float32 [n, d] in [0, 1], the space the
  paper's estimate works in."""
  x = data_lib.to_unit_range(np.asarray(images, np.float32),
                             output_activation)
  return x.reshape(len(x), -1)


def validation_monitor_score(model, validation: np.ndarray,
                             num_samples: int, seed: int,
                             output_activation: str = "sigmoid",
                             sigmas: Sequence[float] = PAPER_SIGMAS,
                             average: Optional[bool] = None,
                             labels: Optional[np.ndarray] = None
                             ) -> tuple[float, float]:
  """The per-epoch validation score: (best mean log-likelihood, its sigma),
  both NaN where a sample is not finite.

  `average` picks the generator as `GAN.generate` does; `labels`, when
  given, are a conditional model's labels of the samples."""
  extra = {} if labels is None else {"labels": labels}
  samples = flatten_unit(
      model.generate(num_samples, seed=seed, average=average, **extra),
      output_activation)
  if not np.isfinite(samples).all():
    # Scored as no score: the epoch is logged and never kept as the best.
    return float("nan"), float("nan")
  sigma, table = select_sigma(validation, samples, sigmas, dtype=np.float32)
  return table[sigma], sigma


def conditional_accuracy(predicted: np.ndarray,
                         requested: np.ndarray) -> dict:
  """How often a classifier's `predicted` classes of a conditional model's
  samples are the `requested` ones: {'accuracy', 'per_class': [accuracy of
  class c]}."""
  requested = np.asarray(requested)
  hit = np.asarray(predicted) == requested
  classes = np.unique(requested)
  return {"accuracy": float(hit.mean()),
          "per_class": [float(hit[requested == c].mean()) for c in classes]}


def above_reference(result: dict) -> Optional[float]:
  """How many nats the samples' estimate lies above the reference's (real
  training images scored as the samples), when by more than twice the two
  estimates' combined standard error; None otherwise or without a reference.

  Real images are what the estimator gives the data itself. Samples that
  beat them sit nearer the test images than real digits do, which soft,
  smoothed strokes achieve in Euclidean distance (Theis et al., 2016;
  smoothed training images beat the unchanged ones by tens of nats): a sign
  of how the estimate is won, not of better samples.
  """
  ref = result.get("reference")
  if not ref:
    return None
  margin = result["mean"] - ref["mean"]
  if margin > 2.0 * math.hypot(result["stderr"], ref["stderr"]):
    return float(margin)
  return None


HISTORY_FOLDER = "evaluations"


def history_paths(workdir: str, result: dict,
                  trained: bool = False) -> Iterator[str]:
  """The names under which an evaluation's record is kept beside
  evaluation.json, to be taken in turn where one is taken already:
  `<workdir>/evaluations/<time>-<checkpoint>[-trained].json`, e.g.
  `20261205-181530-epoch-2362.json`, the time (UTC) its `time`, the
  checkpoint its epoch or its weights file's name, `-trained` for G itself
  scored in a run that keeps a weight average (`trained`); then the same
  with -2, -3, ... added."""
  stamp = datetime.datetime.fromisoformat(result["time"]).strftime(
      "%Y%m%d-%H%M%S")
  if result.get("epoch") is not None:
    which = f"epoch-{result['epoch']:04d}"
  else:
    which = os.path.basename(result["checkpoint"]).removesuffix(".weights.h5")
  if trained:
    which += "-trained"
  folder = os.path.join(workdir, HISTORY_FOLDER)
  yield os.path.join(folder, f"{stamp}-{which}.json")
  for n in itertools.count(2):
    yield os.path.join(folder, f"{stamp}-{which}-{n}.json")


def evaluate_workdir(workdir: str, checkpoint: str = "best",
                     num_samples: int = 10_000, num_val: int = 1_000,
                     num_test: Optional[int] = None, seed: int = 0,
                     sigmas: Sequence[float] = PAPER_SIGMAS,
                     tfds_manual_dir: Optional[str] = None,
                     tfds_data_dir: Optional[str] = None,
                     quality: bool = True,
                     average: Optional[bool] = None,
                     reference: bool = True,
                     class_shares: Optional[str] = None,
                     draws: int = 1) -> dict:
  """The Parzen estimate of a run's generator, written to
  `<workdir>/evaluation.json` and kept in `<workdir>/evaluations/`
  (`history_paths`), with 100 of the scored samples, evenly spaced, in
  `<workdir>/evaluation.png` and beside the kept record.

  Args:
    workdir: a training run's directory.
    checkpoint: 'best', 'last' or a `.weights.h5` path.
    num_samples: samples drawn from G (the paper: 10,000).
    num_val: validation images that choose sigma (the paper: 1,000).
    num_test: test images scored, a fixed subset of the test split drawn
      over all of it (`quality.subset`); all of it when None.
    seed: seed of the samples' z.
    sigmas: the grid sigma is chosen from on the validation images (the
      paper's, numpy.logspace(-1, 0, 10)); one value fixes sigma.
    tfds_manual_dir, tfds_data_dir: where the data is, when not where the
      run found it.
    quality: also report the sample-quality scores of `adversarial.quality`
      (MNIST only).
    average: which generator of a model that keeps a weight average: True
      for the average, False for the trained G, None for `GAN.sampler`.
    reference: also score `num_samples` training images as if they were the
      samples (`reference` in the record): what the estimator gives the data
      G learns from, overall and for each test label (`by_class`); kept in
      the data folder (`reference_estimate`).
    class_shares: for a conditional run, the labels the samples are drawn
      for: 'uniform' (`ConditionalGAN.default_labels`, a block per class)
      or 'train' (in the training split's class shares: the model's
      p(x) = sum_c p(c) p(x | c)). None: 'train' for a run conditioned on
      clusters (`config.clusters`, whose shares are those it found),
      'uniform' for any other.
    draws: how many independent sets of `num_samples` samples to score, with
      the seeds seed, seed + 1, ...: the first is the estimate reported (the
      paper's, one draw); with more than one, `draws` in the record gives
      each draw's estimate and their spread, the variation the draw of
      samples adds, which the standard error over test images leaves out.

  Returns:
    The JSON record: mean, stderr, sigma, num_samples, num_test, validation
    (mean log-likelihood per sigma), seconds, by_class (mean log-likelihood
    of the test images of each label), epoch, checkpoint, time (UTC),
    reference (the same estimate with training images as samples) and
    quality (see `quality.QualityResult`) for MNIST; draws (seeds, means and
    sigmas of each draw, their mean and standard deviation) when draws > 1;
    and, added after it was written, path and kept_path (where it was
    written: `history_paths`), samples_png and kept_samples_png (its grid of
    samples, the latest and the one kept beside the record).
  """
  import json

  from adversarial import train_lib
  from adversarial.files import write_text_atomic, write_text_new

  # num_test None: the whole test split.
  for name, value in (("num_samples", num_samples), ("num_val", num_val),
                      ("num_test", num_test), ("draws", draws)):
    if value is not None and value < 1:
      raise ValueError(f"{name}={value} is not accepted: expected a "
                       f"positive integer.")
  sigmas = check_sigmas(sigmas)
  model, config, record = train_lib.restore(workdir, checkpoint)
  train_lib.check_image_run(config, workdir, "the Parzen-window estimate")
  changes = {k: v for k, v in (("tfds_manual_dir", tfds_manual_dir),
                               ("tfds_data_dir", tfds_data_dir)) if v}
  config = config.override(**changes)
  if not (config.val_split and config.test_split):
    raise ValueError(
        f"the run's dataset {config.dataset!r} has val_split="
        f"{config.val_split!r} and test_split={config.test_split!r}: "
        f"expected both for a Parzen-window estimate.")
  if class_shares is None:
    class_shares = "train" if config.clusters else "uniform"
  if class_shares not in CLASS_SHARES:
    raise ValueError(f"class_shares={class_shares!r} is not accepted: "
                     f"expected one of {', '.join(CLASS_SHARES)}.")
  if class_shares != "uniform" and not config.conditional:
    raise ValueError(f"class_shares={class_shares!r} is for conditional "
                     f"runs; this run is not one: expected 'uniform'.")
  val = data_lib.load_array(config, config.val_split).images[:num_val]
  test_data = data_lib.load_array(config, config.test_split)
  test, labels = test_data.images, test_data.labels
  if num_test is not None:
    test = quality_lib.subset(test, num_test)
    labels = None if labels is None else quality_lib.subset(labels, num_test)
  unit = lambda x: flatten_unit(
      data_lib.to_model_range(x, config.g_output), config.g_output)
  if reference or (quality and config.dataset == "mnist") or (
      class_shares == "train" and not config.clusters):
    train_data = data_lib.load_array(config, config.train_split)
    train = train_data.images
  extra = {}
  if config.conditional:
    if class_shares == "uniform":
      requested = model.default_labels(num_samples)
    else:
      shares = (train_lib.cluster_prior(workdir).shares if config.clusters
                else quality_lib.class_shares(train_data.labels,
                                              model.num_classes))
      requested = model.labels_in_shares(num_samples, shares)
    extra["labels"] = requested
  draw = lambda s: model.generate(num_samples, seed=s, average=average,
                                  **extra)
  # One set of samples serves the Parzen estimate and the quality scores.
  generated = draw(seed)
  samples = flatten_unit(generated, config.g_output)
  val, test = unit(val), unit(test)
  result = parzen_estimate(samples, val, test, sigmas,
                           test_labels=labels).to_dict()
  if draws > 1:
    more = [parzen_estimate(flatten_unit(draw(seed + i), config.g_output),
                            val, test, sigmas) for i in range(1, draws)]
    means = [result["mean"]] + [r.mean for r in more]
    result["draws"] = dict(
        seeds=list(range(seed, seed + draws)), means=means,
        sigmas=[result["sigma"]] + [r.sigma for r in more],
        mean=float(np.mean(means)), std=float(np.std(means, ddof=1)))
  result.update(epoch=record.get("epoch"), checkpoint=record["weights"],
                seed=seed, weight_average=model.ema_generator is not None
                and average is not False)
  if config.conditional:
    result["class_shares"] = class_shares
    result["clusters"] = config.clusters
  if reference:
    result["reference"] = reference_estimate(
        unit(train[:num_samples]), val, test, sigmas, test_labels=labels,
        cache_dir=data_lib.cache_root(config.tfds_data_dir))
    result["above_reference"] = above_reference(result)
  if quality and config.dataset == "mnist":
    classifier = quality_lib.load_or_train_classifier(config)
    images = data_lib.to_unit_range(generated, config.g_output)
    distances = quality_lib.nearest_test_distances(
        train, test_data.images, data_lib.cache_root(config.tfds_data_dir))
    scores = quality_lib.sample_quality(
        classifier, images, train, test_data.images, test_data.labels,
        test_distances=distances)
    result["quality"] = scores.to_dict()
    if config.conditional and not config.clusters:
      # Only labels name digits the classifier can recognise.
      predicted = scores.sample_classes
      result["conditional"] = conditional_accuracy(
          predicted, quality_lib.subset(requested, len(predicted)))
  result["time"] = datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec="seconds")
  text = json.dumps(result, indent=2)
  # Each evaluation is kept under its own name as well, so that scoring
  # another checkpoint or generator does not take the last one's record
  # away; evaluation.json is the latest.
  os.makedirs(os.path.join(workdir, HISTORY_FOLDER), exist_ok=True)
  kept_path = write_text_new(history_paths(
      workdir, result,
      trained=model.ema_generator is not None and average is False), text)
  path = os.path.join(workdir, "evaluation.json")
  write_text_atomic(path, text)
  result["path"], result["kept_path"] = path, kept_path
  # 100 of the scored samples themselves, evenly spaced (for a conditional
  # model, a row per class): the training's grids show the weight average
  # when there is one, not G as scored here. Kept beside its record too.
  count = min(100, num_samples)
  shown = data_lib.to_unit_range(
      generated[np.arange(count) * num_samples // count], config.g_output)
  picture = images_lib.grid(shown, rows=math.ceil(count / 10))
  result["kept_samples_png"] = kept_path.removesuffix(".json") + ".png"
  result["samples_png"] = os.path.join(workdir, "evaluation.png")
  for grid_path in (result["kept_samples_png"], result["samples_png"]):
    images_lib.write_png(grid_path, picture)
  return result
