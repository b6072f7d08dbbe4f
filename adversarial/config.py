"""Typed, frozen run configurations and the named presets.

A `Config` holds every setting of a run: data, networks, the minimax update,
the optimiser and the run's length and seed. It is validated once
(`Config.validate`), written as JSON into the work directory, and compared
with the one already there when a run resumes.

The library never reads flags: binaries turn flags into a `Config` with
`dataclasses.replace(preset, **overrides)`, and tests do the same.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import numbers
from typing import Any, Optional, Tuple

ARCHITECTURES = ("mlp", "conv")
PRIORS = ("uniform", "normal")
UPDATES = ("simultaneous", "alternating")
G_LOSSES = ("non_saturating", "minimax")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta",
              "adamax", "nadam", "lion")
OUTPUT_ACTIVATIONS = ("sigmoid", "tanh", "linear")
HIDDEN_ACTIVATIONS = ("relu", "leaky_relu", "elu", "tanh", "sigmoid", "gelu",
                      "swish", "softplus")
# Numeric precision of the nets: float32, or Keras mixed precision (float16
# or bfloat16 compute, float32 variables, float32 logits and losses).
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
# Kinds of the masks S of a masked model (the missing pixels G fills in):
# random pixels, a random rectangle, one of the four halves, or the whole
# image (which makes the model an ordinary generator as well).
MASK_KINDS = ("pixels", "block", "half", "all")
# Datasets that are not TFDS builders but are made by the package itself.
TOY_DATASETS = ("toy_gaussian",)
# Orders a split's examples can be read in (`Config.split_order`).
SPLIT_ORDERS = ("auto", "original", "stored")
# TFDS datasets whose builder keys each example by its position in the
# dataset's original files (TFDS's MNIST builder and the builders that
# inherit its reader), so that the original order can be restored from the
# stored one (`data.load_array`).
ORIGINAL_ORDER_DATASETS = ("mnist", "fashion_mnist", "kmnist")

# Fields that may change between the runs that share one work directory:
# extending a run (`epochs`), moving the data (`tfds_*`), the devices
# (`strategy`) or the grouping of steps into calls (`steps_per_execution`)
# keeps it the same run. Every other field changes what is trained.
# The collapse guard (`collapse_*`) may change too: it changes nothing while
# D(G(z)) stays above its threshold, and turning it on is how a run that has
# collapsed is taken back to its best checkpoint.
RESUMABLE_FIELDS = ("epochs", "tfds_data_dir", "tfds_manual_dir", "strategy",
                    "steps_per_execution", "collapse_restarts",
                    "collapse_d_fake", "collapse_epochs")
# tf.distribute strategies a run can train under (see train_lib.make_strategy).
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


class ConfigError(ValueError):
  """A configuration value is outside what the package accepts."""


@dataclasses.dataclass(frozen=True)
class Config:
  """Every setting of one training run.

  The defaults are the authors' MNIST recipe (`PRESETS["paper_mnist"]`).
  """

  # Data.
  dataset: str = "mnist"
  train_split: str = "train[:50000]"
  val_split: Optional[str] = "train[50000:]"
  test_split: Optional[str] = "test"
  # The order of each split's examples, which decides the examples a slice
  # such as 'train[:50000]' names. "original": the order of the dataset's
  # original files, in which the paper counts its data (MNIST's first
  # 50,000 training images to train on, images 50,000-50,999 to choose
  # sigma). "stored": TFDS's order, a fixed shuffle of the original one
  # (TFDS sorts examples by an MD5 hash of their keys, salted with the
  # split's name). "auto": original for ORIGINAL_ORDER_DATASETS, stored for
  # other datasets. A configuration saved without this field read its
  # splits in the stored order (`from_dict`).
  split_order: str = "auto"
  tfds_data_dir: Optional[str] = None
  tfds_manual_dir: Optional[str] = None
  # Toy data (dataset="toy_gaussian"): samples of N(toy_mean, toy_std^2).
  toy_mean: float = 4.0
  toy_std: float = 0.5
  toy_size: int = 10_000

  # Networks.
  architecture: str = "mlp"
  latent_dim: int = 100
  prior: str = "uniform"
  g_hidden: Tuple[int, ...] = (1200, 1200)
  g_activation: str = "relu"
  g_output: str = "sigmoid"
  g_init_scale: float = 0.05
  d_hidden: Tuple[int, ...] = (240, 240)
  d_pieces: int = 5
  d_input_dropout: float = 0.2
  d_hidden_dropout: float = 0.5
  d_init_scale: float = 0.005
  # Convolutional pair: D's filters per stride-2 layer; G mirrors them.
  conv_filters: Tuple[int, ...] = (64, 128, 256)

  # The minimax game.
  update: str = "simultaneous"
  k: int = 1
  g_loss: str = "non_saturating"
  label_smoothing: float = 0.0
  # PacGAN (Lin et al., 2018): D judges `pack` images of one source at once,
  # stacked along the channel axis, so that a G whose samples lack variety
  # is easier to tell from the data. 1 is the paper's D.
  pack: int = 1
  # Section 7 of the paper. conditional: p(x | c), the label c given to both
  # nets. masked: every conditional p(x_S | x_not-S) in one model; G sees the
  # visible pixels, the mask and z and fills in S, D sees the image and the
  # mask; S is drawn for each example from `mask_kinds` (comma-separated
  # MASK_KINDS).
  conditional: bool = False
  # Clusters instead of labels (`conditional=True`, 0: the dataset's labels):
  # c is the k-means cluster of a training image in pixel space, found
  # without the labels (`data.ClusterPrior`), and is drawn in the clusters'
  # shares of the training split. The model of p(x) = sum_c p(c) p(x | c)
  # then learns from images alone, as Table 1's models do, while the share
  # of each cluster among its samples is fixed by the data rather than left
  # to G (a self-conditioned GAN, Liu et al., 2020, with the clusters found
  # once).
  clusters: int = 0
  masked: bool = False
  mask_kinds: str = "pixels,block,half,all"
  # Instance noise (Sonderby et al., 2017; Arjovsky and Bottou, 2017): D
  # sees every image, real or generated, with N(0, s^2) added to each
  # value, s falling linearly from `instance_noise` to 0 over the first
  # `instance_noise_epochs` epochs, then none. Early on it keeps D from
  # telling G's first samples from the data with certainty, the state the
  # collapse guard watches for (0: none, the paper).
  instance_noise: float = 0.0
  instance_noise_epochs: int = 0
  # Exponential moving average of G's weights, used for sampling, scoring and
  # export (0: none, the paper). It never feeds back into training.
  ema_decay: float = 0.0
  # Warm the average up: after G's t-th update its decay is
  # min(ema_decay, (1 + t) / (10 + t)), so it spans about the last tenth of
  # the run until that reaches 1 / (1 - ema_decay) updates. Without it a
  # long average (0.99997: 33,000 updates, 67 epochs of MNIST) still holds a
  # fifth of G's initial weights at epoch 100, and its soft-stroked samples
  # can score above real images by the Parzen estimate while the Frechet
  # distance calls them poor (REPRODUCTION.md).
  ema_warmup: bool = False

  # Optimiser (the same settings for both nets).
  optimizer: str = "sgd"
  learning_rate: float = 0.1
  lr_decay: float = 1.000004
  min_learning_rate: float = 1e-6
  # Annealing: after `anneal_epoch` epochs (0: never) the learning rate is
  # divided by `anneal_decay` after every update instead of by `lr_decay`.
  # The recipe's slow decay reaches small rates only after thousands of
  # epochs; this takes a run there sooner. A run may be resumed with an
  # anneal_epoch at or after the epochs it has done (the run so far is then
  # the new configuration's).
  anneal_epoch: int = 0
  anneal_decay: float = 1.0
  momentum: float = 0.5
  final_momentum: float = 0.7
  momentum_start_epoch: int = 1
  momentum_saturate_epoch: int = 250
  # What the momentum schedule counts the first epoch as: 1 as the authors'
  # MomentumAdjustor does (0.5 in epoch 1, 0.7 from epoch 250), or 0, one
  # epoch later (0.5 in epochs 1 and 2, 0.7 from epoch 251), the schedule of
  # the runs recorded in REPRODUCTION.md. The two differ by at most
  # 0.2 / 249 in epochs 2-250 and not at all after.
  momentum_first_epoch: int = 1
  beta_1: float = 0.5

  # The run.
  batch_size: int = 100
  # The recipe has no stopping rule: the authors' run went on until it was
  # stopped. Its G rises slowly and levels off from about epoch 2,000
  # (REPRODUCTION.md), so a run trains 3,000 epochs unless told otherwise,
  # keeping the best by validation; it can be stopped at any epoch and
  # resumed, or extended with a larger `epochs`.
  epochs: int = 3000
  steps_per_epoch: Optional[int] = None
  seed: int = 0
  jit_compile: bool = True
  # Training steps per call into TensorFlow (Keras's `steps_per_execution`):
  # at most this many, the largest divisor of an epoch's steps not above it,
  # so that every epoch ends on a call; one under a tf.distribute strategy.
  # With XLA, the steps of a call run as one XLA program unless a net has
  # convolutions (`GAN.make_train_function`). The steps are the same whatever
  # the value; per-step callbacks see every call's last.
  steps_per_execution: int = 50
  precision: str = "float32"
  # The global batch (batch_size) is split across the strategy's replicas;
  # the result is the same as one device's, so a run may resume under
  # another strategy.
  strategy: str = "default"
  sample_grid_rows: int = 10
  # Per-epoch validation Parzen score, which keeps the best checkpoint:
  # samples drawn, validation images scored (0 turns it off). The
  # authors' monitor drew 100 samples, too few to rank epochs (BUILD.md,
  # "Design notes").
  monitor_samples: int = 10_000
  monitor_val_examples: int = 1_000
  checkpoints_to_keep: int = 2
  # The collapse guard. Early in training D can come to reject every sample:
  # G's sigmoid outputs saturate, their gradients vanish, and the run never
  # recovers (REPRODUCTION.md, "The first epochs"). `collapse_epochs`
  # epochs in a row whose mean D(G(z)) is below `collapse_d_fake` make a
  # collapse: the run goes back to its best checkpoint, or to its start
  # when it has collapsed from that checkpoint before, and trains on from
  # there with fresh noise and dropout streams; at most `collapse_restarts`
  # times, then it stops with an error (`train_lib.train`). 0 restarts: the
  # paper's loop, which trains on and only logs a warning.
  collapse_restarts: int = 0
  collapse_d_fake: float = 0.002
  collapse_epochs: int = 2

  def validate(self) -> "Config":
    """Checks every value; raises `ConfigError` naming the first bad one.

    Returns:
      self, so that `Config(...).validate()` can be chained.
    """
    try:
      self._check_values()
      failed = None
    except (TypeError, AttributeError) as e:
      # A value of another kind (a string for a number, say) that a check
      # could not use: `check_kinds` names it with its field's kind.
      failed = e
    self.check_kinds()
    if failed:
      raise failed
    return self

  def _check_values(self) -> None:
    """`validate`'s checks of the values, each with its own message."""
    _one_of("architecture", self.architecture, ARCHITECTURES)
    _one_of("prior", self.prior, PRIORS)
    _one_of("update", self.update, UPDATES)
    _one_of("g_loss", self.g_loss, G_LOSSES)
    _one_of("optimizer", self.optimizer, OPTIMIZERS)
    _one_of("g_output", self.g_output, OUTPUT_ACTIVATIONS)
    _one_of("g_activation", self.g_activation, HIDDEN_ACTIVATIONS)
    _one_of("precision", self.precision, PRECISIONS)
    _one_of("strategy", self.strategy, STRATEGIES)
    _one_of("split_order", self.split_order, SPLIT_ORDERS)
    self.reads_original_order()
    for name in ("monitor_samples", "monitor_val_examples"):
      value = getattr(self, name)
      if not is_integer(value) or value < 0:
        raise ConfigError(f"{name}={value!r} is not accepted: expected an "
                          f"integer >= 0 (0 turns the monitor off).")
    for name in ("latent_dim", "batch_size", "epochs", "d_pieces",
                 "sample_grid_rows", "checkpoints_to_keep", "toy_size",
                 "steps_per_execution"):
      _positive_int(name, getattr(self, name))
    _positive_int("k", self.k, what="k >= 1 (discriminator steps per "
                  "generator step)")
    if self.steps_per_epoch is not None:
      _positive_int("steps_per_epoch", self.steps_per_epoch,
                    what="a positive integer, or None for one pass over "
                    "the training split")
    if not is_integer(self.seed) or not 0 <= self.seed < 2**31:
      raise ConfigError(
          f"seed={self.seed!r} is not accepted: expected an integer in "
          f"[0, 2**31).")
    for name in ("g_hidden", "d_hidden", "conv_filters"):
      value = getattr(self, name)
      if (not isinstance(value, tuple) or not value or
          not all(is_integer(v) and v > 0 for v in value)):
        raise ConfigError(
            f"{name}={value!r} is not accepted: expected a non-empty tuple of "
            f"positive integers.")
    if not (math.isfinite(self.instance_noise) and
            self.instance_noise >= 0.0):
      raise ConfigError(
          f"instance_noise={self.instance_noise!r} is not accepted: expected "
          f"a standard deviation >= 0 (0: none).")
    if self.instance_noise > 0:
      _positive_int("instance_noise_epochs", self.instance_noise_epochs,
                    what="a positive integer (the epochs over which the "
                    "instance noise fades to 0) with instance_noise > 0")
    if not is_integer(self.collapse_restarts) or self.collapse_restarts < 0:
      raise ConfigError(
          f"collapse_restarts={self.collapse_restarts!r} is not accepted: "
          f"expected an integer >= 0 (0: never go back).")
    if not 0.0 < self.collapse_d_fake < 0.5:
      raise ConfigError(
          f"collapse_d_fake={self.collapse_d_fake!r} is not accepted: "
          f"expected a mean D(G(z)) in (0, 0.5) below which an epoch counts "
          f"as collapsed.")
    _positive_int("collapse_epochs", self.collapse_epochs,
                  what="a positive integer (epochs in a row below "
                  "collapse_d_fake that make a collapse)")
    if self.collapse_restarts and not (
        self.monitor_samples and self.monitor_val_examples and
        self.val_split):
      raise ConfigError(
          f"collapse_restarts={self.collapse_restarts} is not accepted with "
          f"the validation monitor off (monitor_samples="
          f"{self.monitor_samples}, monitor_val_examples="
          f"{self.monitor_val_examples}, val_split={self.val_split!r}): a "
          f"collapsed run goes back to the monitor's best checkpoint; "
          f"expected collapse_restarts=0 or the monitor on.")
    for name in ("d_input_dropout", "d_hidden_dropout", "label_smoothing",
                 "ema_decay"):
      value = getattr(self, name)
      if not 0.0 <= value < 1.0:
        raise ConfigError(
            f"{name}={value!r} is not accepted: expected a rate in [0, 1).")
    for name in ("learning_rate", "g_init_scale", "d_init_scale", "toy_std"):
      value = getattr(self, name)
      if not (math.isfinite(value) and value > 0):
        raise ConfigError(
            f"{name}={value!r} is not accepted: expected a positive number.")
    for name, when in (("lr_decay", "after every update; 1 keeps it "
                        "constant"),
                       ("anneal_decay", "after every update from "
                        "anneal_epoch on")):
      value = getattr(self, name)
      if not (math.isfinite(value) and value >= 1.0):
        raise ConfigError(
            f"{name}={value!r} is not accepted: expected a factor >= 1 (the "
            f"learning rate is divided by it {when}).")
    if not is_integer(self.anneal_epoch) or self.anneal_epoch < 0:
      raise ConfigError(
          f"anneal_epoch={self.anneal_epoch!r} is not accepted: expected an "
          f"integer >= 0 (0: never anneal).")
    if not 0.0 <= self.min_learning_rate <= self.learning_rate:
      raise ConfigError(
          f"min_learning_rate={self.min_learning_rate!r} is not accepted: "
          f"expected a floor in [0, learning_rate={self.learning_rate}].")
    for name in ("momentum", "final_momentum", "beta_1"):
      value = getattr(self, name)
      if not 0.0 <= value < 1.0:
        raise ConfigError(
            f"{name}={value!r} is not accepted: expected a value in [0, 1).")
    if (isinstance(self.momentum_first_epoch, bool) or
        self.momentum_first_epoch not in (0, 1)):
      raise ConfigError(
          f"momentum_first_epoch={self.momentum_first_epoch!r} is not "
          f"accepted: expected 1 (the authors' count: the first epoch is "
          f"epoch 1) or 0 (one epoch later).")
    if not 0 <= self.momentum_start_epoch < self.momentum_saturate_epoch:
      raise ConfigError(
          f"momentum_start_epoch={self.momentum_start_epoch!r} and "
          f"momentum_saturate_epoch={self.momentum_saturate_epoch!r} are not "
          f"accepted: expected 0 <= start < saturate.")
    _positive_int("pack", self.pack, what="an integer >= 1 (images D "
                  "judges at once; 1 is the paper's D)")
    if self.pack > 1:
      other = ("conditional=True" if self.conditional else
               "masked=True" if self.masked else
               f"dataset={self.dataset!r}"
               if self.dataset in TOY_DATASETS else None)
      if other:
        raise ConfigError(
            f"pack={self.pack} is not accepted with {other}: expected "
            f"pack=1, or an unconditional model of images.")
      # Each of D's minibatches holds batch_size images (an alternating
      # step takes k of them: k * batch_size images).
      if self.batch_size % self.pack:
        raise ConfigError(
            f"pack={self.pack} is not accepted with batch_size="
            f"{self.batch_size}: expected a pack size that divides the "
            f"batch size (the images of each of D's minibatches).")
    if (not is_integer(self.clusters) or self.clusters < 0 or
        self.clusters == 1):
      raise ConfigError(
          f"clusters={self.clusters!r} is not accepted: expected 0 (the "
          f"dataset's labels) or an integer >= 2.")
    if self.clusters and not self.conditional:
      raise ConfigError(
          f"clusters={self.clusters} is not accepted with conditional=False: "
          f"expected conditional=True (the clusters are the condition c), "
          f"or clusters=0.")
    if self.conditional and self.masked:
      raise ConfigError(
          "conditional=True and masked=True are not accepted together: "
          "expected one of them (a label-conditional or a masked model).")
    kinds = [k.strip() for k in self.mask_kinds.split(",")]
    if not kinds or any(k not in MASK_KINDS for k in kinds):
      raise ConfigError(
          f"mask_kinds={self.mask_kinds!r} is not accepted: expected a "
          f"comma-separated list of {', '.join(MASK_KINDS)}.")
    if (self.conditional or self.masked) and self.dataset in TOY_DATASETS:
      raise ConfigError(
          f"dataset={self.dataset!r} is not accepted for a "
          f"{'conditional' if self.conditional else 'masked'} model: expected"
          f" a labelled image dataset such as 'mnist'.")
    if not isinstance(self.dataset, str) or not self.dataset:
      raise ConfigError(
          f"dataset={self.dataset!r} is not accepted: expected a TFDS image "
          f"dataset name such as 'mnist', or one of {TOY_DATASETS}.")
    if self.dataset in TOY_DATASETS and self.architecture != "mlp":
      raise ConfigError(
          f"architecture={self.architecture!r} is not accepted for "
          f"dataset={self.dataset!r}: the 1-D toy data takes 'mlp'.")

  def check_kinds(self) -> "Config":
    """Checks that each field holds a value of its kind (a bool, an
    integer, a number, a string, a tuple of integers, or None where the
    field is optional); raises `ConfigError` naming the first that does
    not. `validate` ends with it, and `from_dict` runs it alone, so that a
    saved configuration is read as it was written.

    Returns:
      self.
    """
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      kind, default, optional = _field_spec(field)
      if value is None and optional:
        continue
      if not _is_kind(kind, value):
        raise ConfigError(
            f"{field.name}={value!r} is not accepted: expected "
            f"{_KIND_WORDS[kind]}"
            + (f" such as {default!r}" if default is not None else "")
            + (" (or None)" if optional else "") + ".")
    return self

  def reads_original_order(self) -> bool:
    """Whether the splits are counted in the order of the dataset's
    original files (`split_order`); raises `ConfigError` for 'original' on
    a dataset whose original order the package cannot restore."""
    if self.dataset in TOY_DATASETS or self.split_order == "stored":
      return False
    if self.dataset in ORIGINAL_ORDER_DATASETS:
      return True
    if self.split_order == "original":
      raise ConfigError(
          f"split_order='original' is not accepted for dataset="
          f"{self.dataset!r}: the package restores the original order of "
          f"{', '.join(ORIGINAL_ORDER_DATASETS)} only; expected "
          f"split_order='stored' or 'auto' (TFDS's order) for this dataset.")
    return False

  # Serialisation ------------------------------------------------------------

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True,
                      default=_plain_number) + "\n"

  @classmethod
  def from_dict(cls, values: dict[str, Any]) -> "Config":
    if not isinstance(values, dict):
      raise ConfigError(f"{type(values).__name__} {values!r:.40} is not "
                        f"accepted: expected a mapping of Config fields.")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
      raise ConfigError(
          f"unknown config fields {unknown}: expected only fields of "
          f"adversarial.config.Config{_meant(unknown, known)}.")
    # A configuration saved without `split_order` read its splits in
    # TFDS's stored order, and one saved without `momentum_first_epoch`
    # ramped its momentum one epoch later: keep both for the run it
    # describes.
    fixed = {"split_order": "stored", "momentum_first_epoch": 0}
    for name, value in values.items():
      if isinstance(value, list):
        value = tuple(value)
      fixed[name] = value
    return cls(**fixed).check_kinds()

  @classmethod
  def from_json(cls, text: str) -> "Config":
    return cls.from_dict(json.loads(text))

  def differences(self, other: "Config",
                  ignore: tuple[str, ...] = RESUMABLE_FIELDS) -> dict:
    """{name: (self, other)} for each field outside `ignore` that differs."""
    mine, theirs = self.to_dict(), other.to_dict()
    return {name: (mine[name], theirs[name]) for name in mine
            if name not in ignore and mine[name] != theirs[name]}

  def override(self, **changes: Any) -> "Config":
    """A copy with `changes` applied; unknown names raise `ConfigError`."""
    known = {f.name for f in dataclasses.fields(self)}
    unknown = sorted(set(changes) - known)
    if unknown:
      raise ConfigError(
          f"unknown config fields {unknown}: expected fields of "
          f"adversarial.config.Config such as {sorted(known)[:6]}"
          f"{_meant(unknown, known)}.")
    return dataclasses.replace(self, **changes)


