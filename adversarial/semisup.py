r"""Semi-supervised MNIST with a trained discriminator's features (the
paper's Section 7, item 4).

Usage:

  python -m adversarial.semisup --workdir=runs/mnist

Fits the same linear classifier to raw pixels, to an untrained D's features
and to the trained D's features, with 100, 600, 1,000 and 3,000 labelled
training images, and prints the test error table. Writes
<workdir>/semi_supervised.json.
"""

import json
import os

from absl import app
from absl import flags

from adversarial import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory of a run.",
                               required=True)
_CHECKPOINT = cli.define_checkpoint_flag()
_SIZES = flags.DEFINE_list(
    "sizes", ["100", "600", "1000", "3000"],
    "Numbers of labelled training images, each a multiple of the number of "
    "classes: every class gives the same count.")
_DRAWS = flags.DEFINE_integer("draws", 3, "Labelled sets drawn per size.",
                              lower_bound=1)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the labelled sets.")
_L2 = flags.DEFINE_float("l2", 1e-3, "L2 penalty of the linear classifier.",
                         lower_bound=0)
_MANUAL_DIR, _DATA_DIR = cli.define_data_flags()
flags.adopt_module_key_flags(cli)  # --helpshort lists them.


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  import numpy as np
  from adversarial.files import write_text_atomic
  from adversarial import data as data_lib
  from adversarial import networks
  from adversarial import semisupervised as ss
  from adversarial import train_lib
  sizes = cli.parse_numbers("sizes", _SIZES.value, int)
  if not sizes or min(sizes) < 1:
    raise app.UsageError(f"--sizes={','.join(_SIZES.value)} is not accepted: "
                         f"expected positive integers such as "
                         f"100,600,1000,3000.")
  model, config, record = cli.restore_or_exit(
      _WORKDIR.value, _CHECKPOINT.value,
      cli.data_dirs(_MANUAL_DIR, _DATA_DIR))
  if config.conditional or config.masked:
    raise SystemExit("error: the run is conditional or masked: expected an "
                     "unconditional run, whose D sees images alone.")
  try:
    train_lib.check_image_run(config, _WORKDIR.value,
                              "semi-supervised classification")
  except ValueError as e:
    raise SystemExit(f"error: {e}") from None
  train = data_lib.load_array(config, config.train_split)
  try:  # Before D's features are computed for every image.
    ss.check_sizes(train.labels, sizes)
  except ValueError as e:
    raise SystemExit(f"error: --sizes: {e}") from None
  test = data_lib.load_array(config, config.test_split)
  to_model = lambda a: np.asarray(data_lib.to_model_range(a, config.g_output))
  x_train, x_test = to_model(train.images), to_model(test.images)
  _, untrained = networks.build_networks(config, x_train.shape[1:])
  feats = lambda d: (ss.discriminator_features(d, x_train),
                     ss.discriminator_features(d, x_test))
  feature_sets = {
      "raw pixels": (x_train.reshape(len(x_train), -1),
                     x_test.reshape(len(x_test), -1)),
      "untrained D": feats(untrained),
      f"trained D (epoch {record.get('epoch')})": feats(model.discriminator),
  }
  try:
    table = ss.semi_supervised_table(feature_sets, train.labels, test.labels,
                                     sizes, _DRAWS.value, _SEED.value,
                                     _L2.value)
  except ValueError as e:
    raise SystemExit(f"error: {e}") from None
  path = os.path.join(_WORKDIR.value, "semi_supervised.json")
  write_text_atomic(path, json.dumps(
      dict(table.to_dict(), checkpoint=record["weights"],
           epoch=record.get("epoch"), l2=_L2.value), indent=2))
  print(f"MNIST test error (%), linear classifier, mean +/- std over "
        f"{_DRAWS.value} labelled sets:")
  print(ss.format_table(table))
  print(f"written to {path}")


if __name__ == "__main__":
  cli.run(main)
