import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from adversarial import config as config_lib
from adversarial import gan as gan_lib
from adversarial import losses
from adversarial import networks
from adversarial import rng
from adversarial import train_lib

from conftest import random_images, small_config

SHAPE = (28, 28, 1)


def make_gan(**changes):
  config = small_config(**changes)
  means = np.full(SHAPE, 0.2, np.float32)
  return train_lib.build_model(config, SHAPE, means, steps=3)


def images(n=8, seed=0):
  return random_images(n, SHAPE, seed).images.astype(np.float32) / 255.0


def weights(model):
  return [np.array(w) for w in model.weights]


def changed(before, after):
  return [not np.array_equal(a, b) for a, b in zip(before, after)]


def test_discriminator_step_moves_only_d_and_generator_step_only_g():
  gan = make_gan(update="alternating")
  g0, d0 = weights(gan.generator), weights(gan.discriminator)
  gan.discriminator_step(images())
  assert not any(changed(g0, weights(gan.generator)))
  assert all(changed(d0, weights(gan.discriminator)))
  g1, d1 = weights(gan.generator), weights(gan.discriminator)
  gan.generator_step(8)
  assert all(changed(g1, weights(gan.generator)))
  assert not any(changed(d1, weights(gan.discriminator)))


def test_alternating_takes_k_discriminator_steps_per_generator_step():
  gan = make_gan(update="alternating", k=3)
  gan.train_on_batch(images(12))
  assert int(gan.d_optimizer.iterations) == 3
  assert int(gan.g_optimizer.iterations) == 1
  # A second batch size retraces the step with an unknown batch size, which
  # the step's assert checks.
  before = weights(gan)
  with pytest.raises(tf.errors.InvalidArgumentError, match="multiple of k"):
    gan.train_on_batch(images(10))
  assert not any(changed(before, weights(gan)))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_batch_not_a_multiple_of_k_or_pack_is_refused(jit_compile):
  # A batch size known when the step is traced is refused then, also under
  # XLA, which drops graph asserts.
  gan = make_gan(update="alternating", k=3, jit_compile=jit_compile)
  with pytest.raises(ValueError, match="k=3 .* got a batch of 10 images"):
    gan.train_on_batch(images(10))
  assert int(gan.d_optimizer.iterations) == 0
  gan = make_gan(pack=2, jit_compile=jit_compile)
  with pytest.raises(ValueError, match="packs of 2 .* got a batch of 9"):
    gan.train_on_batch(images(9))
  assert int(gan.d_optimizer.iterations) == 0


def test_batch_of_unknown_size_is_checked_when_the_step_runs():
  # A dataset's partial batch: the batch dimension is unknown when the step
  # is traced, so the assert in the step refuses it, before any weight moves.
  gan = make_gan(update="alternating", k=3, steps_per_execution=1)
  ds = tf.data.Dataset.from_tensor_slices(images(10)).batch(12)
  assert ds.element_spec.shape[0] is None
  before = weights(gan)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="multiple of k"):
    gan.fit(ds, epochs=1, verbose=0)
  assert not any(changed(before, weights(gan)))


def test_images_of_an_integer_dtype_are_refused():
  # uint8 pixels, as keras.datasets gives them, against G's [0, 1].
  gan = make_gan()
  pixels = (images(8) * 255).astype(np.uint8)
  before = weights(gan)
  for step in (lambda: gan.fit(pixels, batch_size=8, verbose=0),
               lambda: gan.evaluate(pixels, batch_size=8, verbose=0)):
    with pytest.raises(ValueError, match=r"images of dtype uint8 are not "
                       r"accepted: expected floating-point images .* "
                       r"divided by 255"):
      step()
  assert not any(changed(before, weights(gan)))
  gan.fit(pixels.astype(np.float32) / 255, batch_size=8, verbose=0)
  assert int(gan.d_optimizer.iterations) == 1


def test_simultaneous_moves_both_nets_once_per_step():
  gan = make_gan()
  gan.train_on_batch(images())
  assert int(gan.d_optimizer.iterations) == 1
  assert int(gan.g_optimizer.iterations) == 1