def _meant(unknown, known) -> str:
  """'; g_hiden may be g_hidden' for each unknown field name that is a
  near spelling of a known one, or ''."""
  text = ""
  for name in unknown:
    close = difflib.get_close_matches(str(name), list(known), n=1)
    if close:
      text += f"; {name} may be {close[0]}"
  return text


def _one_of(name: str, value: Any, accepted: tuple[str, ...]) -> None:
  if value not in accepted:
    raise ConfigError(
        f"{name}={value!r} is not accepted: expected one of "
        f"{', '.join(repr(a) for a in accepted)}.")


def _plain_number(value: Any) -> Any:
  """JSON's fallback for what it cannot write: a NumPy number (a field set
  from an array's element) as the Python number it holds."""
  if isinstance(value, numbers.Number) and hasattr(value, "item"):
    return value.item()
  raise TypeError(f"{type(value).__name__} {value!r} cannot be written as "
                  f"JSON")


def is_integer(value: Any) -> bool:
  """Whether `value` is an integer (Python's or NumPy's), not a bool."""
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
  """Whether `value` is a real number (an integer counts), not a bool."""
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _positive_int(name: str, value: Any, what: str = "a positive integer"
                  ) -> None:
  if not is_integer(value) or value < 1:
    raise ConfigError(f"{name}={value!r} is not accepted: expected {what}.")


