"""Optimizers and learning-rate schedules for the training core (optax), from one config.

Four families: Adafactor with the T5 defaults (factored second moments, no momentum, update
clipping 1.0, decay rate 0.8, updates scaled by the parameter scale) for text; AdamW; and
big_vision's Adafactor variant (`big_vision_adafactor`, the ViT-g/ViT-22B optimizer: factored
second moments with the decay 1 - t^-0.8 capped at 0.999, momentum 0.9 kept in bfloat16, no
parameter scaling, decoupled weight decay on kernels only) for vision; and SGD with momentum
(big_vision's transfer recipe). Schedules: T5's inverse
square root (`rsqrt`), `constant` (T5 finetuning), linear warm-up followed by `cosine` or
`linear` decay, and big_vision's `reciprocal_sqrt` (lr / sqrt(1 + (step - warmup) / timescale)
after the warm-up). `cooldown_steps` ends any schedule but `rsqrt` with a linear ramp to 0 over
the last steps before `total_steps`. `make_optimizer(config)` returns the optax transformation
together with its schedule, so the trainer can log the learning rate; `preset(name, ...)`
builds the named configs (`PRESETS`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from suite import costs
from suite.shapes import closest

OPTIMIZERS = costs.OPTIMIZERS  # defined jax-free in suite.memory for the planner
SCHEDULES = ('rsqrt', 'constant', 'cosine', 'linear', 'reciprocal_sqrt')
MOMENTUM_DTYPES = ('bfloat16', 'float32')


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
  cooldown_steps: int = 0
  timescale: int = 10_000  # reciprocal_sqrt
  grad_clip_norm: float | None = None
  # Adafactor.
  decay_rate: float = 0.8
  clipping_threshold: float | None = 1.0
  multiply_by_parameter_scale: bool = True
  momentum: float | None = None
  min_dim_size_to_factor: int = costs.ADAFACTOR_MIN_DIM_TO_FACTOR
  # big_vision_adafactor (also uses decay_rate, clipping_threshold, momentum).
  beta2_cap: float = 0.999
  momentum_dtype: str = 'bfloat16'
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
    if self.cooldown_steps < 0:
      raise OptimizerConfigError(f'cooldown_steps must be >= 0, got {self.cooldown_steps}')
    if self.cooldown_steps:
      if self.schedule == 'rsqrt':
        raise OptimizerConfigError(
            "cooldown_steps needs a schedule that knows its end; T5's 'rsqrt' has none: use "
            "'reciprocal_sqrt' (big_vision's) or cooldown_steps=0")
      if self.total_steps is None or self.total_steps < self.warmup_steps + self.cooldown_steps:
        raise OptimizerConfigError(
            f'cooldown_steps={self.cooldown_steps} needs total_steps >= warmup_steps + '
            f'cooldown_steps ({self.warmup_steps + self.cooldown_steps}), got total_steps='
            f'{self.total_steps}; set total_steps to the number of training steps')
    if self.timescale < 1:
      raise OptimizerConfigError(f'timescale must be >= 1, got {self.timescale}')
    if self.weight_decay < 0:
      raise OptimizerConfigError(f'weight_decay must be >= 0, got {self.weight_decay}')
    if self.momentum_dtype not in MOMENTUM_DTYPES:
      raise OptimizerConfigError(
          f'unknown momentum_dtype {self.momentum_dtype!r}; valid: {", ".join(MOMENTUM_DTYPES)}')
    if not 0.0 < self.beta2_cap <= 1.0:
      raise OptimizerConfigError(f'beta2_cap must be in (0, 1], got {self.beta2_cap}')

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


def vit_big_vision_adafactor(learning_rate: float, total_steps: int, warmup_steps: int = 10_000,
                             cooldown_steps: int | None = None, timescale: int = 10_000,
                             weight_decay: float | None = None,
                             grad_clip_norm: float | None = 1.0) -> OptimizerConfig:
  """big_vision's large-ViT recipe (train_vit_g): its Adafactor variant, reciprocal-sqrt decay
  after a linear warm-up and a linear cooldown (default: the last 5% of the steps, at least
  the rest after warm-up if shorter); weight decay 0.03 x learning_rate on kernels."""
  if cooldown_steps is None:
    cooldown_steps = min(max(1, total_steps // 20), total_steps - warmup_steps)
  return OptimizerConfig(name='big_vision_adafactor', schedule='reciprocal_sqrt',
                         learning_rate=learning_rate, warmup_steps=warmup_steps,
                         total_steps=total_steps, cooldown_steps=cooldown_steps,
                         timescale=timescale, momentum=0.9, clipping_threshold=None,
                         multiply_by_parameter_scale=False, decay_rate=0.8,
                         weight_decay=(0.03 * learning_rate if weight_decay is None
                                       else weight_decay),
                         grad_clip_norm=grad_clip_norm)


def vit_finetune_sgd(learning_rate: float, total_steps: int, warmup_steps: int = 500,
                     grad_clip_norm: float | None = 1.0) -> OptimizerConfig:
  """big_vision's transfer recipe: SGD with momentum 0.9, linear warm-up, cosine decay to 0,
  global-norm clipping at 1, no weight decay."""
  return OptimizerConfig(name='sgd', schedule='cosine', learning_rate=learning_rate,
                         warmup_steps=warmup_steps, total_steps=total_steps, momentum=0.9,
                         grad_clip_norm=grad_clip_norm)


# Named configurations: name -> builder(learning_rate, total_steps, warmup_steps).
PRESETS = {
    't5_pretrain': lambda learning_rate, total_steps, warmup_steps: t5_pretrain(warmup_steps),
    't5_finetune': lambda learning_rate, total_steps, warmup_steps: t5_finetune(learning_rate),
    'vit_adamw': lambda learning_rate, total_steps, warmup_steps: vit_adamw(
        learning_rate, total_steps, warmup_steps),
    'vit_big_vision_adafactor': lambda learning_rate, total_steps, warmup_steps: (
        vit_big_vision_adafactor(learning_rate, total_steps, warmup_steps)),
    'vit_finetune_sgd': lambda learning_rate, total_steps, warmup_steps: vit_finetune_sgd(
        learning_rate, total_steps, warmup_steps),
}


def preset(name: str, *, learning_rate: float, total_steps: int,
           warmup_steps: int) -> OptimizerConfig:
  """The named configuration (`PRESETS`) at this peak rate and length (t5_pretrain's rate is
  its schedule's own cap, t5_finetune has no warm-up)."""
  if name not in PRESETS:
    raise OptimizerConfigError(f'unknown optimizer preset {name!r}; valid: '
                               f'{", ".join(PRESETS)} (closest: {closest(name, PRESETS)})')
  return PRESETS[name](learning_rate, total_steps, warmup_steps)


def _base_schedule(config: OptimizerConfig) -> optax.Schedule:
  lr, warmup = config.learning_rate, config.warmup_steps
  if config.schedule == 'reciprocal_sqrt':
    def reciprocal_sqrt(step):
      step = jnp.asarray(step, jnp.float32)
      decay = lr / jnp.sqrt(1.0 + jnp.maximum(step - warmup, 0.0) / config.timescale)
      return decay * (jnp.minimum(1.0, step / warmup) if warmup else 1.0)
    return reciprocal_sqrt
  return _t5_or_optax_schedule(config)


def make_schedule(config: OptimizerConfig) -> optax.Schedule:
  """The learning rate as a function of the step count (0-based, as optax counts)."""
  schedule = _base_schedule(config)
  if not config.cooldown_steps:
    return schedule
  total, cooldown = config.total_steps, config.cooldown_steps

  def with_cooldown(step):
    ramp = jnp.clip((total - jnp.asarray(step, jnp.float32)) / cooldown, 0.0, 1.0)
    return schedule(step) * ramp
  return with_cooldown


def _t5_or_optax_schedule(config: OptimizerConfig) -> optax.Schedule:
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
  elif config.name == 'sgd':
    tx = optax.sgd(learning_rate=schedule, momentum=config.momentum)
  elif config.name == 'adamw':
    tx = optax.adamw(learning_rate=schedule, b1=config.b1, b2=config.b2, eps=config.eps,
                     weight_decay=config.weight_decay)
  else:
    tx = big_vision_adafactor(config, schedule)
  if config.grad_clip_norm is not None:
    tx = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), tx)
  return tx, schedule