def _plain_sgd_gan(update):
  # No dropout, constant lr, no momentum: one step can be computed by hand.
  gan = make_gan(update=update, d_input_dropout=0.0, d_hidden_dropout=0.0,
                 lr_decay=1.0, min_learning_rate=0.0, momentum=0.0,
                 final_momentum=0.0, learning_rate=0.5)
  return gan


def _grads(model, loss_fn):
  with tf.GradientTape() as tape:
    loss = loss_fn()
  return tape.gradient(loss, model.trainable_variables)


@pytest.mark.parametrize("update", ["simultaneous", "alternating"])
def test_one_step_matches_algorithm_by_hand(update):
  gan = _plain_sgd_gan(update)
  x = tf.constant(images())
  state = gan.noise_seed.state.numpy().copy()
  g, d = gan.generator, gan.discriminator
  g0, d0 = weights(g), weights(d)

  # The step by hand, from the same noise stream.
  z1 = gan_lib.sample_prior([8, 8], tf.constant(state), "uniform")
  d_grads = _grads(d, lambda: losses.discriminator_loss(d(x), d(g(z1))))
  if update == "simultaneous":
    # G's gradient from the same forward pass, at D's old weights.
    g_grads = _grads(g, lambda: losses.non_saturating_generator_loss(
        d(g(z1))))
  expected_d = [w - 0.5 * gr.numpy() for w, gr in zip(d0, d_grads)]
  if update == "alternating":
    for var, w in zip(d.weights, expected_d):
      var.assign(w)
    z2 = gan_lib.sample_prior([8, 8], tf.constant(state + [0, 1]),
                              "uniform")
    # Algorithm 1: G's step sees the D that has just been updated.
    g_grads = _grads(g, lambda: losses.non_saturating_generator_loss(
        d(g(z2))))
    for var, w in zip(d.weights, d0):
      var.assign(w)
  expected_g = [w - 0.5 * gr.numpy() for w, gr in zip(g0, g_grads)]

  gan.train_on_batch(x)
  for got, want in zip(weights(d), expected_d):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  for got, want in zip(weights(g), expected_g):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_metrics_of_each_step():
  gan = make_gan()
  history = gan.fit(images(24), batch_size=8, epochs=1, verbose=0)
  assert set(history.history) == {"d_loss", "g_loss", "d_real", "d_fake"}
  for name in ("d_real", "d_fake"):
    assert 0.0 < history.history[name][0] < 1.0
  assert history.history["d_loss"][0] == pytest.approx(np.log(2), abs=0.05)


def _fit(gan, epochs=2, **kwargs):
  return gan.fit(images(24), batch_size=8, epochs=epochs, verbose=0,
                 shuffle=False, **kwargs)


@pytest.mark.parametrize("make, other", [
    (lambda: make_gan(seed=5), lambda: make_gan(seed=6)),
    # Instance noise has its own seeded stream, and changes the run.
    (lambda: _noisy_gan(seed=5), lambda: make_gan(seed=5)),
], ids=["seed", "instance_noise"])
def test_same_seed_same_run_other_seed_other_run(make, other):
  a, b, c = make(), make(), other()
  for m in (a, b, c):
    _fit(m)
  for x, y in zip(weights(a), weights(b)):
    np.testing.assert_array_equal(x, y)
  assert any(changed(weights(a), weights(c)))


def test_eager_graph_and_xla_agree():
  runs = []
  for kwargs in (dict(run_eagerly=True), dict(), dict(jit_compile=True)):
    gan = make_gan()
    gan.compile(d_optimizer=gan.d_optimizer.__class__.from_config(
        gan.d_optimizer.get_config()),
                g_optimizer=gan.g_optimizer.__class__.from_config(
                    gan.g_optimizer.get_config()), **kwargs)
    _fit(gan)
    runs.append(weights(gan))
  for other in runs[1:]:
    for x, y in zip(runs[0], other):
      np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("update", ["simultaneous", "alternating"])
