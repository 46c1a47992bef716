"""The jitted train step, sharded init, gradient accumulation and evaluation, on a toy model."""

import jax
import numpy as np
import optax
import pytest

from suite import optim, partition
from suite.trainer import Trainer
from tests.suite.core_toy import ToyModel, make_batch, param_leaves, summarize


def _adamw(learning_rate=1e-2):
  return optim.make_optimizer(optim.OptimizerConfig(
      name='adamw', schedule='constant', learning_rate=learning_rate, warmup_steps=0))[0]


@pytest.fixture(scope='module')
def trainer():
  """Adafactor (factored from dim 8) on the toy model with dropout, shared to save compiles."""
  tx, _ = optim.make_optimizer(optim.OptimizerConfig(min_dim_size_to_factor=8, warmup_steps=10))
  return Trainer(ToyModel(dropout=0.5), tx)


def test_overfits_one_batch():
  trainer = Trainer(ToyModel(hidden=64), _adamw(3e-2))
  state = trainer.init(seed=0)
  batch = make_batch(0, batch_size=32)
  losses = []
  for _ in range(150):
    state, metrics = trainer.train_step(state, batch)
    losses.append(float(partition.to_host(metrics)['loss']))
  assert losses[0] > 1.0
  assert losses[-1] < 0.05
  assert float(partition.to_host(metrics)['accuracy']) == 1.0
  assert int(state.step) == 150


def test_state_is_created_with_its_shardings(trainer):
  state = trainer.init(seed=0)
  for leaf, sharding, abstract in zip(jax.tree_util.tree_leaves(state),
                                      jax.tree_util.tree_leaves(trainer.state_shardings),
                                      jax.tree_util.tree_leaves(trainer.abstract_state),
                                      strict=True):
    assert leaf.sharding == sharding
    assert (leaf.shape, leaf.dtype) == (abstract.shape, abstract.dtype)
  assert int(state.step) == 0 and state.rng.dtype == np.uint32


def test_gradient_accumulation_equals_one_large_batch():
  """SGD makes the comparison exact up to float rounding: params move by lr * mean grad."""
  batches = [make_batch(i, batch_size=16) for i in range(3)]
  runs = {}
  for m in (1, 2, 4):
    trainer = Trainer(ToyModel(), optax.sgd(0.5), microbatches=m)
    state = trainer.init(seed=0)
    metrics = []
    for batch in batches:
      state, step_metrics = trainer.train_step(state, batch)
      metrics.append(partition.to_host(step_metrics))
    runs[m] = (param_leaves(state), metrics)
  params_1, metrics_1 = runs[1]
  for m in (2, 4):
    params_m, metrics_m = runs[m]
    for a, b in zip(params_1, params_m, strict=True):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(metrics_1, metrics_m, strict=True):
      assert set(a) == {'loss', 'accuracy', 'grad_norm'}
      for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5)
  assert np.any(params_1[0] != 0)  # the zero-initialised first bias has moved


class _IntegerMetricModel(ToyModel):
  """A toy whose loss also reports an int32 metric (equal in every microbatch)."""

  def loss(self, params, batch, rng):
    loss, metrics = super().loss(params, batch, rng)
    return loss, {**metrics, 'layers': jax.numpy.asarray(3, jax.numpy.int32)}


def test_integer_metrics_survive_gradient_accumulation():
  batch = make_batch(0, batch_size=16)
  for m in (1, 2, 4):
    trainer = Trainer(_IntegerMetricModel(), optax.sgd(0.1), microbatches=m)
    _, metrics = trainer.train_step(trainer.init(seed=0), batch)
    assert float(partition.to_host(metrics)['layers']) == 3.0, m


def test_steps_are_deterministic_and_use_the_seed_and_step_rng(trainer):
  def run(seed):
    state = trainer.init(seed=seed)
    losses = []
    for _ in range(2):
      state, metrics = trainer.train_step(state, make_batch(0))
      losses.append(float(partition.to_host(metrics)['loss']))
    return losses, param_leaves(state)

  losses_a, params_a = run(0)
  losses_b, params_b = run(0)
  assert losses_a == losses_b
  for a, b in zip(params_a, params_b, strict=True):
    np.testing.assert_array_equal(a, b)
  # Same batch twice: the dropout masks (from the step's RNG) differ, so the losses do too.
  assert losses_a[0] != losses_a[1]
  _, params_c = run(1)
  assert not np.array_equal(params_a[-1], params_c[-1])


def test_init_from_params_starts_from_given_weights(trainer):
  given = jax.tree_util.tree_map(lambda x: np.full(x.shape, 0.25, x.dtype),
                                 trainer.abstract_state.params)
  state = trainer.init_from_params(given)
  for leaf in param_leaves(state):
    np.testing.assert_array_equal(leaf, 0.25)
  assert int(state.step) == 0
  with pytest.raises(ValueError, match='missing'):
    trainer.init_from_params({'Dense_0': given['Dense_0']})


def test_evaluate_sums_over_batches(trainer):
  model = trainer.model
  state = trainer.init(seed=0)
  batches = [make_batch(50 + i, batch_size=8) for i in range(3)]
  sums = trainer.evaluate(state.params, batches)
  params = jax.device_get(state.params)
  expected = {k: sum(float(np.sum(model.example_metrics(params, b)[k])) for b in batches)
              for k in sums}
  assert sums == pytest.approx(expected, rel=1e-6)
  assert sums['count'] == 24.0
  assert 0.0 <= summarize(sums)['accuracy'] <= 1.0
  assert trainer.evaluate(state.params, []) == {}


def test_lowered_step_compiles_ahead_of_time_and_runs(trainer):
  batch = make_batch(0)
  abstract_batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batch.items()}
  lowered = trainer.lower_train_step(trainer.abstract_state, abstract_batch)
  compiled = lowered.compile()
  assert compiled.cost_analysis()['flops'] > 0
  state, metrics = compiled(trainer.init(seed=0), partition.shard_batch(batch, trainer.mesh))
  assert int(state.step) == 1 and np.isfinite(float(partition.to_host(metrics)['loss']))


def test_init_from_params_leaves_the_callers_params_alive(trainer):
  """The step donates its state; params handed in (e.g. one pre-trained tree finetuned on
  several tasks) must survive it, whether they are host arrays or already on the shardings."""
  source = trainer.init(seed=1).params
  expected = jax.tree.map(np.asarray, source)
  state = trainer.init_from_params(source, seed=0)
  state, _ = trainer.train_step(state, make_batch(0, batch_size=8))
  assert not any(x.is_deleted() for x in jax.tree.leaves(source))
  for got, want in zip(jax.tree.leaves(source), jax.tree.leaves(expected), strict=True):
    np.testing.assert_array_equal(np.asarray(got), want)
