import json

import numpy as np
import pytest

from adversarial import callbacks as callbacks_lib
from adversarial import config as config_lib
from adversarial import train_lib
from adversarial.config import Config, ConfigError, PRESETS

BAD = [
    (dict(batch_size=0), "batch_size=0"),
    (dict(batch_size=-3), "batch_size=-3"),
    (dict(k=0), "k=0"),
    (dict(g_loss="wgan"), "g_loss='wgan'.*'non_saturating'"),
    (dict(optimizer="sgdx"), "optimizer='sgdx'.*'adam'"),
    (dict(update="async"), "update='async'.*'alternating'"),
    (dict(prior="cauchy"), "prior='cauchy'"),
    (dict(d_input_dropout=1.0), r"d_input_dropout=1.0.*\[0, 1\)"),
    (dict(learning_rate=0.0), "learning_rate=0.0"),
    (dict(lr_decay=0.9), "lr_decay=0.9"),
    (dict(anneal_epoch=-1), r"anneal_epoch=-1.*integer >= 0"),
    (dict(anneal_epoch=2.5), r"anneal_epoch=2.5.*integer >= 0"),
    (dict(anneal_decay=0.5), r"anneal_decay=0.5.*factor >= 1"),
    (dict(seed=-1), "seed=-1"),
    (dict(g_hidden=()), r"g_hidden=\(\)"),
    (dict(steps_per_epoch=0), "steps_per_epoch=0"),
    (dict(architecture="rnn"), "architecture='rnn'"),
    (dict(strategy="horovod"), "strategy='horovod'.*'multi_worker'"),
    (dict(precision="float16"), "precision='float16'.*'mixed_float16'"),
    (dict(ema_decay=1.0), r"ema_decay=1.0.*\[0, 1\)"),
    (dict(mask_kinds="half,corner"), "mask_kinds='half,corner'.*pixels"),
    (dict(pack=0), r"pack=0.*integer >= 1"),
    (dict(pack=3), "pack=3 is not accepted with batch_size=100: expected a "
     "pack size that divides"),
    (dict(pack=2, update="alternating", k=4, batch_size=25),
     "pack=2 is not accepted with batch_size=25: expected a pack size that "
     "divides the batch size"),
    (dict(pack=2, conditional=True), "pack=2 is not accepted with "
     "conditional=True"),
    (dict(pack=2, masked=True), "pack=2 is not accepted with masked=True"),
    (dict(conditional=True, clusters=1), r"clusters=1 .*integer >= 2"),
    (dict(conditional=True, clusters=-4), r"clusters=-4 .*integer >= 2"),
    (dict(clusters=10), "clusters=10 is not accepted with conditional=False"
     ": expected conditional=True"),
    (dict(instance_noise=-0.1), r"instance_noise=-0.1 .*deviation >= 0"),
    (dict(instance_noise=0.2), r"instance_noise_epochs=0 .*positive integer"),
    (dict(collapse_restarts=-1), r"collapse_restarts=-1 .*integer >= 0"),
    (dict(collapse_d_fake=0.5), r"collapse_d_fake=0.5 .*\(0, 0.5\)"),
    (dict(collapse_d_fake=0.0), r"collapse_d_fake=0.0 .*\(0, 0.5\)"),
    (dict(momentum_first_epoch=2), r"momentum_first_epoch=2 .*expected 1 "
     r"\(the authors' count"),
    (dict(collapse_restarts=2, monitor_samples=0), "collapse_restarts=2 is "
     "not accepted with the validation monitor off.*expected "
     "collapse_restarts=0 or the monitor on"),
]


@pytest.mark.parametrize("changes,message", BAD)
def test_bad_values_are_named(changes, message):
  with pytest.raises(ConfigError, match=message):
    config_lib.PAPER_MNIST.override(**changes).validate()