def test_steps_of_a_call_run_as_one_xla_program_and_are_the_same_steps(
    update):
  # 11 minibatches, the last of 5 images: calls of 4 steps run 4, 4, then 3
  # (two of 8 images, one of 5) one by one.
  data = tf.data.Dataset.from_tensor_slices(images(85)).batch(8)
  runs = []
  for calls in (1, 4):
    gan = make_gan(update=update, jit_compile=True)
    gan.compile(d_optimizer=gan.d_optimizer, g_optimizer=gan.g_optimizer,
                jit_compile=True, steps_per_execution=calls)
    history = gan.fit(data, epochs=2, verbose=0)
    assert int(gan.g_optimizer.iterations) == 22
    runs.append((weights(gan), history.history))
    if calls > 1:
      function = gan.train_function
      assert function.all_steps.experimental_get_tracing_count() == 1
      assert function.one_step.experimental_get_tracing_count() >= 1
  for x, y in zip(runs[0][0], runs[1][0]):
    np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
  for name, values in runs[0][1].items():
    np.testing.assert_allclose(values, runs[1][1][name], rtol=1e-6)


def test_a_call_holds_one_step_for_its_short_calls_whatever_its_length():
  # A short call runs its minibatches one by one in a loop around one
  # compiled step: the call's graph calls that step once, not once for each
  # of its n steps (each traced, n of them about double the first call's
  # time at n = 50).
  data = tf.data.Dataset.from_tensor_slices(images(40)).batch(8)
  for calls in (2, 5):
    gan = make_gan(jit_compile=True)
    gan.compile(d_optimizer=gan.d_optimizer, g_optimizer=gan.g_optimizer,
                jit_compile=True, steps_per_execution=calls)
    function = gan.make_train_function()
    graph = function.call.get_concrete_function(iter(data)).graph.as_graph_def()
    nodes = list(graph.node) + [node for f in graph.library.function
                                for node in f.node_def]
    called = [node.attr["f"].func.name for node in nodes
              if node.op in ("StatefulPartitionedCall", "PartitionedCall")]
    assert len([name for name in called if "train_step" in name]) == 1


def test_convolutional_nets_keep_one_program_a_step():
  conv = make_gan(architecture="conv", conv_filters=(4, 8), jit_compile=True)
  mlp = make_gan(jit_compile=True)
  for gan in (conv, mlp):
    gan.compile(d_optimizer=gan.d_optimizer, g_optimizer=gan.g_optimizer,
                jit_compile=True, steps_per_execution=3)
    gan.make_train_function()
  assert not hasattr(conv.train_function, "all_steps")
  assert hasattr(mlp.train_function, "all_steps")


def test_steps_per_call_divide_the_epoch():
  assert [train_lib.steps_per_call(50, s) for s in (500, 781, 3, 97, 1)] == [
      50, 11, 3, 1, 1]
  assert make_gan(steps_per_execution=2).steps_per_execution == 1  # 3 steps
  with pytest.raises(config_lib.ConfigError,
                     match=r"steps_per_execution=0 is not accepted"):
    small_config(steps_per_execution=0).validate()


def test_keras_file_round_trip(tmp_path):
  gan = make_gan()
  _fit(gan)
  path = str(tmp_path / "gan.keras")
  gan.save(path)
  loaded = keras.models.load_model(path)
  assert isinstance(loaded, gan_lib.GAN)
  np.testing.assert_array_equal(gan.generate(6, seed=11),
                                loaded.generate(6, seed=11))
  z = gan.noise_for_seed(4, 2)
  np.testing.assert_array_equal(np.asarray(gan(z)), np.asarray(loaded(z)))
  assert int(loaded.g_optimizer.iterations) == int(gan.g_optimizer.iterations)
  assert loaded.get_config()["update"] == "simultaneous"
  # The loaded model trains on exactly as the original does.
  _fit(gan, epochs=1)
  _fit(loaded, epochs=1)
  for x, y in zip(weights(gan), weights(loaded)):
    np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


