"""The paper's optimiser and its schedules, and the selectable Keras ones.

The authors trained both nets with pylearn2's SGD: batch 100, learning rate
0.1 divided by 1.000004 after every update with a floor of 1e-6
(`ExponentialDecay`), and classical momentum rising linearly from 0.5 to 0.7
over epochs 1 to 250 (`MomentumAdjustor`). Both schedules here are functions
of the optimiser's own update count, which is checkpointed, so a resumed run
continues them exactly.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from adversarial.config import Config


@keras.saving.register_keras_serializable(package="adversarial")
class InverseExponentialDecay(keras.optimizers.schedules.LearningRateSchedule):
  """lr(t) = max(initial / decay_factor^t, floor), t = updates so far.

  pylearn2's `ExponentialDecay(decay_factor, min_lr)`, which the paper used
  with decay_factor 1.000004 and min_lr 1e-6. With `anneal_step` > 0, the
  rate is divided by `anneal_factor` instead of `decay_factor` after every
  update past `anneal_step`:
  lr(t) = initial / decay_factor^T / anneal_factor^(t - T) for t > T.
  """

  def __init__(self, initial_learning_rate: float, decay_factor: float,
               min_learning_rate: float = 0.0, anneal_step: int = 0,
               anneal_factor: float = 1.0):
    self.initial_learning_rate = float(initial_learning_rate)
    self.decay_factor = float(decay_factor)
    self.min_learning_rate = float(min_learning_rate)
    self.anneal_step = int(anneal_step)
    self.anneal_factor = float(anneal_factor)

  def __call__(self, step):
    # log(decay_factor) in float64: in float32, 1.000004 is 1.0000039, which
    # is off by 2.6% after the 500,000 updates of a 1,000-epoch run.
    log_decay = math.log(self.decay_factor)
    step = ops.cast(step, "float32")
    if self.anneal_step > 0:
      past = ops.maximum(step - float(self.anneal_step), 0.0)
      exponent = ((step - past) * log_decay +
                  past * math.log(self.anneal_factor))
    else:
      exponent = step * log_decay
    lr = self.initial_learning_rate * ops.exp(-exponent)
    return ops.maximum(lr, self.min_learning_rate)

  def get_config(self):
    return dict(initial_learning_rate=self.initial_learning_rate,
                decay_factor=self.decay_factor,
                min_learning_rate=self.min_learning_rate,
                anneal_step=self.anneal_step,
                anneal_factor=self.anneal_factor)


@keras.saving.register_keras_serializable(package="adversarial")
class LinearMomentum:
  """Momentum that rises linearly with the epoch, as pylearn2's
  `MomentumAdjustor(final_momentum, start, saturate)`.

  The epoch n counts as pylearn2's adjustor counts its calls: once before
  training and once after each epoch, so n = 1 during the first epoch
  (`first_epoch`), and in general n = floor(t / updates_per_epoch) +
  first_epoch after t updates. The momentum is `initial` up to
  `start_epoch`, `final` from `saturate_epoch` on, and linear between: with
  (1, 250), 0.5 in epoch 1, 0.5 + 0.2 / 249 in epoch 2, 0.7 from epoch 250.
  `first_epoch=0` ramps one epoch later (0.5 in epochs 1 and 2, 0.7 from
  epoch 251), the schedule of the runs recorded in REPRODUCTION.md.
  """

  def __init__(self, initial: float = 0.5, final: float = 0.7,
               start_epoch: int = 1, saturate_epoch: int = 250,
               updates_per_epoch: int = 500, first_epoch: int = 1):
    if updates_per_epoch < 1:
      raise ValueError(f"updates_per_epoch={updates_per_epoch} is not "
                       f"accepted: expected a positive integer.")
    if first_epoch not in (0, 1):
      raise ValueError(f"first_epoch={first_epoch!r} is not accepted: "
                       f"expected 1 (pylearn2's count) or 0 (one epoch "
                       f"later).")
    self.initial = float(initial)
    self.final = float(final)
    self.start_epoch = int(start_epoch)
    self.saturate_epoch = int(saturate_epoch)
    self.updates_per_epoch = int(updates_per_epoch)
    self.first_epoch = int(first_epoch)

  def __call__(self, step):
    epoch = ops.floor(ops.cast(step, "float32") / self.updates_per_epoch)
    alpha = (epoch + float(self.first_epoch - self.start_epoch)) / float(
        self.saturate_epoch - self.start_epoch)
    alpha = ops.clip(alpha, 0.0, 1.0)
    return self.initial + alpha * (self.final - self.initial)

  def get_config(self):
    return dict(initial=self.initial, final=self.final,
                start_epoch=self.start_epoch,
                saturate_epoch=self.saturate_epoch,
                updates_per_epoch=self.updates_per_epoch,
                first_epoch=self.first_epoch)

  @classmethod
  def from_config(cls, config):
    # A schedule saved without `first_epoch` counted epochs from 0.
    return cls(**{"first_epoch": 0, **config})


@keras.saving.register_keras_serializable(package="adversarial")
class ScheduledMomentumSGD(keras.optimizers.SGD):
  """SGD with classical momentum whose coefficient follows a schedule.

      v <- mu(t) v - lr(t) g;  w <- w + v

  Keras's `SGD` takes a constant momentum; the paper's varies with the epoch.
  `momentum` is a float or a callable of the update count (`LinearMomentum`).
  """

  def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False,
               name="scheduled_momentum_sgd", **kwargs):
    if isinstance(momentum, dict):
      momentum = keras.saving.deserialize_keras_object(momentum)
    constant = 0.0 if callable(momentum) else float(momentum)
    super().__init__(learning_rate=learning_rate, momentum=constant,
                     nesterov=nesterov, name=name, **kwargs)
    self.momentum_schedule = momentum if callable(momentum) else None

  def build(self, variables):
    if self.built:
      return
    keras.optimizers.Optimizer.build(self, variables)
    # One slot per variable, in the variables' order (what Keras 3.10's
    # `add_optimizer_variables` does; this also runs on earlier Keras 3).
    self.momentums = [self.add_variable_from_reference(v, "momentum")
                      for v in variables]

  def _momentum_now(self):
    if self.momentum_schedule is None:
      return ops.convert_to_tensor(self.momentum, "float32")
    return self.momentum_schedule(self.iterations)

  def update_step(self, gradient, variable, learning_rate):
    learning_rate = ops.cast(learning_rate, variable.dtype)
    gradient = ops.cast(gradient, variable.dtype)
    m = self.momentums[self._get_variable_index(variable)]
    momentum = ops.cast(self._momentum_now(), variable.dtype)
    self.assign(m, ops.subtract(ops.multiply(m, momentum),
                                ops.multiply(gradient, learning_rate)))
    if self.nesterov:
      self.assign_add(variable, ops.subtract(
          ops.multiply(m, momentum), ops.multiply(gradient, learning_rate)))
    else:
      self.assign_add(variable, m)

  def get_config(self):
    config = super().get_config()
    if self.momentum_schedule is not None:
      config["momentum"] = keras.saving.serialize_keras_object(
          self.momentum_schedule)
    return config


def make_optimizer(config: Config, updates_per_epoch: int,
                   name: str) -> keras.optimizers.Optimizer:
  """One net's optimiser, as `config` describes it.

  Args:
    config: the run's configuration.
    updates_per_epoch: how many updates this optimiser makes in an epoch (it
      places the momentum schedule's epochs).
    name: the optimiser's name ('d_optimizer' or 'g_optimizer').

  Returns:
    A Keras optimiser. 'sgd' is `ScheduledMomentumSGD`; the others are the
    Keras optimisers of that name with `beta_1` where they take one.
  """
  if (config.lr_decay != 1.0 or config.min_learning_rate > 0 or
      config.anneal_epoch > 0):
    learning_rate = InverseExponentialDecay(
        config.learning_rate, config.lr_decay, config.min_learning_rate,
        anneal_step=config.anneal_epoch * updates_per_epoch,
        anneal_factor=config.anneal_decay)
  else:
    learning_rate = config.learning_rate
  if config.optimizer == "sgd":
    if config.momentum == config.final_momentum:
      momentum = config.momentum
    else:
      momentum = LinearMomentum(
          config.momentum, config.final_momentum, config.momentum_start_epoch,
          config.momentum_saturate_epoch, updates_per_epoch,
          config.momentum_first_epoch)
    return ScheduledMomentumSGD(learning_rate, momentum, name=name)
  kwargs = {}
  if config.optimizer in ("adam", "adamw", "adamax", "nadam", "lion"):
    kwargs["beta_1"] = config.beta_1
  optimizer = keras.optimizers.get(
      {"class_name": config.optimizer, "config": {}})
  return optimizer.__class__(learning_rate=learning_rate, name=name, **kwargs)
