"""Mesh specs, logical-axis rules, shardings of params, optimizer state and batches."""

import dataclasses
import json
import os
import re
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

from suite import optim, partition
from tests.suite.core_toy import ToyModel

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def test_single_device_is_a_1x1x1_mesh():
  mesh = partition.make_mesh(devices=jax.devices()[:1])
  assert dict(mesh.shape) == {'data': 1, 'fsdp': 1, 'model': 1}
  assert mesh.axis_names == partition.MESH_AXES == ('data', 'fsdp', 'model')
  assert partition.BATCH_AXES == ('data', 'fsdp')
  assert partition.mesh_text(mesh) == 'data:1,fsdp:1,model:1'


def test_mesh_text_parses_into_every_axis():
  assert partition.parse_mesh('data:2,fsdp:2,model:2') == {'data': 2, 'fsdp': 2, 'model': 2}
  assert partition.parse_mesh(' model:2 , data:4 ') == {'data': 4, 'fsdp': 1, 'model': 2}
  assert partition.parse_mesh(None) == partition.parse_mesh('') == {
      'data': -1, 'fsdp': 1, 'model': 1}
  assert partition.parse_mesh({'fsdp': -1, 'model': 2}) == {'data': 1, 'fsdp': -1, 'model': 2}
  assert partition.mesh_shape(None, 8) == {'data': 8, 'fsdp': 1, 'model': 1}
  assert partition.mesh_shape('fsdp:-1,model:2', 8) == {'data': 1, 'fsdp': 4, 'model': 2}
  assert partition.mesh_shape('data:2,fsdp:2,model:2', 8) == {'data': 2, 'fsdp': 2, 'model': 2}


@pytest.mark.parametrize('text, message', [
    ('dat:2', "unknown axis 'dat' in 'dat:2'; the axes are data, fsdp, model"),
    ('data', "'data' is not axis:size"),
    ('data:two', "size 'two' of axis 'data' is not an integer"),
    ('model:0', "axis 'model' has size 0"),
    ('data:-1,fsdp:-1', 'at most one axis'),
    ('data:2,data:4', "axis 'data' is given twice"),
])
def test_bad_mesh_text_names_the_bad_part_and_the_axes(text, message):
  with pytest.raises(partition.PartitionError, match=re.escape(message)):
    partition.parse_mesh(text)


@pytest.mark.parametrize('text, message', [
    # An axis that does not divide the devices: named, with the closest meshes that fit.
    ('data:3', 'mesh data:3 does not fit 8 devices: axis data:3 does not divide the 8 devices; '
               'would fit: data:8 or data:4,fsdp:2'),
    ('fsdp:2,model:3', 'axis model:3 does not divide the 4 devices that the axes before it '
                       'leave; would fit: fsdp:2,model:4 or data:2,fsdp:2,model:2'),
    ('data:5,fsdp:-1', 'axis data:5 does not divide the 8 devices; would fit: data:4,fsdp:2'),
    # Axes that leave devices unused: the named sizes are kept where possible.
    ('data:2,fsdp:2', 'data:2, fsdp:2 uses only 4 of the 8 devices; make an axis larger or let '
                      'one take the rest with -1; would fit: data:2,fsdp:2,model:2 or '
                      'data:4,fsdp:2'),
    ('model:2', 'would fit: data:4,model:2 or fsdp:4,model:2'),
    ('data:16', 'axis data:16 does not divide the 8 devices'),
])
def test_a_mesh_that_does_not_fit_names_the_axis_and_what_would(text, message):
  with pytest.raises(partition.PartitionError, match=re.escape(message)):
    partition.mesh_shape(text, 8)
  with pytest.raises(partition.PartitionError, match='would fit: data:1'):
    partition.make_mesh('data:2', devices=jax.devices()[:1])


def test_logical_names_map_through_the_rules():
  boxed = jax.eval_shape(ToyModel().init, jax.random.PRNGKey(0))
  specs = jax.tree_util.tree_map(
      lambda s: tuple(s.spec), partition.logical_shardings(boxed, partition.make_mesh()))
  assert specs == {'Dense_0': {'kernel': ('fsdp', 'model'), 'bias': ('model',)},
                   'Dense_1': {'kernel': ('model', None), 'bias': (None,)}}
  rules = dict(partition.RULES)
  assert rules['batch'] == ('data', 'fsdp') and rules['mlp'] == 'model'
  assert rules['embed'] == 'fsdp'


def test_activations_keep_embed_whole_where_the_batch_takes_fsdp():
  """The batch rule comes first: an activation ('batch', 'length', 'embed') has its batch
  over data x fsdp and its embed replicated, while a parameter's embed goes to fsdp."""
  rules = partition.RULES
  assert tuple(nn.logical_to_mesh_axes(('batch', 'length', 'embed'), rules)) == (
      ('data', 'fsdp'), None, None)
  assert tuple(nn.logical_to_mesh_axes(('embed', 'mlp'), rules)) == ('fsdp', 'model')


def test_plain_leaves_are_replicated():
  tree = {'a': jax.ShapeDtypeStruct((4,), jnp.float32),
          'b': nn.LogicallyPartitioned(jax.ShapeDtypeStruct((4, 2), jnp.float32),
                                       ('vocab', 'embed'))}
  shardings = partition.logical_shardings(tree, partition.make_mesh())
  assert tuple(shardings['a'].spec) == ()
  assert tuple(shardings['b'].spec) == ('model', 'fsdp')


