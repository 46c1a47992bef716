"""Optimizers and learning-rate schedules for the training core (optax), from one config.

Two families: Adafactor with the T5 defaults (factored second moments, no momentum, update
clipping 1.0, decay rate 0.8, updates scaled by the parameter scale) for text, and AdamW for
vision. Schedules: T5's inverse square root (`rsqrt`), `constant` (T5 finetuning), and linear
warm-up followed by `cosine` or `linear` decay. `make_optimizer(config)` returns the optax
transformation together with its schedule, so the trainer can log the learning rate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import optax

from suite import costs
from suite.shapes import closest

OPTIMIZERS = ('adafactor', 'adamw')
SCHEDULES = ('rsqrt', 'constant', 'cosine', 'linear')


class OptimizerConfigError(ValueError):
  """An optimizer config value is invalid; the message names the valid choices."""


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """What to optimize with. The defaults are T5 pre-training (Adafactor, rsqrt, 10k warm-up).

  learning_rate is the peak (cosine/linear), the constant (constant) or the cap (rsqrt: lr =
  min(learning_rate, 1/sqrt(max(step, warmup_steps)))). total_steps is needed by cosine/linear
  decay only. grad_clip_norm clips the global gradient norm before the optimizer (None: off).
  """

  name: str = 'adafactor'
  schedule: str = 'rsqrt'
  learning_rate: float = 0.01
  warmup_steps: int = 10_000
  total_steps: int | None = None
  end_learning_rate: float = 0.0
  grad_clip_norm: float | None = None
  # Adafactor.
  decay_rate: float = 0.8
  clipping_threshold: float | None = 1.0
  multiply_by_parameter_scale: bool = True
  momentum: float | None = None
  min_dim_size_to_factor: int = costs.ADAFACTOR_MIN_DIM_TO_FACTOR
  # AdamW.
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-8
  weight_decay: float = 0.0

  def __post_init__(self):
    if self.name not in OPTIMIZERS:
      raise OptimizerConfigError(
          f'unknown optimizer {self.name!r}; valid: {", ".join(OPTIMIZERS)} '
          f'(closest: {closest(self.name, OPTIMIZERS)})')
    if self.schedule not in SCHEDULES:
      raise OptimizerConfigError(
          f'unknown schedule {self.schedule!r}; valid: {", ".join(SCHEDULES)} '
          f'(closest: {closest(self.schedule, SCHEDULES)})')
    if self.learning_rate <= 0:
      raise OptimizerConfigError(f'learning_rate must be > 0, got {self.learning_rate}')
    if self.warmup_steps < 0:
      raise OptimizerConfigError(f'warmup_steps must be >= 0, got {self.warmup_steps}')
    if self.schedule in ('cosine', 'linear'):
      if self.total_steps is None or self.total_steps <= self.warmup_steps:
        raise OptimizerConfigError(
            f'schedule {self.schedule!r} needs total_steps > warmup_steps '
            f'({self.warmup_steps}), got total_steps={self.total_steps}; set total_steps to the '
            'number of training steps')
    if self.grad_clip_norm is not None and self.grad_clip_norm <= 0:
      raise OptimizerConfigError(
          f'grad_clip_norm must be > 0 or None (off), got {self.grad_clip_norm}')

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> OptimizerConfig:
    """Builds a config from a dict or ml_collections.ConfigDict; unknown keys are errors."""
    values = dict(values)
    fields = [f.name for f in dataclasses.fields(cls)]
    for key in values:
      if key not in fields:
        raise OptimizerConfigError(
            f'unknown optimizer config key {key!r}; closest: {closest(key, fields)}')
    return cls(**values)


def t5_pretrain(warmup_steps: int = 10_000) -> OptimizerConfig:
  """T5 pre-training: Adafactor, lr = min(0.01, 1/sqrt(max(step, warmup_steps)))."""
  return OptimizerConfig(name='adafactor', schedule='rsqrt', learning_rate=0.01,
                         warmup_steps=warmup_steps)


def t5_finetune(learning_rate: float = 1e-3) -> OptimizerConfig:
  """T5 finetuning: Adafactor at a constant learning rate (the paper uses 1e-3)."""
  return OptimizerConfig(name='adafactor', schedule='constant', learning_rate=learning_rate,
                         warmup_steps=0)


def vit_adamw(learning_rate: float, total_steps: int, warmup_steps: int = 10_000,
              weight_decay: float = 1e-4, grad_clip_norm: float | None = 1.0) -> OptimizerConfig:
  """ViT training: AdamW with linear warm-up and cosine decay, global-norm clipping."""
  return OptimizerConfig(name='adamw', schedule='cosine', learning_rate=learning_rate,
                         warmup_steps=warmup_steps, total_steps=total_steps,
                         weight_decay=weight_decay, grad_clip_norm=grad_clip_norm)


def make_schedule(config: OptimizerConfig) -> optax.Schedule:
  """The learning rate as a function of the step count (0-based, as optax counts)."""
  lr, warmup = config.learning_rate, config.warmup_steps
  if config.schedule == 'rsqrt':
    def rsqrt(step):
      step = jnp.maximum(jnp.asarray(step, jnp.float32), max(warmup, 1))
      return jnp.minimum(lr, 1.0 / jnp.sqrt(step))
    return rsqrt
  if config.schedule == 'constant':
    if warmup == 0:
      return optax.constant_schedule(lr)
    return optax.join_schedules(
        [optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)], [warmup])
  decay_steps = config.total_steps - warmup
  if config.schedule == 'cosine':
    decay = optax.cosine_decay_schedule(lr, decay_steps, alpha=config.end_learning_rate / lr)
  else:
    decay = optax.linear_schedule(lr, config.end_learning_rate, decay_steps)
  if warmup == 0:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), decay], [warmup])


def make_optimizer(
    config: OptimizerConfig) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The optax transformation for `config` and the learning-rate schedule it follows."""
  schedule = make_schedule(config)
  if config.name == 'adafactor':
    tx = optax.adafactor(
        learning_rate=schedule,
        min_dim_size_to_factor=config.min_dim_size_to_factor,
        decay_rate=config.decay_rate,
        multiply_by_parameter_scale=config.multiply_by_parameter_scale,
        clipping_threshold=config.clipping_threshold,
        momentum=config.momentum,
        weight_decay_rate=config.weight_decay or None,
    )
  else:
    tx = optax.adamw(learning_rate=schedule, b1=config.b1, b2=config.b2, eps=config.eps,
                     weight_decay=config.weight_decay)
  if config.grad_clip_norm is not None:
    tx = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), tx)
  return tx, schedule