def test_presets_validate_and_paper_preset_is_the_recipe():
  for config in PRESETS.values():
    config.validate()
  p = PRESETS["paper_mnist"]
  assert (p.latent_dim, p.g_hidden, p.d_hidden, p.d_pieces) == (
      100, (1200, 1200), (240, 240), 5)
  assert (p.d_input_dropout, p.d_hidden_dropout) == (0.2, 0.5)
  # The recipe's loop trains on whatever D(G(z)) does; the presets for long
  # runs take a collapsed run back.
  assert p.collapse_restarts == 0 and p.instance_noise == 0.0
  for name in ("paper_mnist_ema_long", "conditional_mnist_long",
               "clustered_mnist_long"):
    assert PRESETS[name].collapse_restarts == 3
  assert (p.g_init_scale, p.d_init_scale) == (0.05, 0.005)
  assert (p.optimizer, p.learning_rate, p.lr_decay, p.min_learning_rate) == (
      "sgd", 0.1, 1.000004, 1e-6)
  assert (p.momentum, p.final_momentum, p.momentum_start_epoch,
          p.momentum_saturate_epoch, p.momentum_first_epoch) == (
      0.5, 0.7, 1, 250, 1)
  assert (p.batch_size, p.update, p.k, p.g_loss, p.prior) == (
      100, "simultaneous", 1, "non_saturating", "uniform")
  assert (p.train_split, p.val_split) == ("train[:50000]", "train[50000:]")
  # The weight-average presets train exactly as the recipe does.
  assert PRESETS["paper_mnist_ema"].differences(p) == {
      "ema_decay": (0.999, 0.0)}
  assert PRESETS["paper_mnist_ema_long"].differences(p) == {
      "ema_decay": (0.99997, 0.0), "ema_warmup": (True, False)}
  assert PRESETS["conditional_mnist_long"].differences(p) == {
      "conditional": (True, False), "d_hidden": ((480, 480), (240, 240)),
      "ema_decay": (0.99997, 0.0), "ema_warmup": (True, False)}
  # The same model with clusters in place of the labels.
  assert PRESETS["clustered_mnist_long"].differences(
      PRESETS["conditional_mnist_long"]) == {"clusters": (50, 0)}


def test_unknown_preset_and_field():
  with pytest.raises(ConfigError, match="'paper'.*'paper_mnist'"):
    config_lib.get_preset("paper")
  with pytest.raises(ConfigError, match="batchsize may be batch_size"):
    config_lib.PAPER_MNIST.override(batchsize=3)
  with pytest.raises(ConfigError, match=r"\['qqq'\]: expected only fields "
                     r"of adversarial.config.Config\.$"):
    Config.from_dict({"qqq": 1})
  with pytest.raises(ConfigError, match="g_hiden may be g_hidden.$"):
    Config.from_dict({"g_hiden": [8]})


def test_json_round_trip_and_differences():
  c = config_lib.PAPER_MNIST.override(g_hidden=(10, 20), epochs=3)
  again = Config.from_json(c.to_json())
  assert again == c
  assert json.loads(c.to_json())["g_hidden"] == [10, 20]
  assert again.differences(c.override(epochs=9)) == {}
  assert again.differences(c.override(k=2)) == {"k": (1, 2)}


def trained_one_epoch(workdir):
  """Gives `workdir` the record of a checkpoint of epoch 1."""
  checkpoints = workdir / "checkpoints"
  checkpoints.mkdir()
  callbacks_lib.write_state(str(checkpoints), 1,
                            callbacks_lib.weights_path(str(checkpoints), 1))


def test_a_configuration_saved_without_split_order_keeps_tfds_order(
    tmp_path):
  saved = json.loads(config_lib.PAPER_MNIST.to_json())
  assert saved.pop("split_order") == "auto"
  old = Config.from_dict(saved)
  assert old.split_order == "stored" and not old.reads_original_order()
  # Its run resumes only in the order it trained on.
  (tmp_path / "config.json").write_text(json.dumps(saved))
  trained_one_epoch(tmp_path)
  with pytest.raises(ConfigError, match="split_order: saved 'stored', "
                     "requested 'auto'"):
    train_lib.check_workdir(config_lib.PAPER_MNIST, str(tmp_path))
  train_lib.check_workdir(config_lib.PAPER_MNIST.override(
      split_order="stored"), str(tmp_path))


def test_a_configuration_saved_without_momentum_first_epoch_ramps_late(
    tmp_path):
  saved = json.loads(config_lib.PAPER_MNIST.to_json())
  assert saved.pop("momentum_first_epoch") == 1
  old = Config.from_dict(saved)
  assert old.momentum_first_epoch == 0
  assert old.differences(config_lib.PAPER_MNIST) == {
      "momentum_first_epoch": (0, 1)}
  # Its run resumes only under the schedule it trained with.
  (tmp_path / "config.json").write_text(json.dumps(saved))
  trained_one_epoch(tmp_path)
  with pytest.raises(ConfigError, match="momentum_first_epoch: saved 0, "
                     "requested 1"):
    train_lib.check_workdir(config_lib.PAPER_MNIST, str(tmp_path))
  train_lib.check_workdir(config_lib.PAPER_MNIST.override(
      momentum_first_epoch=0), str(tmp_path))


