"""The vision optimizers of suite.optim: big_vision's Adafactor variant, reciprocal-sqrt decay
with cooldown, SGD for transfer, and the named presets."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from suite import optim


def _bv(**changes):
  values = dict(name='big_vision_adafactor', schedule='constant', learning_rate=0.1,
                warmup_steps=0, momentum=0.9, clipping_threshold=None,
                multiply_by_parameter_scale=False)
  return optim.OptimizerConfig(**{**values, **changes})


PARAMS = {'dense': {'kernel': jnp.ones((64, 48)), 'bias': jnp.ones((48,))}}


def test_big_vision_adafactor_factors_second_moments_and_keeps_bfloat16_momentum():
  tx, _ = optim.make_optimizer(_bv())
  state = tx.init(PARAMS)
  leaves = jax.tree_util.tree_leaves(state)
  shapes = {tuple(x.shape) for x in leaves}
  assert (64,) in shapes and (48,) in shapes  # row and column statistics of the kernel
  full = [x for x in leaves if x.shape == (64, 48)]
  assert len(full) == 1 and full[0].dtype == jnp.bfloat16  # the momentum alone, in bfloat16


def test_big_vision_adafactor_first_step_is_momentum_of_the_normalised_gradient():
  # Step 1: the second-moment decay 1 - 1^-0.8 is 0, so the statistics are the squared
  # gradient and a uniform gradient is normalised to +-1; the momentum (an EMA without bias
  # correction) holds 0.1 of it; times lr 0.1 and negated.
  tx, _ = optim.make_optimizer(_bv())
  grads = jax.tree_util.tree_map(lambda p: -3.0 * p, PARAMS)
  updates, state = tx.update(grads, tx.init(PARAMS), PARAMS)
  np.testing.assert_allclose(updates['dense']['kernel'], 0.1 * 0.1, rtol=1e-2)
  np.testing.assert_allclose(updates['dense']['bias'], 0.1 * 0.1, rtol=1e-2)
  # Step 2 with the same gradient: momentum 0.9 * 0.1 + 0.1 = 0.19 of it.
  updates, _ = tx.update(grads, state, PARAMS)
  np.testing.assert_allclose(updates['dense']['kernel'], 0.1 * 0.19, rtol=1e-2)


def test_second_moment_decay_is_capped():
  decay = optim._second_moment_decay(_bv(beta2_cap=0.999))
  assert float(decay(0, 0.8)) == pytest.approx(0.0)
  assert float(decay(9, 0.8)) == pytest.approx(1 - 10 ** -0.8)
  assert float(decay(10 ** 6, 0.8)) == pytest.approx(0.999)


def test_big_vision_weight_decay_is_decoupled_on_kernels_and_follows_the_schedule():
  config = _bv(schedule='cosine', total_steps=10, weight_decay=0.01)
  tx, schedule = optim.make_optimizer(config)
  zeros = jax.tree_util.tree_map(jnp.zeros_like, PARAMS)
  state = tx.init(PARAMS)
  for step in range(3):
    updates, state = tx.update(zeros, state, PARAMS)
    shape_of_schedule = float(schedule(step)) / config.learning_rate
    # No gradient: only the decay moves the kernel, by -wd * param * (lr_t / lr); never biases.
    np.testing.assert_allclose(updates['dense']['kernel'], -0.01 * shape_of_schedule, rtol=1e-5)
    np.testing.assert_array_equal(updates['dense']['bias'], 0.0)


def test_reciprocal_sqrt_schedule_with_warmup_and_cooldown():
  config = optim.OptimizerConfig(name='big_vision_adafactor', schedule='reciprocal_sqrt',
                                 learning_rate=1.0, warmup_steps=10, timescale=10,
                                 total_steps=100, cooldown_steps=20)
  schedule = optim.make_schedule(config)
  assert float(schedule(0)) == 0.0
  assert float(schedule(5)) == pytest.approx(0.5)
  assert float(schedule(10)) == pytest.approx(1.0)
  assert float(schedule(40)) == pytest.approx(1 / np.sqrt(1 + 30 / 10))
  assert float(schedule(90)) == pytest.approx(0.5 / np.sqrt(1 + 80 / 10))  # half-way down
  assert float(schedule(100)) == 0.0


def test_cooldown_needs_a_schedule_with_an_end():
  with pytest.raises(optim.OptimizerConfigError, match='reciprocal_sqrt'):
    optim.OptimizerConfig(schedule='rsqrt', cooldown_steps=10, total_steps=100)
  with pytest.raises(optim.OptimizerConfigError, match='total_steps'):
    optim.OptimizerConfig(schedule='reciprocal_sqrt', warmup_steps=50, cooldown_steps=60,
                          total_steps=100)


def test_sgd_has_momentum():
  tx, _ = optim.make_optimizer(optim.vit_finetune_sgd(0.1, total_steps=10, warmup_steps=0))
  grads = jax.tree_util.tree_map(jnp.ones_like, PARAMS)
  state = tx.init(PARAMS)
  first, state = tx.update(grads, state, PARAMS)
  second, _ = tx.update(grads, state, PARAMS)
  # Global-norm clipping to 1 scales the ones; momentum makes step 2 1.9x step 1's rate.
  ratio = float(second['dense']['bias'][0] / first['dense']['bias'][0])
  schedule = optim.make_schedule(optim.vit_finetune_sgd(0.1, total_steps=10, warmup_steps=0))
  assert ratio == pytest.approx(1.9 * float(schedule(1)) / float(schedule(0)), rel=1e-4)


@pytest.mark.parametrize('name', sorted(optim.PRESETS))
def test_presets_build_and_run(name):
  config = optim.preset(name, learning_rate=1e-3, total_steps=100, warmup_steps=10)
  tx, _ = optim.make_optimizer(config)
  updates, _ = tx.update(jax.tree_util.tree_map(jnp.ones_like, PARAMS), tx.init(PARAMS), PARAMS)
  assert all(np.all(np.isfinite(u)) for u in jax.tree_util.tree_leaves(updates))
  optax.apply_updates(PARAMS, updates)


def test_unknown_preset_names_the_closest():
  with pytest.raises(optim.OptimizerConfigError, match='vit_adamw'):
    optim.preset('vit_adamv', learning_rate=1e-3, total_steps=10, warmup_steps=1)
