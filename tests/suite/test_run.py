"""`python -m suite.run` end to end on a tiny two-domain config (tests/suite/run_config.py):
the plan, a run through the journal, resume after SIGKILL, failed and diverged units, bad input.
Each run is a subprocess, as a user starts it."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from suite import journal

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, 'tests', 'suite', 'run_config.py')


def _env(cache):
  return {**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3', 'SHAPEBENCH_CACHE': str(cache),
          'JAX_PLATFORMS': 'cpu'}


def _command(workdir, *args, config=CONFIG):
  return [sys.executable, '-m', 'suite.run', f'--config={config}', f'--workdir={workdir}',
          *args]


def _run(cache, workdir, *args, config=CONFIG, timeout=300):
  return subprocess.run(_command(workdir, *args, config=config), cwd=ROOT, env=_env(cache),
                        capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope='module')
def cache(tmp_path_factory):
  return tmp_path_factory.mktemp('cache')


@pytest.fixture(scope='module')
def full_run(cache, tmp_path_factory):
  """One uninterrupted run of the tiny config, both domains, in two workers (the default on
  two cores, named so that the run is the same on any machine)."""
  workdir = tmp_path_factory.mktemp('full')
  done = _run(cache, workdir, '--workers=2')
  return workdir, done


def _comparable(record):
  """What must not change between an interrupted and an uninterrupted run (timings aside)."""
  metrics = {k: v for k, v in record['metrics'].items()
             if not k.startswith('train/') and record['stage'] != 'bench'}
  return record['status'], metrics, record.get('best_step'), record.get('checkpoint_steps')


def test_dry_run_prints_the_plan_with_costs_and_estimates(cache, tmp_path):
  done = _run(cache, tmp_path / 'w', '--dry_run', config=f'{CONFIG}:canonical')
  assert done.returncode == 0, done.stderr[-3000:]
  plan = json.loads(done.stdout)
  keys = [u['unit'] for u in plan['units']]
  assert 'text/deep_narrow/x2/evaluate/embedded_sst_v1' in keys
  assert any(k.startswith('vision/canonical/') for k in keys)
  for unit in plan['units']:
    assert unit['params'] > 0 and unit['train_flops_per_example'] > 0
    assert unit['estimated_s'] >= 0
  order = {k: i for i, k in enumerate(keys)}
  assert all(order[u['init']] < order[u['unit']] for u in plan['units'] if u['init'])
  assert 'estimate_tflops_per_s' in plan['method']
  assert not (tmp_path / 'w' / 'results.jsonl').exists()  # a dry run runs nothing


def test_a_run_journals_every_unit_of_both_domains(full_run):
  workdir, done = full_run
  assert done.returncode == 0, done.stderr[-3000:]
  records = journal.read(workdir)
  units = {r['unit']: r for r in records}
  assert len(units) == len(records) == 8 and all(r['status'] == 'ok' for r in records)
  evaluate = units['text/deep_narrow/x1/evaluate/embedded_sst_v1']
  assert evaluate['checkpoint_steps'] == [2, 4] and evaluate['best_step'] in (2, 4)
  assert 'last/accuracy' in evaluate['metrics'] and evaluate['headline']['metric'] == 'accuracy'
  assert evaluate['init'] == 'text/deep_narrow/x1/finetune/embedded_sst_v1'
  bench = units['vision/deep_narrow/x1/bench/bench']
  assert bench['role'] == 'cost' and bench['metrics']['steps_per_s'] > 0
  assert 'images_per_s' in bench['metrics']
  fewshot = units['vision/deep_narrow/x1/fewshot/embedded_glyphs_fewshot_v1']
  assert 'fewshot_pixels/embedded_glyphs_fewshot_v1/1shot' in fewshot['metrics']
  summary = json.loads(done.stdout)
  assert summary['units'] == 8 and summary['not_ok'] == 0
  # Benches first in this process, then the two worker processes, whose progress lines name
  # the worker and count the whole rest of the plan.
  assert '[2/8' in done.stderr and 'ETA' in done.stderr
  assert re.search(r'\[w[12] 6/6 \|', done.stderr), done.stderr[-2000:]
  assert re.search(r'\[w1 ', done.stderr) and re.search(r'\[w2 ', done.stderr)
  assert '8 units: 8 ok, 0 not ok' in done.stderr
  assert os.listdir(os.path.join(workdir, 'logs'))


def _alive(pattern: str) -> list[str]:
  out = subprocess.run(['pgrep', '-f', '--', pattern], capture_output=True, text=True)
  return out.stdout.split()


def test_sigkill_halfway_then_rerun_equals_an_uninterrupted_run(cache, full_run, tmp_path):
  """The default mode on two cores: benches here, then two worker processes taking chains of
  units; killing this process kills its workers too (no orphan writes to the journal while the
  rerun runs)."""
  full_dir, _ = full_run
  workdir = tmp_path / 'killed'
  process = subprocess.Popen(_command(workdir, '--workers=2'), cwd=ROOT, env=_env(cache),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 240
  while time.time() < deadline and process.poll() is None:
    if len(journal.read(workdir)) >= 3:  # the benches, and a domain's first training unit
      break
    time.sleep(0.2)
  assert process.poll() is None, 'the run ended before it could be killed'
  assert _alive(f'--workdir={workdir} .*--worker_session'), 'no workers were running'
  process.send_signal(signal.SIGKILL)
  process.wait()
  time.sleep(1.0)
  assert not _alive(f'--workdir={workdir}'), 'a worker outlived its killed parent'
  killed_at = len(journal.read(workdir))
  assert killed_at < 8
  done = _run(cache, workdir)
  assert done.returncode == 0, done.stderr[-3000:]
  records = journal.read(workdir)
  ok = [r['run_id'] for r in records if r['status'] == 'ok']
  assert len(ok) == len(set(ok)) == 8
  expected = {r['run_id']: _comparable(r) for r in journal.read(full_dir)}
  got = {r['run_id']: _comparable(r) for r in records}
  assert got.keys() == expected.keys()
  for run_id, (status, metrics, best, steps) in got.items():
    assert (status, best, steps) == expected[run_id][0:1] + expected[run_id][2:]
    assert metrics == pytest.approx(expected[run_id][1], rel=1e-4, abs=1e-6), run_id


def test_diverged_and_failed_units_are_recorded_and_the_plan_goes_on(cache, tmp_path):
  done = _run(cache, tmp_path, config=f'{CONFIG}:broken')
  records = {r['unit'].split('/')[3]: r for r in journal.read(tmp_path)}
  assert records['upstream']['status'] == 'diverged', records['upstream']
  assert records['fewshot']['status'] == 'failed'
  assert 'init unit' in records['fewshot']['error']
  assert records['probe_without_params']['status'] == 'failed'
  assert 'ValueError' in records['probe_without_params']['error']
  assert done.returncode == 3  # the number of units that did not finish ok


@pytest.mark.parametrize('args, config, message', [
    (['--strategies=deep_narow'], CONFIG, "unknown strategy 'deep_narow'; closest: deep_narrow"),
    ([], f'{CONFIG}:bad_task', 'embedded_glyphs_fewshot_v1'),
    (['--domain=txt'], CONFIG, 'closest: text'),
    (['--dry_run', '--rerun'], CONFIG, 'conflict'),
    (['--config.scales=(1e9,)'], CONFIG, 'out of reach'),
    ([], 'embeded', "unknown config 'embeded'; closest: embedded"),
    (['--mesh=data:3'], CONFIG, '--mesh=data:3: mesh data:3 does not fit 1 device: axis '
                                'data:3 does not divide the 1 device; would fit: data:1'),
    (['--mesh=dat:2'], CONFIG, "unknown axis 'dat' in 'dat:2'; the axes are data, fsdp, model"),
])
def test_bad_input_is_one_error_line_before_any_work(cache, tmp_path, args, config, message):
  done = _run(cache, tmp_path / 'w', *args, config=config)
  assert done.returncode == 1
  lines = [line for line in done.stderr.splitlines() if line.startswith('error:')]
  assert len(lines) == 1 and message in lines[0], done.stderr[-2000:]
  assert not (tmp_path / 'w' / 'results.jsonl').exists()


# Text only, pre-training only: a few seconds of training (the run test's text shape).
MESH_CONFIG = """
import ml_collections

