r"""The prepared accelerator speed check: three train steps timed, one JSON line each, in minutes.

  PYTHONPATH=. python -m suite.gpu_check --output=gpu_check.jsonl   # on one GPU: under 8 min
  python -m suite.gpu_check --tiny                                  # the plumbing, on any machine

Cases (issue 12's speed targets, MFU against the dense bf16 peak of suite.devices):

| case | shape | batch | workload | target MFU |
|---|---|---|---|---|
| t5-base | base | 64 | 512 input / 114 target tokens | 45% |
| small-nl16 | small-nl16 | 64 | 512 / 114 | 40% |
| vit-b16 | B/16 | 256 | 224 px images | 50% |

First `python -m suite.attention_parity` checks the fused attention call against a float32
reference on the device (outputs and gradients, T5's bias included); if it fails, every case
times XLA's attention instead. Then each case is `python -m suite.bench` in a process of its
own (`case_argv`: bfloat16, attention 'auto' = cuDNN's fused kernel on NVIDIA GPUs, layers
scanned, no remat). Each child runs under its own timeout (--timeout_s, --parity_timeout_s)
inside an overall budget (--budget_s), so one slow compile cannot eat the run, and a crash
(e.g. a cuDNN kernel this GPU lacks) cannot take the other cases with it: a case that fails
with attention 'auto' runs once more with --attention=xla, budget permitting. This process
never starts jax's backends (nor builds a model), so it never holds the GPU.

Output, one JSON object per line on stdout (and appended to --output), flushed as each line is
known: first `{"kind": "environment", ...}` (package versions, `nvidia-smi`'s GPUs), then
`{"kind": "attention_parity", "status": ..., "ok": ..., "cases": {...}}`, then one
`{"kind": "measurement", "case": ..., "status": "ok" | "failed" | "timeout" | "skipped", ...}`
per case run. An ok line holds the settings (`scan`, `remat`, `target_mfu`, `meets_target`),
`wall_s` of the whole process, and every field of suite.bench's item: `compile_s` (the train
step's compile time, apart) and `steps_per_s`, `model_tflops_per_s`, `mfu`. Other lines hold
`returncode`, `phase` (how far the child got) and the end of its stderr. A summary table goes
to stderr. Exit status 0 when every case was measured, else 1.

Needs only what suite.bench needs (jax, flax, optax, absl, numpy): no TensorFlow, seqio, TFDS,
clu or ml_collections. `--tiny` swaps in tiny shapes and sizes, and one timed step, to check the
plumbing anywhere (on CPU it proves the commands, not the speed).
"""

from __future__ import annotations

import collections
import dataclasses
import importlib.metadata
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from absl import flags

from suite import flagcheck
from suite.network_options import REMAT_POLICIES

ROOT = pathlib.Path(__file__).resolve().parents[1]
TEXT_WORKLOAD = {'input_length': 512, 'target_length': 114}


@dataclasses.dataclass(frozen=True)
class Case:
  """One timed train step: a shape of a domain at a batch and workload, and its MFU target."""

  name: str
  domain: str
  shape: str
  batch: int
  workload: dict[str, int]
  target_mfu: float


