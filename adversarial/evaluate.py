r"""Scores a trained generator with the paper's Parzen-window estimate.

Usage:

  python -m adversarial.evaluate --workdir=/tmp/gan [--checkpoint=best] \
      [--draws=8]

Draws 10,000 samples from G, picks sigma from numpy.logspace(-1, 0, 10)
(or from the values --sigmas gives; one value fixes it) by the mean
log-likelihood of the first 1,000 validation images (MNIST train images
50,000-50,999 for the paper's split), then prints the mean log-likelihood of
the test images with its standard error, as Table 1 does, and writes it to
<workdir>/evaluation.json, the latest evaluation's record, with a grid of
100 of the scored samples in <workdir>/evaluation.png, and keeps both in
<workdir>/evaluations/ under its time and checkpoint. With --draws=N it also
scores N - 1 further draws of samples and prints the spread of the N
estimates.
"""

from absl import app
from absl import flags

from adversarial import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory of a run.",
                               required=True)
_CHECKPOINT = cli.define_checkpoint_flag()
_SAMPLES = flags.DEFINE_integer("num_samples", 10_000, "Samples from G.",
                                lower_bound=1)
_VAL = flags.DEFINE_integer("num_val", 1_000, "Validation images for sigma.",
                            lower_bound=1)
_TEST = flags.DEFINE_integer("num_test", None, "Test images, a fixed "
                             "subset drawn over the test split (default: "
                             "all).",
                             lower_bound=1)
_SIGMAS = flags.DEFINE_list(
    "sigmas", None, "Kernel widths, comma-separated, that sigma is chosen "
    "from by the validation images; one value fixes sigma (as the authors' "
    "parzen_ll.py --sigma does). Default: numpy.logspace(-1, 0, 10), the "
    "paper's grid.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the samples' z.")
_DRAWS = flags.DEFINE_integer(
    "draws", 1, "Score this many independent draws of num_samples samples "
    "(seeds seed, seed + 1, ...) and print their mean and spread: the "
    "variation the draw of samples adds to the estimate, which its standard "
    "error over test images leaves out. The first draw is the estimate "
    "reported, as the paper's one draw.", lower_bound=1)
_QUALITY = flags.DEFINE_bool(
    "quality", True, "Also report the sample-quality scores (MNIST): "
    "Frechet distance in a classifier's features, class histogram, "
    "nearest-neighbour distances.")
_GENERATOR = flags.DEFINE_enum(
    "generator", "default", ["default", "average", "trained"],
    "For a run that keeps a weight average of G (ema_decay > 0): score the "
    "average or the trained G. default: the average when there is one.")
_REFERENCE = flags.DEFINE_bool(
    "reference", True, "Also score num_samples training images as if they "
    "were the samples, and print both estimates for each test label: where "
    "the generator loses its nats.")
_CLASS_SHARES = flags.DEFINE_enum(
    "class_shares", None, ["uniform", "train"],
    "For a conditional run: draw the samples for a block of each class "
    "(uniform) or for labels in the training set's class shares (train), "
    "which scores the model of p(x) = sum_c p(c) p(x | c). Default: train "
    "for a run conditioned on clusters, uniform for labels.")