def test_model_checkpoint_and_tensorboard_callbacks(tmp_path):
  gan = make_gan()
  _fit(gan, callbacks=[
      keras.callbacks.ModelCheckpoint(str(tmp_path / "w-{epoch}.weights.h5"),
                                      save_weights_only=True),
      keras.callbacks.ModelCheckpoint(str(tmp_path / "m-{epoch}.keras")),
      keras.callbacks.TensorBoard(str(tmp_path / "tb"))])
  assert os.path.exists(tmp_path / "w-2.weights.h5")
  restored = make_gan()
  restored.load_weights(str(tmp_path / "w-2.weights.h5"))
  np.testing.assert_array_equal(gan.generate(3), restored.generate(3))
  loaded = keras.models.load_model(str(tmp_path / "m-2.keras"))
  np.testing.assert_array_equal(gan.generate(3), loaded.generate(3))
  events = os.listdir(tmp_path / "tb" / "train")
  assert events and events[0].startswith("events.out.tfevents")


class _Interrupt(keras.callbacks.Callback):

  def on_epoch_begin(self, epoch, logs=None):
    if epoch == 2:
      raise KeyboardInterrupt


def test_backup_and_restore_resumes_exactly(tmp_path):
  whole = make_gan()
  _fit(whole, epochs=4)
  backup = str(tmp_path / "backup")
  part = make_gan()
  with pytest.raises(KeyboardInterrupt):
    _fit(part, epochs=4, callbacks=[keras.callbacks.BackupAndRestore(backup),
                                    _Interrupt()])
  resumed = make_gan()  # a fresh process would start from here
  history = _fit(resumed, epochs=4,
                 callbacks=[keras.callbacks.BackupAndRestore(backup)])
  assert len(history.history["d_loss"]) == 2  # epochs 3 and 4 only
  for x, y in zip(weights(whole), weights(resumed)):
    np.testing.assert_array_equal(x, y)


def test_prior_draws():
  u = gan_lib.sample_prior([20000, 4], tf.constant([1, 2]), "uniform").numpy()
  assert u.min() >= -np.sqrt(3) and u.max() <= np.sqrt(3)
  assert abs(u.mean()) < 0.02 and abs(u.var() - 1) < 0.03
  n = gan_lib.sample_prior([20000, 4], tf.constant([1, 2]), "normal").numpy()
  assert abs(n.mean()) < 0.02 and abs(n.var() - 1) < 0.03
  gan = make_gan()
  np.testing.assert_array_equal(gan.generate(5, seed=3),
                                gan.generate(5, seed=3))
  assert not np.array_equal(gan.generate(5, seed=3), gan.generate(5, seed=4))


def test_nets_that_do_not_fit_each_other_are_named():
  gan = make_gan()
  g = gan.generator
  other_d = networks.build_networks(
      small_config(), (32, 32, 3))[1]
  with pytest.raises(ValueError, match=r"the generator's images, \[28, 28, "
                     r"1\], do not fit the discriminator's input, \[32, 32, "
                     r"3\]: expected a discriminator that takes"):
    gan_lib.GAN(g, other_d)
  packed_d = networks.build_networks(small_config(pack=2), SHAPE)[1]
  with pytest.raises(ValueError, match=r"in packs of 3 \(\[28, 28, 3\]\), "
                     r"do not fit the discriminator's input, \[28, 28, 2\]"):
    gan_lib.GAN(g, packed_d, pack=3)
  assert gan_lib.GAN(g, packed_d, pack=2).pack == 2
  image = keras.Input(SHAPE)
  two = keras.Model(image, keras.layers.Dense(2)(
      keras.layers.Flatten()(image)))
  with pytest.raises(ValueError, match=r"the discriminator's output, \[2\] "
                     r"per input, is not accepted: expected one logit"):
    gan_lib.GAN(g, two)

  # Subclassed nets declare no shapes: they are taken as they are.
  class Judge(keras.Model):
    def __init__(self):
      super().__init__()
      self.flat = keras.layers.Flatten()
      self.out = keras.layers.Dense(1)

    def call(self, x, training=False):
      return self.out(self.flat(x))

  judge = Judge()
  judged = gan_lib.GAN(g, judge)
  # Its weights are made by its first call, which compile needs first.
  with pytest.raises(ValueError, match=r"the discriminator has no weights "
                     r"yet: expected a built net"):
    judged.compile(jit_compile=False)
  judge(np.zeros((1,) + SHAPE, np.float32))
  judged.compile(jit_compile=False)
  logs = judged.train_on_batch(np.random.default_rng(0).random(
      (8,) + SHAPE, np.float32), return_dict=True)
  assert np.isfinite(logs["d_loss"])