PAPER_MNIST = Config()

PRESETS: dict[str, Config] = {
    # Goodfellow et al. (2014), Table 1's MNIST model, as the authors' code
    # ran it: see PAPER.md for each setting.
    "paper_mnist": PAPER_MNIST,
    # The recipe with the authors' code's noise: their `Generator` draws z
    # from N(0, 1) unless told otherwise (`noise="gaussian"` is its default),
    # and their mnist.yaml does not set it. PAPER.md gives U(-sqrt 3, sqrt 3),
    # which has the same variance.
    "paper_mnist_gaussian": dataclasses.replace(PAPER_MNIST, prior="normal"),
    # The recipe, sampled from an exponential moving average of G's weights
    # (decay 0.999, about two epochs). Training is the recipe's, step for
    # step; the average only smooths out the oscillation of G's weights that
    # the high learning rate and momentum leave.
    "paper_mnist_ema": dataclasses.replace(PAPER_MNIST, ema_decay=0.999),
    # The same with a longer average (decay 0.99997, about 67 epochs): late
    # in training, when G's weights drift slowly, longer averages score
    # higher than the short one on the same run (REPRODUCTION.md). Warmed
    # up (`ema_warmup`), it spans about the last tenth of the run until
    # epoch 600, so that it never holds much of G's initial weights. A
    # preset for long runs, so a run that collapses in its first epochs is
    # taken back (`collapse_restarts`) rather than left to run on for hours;
    # a run that does not collapse trains exactly as the recipe's. In five
    # seeds, their momentum ramped one epoch late (`momentum_first_epoch`
    # 0), its average scored 225.7-229.9 nats on the test set at epochs
    # 400, 500 and 600 (REPRODUCTION.md); the preset stops at 600.
    "paper_mnist_ema_long": dataclasses.replace(
        PAPER_MNIST, ema_decay=0.99997, ema_warmup=True, epochs=600,
        collapse_restarts=3),
    # Section 7's conditional model p(x | c) on MNIST: the recipe's nets and
    # optimiser, the label given to both nets, sampled from the weight
    # average.
    "conditional_mnist": dataclasses.replace(
        PAPER_MNIST, conditional=True, ema_decay=0.999, epochs=30),
    # The conditional model trained long, as a model of p(x) = sum_c p(c)
    # p(x | c): the recipe's G and optimiser, a D of twice the width, and
    # `paper_mnist_ema_long`'s warmed-up 67-epoch average. Scored with its
    # labels drawn in the training set's class shares (`evaluate
    # --class_shares=train`), it beats the paper's 225 nats with samples
    # better by the Frechet distance than the unconditional presets'
    # (REPRODUCTION.md); it learns from the labels, which Table 1's models
    # do not. Its validation score levelled off from about epoch 300.
    "conditional_mnist_long": dataclasses.replace(
        PAPER_MNIST, conditional=True, d_hidden=(480, 480),
        ema_decay=0.99997, ema_warmup=True, epochs=400,
        collapse_restarts=3),
    # `conditional_mnist_long` with the labels replaced by 50 k-means
    # clusters of the training images in pixel space (`clusters`), drawn in
    # their training shares: a model of p(x) learnt from the images alone,
    # like Table 1's models, with the mix of its samples set by the clusters
    # rather than left to G (REPRODUCTION.md). Its first epochs are fragile
    # (two seeds of three collapsed); like the other long presets, it takes
    # a collapsed run back (`collapse_restarts`).
    "clustered_mnist_long": dataclasses.replace(
        PAPER_MNIST, conditional=True, clusters=50, d_hidden=(480, 480),
        ema_decay=0.99997, ema_warmup=True, epochs=400,
        collapse_restarts=3),
    # Section 7's masked model: every conditional p(x_S | x_not-S) of MNIST
    # digits in one net, trained with random pixel, block and half masks.
    # Adam trains it to better completions than the recipe's SGD (80% vs
    # 69% recognised with the bottom half missing, REPRODUCTION.md). The
    # per-epoch Parzen monitor scores unconditional samples, which this
    # model does not make, so it is off and the last epoch is kept.
    "masked_mnist": dataclasses.replace(
        PAPER_MNIST, masked=True, mask_kinds="pixels,block,half",
        optimizer="adam", learning_rate=2e-4, beta_1=0.5, lr_decay=1.0,
        min_learning_rate=0.0, ema_decay=0.999, monitor_samples=0,
        epochs=30),
    # The printed Algorithm 1: k discriminator steps on fresh minibatches,
    # then one generator step. With the recipe's settings its first epochs
    # collapse in most tries (REPRODUCTION.md, "The update rule"): train it
    # with `collapse_restarts`.
    "paper_mnist_alternating": dataclasses.replace(
        PAPER_MNIST, update="alternating"),
    # A convolutional pair for colour images, trained the way such pairs
    # train well: Adam, normal prior, tanh output.
    "cifar10_conv": Config(
        dataset="cifar10", train_split="train[:45000]",
        val_split="train[45000:]", test_split="test", architecture="conv",
        latent_dim=100, prior="normal", g_output="tanh",
        conv_filters=(64, 128, 256), d_input_dropout=0.0,
        d_hidden_dropout=0.0, g_init_scale=0.02, d_init_scale=0.02,
        update="alternating", optimizer="adam", learning_rate=2e-4,
        lr_decay=1.0, min_learning_rate=0.0, beta_1=0.5, batch_size=64,
        epochs=50),
    # Figure 1's 1-D toy: data N(-1.5, 0.5^2), z uniform, small nets; G
    # starts on [0, 1], away from the data. The data sit near 0, where D's
    # maxout units start bending: data far out (N(4, 0.5^2)) leave D
    # piecewise linear, and nearly constant, over them.
    "toy_1d": Config(
        dataset="toy_gaussian", toy_mean=-1.5, toy_std=0.5,
        train_split="train", val_split=None,
        test_split=None, latent_dim=1, g_hidden=(32, 32), g_output="linear",
        g_init_scale=0.5, d_hidden=(32, 32), d_pieces=2, d_input_dropout=0.0,
        d_hidden_dropout=0.0, d_init_scale=0.5, update="alternating",
        optimizer="adam", learning_rate=1e-3, lr_decay=1.0,
        min_learning_rate=0.0, beta_1=0.5, batch_size=100, epochs=40,
        sample_grid_rows=1, monitor_samples=0),
}


