import os

import numpy as np
import pytest
import tensorflow as tf

import export
from adversarial import evaluation
from adversarial import train_lib
from adversarial.conditional import ConditionalGAN

from conftest import random_images, small_config

SHAPE = (28, 28, 1)


def make(**changes):
  config = small_config(conditional=True, g_init_scale=0.5, **changes)
  return train_lib.build_model(config, SHAPE, None, steps=3, num_classes=10)


def batch(n=8, seed=0):
  data = random_images(n, SHAPE, seed)
  return data.images.astype(np.float32) / 255.0, data.labels


def test_labels_reach_both_nets():
  model = make()
  assert isinstance(model, ConditionalGAN)
  z = model.noise_for_seed(4, 0)
  as_three = model.generator([z, model.one_hot([3] * 4)])
  as_five = model.generator([z, model.one_hot([5] * 4)])
  assert np.abs(np.asarray(as_three) - np.asarray(as_five)).max() > 1e-4
  x = tf.constant(batch(4)[0])
  d3 = model.discriminator([x, model.one_hot([3] * 4)])
  d5 = model.discriminator([x, model.one_hot([5] * 4)])
  assert np.abs(np.asarray(d3) - np.asarray(d5)).max() > 1e-6
  # generate() asks for the requested labels.
  np.testing.assert_allclose(
      model.generate(4, seed=0, labels=[3] * 4), as_three, atol=1e-6)


def test_packing_is_refused_when_built_by_hand():
  # Config refuses pack > 1 with conditional=True; a model built directly
  # must refuse it too rather than train an unpacked D.
  model = make()
  with pytest.raises(ValueError, match="pack=2 is not accepted by "
                     "ConditionalGAN.*expected pack=1"):
    ConditionalGAN(model.generator, model.discriminator, pack=2)
  assert ConditionalGAN(model.generator, model.discriminator,
                        pack=1).pack == 1


@pytest.mark.parametrize("update,k", [("simultaneous", 1), ("alternating", 2)])
def test_train_step_uses_the_batch_labels(update, k):
  model = make(update=update, k=k)
  x, y = batch(8)
  g0 = [np.array(w) for w in model.generator.weights]
  logs = model.train_on_batch(x, y, return_dict=True)
  assert np.isfinite(logs["d_loss"]) and np.isfinite(logs["g_loss"])
  assert any(not np.array_equal(a, np.array(b))
             for a, b in zip(g0, model.generator.weights))
  with pytest.raises(ValueError, match="dataset of pairs"):
    model.train_on_batch(x)


def test_training_labels_are_checked_before_any_weight_moves():
  model = make()  # small_config: no XLA, so the range assert runs
  x, y = batch(8)
  before = [np.array(w) for w in model.weights]
  with pytest.raises(ValueError, match=r"labels of dtype float32 and shape "
                     r"\(8, 10\) are not accepted: expected integer labels "
                     r"in \[0, 10\), one per image .* not one-hot"):
    model.train_on_batch(x, np.eye(10, dtype=np.float32)[y])
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"labels must be in \[0, 10\)"):
    model.train_on_batch(x, np.where(np.arange(8) == 3, 10, y))
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"labels must be in \[0, 10\)"):
    model.train_on_batch(x, np.where(np.arange(8) == 3, -1, y))
  for a, b in zip(before, model.weights):
    np.testing.assert_array_equal(a, np.array(b))
  # [batch, 1] labels, as some datasets give them, are one per image.
  logs = model.train_on_batch(x, y[:, None], return_dict=True)
  assert np.isfinite(logs["d_loss"])


def test_num_classes_must_match_the_nets_condition_input():
  model = make()
  with pytest.raises(ValueError, match=r"num_classes=7 is not accepted: the "
                     r"generator's condition input takes 10 values"):
    ConditionalGAN(model.generator, model.discriminator, num_classes=7)


