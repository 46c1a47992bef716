"""The memory estimate's optimizer state is the size of the real optimizer's state on T5."""

import math

import jax
import pytest

from suite import costs, memory, optim, shapes, trainer
from text import t5


@pytest.mark.parametrize('name', ['small', 't5.1.1-small', 'tiny-kv16', 'base-nh32'])
@pytest.mark.parametrize('optimizer', ['adafactor', 'adamw'])
def test_optimizer_state_matches_the_real_optimizer(name, optimizer):
  shape = shapes.parse(name)
  model = t5.build(shape)
  params = trainer.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0)))
  config = (optim.t5_pretrain() if optimizer == 'adafactor'
            else optim.OptimizerConfig(name='adamw', schedule='constant', warmup_steps=0))
  tx, _ = optim.make_optimizer(config)
  state = jax.eval_shape(tx.init, params)
  real = sum(math.prod(x.shape) for x in jax.tree.leaves(state))
  estimate = costs.train_memory(shape, 1, optimizer=optimizer).optimizer_bytes // 4
  # optax also keeps a step count and a one-element placeholder for each statistic a tensor
  # does not use: at most two elements per parameter tensor, plus one.
  assert 0 <= real - estimate <= 2 * len(jax.tree.leaves(params)) + 1


def test_attention_kernels_are_factored():
  """T5's Adafactor factors the attention matrices; ours must too (d_kv 64 < optax's 128)."""
  shape = shapes.parse('small')
  full = costs.parameter_tensors(shape)
  attention = [t for t in full if 'attention/' in t.name]
  for tensor in attention:
    state = memory.optimizer_state_bytes(tensor.shape, tensor.shape, 'adafactor') // 4
    assert state < math.prod(tensor.shape) / 8, tensor.name