CASES = (
    Case('t5-base', 'text', 'base', 64, TEXT_WORKLOAD, 0.45),
    Case('small-nl16', 'text', 'small-nl16', 64, TEXT_WORKLOAD, 0.40),
    Case('vit-b16', 'vision', 'B/16', 256, {'image_size': 224}, 0.50),
)
# --tiny: the same cases at sizes any machine runs in seconds (shape, batch, workload).
TINY = {
    't5-base': ('tiny-nl2', 2, {'input_length': 32, 'target_length': 8}),
    'small-nl16': ('tiny-nl4-dm128-ff256-nh2', 2, {'input_length': 32, 'target_length': 8}),
    'vit-b16': ('Ti/16-nl2', 2, {'image_size': 32}),
}
# Every case's settings: bfloat16, attention 'auto' (cuDNN's fused kernel on NVIDIA GPUs), layers
# scanned (compile time flat in depth); glibc's allocator as it is (the bench's host-memory
# setting is for CPU steps).
SETTINGS = ('--dtype=bfloat16', '--scan', '--nokeep_host_memory')
TRAIN_STEP_LOG = 'compiling the train step'  # suite.throughput logs it before compiling
ENVIRONMENT_PACKAGES = ('jax', 'jaxlib', 'jax-cuda12-plugin', 'jax-cuda13-plugin',
                        'nvidia-cudnn-cu12', 'nvidia-cudnn-cu13', 'flax', 'optax', 'numpy',
                        'absl-py')

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags, defined when it runs (suite.bench, which tests import beside this
  module, has flags of the same names)."""
  flags.DEFINE_list('cases', [c.name for c in CASES], 'Cases to run, in this order: '
                    + ', '.join(c.name for c in CASES) + '.')
  flags.DEFINE_bool('tiny', False, 'Tiny shapes and sizes and one timed step: the plumbing, on any '
                    'machine (CPU included).')
  flags.DEFINE_integer('timeout_s', 150, 'Seconds each case may take (process start, compile and '
                       'timing); it is killed after that.', lower_bound=1)
  flags.DEFINE_integer('parity_timeout_s', 90, 'Seconds the attention parity check may take.',
                       lower_bound=1)
  flags.DEFINE_integer('budget_s', 470, 'Seconds the whole check may take: a case gets at most '
                       'what is left, and is skipped with under 20 s left.', lower_bound=1)
  flags.DEFINE_string('output', None, 'Also append the JSON lines to this file.')
  flags.DEFINE_enum('remat', 'none', list(REMAT_POLICIES),
                    "Every case's rematerialisation policy (suite.bench --remat).")
  flags.DEFINE_integer('steps', 20, 'Timed steps per window (1 with --tiny unless given).',
                       lower_bound=1)
  flags.DEFINE_integer('warmup', 3, 'Untimed steps after compiling (0 with --tiny unless given).',
                       lower_bound=0)
  flags.DEFINE_integer('repeats', 3, 'Timed windows; the median counts (1 with --tiny unless '
                       'given).', lower_bound=1)
  flags.DEFINE_bool('fallback', True, "A case that fails with attention 'auto' runs once more with "
                    '--attention=xla, budget permitting.')


def tiny(case: Case) -> Case:
  """`case` at the --tiny sizes."""
  shape, batch, workload = TINY[case.name]
  return dataclasses.replace(case, shape=shape, batch=batch, workload=workload)


def case_argv(case: Case, *, steps: int, warmup: int, repeats: int, remat: str = 'none',
              attention: str = 'auto') -> list[str]:
  """The suite.bench arguments of one case (after `python -m suite.bench`)."""
  return [f'--domain={case.domain}', f'--shapes={case.shape}', f'--batch={case.batch}',
          *(f'--{k}={v}' for k, v in case.workload.items()), *SETTINGS,
          f'--attention={attention}', f'--remat={remat}', f'--steps={steps}',
          f'--warmup={warmup}', f'--repeats={repeats}']


def child_env() -> dict[str, str]:
  """This environment with the repository first on PYTHONPATH (the bench runs from the tree,
  installed or not)."""
  env = dict(os.environ)
  env['PYTHONPATH'] = os.pathsep.join(p for p in (str(ROOT), env.get('PYTHONPATH')) if p)
  env.setdefault('PYTHONUNBUFFERED', '1')
  return env


def environment() -> dict[str, Any]:
  """Package versions (read without importing them: this process must not take the GPU) and
  the GPUs `nvidia-smi` lists, if it is there."""
  versions = {}
  for name in ENVIRONMENT_PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      continue
  gpus = None
  if shutil.which('nvidia-smi'):
    try:
      done = subprocess.run(['nvidia-smi', '--query-gpu=name,driver_version,memory.total',
                             '--format=csv,noheader'], capture_output=True, text=True,
                            timeout=30)
      gpus = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    except (OSError, subprocess.SubprocessError) as error:
      gpus = [f'nvidia-smi failed: {error}']
  return {'kind': 'environment', 'python': sys.version.split()[0], 'packages': versions,
          'gpus': gpus}


def _pump(stream: TextIO, sink: Callable[[str], None]) -> None:
  for line in stream:
    sink(line)


def run_child(module: str, argv: Sequence[str], timeout_s: float,
              echo: TextIO = sys.stderr) -> dict[str, Any]:
  """`python -m MODULE ARGV` in a process group of its own, killed after `timeout_s`.

  Returns status ('ok', 'failed', 'timeout'), returncode, wall_s, phase ('started' or
  'train step': whether it reached the train step's compile), stdout, and stderr_tail (its
  last lines, which are also echoed to `echo` as they come) unless ok.
  """
  command = [sys.executable, '-m', module, *argv]
  start = time.monotonic()
  process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=ROOT, env=child_env(), start_new_session=True)
  tail: collections.deque[str] = collections.deque(maxlen=25)
  seen_step = threading.Event()
  out: list[str] = []

  def on_stderr(line: str) -> None:
    echo.write(line)
    echo.flush()
    tail.append(line.rstrip('\n'))
    if TRAIN_STEP_LOG in line:
      seen_step.set()

  readers = [threading.Thread(target=_pump, args=(process.stderr, on_stderr), daemon=True),
             threading.Thread(target=_pump, args=(process.stdout, out.append), daemon=True)]
  for reader in readers:
    reader.start()
  timed_out = False
  try:
    process.wait(timeout=max(timeout_s, 1))
  except subprocess.TimeoutExpired:
    timed_out = True
    os.killpg(process.pid, signal.SIGKILL)  # the child's own process group (start_new_session)
    process.wait()
  for reader in readers:
    reader.join(timeout=10)
  result: dict[str, Any] = {
      'status': 'timeout' if timed_out else 'ok' if process.returncode == 0 else 'failed',
      'returncode': process.returncode, 'wall_s': round(time.monotonic() - start, 1),
      'phase': 'train step' if seen_step.is_set() else 'started', 'stdout': ''.join(out)}
  if result['status'] != 'ok':
    result['stderr_tail'] = list(tail)
  return result


def run_bench(argv: Sequence[str], timeout_s: float, echo: TextIO = sys.stderr) -> dict[str, Any]:
  """`run_child` of suite.bench; when ok, `item` is the first item it printed."""
  result = run_child('suite.bench', argv, timeout_s, echo)
  if result['status'] == 'ok':
    try:
      result['item'] = json.loads(result['stdout'])[0]
    except (ValueError, IndexError, KeyError) as error:
      result.update(status='failed', error=f'no JSON item on stdout ({error})')
  return result


def parity(tiny: bool, timeout_s: float, echo: TextIO = sys.stderr) -> dict[str, Any]:
  """The line of `python -m suite.attention_parity` (its JSON object, with status and wall_s);
  `ok` is True only when it ran and every case passed."""
  result = run_child('suite.attention_parity', ['--tiny'] if tiny else [], timeout_s, echo)
  line: dict[str, Any] = {'kind': 'attention_parity', 'status': result['status'],
                          'wall_s': result['wall_s'], 'timeout_s': round(timeout_s, 1), 'ok': False}
  try:
    line.update({k: v for k, v in json.loads(result['stdout']).items() if k != 'kind'})
  except ValueError:
    line.update({k: result[k] for k in ('returncode', 'stderr_tail') if k in result})
  line['ok'] = bool(line['ok']) and result['status'] == 'ok'
  return line


def measurement(case: Case, argv: Sequence[str], run: dict[str, Any], timeout_s: float,
                remat: str) -> dict[str, Any]:
  """The JSON line of one case run: its settings, then the bench's item or why there is none."""
  line: dict[str, Any] = {
      'kind': 'measurement', 'case': case.name, 'status': run['status'], 'shape': case.shape,
      'batch': case.batch, **case.workload, 'scan': True, 'remat': remat,
      'attention_asked': next(a.split('=', 1)[1] for a in argv if a.startswith('--attention=')),
      'target_mfu': case.target_mfu, 'wall_s': run['wall_s'], 'timeout_s': round(timeout_s, 1),
      'command': 'python -m suite.bench ' + ' '.join(argv)}
  item = run.get('item')
  if item is None:
    line.update({k: run[k] for k in ('returncode', 'phase', 'error', 'stderr_tail') if k in run})
    return line
  mfu = item.get('mfu')
  line['meets_target'] = None if mfu is None else mfu >= case.target_mfu
  line.update({k: v for k, v in item.items() if k not in line})
  return line


