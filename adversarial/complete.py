r"""Completes MNIST digits with a masked model (the paper's Section 7,
item 3) and measures the completions.

Usage:

  python -m adversarial.train --config=masked_mnist --workdir=runs/masked
  python -m adversarial.complete --workdir=runs/masked

For test digits whose bottom half, right half or a random block is missing,
it draws several completions each, writes one figure per kind
(<workdir>/completion/<kind>.png: original, input, completions), and reports
how often the package's MNIST classifier gives the completed digit its true
label, against filling the missing part with the mean training image.
Results go to <workdir>/completion/completion.json.
"""

import json
import os

from absl import app
from absl import flags

from adversarial import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory of a masked "
                               "run (--masked).", required=True)
_CHECKPOINT = cli.define_checkpoint_flag()
_NUM_TEST = flags.DEFINE_integer("num_test", 10_000, "Test digits scored, "
                                 "a fixed subset drawn over the test split.",
                                 lower_bound=1)
_COMPLETIONS = flags.DEFINE_integer("completions", 5,
                                    "Completions per input.", lower_bound=1)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the masks and completions.")
_MANUAL_DIR, _DATA_DIR = cli.define_data_flags()
flags.adopt_module_key_flags(cli)  # --helpshort lists them.


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  import numpy as np
  from adversarial.files import write_text_atomic
  from adversarial import data as data_lib
  from adversarial import images as images_lib
  from adversarial import masked
  from adversarial import quality
  model, config, record = cli.restore_or_exit(
      _WORKDIR.value, _CHECKPOINT.value,
      cli.data_dirs(_MANUAL_DIR, _DATA_DIR))
  if config.dataset != "mnist":
    raise SystemExit(f"error: the run in {_WORKDIR.value!r} was trained on "
                     f"dataset={config.dataset!r}: completions are scored "
                     f"by the package's MNIST classifier, so expected a run "
                     f"on dataset='mnist'.")
  if not config.masked:
    raise SystemExit(f"error: the run in {_WORKDIR.value!r} is not a masked "
                     f"model: expected a run trained with --masked (e.g. "
                     f"--config=masked_mnist).")
  to_model = lambda a: np.asarray(data_lib.to_model_range(a, config.g_output))
  to_unit = lambda x: data_lib.to_unit_range(x, config.g_output)
  train = data_lib.load_array(config, config.train_split)
  test = data_lib.load_array(config, config.test_split)
  images = to_model(quality.subset(test.images, _NUM_TEST.value))
  labels = quality.subset(test.labels, _NUM_TEST.value)
  classifier = quality.load_or_train_classifier(config)
  scores = masked.completion_scores(
      model, classifier, images, labels, to_model(train.images).mean(0),
      completions=_COMPLETIONS.value, seed=_SEED.value, to_unit=to_unit)
  out = os.path.join(_WORKDIR.value, "completion")
  os.makedirs(out, exist_ok=True)
  for kind in masked.DEMO_MASKS:
    picture = masked.completion_figure(model, images[:8], kind,
                                       _COMPLETIONS.value, _SEED.value,
                                       to_unit)
    images_lib.write_png(os.path.join(out, f"{kind}.png"),
                         images_lib.zoom(picture, 2))
  write_text_atomic(os.path.join(out, "completion.json"), json.dumps(
      {"scores": scores, "epoch": record.get("epoch"),
       "checkpoint": record["weights"], "num_test": len(images)}, indent=2))
  print(f"classifier accuracy on {len(images)} test digits (checkpoint epoch "
        f"{record.get('epoch')}):")
  print("| missing | original | mean-image fill | completed (mean of "
        f"{_COMPLETIONS.value}) |")
  for kind, s in scores.items():
    print(f"| {kind} ({100 * s['missing_share']:.0f}% of pixels) | "
          f"{100 * s['original']:.1f}% | {100 * s['mean_fill']:.1f}% | "
          f"{100 * s['completed']:.1f}% |")
  print(f"written to {out}/")


if __name__ == "__main__":
  cli.run(main)