@pytest.mark.parametrize('name', ['adamw', 'adafactor'])
def test_optimizer_state_follows_params(name):
  params = {'w': jnp.zeros((16, 8)), 'b': jnp.zeros((8,))}
  mesh = partition.make_mesh()
  param_shardings = {'w': jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(
      None, 'model')), 'b': partition.replicated(mesh)}
  config = optim.OptimizerConfig(name=name, schedule='constant', warmup_steps=0,
                                 min_dim_size_to_factor=4)
  tx, _ = optim.make_optimizer(config)
  state = jax.eval_shape(tx.init, params)
  shardings = partition.follow_params(state, params, param_shardings, mesh)
  pairs = [(leaf.shape, tuple(s.spec)) for leaf, s in zip(
      jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(shardings), strict=True)]
  for shape, spec in pairs:
    assert spec == ((None, 'model') if shape == (16, 8) else ())
  if name == 'adamw':
    assert sum(shape == (16, 8) for shape, _ in pairs) == 2  # mu and nu
  else:
    assert {(16,), (8,)} <= {shape for shape, _ in pairs}  # factored, replicated


def test_batches_must_split_over_data_fsdp_and_microbatches():
  mesh = partition.make_mesh()
  batch = {'x': np.zeros((16, 3)), 'y': np.zeros((16,))}
  assert partition.check_batch(batch, mesh, multiple=4) == 16
  with pytest.raises(partition.PartitionError, match=r'microbatches \(3\) = 3; use a batch '
                     'size that is a multiple of 3, e.g. 15 or 18'):
    partition.check_batch(batch, mesh, multiple=3)
  with pytest.raises(partition.PartitionError, match='same leading batch dimension'):
    partition.check_batch({'x': np.zeros((16, 3)), 'y': np.zeros((8,))}, mesh)
  placed = partition.shard_batch(batch, mesh)
  assert isinstance(placed['x'], jax.Array)
  assert tuple(placed['x'].sharding.spec) == (('data', 'fsdp'),)


def test_one_process_feeds_every_row_of_the_global_batch():
  mesh = partition.make_mesh()
  assert partition.process_rows(16, mesh) == slice(0, 16)
  assert partition.process_batch_shards(mesh) == partition.batch_shards(mesh) == len(
      jax.devices())
  with pytest.raises(partition.PartitionError, match=r'global batch size 6 is not divisible by '
                     r'data \(1\) x fsdp \(1\) x microbatches \(4\) = 4; use a batch size '
                     'that is a multiple of 4, e.g. 4 or 8'):
    partition.process_rows(6, partition.make_mesh(devices=jax.devices()[:1]), multiple=4)


@dataclasses.dataclass(frozen=True)
class _Device:
  """Stands in for a device of a multi-process system: a mesh needs only these fields here."""

  id: int
  process_index: int
  platform: str = 'cpu'


def _two_process_mesh(order):
  """A 2x2x2 mesh of 8 devices, 4 per process; `order` permutes the device grid's axes."""
  devices = np.array([_Device(i, i // 4) for i in range(8)], dtype=object).reshape(2, 2, 2)
  return Mesh(devices.transpose(order), partition.MESH_AXES)


def test_each_process_feeds_the_rows_its_devices_hold():
  mesh = _two_process_mesh((0, 1, 2))  # process 0 holds data row 0, process 1 data row 1
  assert [partition.process_rows(16, mesh, process=p) for p in (0, 1)] == [
      slice(0, 8), slice(8, 16)]
  # This process (index 0) passes its 8 rows: the global batch is 16.
  assert partition.check_batch({'x': np.zeros((8, 3))}, mesh) == 16
  with pytest.raises(partition.PartitionError, match='multiple of 4, e.g. 8 or 12'):
    partition.process_rows(10, mesh, process=0)
  # Processes split along model: both hold every batch slice and feed the whole batch.
  assert partition.process_rows(16, _two_process_mesh((2, 1, 0)), process=1) == slice(0, 16)
  # Processes split along fsdp: each holds slices 0 and 2, or 1 and 3, not contiguous rows.
  with pytest.raises(partition.PartitionError, match=r'not contiguous \(\[1, 3\]\)'):
    partition.process_rows(16, _two_process_mesh((1, 0, 2)), process=1)


def test_sharded_training_matches_one_device():
  """4x1 and 2x2 CPU meshes give the 1-device losses, params and eval sums."""
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=4',
             JAX_PLATFORMS='cpu')
  proc = subprocess.run([sys.executable, os.path.join(HERE, 'core_multidevice.py')], env=env,
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  reference = out['1']
  assert reference['losses'][-1] < reference['losses'][0]
  for name in ('data:4', 'data:2,model:2', 'fsdp:2,model:2', 'data:2,model:2_micro2',
               'data:2,fsdp:2_micro2'):
    run = out[name]
    np.testing.assert_allclose(run['losses'], reference['losses'], rtol=1e-5)
    for got, want in zip(run['params'], reference['params'], strict=True):
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert run['eval'] == pytest.approx(reference['eval'], rel=1e-5)
  # The hidden dimension (32) is really split over the 2-way model axis, the input one (8)
  # over fsdp.
  assert out['data:2,model:2']['kernel_spec'] == ['fsdp', 'model']
  assert out['data:2,model:2']['kernel_shard_shape'] == [8, 16]
  assert out['fsdp:2,model:2']['kernel_shard_shape'] == [4, 16]
  assert out['data:4']['kernel_shard_shape'] == [8, 32]
  assert out['batch_shard_shape'] == [4, 3]  # 8 examples over 2 data shards
  assert out['batch_shard_shape_fsdp'] == [2, 3]  # over 2 data x 2 fsdp shards
  assert out['fallback_specs'] == {'w': ['None', 'fsdp'], 'v': ['fsdp', 'model']}