@pytest.mark.parametrize("kind", ["plain", "conditional", "masked"])
@pytest.mark.parametrize("kwargs,message", [
    (dict(num_samples=0), r"num_samples=0 is not accepted: expected a "
     r"positive integer"),
    (dict(num_samples=-3), r"num_samples=-3 is not accepted"),
    (dict(num_samples=2.5), r"num_samples=2.5 is not accepted"),
    (dict(num_samples=3, batch_size=0), r"batch_size=0 is not accepted: "
     r"expected a positive integer"),
    (dict(num_samples=3, seed=1.5), r"seed=1.5 is not accepted: expected "
     r"an integer"),
    (dict(num_samples=3, seed=2**64), r"seed=18446744073709551616 is not "
     r"accepted"),
])
def test_bad_sampling_arguments_are_named(kind, kwargs, message):
  # Before TensorFlow or NumPy sees them (their messages name neither).
  config = small_config(conditional=kind == "conditional",
                        masked=kind == "masked")
  model = train_lib.build_model(config, SHAPE, None, steps=1,
                                num_classes=10 if kind == "conditional"
                                else 0)
  with pytest.raises(ValueError, match=message):
    model.generate(**kwargs)
  if kind == "masked" and kwargs.get("num_samples") == 3:
    with pytest.raises(ValueError, match=message):
      model.complete(np.zeros((3,) + SHAPE, np.float32),
                     np.ones((3,) + SHAPE, np.float32),
                     **{k: v for k, v in kwargs.items()
                        if k != "num_samples"})
  assert model.generate(np.int64(2), seed=np.int64(5), batch_size=1
                        ).shape == (2,) + SHAPE


@pytest.mark.parametrize("kwargs,message", [
    (dict(prior="cauchy"), "prior='cauchy'"),
    (dict(update="both"), "update='both'"),
    (dict(update="alternating", k=0), "k=0"),
    (dict(k=2), "k=2 is not accepted with update='simultaneous'"),
    (dict(g_loss="hinge"), "g_loss='hinge'"),
])
def test_bad_arguments_are_named(kwargs, message):
  gan = make_gan()
  with pytest.raises(ValueError, match=message):
    gan_lib.GAN(gan.generator, gan.discriminator, **kwargs)


# One optimiser for both nets, or a loss or metric of Keras's own, would be
# taken and never used by the game's steps.
@pytest.mark.parametrize("kwargs,message", [
    (dict(optimizer="adam"), r"optimizer='adam' is not accepted: each net "
     r"has its own optimiser; expected d_optimizer=... and g_optimizer="),
    (dict(loss="mse"), r"loss='mse' is not accepted: the game has its own "
     r"losses"),
    (dict(d_optimizer="sgd", g_optimizer="sgd", metrics=["accuracy"]),
     r"metrics=\['accuracy'\] is not accepted"),
])
def test_compile_arguments_the_game_would_not_use_are_refused(kwargs,
                                                              message):
  gan = make_gan()
  with pytest.raises(ValueError, match=message):
    gan_lib.GAN(gan.generator, gan.discriminator).compile(**kwargs)


