"""Multi-host: two processes on this machine form one JAX distributed system over loopback and
train like one process; joining is decided from flags and the launcher's environment; a join
that cannot happen is one error line."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from suite import distributed, journal
from suite.metrics_log import read_metrics

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SCRIPT = os.path.join(HERE, 'core_two_process.py')
TIMEOUT_S = 150


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _env(devices: int) -> dict:
  return dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2',
              XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """Processes 0 and 1 of a 2x2-device system (mesh data:2,fsdp:2), and the one-device
  reference, all at once; every child is killed if any fails or the time runs out."""
  shared = tmp_path_factory.mktemp('two_process')
  alone = tmp_path_factory.mktemp('one_process')
  address = f'127.0.0.1:{_free_port()}'
  commands = {
      **{i: ([SCRIPT, f'--coordinator_address={address}', '--num_processes=2',
              f'--process_id={i}', f'--workdir={shared}', '--mesh=data:2,fsdp:2',
              '--distributed_timeout=60'], 2) for i in (0, 1)},
      'reference': ([SCRIPT, '--distributed=off', f'--workdir={alone}'], 1),
  }
  children = {name: subprocess.Popen([sys.executable, *args], cwd=ROOT, env=_env(devices),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for name, (args, devices) in commands.items()}
  out = {}
  try:
    for name, child in children.items():
      stdout, stderr = child.communicate(timeout=TIMEOUT_S)
      assert child.returncode == 0, f'{name} exited {child.returncode}:\n{stderr[-3000:]}'
      lines = stdout.strip().splitlines()
      out[name] = {**json.loads(lines[-1]), 'stdout_lines': len(lines), 'stderr': stderr}
  finally:
    for child in children.values():
      if child.poll() is None:
        child.kill()
        child.wait()
  return out, shared, alone


def _losses(workdir) -> list[float]:
  return [r['train/loss'] for r in read_metrics(workdir, 'train')]


def test_two_processes_train_to_the_losses_and_params_of_one(runs):
  out, shared, alone = runs
  first, second, reference = out[0], out[1], out['reference']
  for index, run in enumerate((first, second)):
    assert run['joined'] and run['process_index'] == index and run['process_count'] == 2
    assert (run['local_devices'], run['devices']) == (2, 4)
    assert run['mesh'] == 'data:2,fsdp:2,model:1'
    assert run['shard'] == [index, 2, 8]  # its half of every global batch of 16
  assert not reference['joined'] and reference['process_count'] == 1
  assert reference['shard'] == [0, 1, 16]
  for run in (first, second, reference):
    assert run['statuses'] == ['ok', 'ok'] and run['steps'] == [6, 8]
    assert run['resumed_from'] == 6  # the second fit restored the step-6 checkpoint
  # The kernel's embed dimension (8) is split over fsdp inside each process.
  assert first['kernel_spec'][0] == 'fsdp' and first['kernel_local_shape'] == [4, 32]
  assert reference['kernel_local_shape'] == [8, 32]
  # One curve of 8 steps in each workdir (written by process 0), equal within float rounding.
  losses, want = _losses(shared), _losses(alone)
  assert len(losses) == len(want) == 8 and want[-1] < want[0]
  np.testing.assert_allclose(losses, want, rtol=1e-5)
  assert first['params'] == second['params']
  for got, expected in zip(first['params'], reference['params'], strict=True):
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_process_zero_alone_writes_the_journal_and_progress(runs):
  out, shared, _ = runs
  assert out[0]['stdout_lines'] == out[1]['stdout_lines'] == 1  # gloo's lines go to stderr
  assert '[Gloo]' in out[0]['stderr']
  records = journal.read(shared)
  assert [r['process'] for r in records] == [0]
  assert out[0]['journal'] == out[1]['journal'] == records  # both read what process 0 wrote
  assert 'step 8/8' in out[0]['stderr'] and 'step 8/8' not in out[1]['stderr']
  steps = sorted(int(d) for d in os.listdir(shared / 'checkpoints') if d.isdigit())
  assert steps == [3, 6, 8]  # saved by both processes through orbax


def test_a_join_that_cannot_happen_is_one_error_line(tmp_path):
  port = _free_port()  # nobody listens: process 1 waits for a coordinator that never comes
  proc = subprocess.run(
      [sys.executable, '-m', 'suite.bench', f'--coordinator_address=127.0.0.1:{port}',
       '--num_processes=2', '--process_id=1', '--distributed_timeout=2'],
      cwd=ROOT, env=_env(1), capture_output=True, text=True, timeout=120)
  errors = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
  assert proc.returncode == 1, proc.stderr[-2000:]
  assert len(errors) == 1 and f'127.0.0.1:{port}' in errors[0]
  assert '--distributed_timeout=2' in errors[0] and 'reachable' in errors[0]
  assert 'Check failure' not in proc.stderr  # stopped before XLA's own abort


@pytest.mark.parametrize('environ, launcher', [
    ({}, None),
    ({'SLURM_NTASKS': '8', 'SLURM_PROCID': '0'}, None),  # a batch script, not an srun step
    ({'SLURM_STEP_NUM_TASKS': '1'}, None),
    ({'SLURM_STEP_NUM_TASKS': '8'}, 'slurm'),
    ({'OMPI_COMM_WORLD_SIZE': '4'}, 'openmpi'),
    ({'TPU_WORKER_HOSTNAMES': 'w-0'}, None),
    ({'TPU_WORKER_HOSTNAMES': 'w-0,w-1,w-2,w-3'}, 'tpu'),
])
def test_launchers_are_detected_from_the_environment(environ, launcher):
  assert distributed.detect_launcher(environ) == launcher


def test_when_to_join():
  auto = distributed.Settings()
  assert not distributed.should_join(auto, {})
  assert distributed.should_join(auto, {'SLURM_STEP_NUM_TASKS': '2'})
  assert distributed.should_join(auto, {distributed.COORDINATOR_ENV: '10.0.0.1:1234'})
  given = distributed.Settings(coordinator_address='10.0.0.1:1234', num_processes=2,
                               process_id=1)
  assert distributed.should_join(given, {})
  assert given.given == {'coordinator_address': '10.0.0.1:1234', 'num_processes': 2,
                         'process_id': 1}
  assert distributed.should_join(distributed.Settings(mode='on'), {})
  assert not distributed.should_join(distributed.Settings(mode='off'),
                                     {'SLURM_STEP_NUM_TASKS': '2'})


@pytest.mark.parametrize('fields, message', [
    (dict(coordinator_address='localhost'), 'host:port'),
    (dict(num_processes=2, process_id=2), 'valid are 0 .. 1'),
    (dict(mode='sometimes'), 'valid are auto, on, off'),
])
def test_bad_settings_say_what_to_give(fields, message):
  with pytest.raises(distributed.DistributedError, match=message):
    distributed.Settings(**fields)


def test_one_process_reads_all_the_data_and_leads():
  assert distributed.input_shard(12) == distributed.InputShard(0, 1, 12)
  assert distributed.is_lead() and distributed.process_count() == 1
