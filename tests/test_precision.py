import keras
import numpy as np
import pytest
import tensorflow as tf

from adversarial import train_lib
from adversarial.config import ConfigError

from conftest import random_images, small_config

SHAPE = (28, 28, 1)
COMPUTE = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}


def make(precision, **changes):
  config = small_config(precision=precision, **changes)
  return train_lib.build_model(config, SHAPE, np.full(SHAPE, 0.2, np.float32),
                               steps=3)


@pytest.mark.parametrize("precision", sorted(COMPUTE))
def test_mixed_precision_nets(precision):
  model = make(precision)
  # Building does not leave the global policy changed.
  assert keras.config.dtype_policy().name == "float32"
  hidden = model.discriminator.get_layer("maxout0")
  assert hidden.compute_dtype == COMPUTE[precision]
  assert model.generator.get_layer("h0").compute_dtype == COMPUTE[precision]
  assert all(w.dtype == "float32" for w in model.weights
             if "seed" not in w.path)
  x = tf.constant(random_images(8, SHAPE).images / 255.0, tf.float32)
  assert model.discriminator(x).dtype == tf.float32
  assert model.generate(2).dtype == np.float32
  scaled = isinstance(model.d_optimizer, keras.optimizers.LossScaleOptimizer)
  assert scaled == (precision == "mixed_float16")
  assert isinstance(model.g_optimizer,
                    keras.optimizers.LossScaleOptimizer) == scaled
  before = [np.array(w) for w in model.generator.trainable_weights]
  for _ in range(2):
    logs = model.train_on_batch(x, return_dict=True)
  assert all(np.isfinite(v) for v in logs.values())
  assert any(not np.array_equal(a, np.array(b)) for a, b in
             zip(before, model.generator.trainable_weights))


def test_a_users_own_compile_keeps_loss_scaling(tmp_path):
  model = make("mixed_float16")
  model.compile(d_optimizer=keras.optimizers.SGD(0.1),
                g_optimizer=keras.optimizers.Adam(1e-3))
  assert isinstance(model.d_optimizer, keras.optimizers.LossScaleOptimizer)
  assert isinstance(model.g_optimizer, keras.optimizers.LossScaleOptimizer)
  x = tf.constant(random_images(8, SHAPE).images / 255.0, tf.float32)
  model.train_on_batch(x)
  path = str(tmp_path / "m.weights.h5")
  model.save_weights(path)
  other = make("mixed_float16")
  other.compile(d_optimizer=keras.optimizers.SGD(0.1),
                g_optimizer=keras.optimizers.Adam(1e-3))
  other.load_weights(path)
  np.testing.assert_array_equal(model.generate(3, seed=4),
                                other.generate(3, seed=4))
  # A float32 model is left with the optimisers it was given.
  plain = make("float32")
  assert not isinstance(plain.d_optimizer,
                        keras.optimizers.LossScaleOptimizer)


def test_bad_precision_is_named():
  with pytest.raises(ConfigError, match="precision='float8'"):
    small_config(precision="float8").validate()