def test_default_labels_give_one_row_per_class_and_bad_labels_are_named():
  model = make()
  np.testing.assert_array_equal(model.default_labels(100).reshape(10, 10),
                                np.repeat(np.arange(10), 10).reshape(10, 10))
  with pytest.raises(ValueError, match="label 10 is not accepted"):
    model.generate(2, labels=[1, 10])
  with pytest.raises(ValueError, match="one label per sample"):
    model.generate(3, labels=[1, 2])
  # Labels that are not whole numbers are refused, not truncated.
  for labels in ([1.5, 2], [np.nan, 2], ["a", "b"], [True, False]):
    with pytest.raises(ValueError, match=r"labels of dtype \S+ \(\[.*\]\) "
                       r"are not accepted: expected integer labels in "
                       r"\[0, 10\)"):
      model.generate(2, labels=labels)
  np.testing.assert_array_equal(model.generate(2, labels=[3.0, 4.0]),
                                model.generate(2, labels=[3, 4]))


def test_labels_in_shares_follow_the_shares_in_blocks():
  model = make()
  shares = [0.5, 0.25, 0.25] + [0.0] * 7
  np.testing.assert_array_equal(model.labels_in_shares(8, shares),
                                [0, 0, 0, 0, 1, 1, 2, 2])
  # Unnormalised shares; the leftover samples go to the largest remainders:
  # 7 * (0.3, 0.3, 0.4) = (2.1, 2.1, 2.8) -> (2, 2, 3).
  labels = model.labels_in_shares(7, [3, 3, 4] + [0] * 7)
  np.testing.assert_array_equal(labels, [0, 0, 1, 1, 2, 2, 2])
  mnist_like = np.random.default_rng(0).dirichlet(np.ones(10) * 20)
  labels = model.labels_in_shares(10_000, mnist_like)
  counts = np.bincount(labels, minlength=10)
  assert counts.sum() == 10_000 and (np.diff(labels) >= 0).all()
  assert np.abs(counts - 10_000 * mnist_like).max() < 1
  for bad in ([0.5] * 9, [-0.1] + [0.2] * 9, [0.0] * 10, [np.nan] * 10):
    with pytest.raises(ValueError, match="shares=.* is not accepted: "
                       "expected 10 non-negative numbers"):
      model.labels_in_shares(10, bad)


def test_conditional_run_trains_checkpoints_and_exports_with_labels(tmp_path):
  config = small_config(conditional=True, epochs=1)
  workdir = str(tmp_path / "run")
  result = train_lib.train(config, workdir, verbose=0,
                           train_data=random_images(48))
  assert isinstance(result.model, ConditionalGAN)
  restored, _, _ = train_lib.restore(workdir, "last")
  np.testing.assert_allclose(restored.generate(6, seed=2, labels=[0, 1, 2] * 2),
                             result.model.generate(6, seed=2,
                                                   labels=[0, 1, 2] * 2),
                             atol=1e-6)
  path = export.export_generator(workdir, str(tmp_path / "serving"))
  loaded = tf.saved_model.load(path)
  sig = loaded.signatures["serving_default"]
  assert set(sig.structured_input_signature[1]) == {"z", "labels"}
  z = restored.noise_for_seed(3, 5)
  labels = tf.constant([4, 0, 9], tf.int64)
  got = sig(z=z, labels=labels)["images"].numpy()
  np.testing.assert_allclose(
      got, restored.generate(3, seed=5, labels=[4, 0, 9]), atol=1e-6)
  by_seed = loaded.signatures["sample"](
      seed=tf.constant([1, 1], tf.int64),
      labels=tf.constant([2, 7], tf.int64))["images"].numpy()
  assert not np.allclose(by_seed[0], by_seed[1])
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[0, 10\)"):
    sig(z=z, labels=tf.constant([4, 0, 10], tf.int64))


def test_conditional_accuracy_counts_the_requested_class():
  requested = np.repeat(np.arange(10), 5)
  # A classifier that answered class 1 for every sample.
  result = evaluation.conditional_accuracy(np.ones(50, np.int64), requested)
  assert result["accuracy"] == pytest.approx(0.1)
  assert result["per_class"][1] == 1.0 and result["per_class"][0] == 0.0