def get_preset(name: str) -> Config:
  """The named preset; raises `ConfigError` naming the accepted names."""
  if name not in PRESETS:
    raise ConfigError(
        f"config={name!r} is not a known preset: expected one of "
        f"{', '.join(repr(n) for n in PRESETS)}.")
  return PRESETS[name]


def parse_assignments(assignments) -> dict[str, Any]:
  """Parses ['name=value', ...] into typed Config overrides.

  Each value is read as the field's type: int, float, bool (true/false),
  tuples as comma-separated integers, 'none' for optional fields.
  """
  fields = {f.name: f for f in dataclasses.fields(Config)}
  out = {}
  for item in assignments:
    name, sep, text = item.partition("=")
    name = name.strip()
    if not sep or name not in fields:
      raise ConfigError(
          f"--set {item!r} is not accepted: expected name=value with a "
          f"Config field name, one of {', '.join(sorted(fields))}"
          f"{_meant([name], fields) if sep else ''}.")
    kind, default, optional = _field_spec(fields[name])
    text = text.strip()
    try:
      if text.lower() == "none" and optional:
        value = None
      elif kind == "bool":
        if text.lower() not in ("true", "false", "1", "0"):
          raise ValueError(text)
        value = text.lower() in ("true", "1")
      elif kind == "ints":
        value = tuple(int(v) for v in text.split(",") if v.strip())
      elif kind == "int":
        value = int(text)
      elif kind == "float":
        value = float(text)
      else:
        value = text
    except ValueError:
      raise ConfigError(
          f"--set {item!r} is not accepted: expected {name} to be "
          f"{_value_words(kind, default)}"
          + (" (or none)" if optional else "") + ".") from None
    out[name] = value
  return out


