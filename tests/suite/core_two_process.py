"""One process of a two-process training run on this machine, or the one-process reference.

tests/suite/test_distributed.py starts it twice with
`--coordinator_address=127.0.0.1:PORT --num_processes=2 --process_id=0|1` (each process with
two CPU devices: one JAX distributed system of 4 devices over loopback, gloo collectives), and
once with `--distributed=off` on one device. Every run trains the toy classifier through the
shared loop (`suite.loop.fit`) on the same global batches: 6 steps with a checkpoint at step
3 and 6, then a second `fit` in the same workdir that resumes from step 6 and goes on to 8
(the distributed processes save and restore that checkpoint together). Each process feeds
only its own rows of a global batch (`suite.distributed.input_shard`), appends a journal
record and prints one JSON line: its losses, the final params (gathered whole), how the
mesh and batch were laid out, and the journal it reads back.
"""

import itertools
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from absl import flags  # noqa: E402

from suite import distributed  # noqa: E402

GLOBAL_BATCH = 16
STEPS, MORE_STEPS = 6, 8


def main(argv):
  flag_values = flags.FlagValues()
  distributed.define_flags(flag_values)
  flags.DEFINE_string('workdir', None, 'Where to train.', flag_values=flag_values)
  flags.DEFINE_string('mesh', None, 'The mesh (suite.partition.parse_mesh text).',
                      flag_values=flag_values)
  flag_values(argv)
  joined = distributed.initialize_from_flags(flag_values)  # before jax starts its backends

  import jax
  import numpy as np
  from jax.experimental import multihost_utils

  from suite import journal, loop, optim, partition
  from tests.suite.core_toy import ToyModel, make_batch

  mesh = partition.make_mesh(flag_values.mesh)
  shard = distributed.input_shard(GLOBAL_BATCH, mesh)
  rows = slice(shard.index * shard.batch_size, (shard.index + 1) * shard.batch_size)

  def train_data(start):
    for i in itertools.count(start):
      yield {k: v[rows] for k, v in make_batch(i, batch_size=GLOBAL_BATCH).items()}

  optimizer = optim.OptimizerConfig(schedule='constant', learning_rate=0.05, warmup_steps=0,
                                    min_dim_size_to_factor=8)
  workdir = flag_values.workdir
  common = dict(log_every=1, checkpoint_every=3, tensorboard=False, seed=0)
  first = loop.fit(ToyModel(), optimizer, train_data, loop.LoopConfig(STEPS, **common), workdir,
                   mesh=mesh)
  second = loop.fit(ToyModel(), optimizer, train_data, loop.LoopConfig(MORE_STEPS, **common),
                    workdir, mesh=mesh)
  params = multihost_utils.process_allgather(second.state.params, tiled=True)
  kernel = second.state.params['Dense_0']['kernel']
  journal.append(workdir, {'run_id': 'two-process', 'domain': 'toy', 'stage': 'pretrain',
                           'task': 'toy', 'status': 'ok', 'metrics': {},
                           'process': jax.process_index()})
  distributed.barrier('journal written')
  print(json.dumps({
      'joined': joined,
      'process_index': jax.process_index(),
      'process_count': jax.process_count(),
      'local_devices': jax.local_device_count(),
      'devices': jax.device_count(),
      'mesh': partition.mesh_text(mesh),
      'shard': [shard.index, shard.count, shard.batch_size],
      'statuses': [first.status, second.status],
      'resumed_from': second.resumed_from,
      'steps': [first.step, second.step],
      'params': [np.asarray(x).tolist() for x in jax.tree_util.tree_leaves(params)],
      'kernel_spec': [str(a) for a in kernel.sharding.spec],
      'kernel_local_shape': list(kernel.addressable_shards[0].data.shape),
      'journal': journal.read(workdir),
  }), flush=True)


if __name__ == '__main__':
  main(sys.argv)
