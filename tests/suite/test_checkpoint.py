"""Orbax checkpoints of the train state: round trip onto shardings, data record, keep N."""

import jax
import numpy as np
import pytest

from suite import optim, partition
from suite.checkpoint import Checkpointer
from suite.trainer import Trainer
from tests.suite.core_toy import ToyModel, make_batch


@pytest.fixture(scope='module')
def trained():
  tx, _ = optim.make_optimizer(optim.OptimizerConfig(min_dim_size_to_factor=8,
                                                     warmup_steps=10))
  trainer = Trainer(ToyModel(), tx)
  state = trainer.init(seed=3)
  states = []
  for i in range(4):
    state, _ = trainer.train_step(state, make_batch(i))
    states.append(jax.device_get(state))
  return trainer, state, states


def test_round_trip_restores_every_leaf_onto_the_target_shardings(tmp_path, trained):
  trainer, state, _ = trained
  with Checkpointer(tmp_path) as checkpointer:
    assert checkpointer.latest_step() is None
    checkpointer.save(4, state, {'batches_consumed': 4, 'note': 'x'})
  with Checkpointer(tmp_path) as checkpointer:  # a new object, as after a restart
    assert checkpointer.latest_step() == 4
    restored, record = checkpointer.restore(trainer.abstract_state)
  assert record == {'batches_consumed': 4, 'note': 'x'}
  assert jax.tree_util.tree_structure(restored) == jax.tree_util.tree_structure(state)
  for got, want, sharding in zip(jax.tree_util.tree_leaves(restored),
                                 jax.tree_util.tree_leaves(state),
                                 jax.tree_util.tree_leaves(trainer.state_shardings),
                                 strict=True):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert got.dtype == want.dtype and got.sharding == sharding
  # The restored state trains on: same step as the original gives the same loss.
  state_copy = jax.tree_util.tree_map(lambda x: x.copy(), state)
  _, from_restored = trainer.train_step(restored, make_batch(4))
  _, from_original = trainer.train_step(state_copy, make_batch(4))
  assert partition.to_host(from_restored) == partition.to_host(from_original)


def test_keeps_the_latest_n_and_restores_any_kept_step(tmp_path, trained):
  trainer, _, states = trained
  with Checkpointer(tmp_path, keep=2, asynchronous=False) as checkpointer:
    for step, state in enumerate(states, start=1):
      checkpointer.save(step, state, {'batches_consumed': step})
    assert checkpointer.all_steps() == [3, 4]
    restored, record = checkpointer.restore(trainer.abstract_state, step=3)
  assert record['batches_consumed'] == 3 and int(restored.step) == 3
  np.testing.assert_array_equal(np.asarray(restored.params['Dense_0']['kernel']),
                                states[2].params['Dense_0']['kernel'])


def test_restore_without_checkpoint_names_the_directory(tmp_path, trained):
  trainer = trained[0]
  with Checkpointer(tmp_path / 'empty') as checkpointer:
    with pytest.raises(FileNotFoundError, match='empty'):
      checkpointer.restore(trainer.abstract_state)
  with pytest.raises(ValueError, match='keep'):
    Checkpointer(tmp_path / 'x', keep=0)


def test_restore_params_ignores_another_optimizers_state(tmp_path, trained):
  _, state, _ = trained  # saved with Adafactor
  with Checkpointer(tmp_path) as checkpointer:
    checkpointer.save(4, state, {'batches_consumed': 4})
  finetune = Trainer(ToyModel(), optim.make_optimizer(optim.OptimizerConfig(
      name='adamw', schedule='constant', warmup_steps=0))[0])
  with Checkpointer(tmp_path) as checkpointer:
    params = checkpointer.restore_params(finetune.abstract_state.params)
  for got, want, sharding in zip(jax.tree_util.tree_leaves(params),
                                 jax.tree_util.tree_leaves(state.params),
                                 jax.tree_util.tree_leaves(finetune.param_shardings),
                                 strict=True):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert got.sharding == sharding