def test_conditional_config_is_checked():
  from adversarial.config import ConfigError
  with pytest.raises(ConfigError, match="not accepted together"):
    small_config(conditional=True, masked=True).validate()
  with pytest.raises(ConfigError, match="toy_gaussian"):
    small_config(conditional=True, dataset="toy_gaussian").validate()


def test_clustered_run_trains_on_clusters_and_resumes_with_them(
    tmp_path, monkeypatch):
  from adversarial import data as data_lib
  config = small_config(conditional=True, clusters=3, epochs=1)
  workdir = str(tmp_path / "run")
  seen = []
  real_dataset = data_lib.train_dataset

  def spy(cfg, data, initial_epoch=0):
    seen.append(data.labels)
    return real_dataset(cfg, data, initial_epoch)

  monkeypatch.setattr(data_lib, "train_dataset", spy)
  train_data = random_images(48)
  result = train_lib.train(config, workdir, verbose=0, train_data=train_data)
  prior = train_lib.cluster_prior(workdir)
  assert prior.k == 3 and result.model.num_classes == 3
  # G and D saw the clusters, not the dataset's labels.
  np.testing.assert_array_equal(seen[0], prior.assign(train_data.images))
  assert not np.array_equal(seen[0], train_data.labels)
  restored = train_lib.restore(workdir, "last")[0]
  assert restored.num_classes == 3
  # A resumed run reads the clusters it found at the start.

  def no_search(*args, **kwargs):
    raise AssertionError("the clusters were searched for again")

  monkeypatch.setattr(data_lib, "cluster_prior", no_search)
  train_lib.train(config.override(epochs=2), workdir, verbose=0,
                  train_data=train_data)
  np.testing.assert_array_equal(seen[1], seen[0])
  model = train_lib.restore(workdir, "last")[0]
  assert train_lib.restore(workdir, "last")[2]["epoch"] == 2
  # Served as a model of p(x): `sample` draws each image's cluster from the
  # clusters' shares with its seed; `serving_default` takes the cluster.
  from tensorflow_serving.apis import prediction_log_pb2
  from adversarial.gan import sample_label_rows
  path = export.export_generator(workdir, str(tmp_path / "serving"))
  loaded = tf.saved_model.load(path)
  inputs = {name: set(loaded.signatures[name].structured_input_signature[1])
            for name in export.SIGNATURES}
  assert inputs == {"serving_default": {"z", "labels"}, "sample": {"seed"},
                    "sample_png": {"seed"}}
  seeds = tf.constant([3, 11, 40], tf.int64)
  labels = sample_label_rows(seeds, prior.shares).numpy()
  got = loaded.signatures["sample"](seed=seeds)["images"].numpy()
  for i, seed in enumerate(seeds.numpy()):
    np.testing.assert_allclose(
        got[i], model.generate(1, seed=int(seed), labels=labels[i:i + 1])[0],
        atol=1e-6)
  for record in tf.data.TFRecordDataset(
      os.path.join(path, "assets.extra", export.WARMUP_FILE)):
    request = prediction_log_pb2.PredictionLog.FromString(
        record.numpy()).predict_log.request
    loaded.signatures[request.model_spec.signature_name](
        **{k: tf.constant(tf.make_ndarray(v))
           for k, v in request.inputs.items()})


def test_monitor_scores_samples_drawn_for_the_given_labels():
  model = make()
  val = np.random.default_rng(0).random((20, 784)).astype(np.float32)
  labels = np.repeat([2, 7], 50)
  got = evaluation.validation_monitor_score(model, val, 100, seed=1,
                                            labels=labels)
  samples = evaluation.flatten_unit(
      model.generate(100, seed=1, labels=labels), "sigmoid")
  sigma, table = evaluation.select_sigma(val, samples,
                                         evaluation.PAPER_SIGMAS,
                                         dtype=np.float32)
  assert got == (table[sigma], sigma)
  assert got[0] != evaluation.validation_monitor_score(model, val, 100,
                                                       seed=1)[0]