def _emit(line: dict[str, Any], sinks: Sequence[TextIO]) -> None:
  text = json.dumps(line)
  for sink in sinks:
    sink.write(text + '\n')
    sink.flush()


def _summary(lines: Sequence[dict[str, Any]]) -> str:
  rows = [f'{"case":<12} {"status":<8} {"attention":<9} {"compile_s":>9} {"steps/s":>8} '
          f'{"TFLOP/s":>8} {"MFU":>6} {"target":>6}']
  for line in lines:
    def fmt(key, spec, line=line):
      value = line.get(key)
      return format(value, spec) if isinstance(value, (int, float)) else '-'
    attention = line.get('attention', line['attention_asked'])
    rows.append(f'{line["case"]:<12} {line["status"]:<8} {attention:<9} '
                f'{fmt("compile_s", "9.1f")} {fmt("steps_per_s", "8.2f")} '
                f'{fmt("model_tflops_per_s", "8.1f")} {fmt("mfu", "6.1%")} '
                f'{line["target_mfu"]:>6.0%}')
  return '\n'.join(rows)


def check(cases: Sequence[Case], *, steps: int, warmup: int, repeats: int, remat: str,
          timeout_s: float, parity_timeout_s: float, budget_s: float, fallback: bool,
          tiny: bool, sinks: Sequence[TextIO]) -> list[dict[str, Any]]:
  """The attention parity check, then the cases in order, within `budget_s`, emitting each
  line to `sinks` as it is known; returns the measurement lines."""
  deadline = time.monotonic() + budget_s
  _emit(environment(), sinks)
  checked = parity(tiny, min(parity_timeout_s, budget_s / 4))
  _emit(checked, sinks)
  first = 'auto' if checked['ok'] else 'xla'  # cuDNN's numbers are not worth timing if wrong
  lines = []
  for case in cases:
    attempts = [first, 'xla'] if fallback and first == 'auto' else [first]
    for attention in attempts:
      argv = case_argv(case, steps=steps, warmup=warmup, repeats=repeats, remat=remat,
                       attention=attention)
      left = deadline - time.monotonic()
      if left < 20:
        run = {'status': 'skipped', 'wall_s': 0.0,
               'error': f'{left:.0f} s of --budget_s={budget_s:.0f} left'}
        allowed = 0.0
      else:
        allowed = min(timeout_s, left - 5)
        print(f'gpu_check: {case.name} (attention {attention}, timeout {allowed:.0f} s)',
              file=sys.stderr, flush=True)
        run = run_bench(argv, allowed)
      line = measurement(case, argv, run, allowed, remat)
      if attention != first:
        line['retry_of'] = "attention 'auto' failed"
      elif not checked['ok']:
        line['attention_forced'] = 'the attention parity check did not pass'
      _emit(line, sinks)
      lines.append(line)
      if run['status'] != 'failed':  # ok, timed out (a retry would too) or skipped
        break
  print(_summary(lines), file=sys.stderr, flush=True)
  return lines