def get_config(arg=None):
  config = ml_collections.ConfigDict()
  config.name = 'test_mesh'
  config.seeds = (0,)
  config.strategies = ('deep_narrow',)
  config.scales = (1.0,)
  config.budget_kind = 'params'
  config.model = dict(dtype='float32', dropout_rate=0.1)
  config.mesh = ml_collections.config_dict.placeholder(str)  # None, or mesh text
  pretrain = dict(stage='pretrain', task='embedded_pretrain_v1', steps=4, batch_size=8,
                  max_eval_examples=16, eval_batch_size=8, role='upstream',
                  loop=dict(log_every=1, tensorboard=False, async_checkpoints=False))
  config.domains = dict(text=dict(
      base='tiny', size_to_task='embedded_pretrain_v1',
      base_overrides=dict(num_encoder_layers=1, num_decoder_layers=1, d_model=32, d_ff=64,
                          num_heads=2, d_kv=16),
      workload=dict(input_length=32, target_length=8), order=['pretrain'],
      recipe=dict(pretrain=pretrain)))
  return config
"""


def test_a_run_on_a_3_axis_mesh_of_8_devices_gives_one_devices_losses(cache, tmp_path):
  """`suite.run --quick --domain=text --mesh=data:2,fsdp:2,model:2` on 8 CPU devices trains
  as on one device: the same pre-training losses at every step and the same eval metrics
  (relative difference below 1e-3); the journal names each run's mesh, the run_id does not."""
  config = tmp_path / 'mesh_config.py'
  config.write_text(MESH_CONFIG)
  args = ('--quick', '--domain=text')
  eight_devices = {**_env(cache), 'XLA_FLAGS': '--xla_force_host_platform_device_count=8'}
  # Both at once: each compiles on one core most of the time.
  processes = {
      'one': subprocess.Popen(_command(tmp_path / 'one', *args, config=str(config)), cwd=ROOT,
                              env=_env(cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True),
      'eight': subprocess.Popen(
          _command(tmp_path / 'eight', *args, '--mesh=data:2,fsdp:2,model:2',
                   config=str(config)), cwd=ROOT, env=eight_devices, stdout=subprocess.PIPE,
          stderr=subprocess.PIPE, text=True)}
  runs = {}
  for name, process in processes.items():
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    (record,) = journal.read(tmp_path / name)
    log = [json.loads(line) for line in open(
        tmp_path / name / 'checkpoints' / record['run_id'] / 'metrics.jsonl')]
    runs[name] = record, [r['train/loss'] for r in log if 'train/loss' in r]
  (one_record, one_losses), (eight_record, eight_losses) = runs['one'], runs['eight']
  assert (one_record['mesh'], eight_record['mesh']) == (
      'data:1,fsdp:1,model:1', 'data:2,fsdp:2,model:2')
  assert one_record['run_id'] == eight_record['run_id']
  assert len(one_losses) == 4 and one_losses[-1] < one_losses[0]
  np.testing.assert_allclose(eight_losses, one_losses, rtol=1e-3)
  assert set(eight_record['metrics']) == set(one_record['metrics'])
  for name, value in one_record['metrics'].items():
    assert eight_record['metrics'][name] == pytest.approx(value, rel=1e-3), name


def test_the_config_mesh_field_is_checked_like_the_flag(cache, tmp_path):
  config = tmp_path / 'mesh_config.py'
  config.write_text(MESH_CONFIG)
  done = _run(cache, tmp_path / 'w', '--config.mesh=model:2', '--dry_run', config=str(config))
  assert done.returncode == 1
  lines = [line for line in done.stderr.splitlines() if line.startswith('error:')]
  assert lines == ['error: --config.mesh=model:2: mesh model:2 does not fit 1 device: axis '
                   'model:2 does not divide the 1 device; would fit: data:1'], done.stderr[-2000:]


def test_unwritable_workdir_and_incompatible_journal_are_errors(cache, tmp_path):
  blocker = tmp_path / 'file'
  blocker.write_text('')
  done = _run(cache, blocker / 'w')
  assert done.returncode == 1 and 'not writable' in done.stderr
  old = tmp_path / 'old'
  old.mkdir()
  (old / 'results.jsonl').write_text(json.dumps(
      {'schema': 0, 'run_id': 'x', 'domain': 'text', 'stage': 'pretrain', 'task': 't',
       'status': 'ok', 'metrics': {}}) + '\n')
  done = _run(cache, old)
  assert done.returncode == 1 and 'incompatible version' in done.stderr


def test_a_second_run_on_a_workdir_in_use_is_refused(cache, tmp_path):
  """While one process holds the workdir's lock (as a running suite.run does), a run there is
  one error line naming the holder; once the holder is gone, the lock is free again."""
  from suite import run
  holder = subprocess.Popen(
      [sys.executable, '-c', 'import sys; from suite import run; run._lock_workdir(sys.argv[1]); '
       'print("held", flush=True); sys.stdin.read()', str(tmp_path)],
      cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == 'held'
    done = _run(cache, tmp_path, '--quick')
    assert done.returncode == 1, done.stderr
    assert f'--workdir={tmp_path} is in use by another suite.run (pid {holder.pid}' in done.stderr
    assert not (tmp_path / journal.FILENAME).exists()
    with pytest.raises(run.flagcheck.FlagError, match='in use by another suite.run'):
      run._lock_workdir(str(tmp_path))
  finally:
    holder.kill()
    holder.wait()
  run._lock_workdir(str(tmp_path))  # the holder died without unlocking: free all the same
  run._HELD_LOCKS.pop().close()


def test_plan_time_with_workers_is_benches_then_the_chains_longest_first():
  import types

  from suite import run
  unit = lambda key, domain, stage, init=None, same_as=None: types.SimpleNamespace(  # noqa: E731
      key=key, run_id=key, domain=domain, stage=stage, init=init, same_as=same_as)
  plan = [unit('t/b', 'text', 'bench'), unit('v/b', 'vision', 'bench'),
          unit('t/p', 'text', 'pretrain'), unit('t/f', 'text', 'finetune', init='t/p'),
          unit('t/s', 'text', 'finetune'), unit('v/u', 'vision', 'upstream'),
          unit('v/c', 'vision', 'upstream', same_as='v/u')]
  seconds = {'t/b': 5, 'v/b': 4, 't/p': 30, 't/f': 20, 't/s': 25, 'v/u': 40, 'v/c': 0}
  assert run.plan_seconds(plan, seconds, workers=1) == 124
  # chains: t/p+t/f (50), v/u+v/c (40), t/s (25): 50 on one worker, 40 then 25 on the other.
  assert run.plan_seconds(plan, seconds, workers=2) == 5 + 4 + 65
  assert run.plan_seconds(plan, seconds, workers=3) == 5 + 4 + 50
