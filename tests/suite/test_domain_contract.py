"""Every registered domain through the `suite.domain.Domain` contract alone.

For each domain in `suite.domains.DOMAIN_MODULES`: the protocol's members, a tiny model built
from a Shape, a train step with the domain's default optimizer, evaluation sums over batches
with a ragged last one (equal to an unpadded computation; counts exact) on 1 device and, in a
subprocess, on 4, and a predict. A domain whose module does not exist yet
is skipped with the reason; once it exists, it runs here.
"""

import importlib.util
import json
import math
import os
import pickle
import subprocess
import sys

import jax
import numpy as np
import pytest

from suite import costs, domains, optim, partition, shapes, trainer
from suite.domain import (
  MEMBERS,
  ModelOptions,
  OptimizerConfig,
  StageConfig,
  Workload,
  WorkloadOption,
  check_sizes,
)
from tests.suite import domain_cases

# The stages the issue asks of each domain (a domain may offer more).
STAGES = {shapes.TEXT: {'pretrain', 'finetune', 'evaluate'},
          shapes.VISION: {'upstream', 'evaluate', 'fewshot', 'finetune'}}
SCRIPT = os.path.join(os.path.dirname(__file__), 'domain_multidevice.py')


def _domain_case(name):
  module = domains.DOMAIN_MODULES[name]
  if importlib.util.find_spec(module) is None:
    pytest.skip(f'{module} does not exist yet: the {name} domain has no implementation')
  return domain_cases.case(name)


@pytest.fixture(scope='module', params=sorted(domains.DOMAIN_MODULES))
def case(request):
  """(name, domain, shape, workload, model, host params, Trainer with the domain's default
  optimizer): built once per domain."""
  name = request.param
  domain, shape, workload = _domain_case(name)
  model = domain_cases.model(domain, shape)
  tx, _ = optim.make_optimizer(domain.optimizers[next(iter(domain.optimizers))]())
  runner = trainer.Trainer(model, tx, rules=domain.logical_axis_rules)
  params = jax.device_get(runner.init(seed=0).params)
  return name, domain, shape, workload, model, params, runner


def test_every_registered_domain_has_a_tiny_case():
  assert set(domain_cases.TINY_SHAPES) == set(domains.DOMAIN_MODULES)
  assert set(STAGES) == set(domains.DOMAIN_MODULES)


def test_domain_has_the_protocols_members(case):
  name, domain, shape, workload, _, _, _ = case
  assert domains.get(name) is domain and domain.name == name == shape.domain
  assert all(hasattr(domain, member) for member in MEMBERS)
  assert all(isinstance(o, WorkloadOption) and o.default > 0 for o in domain.workload_options)
  assert domain.optimizers and all(isinstance(f(), OptimizerConfig)
                                   for f in domain.optimizers.values())
  assert all(isinstance(rule, tuple) and len(rule) == 2 for rule in domain.logical_axis_rules)
  assert STAGES[name] <= set(domain.stages) and all(map(callable, domain.stages.values()))
  with pytest.raises(ValueError, match='no stage'):
    from suite.domain import stage
    stage(domain, 'pretrian')


def test_rules_split_the_batch_over_data_and_fsdp_and_params_over_fsdp_and_model(case):
  """The partitioner's layout, through the domain's own rules: activations keep their embed
  whole (the batch took fsdp first), parameters put embed on fsdp and the wide axes on model."""
  from flax import linen as nn
  rules = case[1].logical_axis_rules
  assert tuple(nn.logical_to_mesh_axes(('batch', 'length', 'embed'), rules)) == (
      partition.BATCH_AXES, None, None)
  assert tuple(nn.logical_to_mesh_axes(('batch', 'length', 'heads', 'kv'), rules)) == (
      partition.BATCH_AXES, None, partition.MODEL, None)
  assert tuple(nn.logical_to_mesh_axes(('embed', 'mlp'), rules)) == (
      partition.FSDP, partition.MODEL)
  assert tuple(nn.logical_to_mesh_axes(('heads', 'kv', 'embed'), rules)) == (
      partition.MODEL, None, partition.FSDP)


def test_workload_states_its_unit_and_costs(case):
  _, domain, shape, workload, _, _, _ = case
  assert isinstance(workload, Workload)
  assert workload.unit in ('tokens', 'images') and workload.items_per_example >= 1
  assert set(workload.sizes) == {o.name for o in domain.workload_options}
  assert workload.train_flops_per_example >= 3 * costs.params(shape) // 2  # >= 1 token's worth
  with pytest.raises(ValueError, match='no size'):
    domain.workload(shape, no_such_size=3)
  with pytest.raises(ValueError, match='workload has no size'):
    check_sizes(domain, {'no_such_size': 3})


