"""T5 training on sharded CPU meshes (data, fsdp and model parallel) equals one device's."""

import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


MESHES = ('data:8', 'data:2,fsdp:2,model:2')


def test_t5_training_on_sharded_meshes_matches_one_device():
  """Meshes of 8 devices, data parallel alone and data x fsdp x model, give the 1-device
  losses, gradients and params.

  Covers the network's custom gradients where the batch and the vocabulary are split (the
  attention-bias batch sum, which takes another path with several devices, the tied head's
  table gradient, the cross-entropy backward) against a process that has one device.
  """
  reference, sharded = _run({1: ['data:1'], 8: MESHES})  # both processes at once
  reference = reference['data:1']
  assert reference.pop('mesh') == {'data': 1, 'fsdp': 1, 'model': 1}
  assert [sharded[m].pop('mesh') for m in MESHES] == [
      {'data': 8, 'fsdp': 1, 'model': 1}, {'data': 2, 'fsdp': 2, 'model': 2}]
  for mesh in MESHES:
    for name in reference:
      one, split = reference[name], sharded[mesh][name]
      where = f'{name} on {mesh}'
      assert one['losses'][-1] < one['losses'][0], name
      np.testing.assert_allclose(split['losses'], one['losses'], rtol=2e-5, err_msg=where)
      np.testing.assert_allclose(split['grad_norms'], one['grad_norms'], rtol=1e-4,
                                 err_msg=where)
      for got, want in zip(split['params'], one['params'], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=where)
  # The embedding table's vocabulary really is split over the 2-way model axis and its
  # d_model over the 2-way fsdp axis; on data:8 it is whole on every device.
  for name in reference:
    split = sharded['data:2,fsdp:2,model:2'][name]
    assert split['embedder_spec'] == ['model', 'fsdp'], split['embedder_spec']
    assert split['embedder_shard_shape'] == [32, 8]
    assert sharded['data:8'][name]['embedder_shard_shape'] == [64, 16]
    assert reference[name]['embedder_shard_shape'] == [64, 16]


def _run(meshes_by_devices: dict[int, list[str]]) -> list[dict]:
  """The script's JSON for each entry, run in fresh processes (all at once), each on a CPU
  platform of that many devices, on those meshes."""
  processes = []
  for devices, meshes in meshes_by_devices.items():
    env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
               JAX_PLATFORMS='cpu')
    processes.append(subprocess.Popen(
        [sys.executable, os.path.join(HERE, 't5_multidevice.py'), *meshes], env=env, cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  outputs = []
  for process in processes:
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    outputs.append(json.loads(stdout.strip().splitlines()[-1]))
  return outputs