def test_parse_assignments_types():
  got = config_lib.parse_assignments(
      ["g_hidden=8,16", "d_input_dropout=0.1", "jit_compile=false",
       "steps_per_epoch=none", "batch_size=7", "dataset=cifar10"])
  assert got == dict(g_hidden=(8, 16), d_input_dropout=0.1, jit_compile=False,
                     steps_per_epoch=None, batch_size=7, dataset="cifar10")
  with pytest.raises(ConfigError, match="'nope=1'.*val_split.$"):
    config_lib.parse_assignments(["nope=1"])
  with pytest.raises(ConfigError, match="val_split; learning_rat may be "
                     "learning_rate.$"):
    config_lib.parse_assignments(["learning_rat=0.1"])


# A value of the wrong type: the message says what the field takes, with its
# default as the example.
@pytest.mark.parametrize("item,message", [
    ("batch_size=x", "'batch_size=x' is not accepted: expected batch_size to "
     "be an integer, such as 100."),
    ("g_hidden=ten", "expected g_hidden to be integers separated by commas, "
     "such as 1200,1200."),
    ("jit_compile=yes", "expected jit_compile to be true or false."),
    ("d_input_dropout=much", "expected d_input_dropout to be a number, such "
     "as 0.2."),
    ("steps_per_epoch=all", "expected steps_per_epoch to be an integer "
     "(or none)."),
])
def test_a_value_of_the_wrong_type_is_named(item, message):
  with pytest.raises(ConfigError) as e:
    config_lib.parse_assignments([item])
  assert message in str(e.value)


def test_the_strategy_may_change_when_a_run_resumes():
  a = config_lib.PAPER_MNIST
  assert a.differences(a.override(strategy="mirrored")) == {}
  # So may the collapse guard: turned on, it takes a collapsed run back.
  assert a.differences(a.override(collapse_restarts=3,
                                  collapse_d_fake=0.01)) == {}
  assert "precision" in a.differences(a.override(precision="mixed_bfloat16"))


# A value of another kind than its field's, given in Python or read from a
# saved config.json, is named with the kind the field takes.
@pytest.mark.parametrize("name,value,message", [
    ("learning_rate", "0.1", "learning_rate='0.1' is not accepted: expected "
     "a number such as 0.1."),
    ("conditional", 1, "conditional=1 is not accepted: expected a bool "
     "such as False."),
    ("g_hidden", (8, 1.5), "g_hidden=(8, 1.5) is not accepted: expected a "
     "tuple of integers such as (1200, 1200)."),
    ("steps_per_epoch", 2.0, "steps_per_epoch=2.0 is not accepted: expected "
     "an integer (or None)."),
    ("val_split", 3, "val_split=3 is not accepted: expected a string such "
     "as 'train[50000:]' (or None)."),
    ("dataset", None, "dataset=None is not accepted: expected a string "
     "such as 'mnist'."),
    ("mask_kinds", 3, "mask_kinds=3 is not accepted: expected a string "
     "such as 'pixels,block,half,all'."),
])
def test_a_value_of_another_kind_is_named(name, value, message):
  with pytest.raises(ConfigError) as e:
    Config(**{name: value}).validate()
  # `validate` may name it with its field's own check.
  assert str(e.value).startswith(f"{name}={value!r} is not accepted: ")
  saved = json.loads(config_lib.PAPER_MNIST.to_json())
  saved[name] = value
  with pytest.raises(ConfigError) as e:
    Config.from_json(json.dumps(saved))
  assert str(e.value) == message
  # An integer is a number; None is taken where the field is optional.
  assert Config(learning_rate=1, steps_per_epoch=None).validate()


def test_numpy_numbers_are_taken_and_saved_as_plain_numbers():
  config = Config(batch_size=np.int64(50), learning_rate=np.float32(0.25),
                  g_hidden=(np.int32(16), 8)).validate()
  saved = Config.from_json(config.to_json())
  assert (saved.batch_size, saved.learning_rate, saved.g_hidden) == (
      50, 0.25, (16, 8))
  assert type(saved.batch_size) is int and type(saved.g_hidden[0]) is int
  assert not saved.differences(config)
  for name in ("batch_size", "k", "seed", "clusters", "monitor_samples"):
    with pytest.raises(ConfigError, match=rf"{name}=True is not accepted"):
      Config(**{name: True}).validate()
