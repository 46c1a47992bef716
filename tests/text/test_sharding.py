"""T5 training on sharded CPU meshes (data and model parallel) equals training on one device."""

import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def test_t5_training_on_sharded_meshes_matches_one_device():
  """A 2x2 mesh (data and model parallel) gives the 1-device losses, gradients and params.

  Covers the network's custom gradients where the batch and the vocabulary are split (the
  attention-bias batch sum, which takes another path with several devices, the tied head's
  table gradient, the cross-entropy backward) against a process that has one device.
  """
  reference = _run(devices=1, model_parallelism=1)
  sharded = _run(devices=4, model_parallelism=2)
  assert (reference.pop('mesh'), sharded.pop('mesh')) == (
      {'data': 1, 'model': 1}, {'data': 2, 'model': 2})
  for name in reference:
    one, split = reference[name], sharded[name]
    assert one['losses'][-1] < one['losses'][0], name
    np.testing.assert_allclose(split['losses'], one['losses'], rtol=2e-5, err_msg=name)
    np.testing.assert_allclose(split['grad_norms'], one['grad_norms'], rtol=1e-4, err_msg=name)
    for got, want in zip(split['params'], one['params'], strict=True):
      np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=name)
    # The embedding table's vocabulary really is split over the 2-way model axis.
    assert split['embedder_spec'][0] == 'model', split['embedder_spec']
    assert (split['embedder_shard_shape'], one['embedder_shard_shape']) == ([32, 16], [64, 16])


def _run(devices: int, model_parallelism: int) -> dict:
  """The script's JSON, run in a fresh process on a CPU platform of `devices` devices."""
  env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
             JAX_PLATFORMS='cpu')
  proc = subprocess.run(
      [sys.executable, os.path.join(HERE, 't5_multidevice.py'), str(model_parallelism)],
      env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])
