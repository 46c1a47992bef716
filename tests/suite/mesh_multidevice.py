"""Run as a script on an 8-device CPU platform: ViT training on 3-axis meshes, and a train state
saved on one mesh restored on another.

`python tests/suite/mesh_multidevice.py WORKDIR` prints one JSON object:
- 'train': for the meshes '1' (one of the devices), 'data:8' and 'data:2,fsdp:2,model:2', the
  same few steps of the vision domain's tiny case (with dropout): losses, gradient norms, the
  final params, and how the first MLP kernel and the batch were laid out;
- 'restore': the data:8 run's state saved at step 2, restored on fsdp:4 (4 of the 8
  devices): whether every leaf equals the saved value and has the fsdp:4 trainer's sharding,
  the kernel's layout there, and the losses of the remaining steps, to set beside the data:8
  run's own;
- 'seconds': the wall time of each part.
tests/suite/test_meshes.py launches it with XLA_FLAGS=--xla_force_host_platform_device_count=8.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from suite import optim, partition  # noqa: E402
from suite.checkpoint import Checkpointer  # noqa: E402
from suite.domain import ModelOptions  # noqa: E402
from suite.trainer import Trainer  # noqa: E402
from tests.suite import domain_cases  # noqa: E402

STEPS = 4
SAVE_AT = 2
BATCH = 8
MESHES = ('data:8', 'data:2,fsdp:2,model:2')


def _setup(mesh):
  domain, shape, workload = domain_cases.case('vision')
  shape = shape.replace(num_encoder_layers=1)  # one block: all the layouts, half the compile
  model = domain.build_model(shape, ModelOptions(dtype='float32', dropout_rate=0.1))
  tx, _ = optim.make_optimizer(domain.optimizers['adamw']())
  trainer = Trainer(model, tx, mesh=mesh, rules=domain.logical_axis_rules)
  batches = [domain.synthetic_batch(shape, workload, BATCH, seed=i) for i in range(STEPS)]
  return trainer, batches


def _mlp_kernel(params):
  """The first encoder block's MLP input kernel [d_model, d_ff]."""
  return next(leaf for path, leaf in jax.tree_util.tree_leaves_with_path(params)
              if jax.tree_util.keystr(path).endswith("['mlp']['wi_kernel']"))


def _layout(x):
  return {'spec': [str(a) for a in x.sharding.spec],
          'shard_shape': list(x.addressable_shards[0].data.shape)}


def train(mesh, workdir=None):
  """STEPS steps from a fresh state on `mesh`; with a workdir, the state after SAVE_AT steps
  is checkpointed there (and returned as host arrays)."""
  trainer, batches = _setup(mesh)
  state, losses, norms, saved = trainer.init(seed=0), [], [], None
  for step, batch in enumerate(batches, start=1):
    state, metrics = trainer.train_step(state, batch)
    metrics = partition.to_host(metrics)
    losses.append(float(metrics['loss']))
    norms.append(float(metrics['grad_norm']))
    if workdir and step == SAVE_AT:
      with Checkpointer(workdir, asynchronous=False) as checkpointer:
        checkpointer.save(step, state, {'batches_consumed': step})
      saved = jax.device_get(state)
  placed = partition.shard_batch(batches[0], trainer.mesh)['image']
  return saved, {
      'losses': losses, 'grad_norms': norms,
      'params': {jax.tree_util.keystr(path): np.asarray(x).ravel().tolist()
                 for path, x in jax.tree_util.tree_leaves_with_path(
                     jax.device_get(state.params))},
      'kernel': _layout(_mlp_kernel(state.params)),
      'batch_shard_shape': list(placed.addressable_shards[0].data.shape),
  }


def restore(mesh, workdir, saved):
  """The checkpoint of `train(..., workdir)` restored on `mesh`, and the steps after it."""
  trainer, batches = _setup(mesh)
  with Checkpointer(workdir) as checkpointer:
    state, record = checkpointer.restore(trainer.abstract_state)
  leaves = jax.tree_util.tree_leaves(state)
  out = {
      'step': int(np.asarray(saved.step)), 'record': record,
      'equal': all(np.array_equal(np.asarray(got), want) for got, want in zip(
          leaves, jax.tree_util.tree_leaves(saved), strict=True)),
      'on_target_shardings': all(got.sharding == want for got, want in zip(
          leaves, jax.tree_util.tree_leaves(trainer.state_shardings), strict=True)),
      'devices': sorted({d.id for leaf in leaves for d in leaf.sharding.device_set}),
      'kernel': _layout(_mlp_kernel(state.params)),
      'losses': [],
  }
  for batch in batches[SAVE_AT:]:
    state, metrics = trainer.train_step(state, batch)  # donates the restored state
    out['losses'].append(float(partition.to_host(metrics)['loss']))
  return out


def main():
  devices = jax.devices()
  assert len(devices) == 8, devices
  workdir = os.path.join(sys.argv[1], 'checkpoints')
  out, saved = {'train': {}, 'seconds': {}}, None
  for name, mesh in [('1', partition.make_mesh(devices=devices[:1])),
                     *[(text, partition.make_mesh(text)) for text in MESHES]]:
    start = time.perf_counter()
    state, out['train'][name] = train(mesh, workdir if name == 'data:8' else None)
    saved = saved if state is None else state
    out['seconds'][name] = round(time.perf_counter() - start, 1)
  start = time.perf_counter()
  out['restore'] = restore(partition.make_mesh('fsdp:4', devices=devices[:4]), workdir, saved)
  out['seconds']['restore'] = round(time.perf_counter() - start, 1)
  print(json.dumps(out))


if __name__ == '__main__':
  main()
