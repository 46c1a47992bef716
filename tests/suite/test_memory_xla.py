"""The training-memory estimate (suite.costs.train_memory) within 25% of XLA's memory analysis
of the compiled train step, for a T5 and a ViT shape, without remat (layers unrolled) and
with full remat (layers under scan), on one CPU device and on 8 (data:2,fsdp:2,model:2).

tests/suite/memory_multidevice.py says what is compared and how the steps are built. The
parameters and optimizer state the estimate counts per device must equal what the trainer
holds exactly (up to optax's per-tensor counters and placeholders).
"""

import json
import os
import subprocess
import sys

import pytest

from tests.suite import memory_multidevice

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOLERANCE = 0.25


@pytest.fixture(scope='module')
def measured() -> dict:
  """{'one': ..., 'eight': ...}: every case measured in this process (one CPU device) while a
  process with 8 CPU devices measures them on data:2,fsdp:2,model:2."""
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8',
             JAX_PLATFORMS='cpu')
  process = subprocess.Popen([sys.executable, '-m', 'tests.suite.memory_multidevice'], env=env,
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
  try:
    one = {case: memory_multidevice.measure(case) for case in memory_multidevice.CASES}
    stdout, stderr = process.communicate(timeout=600)
  finally:
    if process.poll() is None:
      process.kill()
  assert process.returncode == 0, stderr[-3000:]
  return {'one': one, 'eight': json.loads(stdout.strip().splitlines()[-1])}


def _check(case: str, measured: dict) -> None:
  """The estimate's parameters and optimizer state are the trainer's; its total is within
  TOLERANCE of XLA's, and activations are most of it."""
  estimate = measured['estimate']
  where = (f'{case} on {measured["mesh"]}: estimate {estimate["total_bytes"] / 2**20:.2f} MiB '
           f'(activations {estimate["activations_bytes"] / 2**20:.2f}), XLA '
           f'{measured["xla_bytes"] / 2**20:.2f} MiB, ratio {measured["ratio"]:.3f}')
  print(where)
  assert estimate['params_bytes'] == measured['params_bytes'], where
  # optax adds a step count and, per tensor, one-element placeholders for the statistics it
  # does not keep (a factored tensor's full one, an unfactored tensor's row and column).
  slack = 8 * measured['param_leaves'] + 64
  assert 0 <= measured['optimizer_bytes'] - estimate['optimizer_bytes'] <= slack, where
  # The check is about activations: they are most of the memory in every case.
  assert estimate['activations_bytes'] > 0.5 * estimate['total_bytes'], where
  assert abs(measured['ratio'] - 1) < TOLERANCE, where


@pytest.mark.parametrize('case', memory_multidevice.CASES)
def test_estimate_matches_xla_on_one_device(case, measured):
  assert measured['one'][case]['mesh'] == {'data': 1, 'fsdp': 1, 'model': 1}
  _check(case, measured['one'][case])


@pytest.mark.parametrize('case', memory_multidevice.CASES)
def test_estimate_matches_xla_on_eight_devices(case, measured):
  assert measured['eight'][case]['mesh'] == {'data': 2, 'fsdp': 2, 'model': 2}
  _check(case, measured['eight'][case])


def test_remat_and_sharding_shrink_the_estimate(measured):
  """What the estimate says remat and the mesh save, XLA saves too (same direction; each
  case's ratio is checked above)."""
  one, eight = measured['one'], measured['eight']
  for domain in memory_multidevice.SHAPES:
    none, full = f'{domain}/none', f'{domain}/full'
    for cases in (one, eight):
      assert cases[full]['xla_bytes'] < cases[none]['xla_bytes']
      assert cases[full]['estimate']['total_bytes'] < cases[none]['estimate']['total_bytes']
    assert eight[none]['xla_bytes'] < one[none]['xla_bytes'] / 3
    assert eight[none]['estimate']['total_bytes'] < one[none]['estimate']['total_bytes'] / 3