def _kernel_mask(params: Any) -> Any:
  """True for the leaves whose name ends in `kernel` (matmul weights: what big_vision decays)."""
  def is_kernel(path, _):
    last = path[-1] if path else None
    name = getattr(last, 'key', getattr(last, 'name', ''))
    return str(name).endswith('kernel')
  return jax.tree_util.tree_map_with_path(is_kernel, params)


def _second_moment_decay(config: OptimizerConfig):
  def decay(step, exponent):  # 1 - t^-0.8, t counted from 1, capped (big_vision's beta2_cap)
    t = jnp.asarray(step, jnp.float32) + 1.0
    return jnp.minimum(config.beta2_cap, 1.0 - t ** (-exponent))
  return decay


def big_vision_adafactor(config: OptimizerConfig,
                         schedule: optax.Schedule) -> optax.GradientTransformation:
  """big_vision's Adafactor variant (its optax.py `scale_by_adafactor` within its optimizer
  chain), written against optax's building blocks:

  1. factored second moments (rows and columns of every matrix whose two largest dims are at
     least `min_dim_size_to_factor`, a full one otherwise) decaying as 1 - t^-decay_rate
     capped at `beta2_cap`; the gradient divided by their root;
  2. optional update clipping by block RMS (`clipping_threshold`; None: off, big_vision's
     default);
  3. momentum (an EMA without bias correction) held in `momentum_dtype` (bfloat16);
  4. times the peak learning rate, plus decoupled weight decay `weight_decay * param` on
     kernels, the sum scaled by the schedule's shape (lr_t / learning_rate) and negated.
  """
  peak = config.learning_rate
  parts = [optax.scale_by_factored_rms(
      factored=True, decay_rate=config.decay_rate,
      min_dim_size_to_factor=config.min_dim_size_to_factor, epsilon=1e-30,
      decay_rate_fn=_second_moment_decay(config))]
  if config.clipping_threshold:
    parts.append(optax.clip_by_block_rms(config.clipping_threshold))
  if config.momentum:
    parts.append(optax.ema(config.momentum, debias=False,
                           accumulator_dtype=getattr(jnp, config.momentum_dtype)))
  parts.append(optax.scale(peak))
  if config.weight_decay:
    parts.append(optax.add_decayed_weights(config.weight_decay, mask=_kernel_mask))
  parts.append(optax.scale_by_schedule(lambda step: -schedule(step) / peak))
  return optax.chain(*parts)
