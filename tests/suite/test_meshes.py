"""ViT training on 8-device meshes with data, fsdp and model axes equals one device's, and a
checkpoint saved on one mesh restores on another (tests/suite/mesh_multidevice.py, one
subprocess for all of it). T5's counterpart is tests/text/test_sharding.py."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MESHES = ('data:8', 'data:2,fsdp:2,model:2')


@pytest.fixture(scope='module')
def out(tmp_path_factory):
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8',
             JAX_PLATFORMS='cpu')
  workdir = tmp_path_factory.mktemp('meshes')
  proc = subprocess.run([sys.executable, os.path.join(HERE, 'mesh_multidevice.py'),
                         str(workdir)], env=env, cwd=ROOT, capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


def test_vit_training_on_8_device_meshes_follows_one_device(out):
  reference = out['train']['1']
  assert min(reference['grad_norms']) > 0 and len(set(reference['losses'])) == 4
  for mesh in MESHES:
    run = out['train'][mesh]
    np.testing.assert_allclose(run['losses'], reference['losses'], rtol=2e-5, err_msg=mesh)
    np.testing.assert_allclose(run['grad_norms'], reference['grad_norms'], rtol=1e-4,
                               err_msg=mesh)
    assert run['params'].keys() == reference['params'].keys()
    for name, want in reference['params'].items():
      if name.endswith("['key_bias']"):
        # Its gradient is 0 in exact arithmetic (the softmax over keys ignores q.b_k), so
        # AdamW's normalised update turns float noise, which differs between layouts, into
        # steps: compare only that it stayed at noise level (zero-initialised).
        assert np.max(np.abs(run['params'][name])) < 1e-3, f'{name} on {mesh}'
        continue
      np.testing.assert_allclose(run['params'][name], want, rtol=1e-4, atol=1e-5,
                                 err_msg=f'{name} on {mesh}')
  # The layouts really differ: the MLP kernel [32, 64] is whole on data:8 and split over fsdp
  # (d_model) and model (d_ff) on the 3-axis mesh; 8 images go 1 to a device, 2 per data x
  # fsdp slice.
  split = out['train']['data:2,fsdp:2,model:2']
  assert split['kernel'] == {'spec': ['fsdp', 'model'], 'shard_shape': [16, 32]}
  assert out['train']['data:8']['kernel']['shard_shape'] == [32, 64]
  assert out['train']['data:8']['batch_shard_shape'][0] == 1
  assert split['batch_shard_shape'][0] == 2


def test_a_state_saved_on_data8_restores_on_fsdp4_and_trains_on(out):
  restore = out['restore']
  assert restore['step'] == 2 and restore['record'] == {'batches_consumed': 2}
  assert restore['equal'] and restore['on_target_shardings']
  assert restore['devices'] == [0, 1, 2, 3]  # 4 of the 8 devices
  # d_model (32) over the 4-way fsdp axis, d_ff whole.
  assert restore['kernel'] == {'spec': ['fsdp', 'model'], 'shard_shape': [8, 64]}
  # The resumed steps give the losses the uninterrupted data:8 run had at those steps.
  np.testing.assert_allclose(restore['losses'], out['train']['data:8']['losses'][2:],
                             rtol=2e-5)