def main(argv):
  del argv  # flagcheck.run rejects positional arguments
  by_name = {c.name: c for c in CASES}
  unknown = [name for name in FLAGS.cases if name not in by_name]
  if unknown:
    raise flagcheck.FlagError(f'--cases: unknown {", ".join(unknown)}; valid: '
                              f'{", ".join(by_name)}.')
  cases = [by_name[name] for name in FLAGS.cases]
  steps, warmup, repeats = FLAGS.steps, FLAGS.warmup, FLAGS.repeats
  if FLAGS.tiny:
    cases = [tiny(c) for c in cases]
    steps = steps if FLAGS['steps'].present else 1
    warmup = warmup if FLAGS['warmup'].present else 0
    repeats = repeats if FLAGS['repeats'].present else 1
  sinks = [sys.stdout]
  output = open(FLAGS.output, 'a') if FLAGS.output else None  # noqa: SIM115 - closed below
  if output:
    sinks.append(output)
  try:
    lines = check(cases, steps=steps, warmup=warmup, repeats=repeats, remat=FLAGS.remat,
                  timeout_s=FLAGS.timeout_s, parity_timeout_s=FLAGS.parity_timeout_s,
                  budget_s=FLAGS.budget_s, fallback=FLAGS.fallback, tiny=FLAGS.tiny,
                  sinks=sinks)
  finally:
    if output:
      output.close()
  measured = {line['case'] for line in lines if line['status'] == 'ok'}
  return 0 if measured == {c.name for c in cases} else 1


if __name__ == '__main__':
  define_flags()
  flagcheck.run(main)