def _field_spec(field: dataclasses.Field) -> tuple[str, Any, bool]:
  """(kind, default, optional) of a Config field: its kind is how
  `parse_assignments` reads a value of it and `check_kinds` checks one,
  'bool', 'ints' (a tuple), 'int', 'float' or 'str'; optional fields may
  be None."""
  default = field.default
  optional = "Optional" in str(field.type)
  if isinstance(default, bool):
    kind = "bool"
  elif isinstance(default, tuple):
    kind = "ints"
  elif isinstance(default, int) or field.name == "steps_per_epoch":
    kind = "int"
  elif isinstance(default, float):
    kind = "float"
  else:
    kind = "str"
  return kind, default, optional


_KIND_WORDS = {"bool": "a bool", "ints": "a tuple of integers",
               "int": "an integer", "float": "a number", "str": "a string"}


def _is_kind(kind: str, value: Any) -> bool:
  """Whether `value` is a value of a field of `kind` (`_field_spec`)."""
  if kind == "bool":
    return isinstance(value, bool)
  if kind == "ints":
    return isinstance(value, tuple) and all(is_integer(v) for v in value)
  if kind == "int":
    return is_integer(value)
  if kind == "float":
    return is_number(value)
  return isinstance(value, str)


def _value_words(kind: str, default) -> str:
  """What a `--set` value of a field of `kind` (`_field_spec`) must be, in
  words, with the default as the example where there is one."""
  if kind == "bool":
    return "true or false"
  if kind == "ints":
    return ("integers separated by commas, such as "
            + ",".join(str(v) for v in default))
  if kind == "int":
    return "an integer" + (f", such as {default}" if default is not None
                           else "")
  return f"a number, such as {default}"