_MANUAL_DIR, _DATA_DIR = cli.define_data_flags()
flags.adopt_module_key_flags(cli)  # --helpshort lists them.


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from adversarial import evaluation
  from adversarial import quality as quality_lib
  sigmas = (evaluation.PAPER_SIGMAS if _SIGMAS.value is None
            else cli.parse_numbers("sigmas", _SIGMAS.value))
  try:
    _check_generator_flag(_WORKDIR.value, _GENERATOR.value)
    result = evaluation.evaluate_workdir(
        _WORKDIR.value, checkpoint=_CHECKPOINT.value,
        num_samples=_SAMPLES.value, num_val=_VAL.value,
        num_test=_TEST.value, seed=_SEED.value, sigmas=sigmas,
        quality=_QUALITY.value,
        average={"default": None, "average": True,
                 "trained": False}[_GENERATOR.value],
        reference=_REFERENCE.value, class_shares=_CLASS_SHARES.value,
        draws=_DRAWS.value,
        **cli.data_dirs(_MANUAL_DIR, _DATA_DIR))
  except (FileNotFoundError, ValueError) as e:
    raise SystemExit(f"error: {e}") from None
  print(f"Parzen-window log-likelihood: {result['mean']:.1f} +/- "
        f"{result['stderr']:.1f} nats (sigma {result['sigma']:.4f}, "
        f"{result['num_samples']} samples, {result['num_test']} test images,"
        f" checkpoint {_checkpoint_name(result)}, {result['seconds']:.1f} s)")
  d = result.get("draws")
  if d:
    print(f"over {len(d['means'])} draws of {result['num_samples']} samples "
          f"(seeds {d['seeds'][0]}-{d['seeds'][-1]}): mean {d['mean']:.1f}, "
          f"standard deviation {d['std']:.1f} nats (each: "
          f"{' '.join(f'{m:.1f}' for m in d['means'])})")
  ref = result.get("reference")
  if ref:
    print(f"training images as the samples (reference): {ref['mean']:.1f} "
          f"+/- {ref['stderr']:.1f} nats (sigma {ref['sigma']:.4f})")
  if result.get("above_reference"):
    print(f"note: the samples score {result['above_reference']:.1f} nats "
          f"above real training images. The Parzen estimate rewards samples "
          f"that sit nearer the test images than real digits do (soft, "
          f"smoothed strokes), so this says how the score is won, not "
          f"that the samples are better: judge them by the sample-quality "
          f"scores (Frechet distance).")
  if ref and result.get("by_class"):
    print(format_by_class(result["by_class"], ref["by_class"]))
  q = result.get("quality")
  if q:
    print(f"Frechet distance (classifier features, samples vs test): "
          f"{q['frechet_distance']:.2f} (at the test set's class shares: "
          f"{_number(q['frechet_distance_test_mix'])}; train vs test: "
          f"{q['frechet_distance_real']:.2f}); digits present: "
          f"{q['classes_present']}/10; class shares: {q['class_histogram']}")
    print(f"nearest training image, median distance: samples "
          f"{q['nn_sample_median']:.2f}, test images {q['nn_test_median']:.2f}"
          f"; samples nearer than the nearest 1% / 5% of test images: "
          f"{100 * q['nn_share_below_test_p1']:.1f}% / "
          f"{100 * q['nn_share_below_test_p5']:.1f}% (samples that are not "
          f"copies: about 1% / 5%)")
    warning = quality_lib.memorisation_warning(q)
    if warning:
      print(warning)
  if result.get("clusters"):
    drawn = ("their training shares" if result["class_shares"] == "train"
             else "a block of each")
    print(f"samples drawn for the run's {result['clusters']} k-means "
          f"clusters of the training images, in {drawn}")
  c = result.get("conditional")
  if c:
    print(f"conditional samples, drawn for "
          f"{evaluation.CLASS_SHARES[result['class_shares']]}, recognised "
          f"as the requested class: {100 * c['accuracy']:.1f}% (per class: "
          f"{' '.join(f'{100 * a:.0f}' for a in c['per_class'])})")
  print(f"written to {result['path']} (kept as {result['kept_path']})")
  if result.get("samples_png"):
    print(f"samples: {result['samples_png']}")


def _check_generator_flag(workdir: str, generator: str) -> None:
  """Raises ValueError for --generator=average on a run that keeps no
  weight average, in the flag's words rather than the API's."""
  import os
  from adversarial import train_lib
  if generator == "average" and os.path.isdir(workdir):
    if not train_lib.load_config(workdir).ema_decay:
      raise ValueError(
          "--generator=average is not accepted: the run keeps no weight "
          "average of G (ema_decay=0); expected --generator=trained or "
          "--generator=default, which score G itself.")


def _number(value) -> str:
  """A score with two decimals, or 'n/a' for one that is not defined."""
  return "n/a" if value is None else f"{value:.2f}"


def _checkpoint_name(result: dict) -> str:
  """'epoch N', or the weights file's path when its epoch is not known."""
  if result.get("epoch") is not None:
    return f"epoch {result['epoch']}"
  return result["checkpoint"]


def format_by_class(samples: dict, reference: dict) -> str:
  """A table of the mean test log-likelihood of each label, under G's
  samples and under the reference."""
  rows = [f"{'test label':>10} {'samples':>9} {'reference':>10} {'gap':>7}"]
  for label, value in samples.items():
    ref = reference[label]
    rows.append(f"{label:>10} {value:9.1f} {ref:10.1f} {ref - value:7.1f}")
  return "\n".join(rows)


def run():
  """Console-script entry point."""
  cli.run(main)


if __name__ == "__main__":
  run()
