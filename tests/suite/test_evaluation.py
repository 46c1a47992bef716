"""suite.evaluation: fixed-size eval batches with per-row weights, sharded predict, evaluators."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from suite import evaluation, loop, metrics_log, optim, trainer
from suite.evaluation import ROW_WEIGHT
from tests.suite.core_toy import ToyModel, batches, make_batch


@pytest.fixture(scope='module')
def toy():
  """(model, eval steps on all devices, host params), shared to save compiles."""
  model = ToyModel()
  steps = trainer.eval_steps(model)
  params = jax.device_get(jax.jit(lambda k: trainer.unbox(model.init(k)))(jax.random.key(0)))
  return model, steps, params


def _unpadded_sums(model, params, batch):
  return {k: float(np.sum(np.asarray(v, np.float64)))
          for k, v in jax.device_get(model.example_metrics(params, batch)).items()}


def test_pad_batch_adds_zero_rows_of_zero_weight():
  batch = {'x': np.ones((3, 2), np.float32), 'y': np.arange(3, dtype=np.int32)}
  padded = evaluation.pad_batch(batch, 5)
  assert padded['x'].shape == (5, 2) and padded['y'].tolist() == [0, 1, 2, 0, 0]
  assert padded[ROW_WEIGHT].tolist() == [1, 1, 1, 0, 0]
  assert not padded['x'][3:].any()
  # A weight the batch already holds is kept (and padded with zeros).
  again = evaluation.pad_batch({**batch, ROW_WEIGHT: np.array([1, 0, 1])}, 4)
  assert again[ROW_WEIGHT].tolist() == [1, 0, 1, 0]
  with pytest.raises(ValueError, match='fixed eval batch size 2'):
    evaluation.pad_batch(batch, 2)


def test_sums_over_a_ragged_last_batch_equal_the_unpadded_sums(toy):
  model, steps, params = toy
  whole = make_batch(7, batch_size=13)
  pieces = [{k: v[i:i + 5] for k, v in whole.items()} for i in (0, 5, 10)]  # 5, 5, 3 rows
  sums = steps.sums(params, pieces)
  expected = _unpadded_sums(model, params, whole)
  assert sums['count'] == 13.0 and sums['correct'] == expected['correct']  # counts: exact
  assert sums['loss_sum'] == pytest.approx(expected['loss_sum'], rel=1e-6)
  assert steps.sums(params, []) == {}
  with pytest.raises(ValueError, match='fixed eval batch size 3'):
    steps.sums(params, pieces[::-1])  # the first batch sets the size


class PerRowRatio:
  """A model whose per-example value is NaN on an all-zero (padding) row."""

  loss_weight_key = None

  def init(self, rng):
    return {'scale': jnp.ones((2,))}

  def example_metrics(self, params, batch):
    x = batch['x'] * params['scale']
    return {'ratio': jnp.sum(x, -1) / jnp.sum(jnp.abs(x), -1), 'count': jnp.ones(x.shape[:1])}

  def predict(self, params, batch):
    return batch['x']


def test_padding_rows_count_for_nothing_even_when_their_values_are_nan():
  model = PerRowRatio()
  steps = trainer.eval_steps(model)
  rows = {'x': np.array([[1.0, 1.0], [1.0, -3.0], [2.0, 2.0]], np.float32)}
  sums = steps.sums(model.init(None), [rows, {'x': rows['x'][:1]}])  # 3 rows, then 1 (+2 pad)
  assert sums == {'ratio': pytest.approx(1.0 - 0.5 + 1.0 + 1.0), 'count': 4.0}


class ScalarSums(ToyModel):
  def example_metrics(self, params, batch):
    return {k: jnp.sum(v) for k, v in super().example_metrics(params, batch).items()}


def test_example_metrics_must_be_per_example():
  model = ScalarSums()
  steps = trainer.eval_steps(model)
  params = trainer.unbox(model.init(jax.random.key(0)))
  with pytest.raises(ValueError, match='one value per example'):
    steps.sums(params, [make_batch(0, batch_size=4)])


def test_predict_drops_padding_rows_and_takes_static_options(toy):
  model, steps, params = toy
  batch = make_batch(3, batch_size=3)
  top2 = steps.predict(params, batch, top=2)
  assert isinstance(top2, np.ndarray) and top2.shape == (3, 2)
  np.testing.assert_array_equal(top2, model.predict(params, batch, top=2))
  assert steps.predict(params, batch).shape == (3, 1)


def test_params_of_another_model_are_refused(toy):
  _, steps, params = toy
  with pytest.raises(ValueError, match='missing'):
    steps.sums({'Dense_0': params['Dense_0']}, [make_batch(0, batch_size=4)])


class Constant:
  """An evaluator reporting fixed metrics and counting its calls."""

  def __init__(self, **metrics):
    self.metrics, self.calls = metrics, 0

  def evaluate(self, steps, params):
    self.calls += 1
    return dict(self.metrics)


def test_evaluators_report_under_distinct_names(toy):
  _, steps, params = toy
  assert evaluation.evaluate_all(steps, params, [Constant(a=1.0), Constant(b=2.0)]) == {
      'a': 1.0, 'b': 2.0}
  with pytest.raises(ValueError, match=r"\['a'\]"):
    evaluation.evaluate_all(steps, params, [Constant(a=1.0), Constant(a=2.0)])


def test_fit_calls_its_evaluators_on_the_eval_schedule(tmp_path):
  probe = Constant(probe=0.5)
  config = loop.LoopConfig(num_steps=6, log_every=3, eval_every=4, checkpoint_every=None,
                           tensorboard=False, async_checkpoints=False)
  data = [make_batch(500 + i, batch_size=6) for i in range(2)] + [make_batch(502, batch_size=3)]
  result = loop.fit(ToyModel(), optim.OptimizerConfig(min_dim_size_to_factor=8), batches,
                    config, tmp_path, eval_data=data, evaluators=[probe],
                    summarize_eval=lambda s: {'count': s['count']})
  evals = metrics_log.read_metrics(tmp_path, 'eval')
  assert [r['step'] for r in evals] == [4, 6] and probe.calls == 2
  assert evals[-1] == {'step': 6, 'eval/count': 15.0, 'eval/probe': 0.5}
  assert result.eval_metrics == {'count': 15.0, 'probe': 0.5}
  assert result.trainer.eval_steps.mesh is result.trainer.mesh