def test_weight_average_follows_g_and_never_feeds_back():
  plain, averaged = make_gan(), make_gan(ema_decay=0.9)
  e0 = weights(averaged.ema_generator)
  assert all(np.array_equal(a, b)
             for a, b in zip(e0, weights(averaged.generator)))
  for seed in range(3):
    plain.train_on_batch(images(seed=seed))
    before = weights(averaged.ema_generator)
    averaged.train_on_batch(images(seed=seed))
    for avg, old, g in zip(weights(averaged.ema_generator), before,
                           weights(averaged.generator)):
      np.testing.assert_allclose(avg, 0.9 * old + 0.1 * g, atol=1e-6)
  # Training is the same step for step with or without the average.
  for a, b in zip(weights(plain.generator) + weights(plain.discriminator),
                  weights(averaged.generator) +
                  weights(averaged.discriminator)):
    np.testing.assert_allclose(a, b, atol=1e-6)
  # Sampling uses the average; the trained G stays reachable.
  z = averaged.noise_for_seed(4, 1)
  np.testing.assert_allclose(averaged.generate(4, seed=1),
                             averaged.ema_generator(z), atol=1e-6)
  np.testing.assert_allclose(averaged.generate(4, seed=1, average=False),
                             plain.generate(4, seed=1), atol=1e-6)
  assert not np.array_equal(averaged.generate(4, seed=1),
                            averaged.generate(4, seed=1, average=False))
  with pytest.raises(ValueError, match="ema_decay > 0"):
    plain.generate(4, average=True)


def test_weight_average_warm_up_follows_the_update_count():
  """With ema_warmup the decay after G's t-th update is
  min(ema_decay, (1 + t) / (10 + t)): 2/11 after the first, so the average
  leaves G's initial weights at once; without it the full decay applies."""
  plain, warmed = make_gan(ema_decay=0.99), make_gan(ema_decay=0.99,
                                                  ema_warmup=True)
  for t in range(1, 4):
    for model, warmup in ((plain, False), (warmed, True)):
      before = weights(model.ema_generator)
      model.train_on_batch(images(seed=t))
      decay = min(0.99, (1 + t) / (10 + t)) if warmup else 0.99
      for avg, old, g in zip(weights(model.ema_generator), before,
                             weights(model.generator)):
        np.testing.assert_allclose(avg, decay * old + (1 - decay) * g,
                                   atol=1e-6)
  assert warmed.get_config()["ema_warmup"] and not plain.get_config()[
      "ema_warmup"]