def test_model_params_are_the_cost_models(case):
  _, _, shape, _, _, params, _ = case
  assert sum(np.size(x) for x in jax.tree.leaves(params)) == costs.params(shape)


def test_train_step_with_the_default_optimizer(case):
  _, domain, shape, workload, _, _, runner = case
  batch = domain.synthetic_batch(shape, workload, 4, seed=0)
  state, metrics = runner.train_step(runner.init(seed=0), batch)
  metrics = partition.to_host(metrics)
  assert int(state.step) == 1 and math.isfinite(float(metrics['loss']))
  assert float(metrics['grad_norm']) > 0


def _is_count(values: np.ndarray) -> bool:
  return bool(np.all(values == np.round(values)))


def test_eval_sums_with_a_ragged_last_batch_equal_the_unpadded_ones(case):
  _, domain, shape, workload, model, params, _ = case
  data = domain_cases.eval_set(domain, shape, workload)
  per_example = jax.device_get(jax.jit(model.example_metrics)(params, data))
  assert all(np.shape(v)[0] == domain_cases.EVAL_EXAMPLES for v in per_example.values())
  steps = trainer.eval_steps(model, rules=domain.logical_axis_rules)
  sums = steps.sums(params, domain_cases.split(data, domain_cases.EVAL_BATCH))
  assert set(sums) == set(per_example)
  counts = [k for k, v in per_example.items() if _is_count(np.asarray(v))]
  assert counts, 'example_metrics should count something (examples, tokens) exactly'
  for name, values in per_example.items():
    expected = float(np.sum(np.asarray(values, np.float64)))
    if name in counts:  # padding rows of zeros would be counted without the row weights
      assert sums[name] == expected, name
    else:
      assert sums[name] == pytest.approx(expected, rel=1e-5), name


def test_predict_returns_one_row_per_example(case):
  _, domain, shape, workload, model, params, _ = case
  steps = trainer.eval_steps(model, rules=domain.logical_axis_rules)
  batch = domain_cases.split(domain_cases.eval_set(domain, shape, workload), 5)[0]
  out = steps.predict(params, batch)
  direct = jax.device_get(jax.jit(model.predict)(params, batch))
  for ours, theirs in zip(jax.tree.leaves(out), jax.tree.leaves(direct), strict=True):
    assert isinstance(ours, np.ndarray) and ours.shape[0] == 5
    np.testing.assert_array_equal(ours, theirs)


def test_stage_config_rejects_what_belongs_elsewhere():
  with pytest.raises(ValueError, match='StageConfig field'):
    StageConfig(task='t', loop={'num_steps': 3})
  with pytest.raises(ValueError, match='dtype'):
    ModelOptions(dtype='float16')


def test_eval_and_predict_on_four_devices(case, tmp_path):
  """Sums on a 4x1 mesh (batches of 4, the last of 3, each padded to a multiple of the 4 data
  shards) equal the unpadded one-device sums, counts exactly; predict on 4 devices gives the
  one-device rows. The subprocess gets this process's params."""
  name, domain, shape, workload, model, params, _ = case
  data = domain_cases.eval_set(domain, shape, workload)
  reference = {k: float(np.sum(np.asarray(v, np.float64)))
               for k, v in jax.device_get(jax.jit(model.example_metrics)(params, data)).items()}
  one_device = jax.device_get(jax.jit(model.predict)(params, domain_cases.split(data, 5)[0]))
  with open(tmp_path / 'params.pkl', 'wb') as f:
    pickle.dump(params, f)
  env = {**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=4',
         'JAX_PLATFORMS': 'cpu'}
  done = subprocess.run([sys.executable, SCRIPT, name, str(tmp_path / 'params.pkl')],
                        capture_output=True, text=True, env=env, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  result = json.loads(done.stdout.splitlines()[-1])
  assert result['rows_multiple'] == 4
  assert set(result['sums']) == set(reference)
  for metric, expected in reference.items():
    if expected.is_integer():
      assert result['sums'][metric] == expected, metric
    else:
      assert result['sums'][metric] == pytest.approx(expected, rel=1e-5), metric
  for ours, one in zip(result['predictions'], jax.tree.leaves(one_device), strict=True):
    np.testing.assert_allclose(np.asarray(ours), np.asarray(one), rtol=1e-5, atol=1e-6)
