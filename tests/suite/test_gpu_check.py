"""suite.gpu_check (the prepared GPU speed command) and suite.attention_parity: the plumbing,
on CPU. No timing is asserted: this machine has no GPU; the commands, the lines they write, the
per-case timeout and the fallbacks are."""

import io
import json
import subprocess
import sys

import pytest

from suite import attention_parity, bench, flagcheck, gpu_check, shapes


@pytest.mark.parametrize('tiny', [False, True])
def test_every_case_is_a_valid_bench_command_with_bf16_and_scan(tiny):
  for case in gpu_check.CASES:
    case = gpu_check.tiny(case) if tiny else case
    argv = gpu_check.case_argv(case, steps=1, warmup=0, repeats=1)
    values = flagcheck.copy_flags(bench)
    flagcheck.parse(['suite.bench', *argv], values)
    assert values.scan is True and values.dtype == 'bfloat16' and values.attention == 'auto'
    assert values.shapes == [case.shape] and values.batch == case.batch
    shapes.parse(case.shape, case.domain)


def test_the_cases_are_the_issues():
  """T5-base and small-nl16 at batch 64 with 512/114 tokens, ViT-B/16 at batch 256 and 224 px."""
  found = {c.name: (c.shape, c.batch, c.workload, c.target_mfu) for c in gpu_check.CASES}
  assert found == {
      't5-base': ('base', 64, {'input_length': 512, 'target_length': 114}, 0.45),
      'small-nl16': ('small-nl16', 64, {'input_length': 512, 'target_length': 114}, 0.40),
      'vit-b16': ('B/16', 256, {'image_size': 224}, 0.50)}


@pytest.fixture(scope='module')
def plumbing(tmp_path_factory):
  """One real run of the command at tiny sizes: (stdout lines, --output file lines)."""
  output = tmp_path_factory.mktemp('gpu_check') / 'lines.jsonl'
  done = subprocess.run([sys.executable, '-m', 'suite.gpu_check', '--tiny', '--cases=vit-b16',
                         f'--output={output}'], capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  return ([json.loads(line) for line in done.stdout.splitlines()],
          [json.loads(line) for line in output.read_text().splitlines()])


def test_plumbing_writes_environment_parity_and_one_measurement_line(plumbing):
  lines, written = plumbing
  assert lines == written
  assert [line['kind'] for line in lines] == ['environment', 'attention_parity', 'measurement']
  assert lines[0]['packages']['jax']
  parity = lines[1]
  assert parity['ok'] and parity['status'] == 'ok' and parity['implementation'] == 'xla'
  assert set(parity['cases']) == set(attention_parity.CASES)
  (line,) = lines[2:]
  assert line['case'] == 'vit-b16' and line['status'] == 'ok'
  assert line['scan'] is True and line['remat'] == 'none' and line['dtype'] == 'bfloat16'
  assert line['attention'] == 'xla'  # 'auto' on a CPU
  assert line['compile_s'] > 0 and line['steps_per_s'] > 0 and line['model_tflops_per_s'] > 0
  assert line['mfu'] is None and line['meets_target'] is None  # no dense peak for CPUs
  assert line['command'].startswith('python -m suite.bench --domain=vision --shapes=Ti/16-nl2')


def test_a_case_past_its_timeout_is_killed_and_reported():
  case = gpu_check.tiny(gpu_check.CASES[0])
  argv = gpu_check.case_argv(case, steps=1, warmup=0, repeats=1)
  run = gpu_check.run_bench(argv, timeout_s=1, echo=io.StringIO())
  assert run['status'] == 'timeout' and 'item' not in run
  line = gpu_check.measurement(case, argv, run, 1, 'none')
  assert line['status'] == 'timeout' and line['phase'] in ('started', 'train step')


def _check(monkeypatch, cases, parity_ok, budget_s=470):
  monkeypatch.setattr(gpu_check, 'parity', lambda tiny, timeout_s: {
      'kind': 'attention_parity', 'status': 'ok', 'ok': parity_ok})
  sink = io.StringIO()
  lines = gpu_check.check(cases, steps=1, warmup=0, repeats=1, remat='none', timeout_s=120,
                          parity_timeout_s=60, budget_s=budget_s, fallback=True, tiny=True,
                          sinks=[sink])
  written = [json.loads(line) for line in sink.getvalue().splitlines()]
  assert written[2:] == lines
  return lines


def test_a_failed_case_runs_again_with_xla_attention(monkeypatch):
  broken = gpu_check.Case('broken', 'text', 'no-such-shape', 2, {}, 0.4)
  lines = _check(monkeypatch, [broken], parity_ok=True)
  assert [(line['status'], line['attention_asked']) for line in lines] == [
      ('failed', 'auto'), ('failed', 'xla')]
  assert lines[1]['retry_of'] == "attention 'auto' failed"
  assert any('no-such-shape' in text for text in lines[0]['stderr_tail'])


def test_a_failed_parity_check_times_xla_and_an_spent_budget_skips(monkeypatch):
  lines = _check(monkeypatch, [gpu_check.tiny(gpu_check.CASES[0])], parity_ok=False,
                 budget_s=5)
  (line,) = lines
  assert line['status'] == 'skipped' and line['attention_asked'] == 'xla'
  assert line['attention_forced'] == 'the attention parity check did not pass'


def test_parity_catches_a_kernel_that_drops_the_bias(monkeypatch):
  case = attention_parity.Case(8, 8, bias=True, causal=True)
  sizes = {'batch': 2, 'heads': 2, 'head_dim': 8}
  good = attention_parity.compare(case, 'xla', **sizes)
  assert max(good.values()) < 2e-2 and set(good) == {'out', 'dq', 'dk', 'dv', 'dbias'}
  real = attention_parity.fused_attention
  monkeypatch.setattr(attention_parity, 'fused_attention',
                      lambda *a, **kw: real(*a, **{**kw, 'bias': None}))
  bad = attention_parity.compare(case, 'xla', **sizes)
  assert bad['dbias'] > 0.5 and bad['out'] > 2e-2
