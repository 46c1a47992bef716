"""Run as a script on a 4-device CPU platform: the same training on meshes of 1 and 4 devices.

Prints one JSON object: per-mesh losses, final params digest, and how params and batches were
actually laid out. tests/suite/test_partition.py launches it with
XLA_FLAGS=--xla_force_host_platform_device_count=4 and checks the figures.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from suite import optim, partition  # noqa: E402
from suite.trainer import Trainer  # noqa: E402
from tests.suite.core_toy import ToyModel, make_batch  # noqa: E402

STEPS = 4


def train(mesh, microbatches=1):
  model = ToyModel(features=8, hidden=32, classes=4)
  # Factor from 8 on, so Adafactor's row/column statistics appear in the sharded state.
  config = optim.OptimizerConfig(schedule='constant', learning_rate=0.05, warmup_steps=0,
                                 min_dim_size_to_factor=8)
  tx, _ = optim.make_optimizer(config)
  trainer = Trainer(model, tx, mesh=mesh, microbatches=microbatches)
  state = trainer.init(seed=0)
  losses = []
  for i in range(STEPS):
    state, metrics = trainer.train_step(state, make_batch(i, batch_size=16))
    losses.append(float(partition.to_host(metrics)['loss']))
  kernel = state.params['Dense_0']['kernel']
  sums = trainer.evaluate(state.params, [make_batch(100 + i, batch_size=8) for i in range(2)])
  return {
      'losses': losses,
      'params': [np.asarray(x).tolist() for x in jax.tree_util.tree_leaves(
          jax.device_get(state.params))],
      'kernel_spec': [str(a) for a in kernel.sharding.spec],
      'kernel_shard_shape': list(kernel.addressable_shards[0].data.shape),
      'eval': sums,
  }


def main():
  devices = jax.devices()
  assert len(devices) == 4, devices
  out = {
      '1': train(partition.make_mesh(devices=devices[:1])),
      'data:4': train(partition.make_mesh('data:4')),
      'data:2,model:2': train(partition.make_mesh('data:2,model:2')),
      'fsdp:2,model:2': train(partition.make_mesh('fsdp:2,model:2')),
      'data:2,model:2_micro2': train(partition.make_mesh('data:2,model:2'), microbatches=2),
      'data:2,fsdp:2_micro2': train(partition.make_mesh('data:2,fsdp:2'), microbatches=2),
  }
  mesh = partition.make_mesh('data:2,model:2')
  batch = partition.shard_batch({'x': np.zeros((8, 3), np.float32)}, mesh)['x']
  out['batch_shard_shape'] = list(batch.addressable_shards[0].data.shape)
  batch = partition.shard_batch({'x': np.zeros((8, 3), np.float32)},
                                partition.make_mesh('data:2,fsdp:2'))['x']
  out['batch_shard_shape_fsdp'] = list(batch.addressable_shards[0].data.shape)
  # 6 is not divisible by the 4-way model axis: that dimension is replicated.
  import flax.linen as nn
  boxed = {'w': nn.LogicallyPartitioned(jax.ShapeDtypeStruct((6, 8), jnp.float32),
                                        ('heads', 'embed')),
           'v': nn.LogicallyPartitioned(jax.ShapeDtypeStruct((8, 4), jnp.float32),
                                        ('embed', 'mlp'))}
  specs = partition.logical_shardings(boxed, partition.make_mesh('model:4'))
  out['fallback_specs'] = {k: [str(a) for a in s.spec] for k, s in specs.items()}
  print(json.dumps(out))


if __name__ == '__main__':
  main()