def test_weight_average_is_saved_and_restored(tmp_path):
  model = make_gan(ema_decay=0.5)
  model.train_on_batch(images())
  path = str(tmp_path / "m.weights.h5")
  model.save_weights(path)
  other = make_gan(ema_decay=0.5)
  other.load_weights(path)
  for a, b in zip(weights(model.ema_generator), weights(other.ema_generator)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("decay", [-0.1, 1.0])
def test_bad_weight_average_decay_is_named(decay):
  with pytest.raises(ValueError, match=f"ema_decay={decay}"):
    model = make_gan()
    gan_lib.GAN(model.generator, model.discriminator, ema_decay=decay)


def test_pack_images_stacks_consecutive_images_on_channels():
  x = tf.reshape(tf.range(6 * 2 * 2 * 2, dtype=tf.float32), [6, 2, 2, 2])
  packed = gan_lib.pack_images(x, 3).numpy()
  assert packed.shape == (2, 2, 2, 6)
  for group in range(2):
    for member in range(3):
      np.testing.assert_array_equal(
          packed[group, :, :, 2 * member:2 * member + 2],
          x.numpy()[3 * group + member])


@pytest.mark.parametrize("update", ["simultaneous", "alternating"])
def test_packed_discriminator_judges_groups_of_one_source(update):
  gan = make_gan(pack=2, update=update, jit_compile=True)
  assert gan.discriminator.inputs[0].shape[1:] == (28, 28, 2)
  x = images(8)
  logits = gan._logits(x, None, training=False).numpy()
  np.testing.assert_allclose(
      logits, gan.discriminator(gan_lib.pack_images(x, 2)).numpy())
  assert logits.shape == (4, 1)
  # Moving an image into another pack changes both packs' logits: D judges
  # pairs, not single images.
  swapped = x[[0, 2, 1, 3, 4, 5, 6, 7]]
  assert not np.allclose(
      logits[:2], gan._logits(swapped, None, training=False).numpy()[:2])
  before = weights(gan)
  _fit(gan)
  after = weights(gan)
  assert all(np.isfinite(w).all() for w in after)
  assert any(changed(before, after))
  assert gan.get_config()["pack"] == 2


def test_packed_model_round_trips_and_semisup_refuses_it(tmp_path):
  from adversarial import semisupervised
  gan = make_gan(pack=2)
  _fit(gan)
  path = str(tmp_path / "gan.keras")
  gan.save(path)
  loaded = keras.models.load_model(path)
  assert loaded.pack == 2
  x = images(8)
  np.testing.assert_allclose(
      gan._logits(x, None, training=False).numpy(),
      loaded._logits(x, None, training=False).numpy(), rtol=1e-6)
  with pytest.raises(ValueError, match=r"images of shape \(28, 28, 1\) for a "
                     r"discriminator that takes \(28, 28, 2\)"):
    semisupervised.discriminator_features(gan.discriminator, x)
  with pytest.raises(ValueError, match="pack=0 is not accepted"):
    gan_lib.GAN(gan.generator, gan.discriminator, pack=0)


def _noisy_gan(**changes):
  return make_gan(instance_noise=0.3, instance_noise_epochs=2, **changes)


def test_one_step_with_instance_noise_matches_the_step_by_hand():
  gan = _noisy_gan(d_input_dropout=0.0, d_hidden_dropout=0.0, lr_decay=1.0,
                   min_learning_rate=0.0, momentum=0.0, final_momentum=0.0,
                   learning_rate=0.5)
  x = tf.constant(images())
  z_state = gan.noise_seed.state.numpy().copy()
  n_state = gan.instance_noise_seed.state.numpy().copy()
  g, d = gan.generator, gan.discriminator
  g0, d0 = weights(g), weights(d)
  # D sees the data and G's samples each with its own draw of N(0, 0.3^2),
  # and G's loss the same noisy samples.
  z = gan_lib.sample_prior([8, 8], tf.constant(z_state), "uniform")
  n_real = rng.normal([8, 28, 28, 1], tf.constant(n_state))
  n_fake = rng.normal([8, 28, 28, 1], tf.constant(n_state + [0, 1]))
  d_grads = _grads(d, lambda: losses.discriminator_loss(
      d(x + 0.3 * n_real), d(g(z) + 0.3 * n_fake)))
  g_grads = _grads(g, lambda: losses.non_saturating_generator_loss(
      d(g(z) + 0.3 * n_fake)))
  gan.train_on_batch(x)
  for got, w, gr in zip(weights(d), d0, d_grads):
    np.testing.assert_allclose(got, w - 0.5 * gr.numpy(), rtol=1e-5,
                               atol=1e-6)
  for got, w, gr in zip(weights(g), g0, g_grads):
    np.testing.assert_allclose(got, w - 0.5 * gr.numpy(), rtol=1e-5,
                               atol=1e-6)


def test_instance_noise_fades_out_over_its_epochs():
  gan = make_gan(instance_noise=0.5, instance_noise_epochs=2)
  assert gan.instance_noise_steps == 6  # 2 epochs of 3 D updates
  x = tf.constant(images(64))
  for done, scale in ((0, 0.5), (3, 0.25), (5, 0.5 / 6)):
    gan.d_optimizer.iterations.assign(done)
    added = np.asarray(gan._noisy(x)) - np.asarray(x)
    assert np.std(added) == pytest.approx(scale, rel=0.03)
    assert abs(np.mean(added)) < 0.02 * scale + 1e-3
  for done in (6, 50):
    gan.d_optimizer.iterations.assign(done)
    np.testing.assert_array_equal(np.asarray(gan._noisy(x)), np.asarray(x))
  # The noise has a stream of its own, saved with the model; a model
  # without it keeps the streams it had, so its checkpoints still load.
  assert len(gan.random_states()) == len(make_gan().random_states()) + 1
  plain = make_gan()
  assert plain.instance_noise_seed is None
  np.testing.assert_array_equal(plain._noisy(x), x)

