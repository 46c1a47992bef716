"""Optimizers and schedules: T5's Adafactor and rsqrt schedule, AdamW with warm-up, clipping."""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from suite import optim


@pytest.mark.parametrize('step', [0, 1, 5_000, 10_000, 40_000, 1_000_000])
def test_rsqrt_schedule_is_t5s(step):
  schedule = optim.make_schedule(optim.t5_pretrain(warmup_steps=10_000))
  assert float(schedule(step)) == pytest.approx(min(0.01, 1 / np.sqrt(max(step, 10_000))))


def test_rsqrt_cap_applies_with_short_warmup():
  schedule = optim.make_schedule(optim.OptimizerConfig(learning_rate=0.01, warmup_steps=100))
  assert float(schedule(0)) == pytest.approx(0.01)  # 1/sqrt(100) = 0.1 is capped
  assert float(schedule(40_000)) == pytest.approx(0.005)


def test_constant_and_cosine_schedules():
  constant = optim.make_schedule(optim.t5_finetune(1e-3))
  assert [float(constant(s)) for s in (0, 10, 10_000)] == pytest.approx([1e-3] * 3)
  cosine = optim.make_schedule(optim.vit_adamw(1e-3, total_steps=110, warmup_steps=10))
  assert float(cosine(0)) == pytest.approx(0.0)
  assert float(cosine(5)) == pytest.approx(5e-4)
  assert float(cosine(10)) == pytest.approx(1e-3)
  assert float(cosine(60)) == pytest.approx(5e-4, rel=1e-4)
  assert float(cosine(110)) == pytest.approx(0.0, abs=1e-9)
  linear = optim.make_schedule(optim.OptimizerConfig(
      name='adamw', schedule='linear', learning_rate=1.0, warmup_steps=0, total_steps=4))
  assert [float(linear(s)) for s in range(5)] == pytest.approx([1, 0.75, 0.5, 0.25, 0])


def test_adafactor_defaults_factor_second_moments_without_momentum():
  params = {'w': jnp.ones((256, 512)), 'b': jnp.ones((512,))}
  tx, _ = optim.make_optimizer(optim.t5_pretrain())
  state = tx.init(params)
  shapes = sorted({tuple(x.shape) for x in jax.tree_util.tree_leaves(state)})
  assert (256,) in shapes and (512,) in shapes  # row and column statistics of w
  assert (256, 512) not in shapes  # neither a full second moment nor momentum
  updates, _ = tx.update(jax.tree_util.tree_map(lambda p: 100.0 * p, params), state, params)
  # A uniform gradient is estimated exactly at step 1 (update RMS 1 before scaling, so update
  # clipping does not act): the update is lr 0.01 times the parameter scale (RMS 1).
  rms = float(jnp.sqrt(jnp.mean(updates['w'] ** 2)))
  assert rms == pytest.approx(0.01, rel=1e-3)


def _rms(x) -> float:
  return float(jnp.sqrt(jnp.mean(jnp.square(x))))


def test_adafactor_update_clipping_bounds_the_update_rms():
  # One spiked entry: the factored (rank-1) second moment underestimates it, so the normalized
  # update has RMS >> 1 and the T5 default clipping (threshold 1.0) must scale it down.
  params = {'w': jnp.full((256, 512), 2.0), 'b': jnp.ones((512,))}  # parameter scale 2 and 1
  grads = {'w': jnp.ones((256, 512)).at[0, 0].set(1e4), 'b': jnp.linspace(-1.0, 1.0, 512)}
  config = optim.t5_pretrain()
  assert config.clipping_threshold == 1.0
  tx, schedule = optim.make_optimizer(config)
  clipped, _ = tx.update(grads, tx.init(params), params)
  plain_tx, _ = optim.make_optimizer(dataclasses.replace(config, clipping_threshold=None))
  unclipped, _ = plain_tx.update(grads, plain_tx.init(params), params)
  # optax.adafactor: normalized update, clipped to block RMS <= threshold, times the learning
  # rate, times the parameter's RMS (the parameter scale).
  bound = config.clipping_threshold * float(schedule(0)) * _rms(params['w'])
  assert bound == pytest.approx(0.02)
  assert _rms(clipped['w']) <= bound * (1 + 1e-5)
  assert _rms(clipped['w']) == pytest.approx(bound, rel=1e-5)  # clipping is active
  assert _rms(unclipped['w']) > 10 * bound
  # Clipping rescales the block, keeping its direction.
  np.testing.assert_allclose(clipped['w'], unclipped['w'] * (bound / _rms(unclipped['w'])),
                             rtol=1e-5, atol=1e-12)
  # Per block: 'b' (unfactored, normalized RMS exactly 1) is at the threshold and not clipped.
  np.testing.assert_allclose(clipped['b'], unclipped['b'], rtol=1e-5)


def test_grad_clip_norm_clips_before_the_optimizer():
  base = dict(name='adamw', schedule='constant', learning_rate=1.0, warmup_steps=0, eps=1.0)
  params = {'w': jnp.zeros((3,))}
  grads = {'w': jnp.array([30.0, 40.0, 0.0])}  # norm 50
  clipped_tx, _ = optim.make_optimizer(optim.OptimizerConfig(**base, grad_clip_norm=5.0))
  plain_tx, _ = optim.make_optimizer(optim.OptimizerConfig(**base))
  clipped, _ = clipped_tx.update(grads, clipped_tx.init(params), params)
  by_hand, _ = plain_tx.update({'w': grads['w'] / 10}, plain_tx.init(params), params)
  unclipped, _ = plain_tx.update(grads, plain_tx.init(params), params)
  np.testing.assert_allclose(clipped['w'], by_hand['w'], rtol=1e-6)
  assert not np.allclose(clipped['w'], unclipped['w'])


def test_from_dict_accepts_config_dict_and_rejects_unknown_keys():
  config = optim.OptimizerConfig.from_dict(ml_collections.ConfigDict(
      {'name': 'adamw', 'schedule': 'cosine', 'learning_rate': 3e-4, 'total_steps': 100,
       'warmup_steps': 10}))
  assert config.name == 'adamw' and config.total_steps == 100
  with pytest.raises(optim.OptimizerConfigError, match='learning_rate'):
    optim.OptimizerConfig.from_dict({'learning_rat': 1e-3})


@pytest.mark.parametrize('kwargs, message', [
    ({'name': 'adam'}, 'adamw'),
    ({'schedule': 'cosin'}, 'cosine'),
    ({'schedule': 'cosine'}, 'total_steps'),
    ({'learning_rate': 0.0}, 'learning_rate'),
    ({'grad_clip_norm': -1.0}, 'grad_clip_norm'),
])
def test_invalid_configs_say_what_is_valid(kwargs, message):
  with pytest.raises(optim.OptimizerConfigError, match=message):
    optim.OptimizerConfig(**kwargs)
