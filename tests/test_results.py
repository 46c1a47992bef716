"""results/: every file is what its command, run with the current code, writes.

results/README.md is the one list of files and commands: each row names a file and the
`python -m ...` command that wrote it. Every file needs a row and every row a file. The plan
and the proxy check are cheap and deterministic, so their files must hold exactly what the
command prints now; the training check and the benchmark must have the structure (keys and
nesting) of a tiny run of the same code, and the settings their command asked for.
"""

from __future__ import annotations

import json
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

from tasks import images, registry
from text import evaluation, pretraining_check

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / 'results'
_ROW = re.compile(r'^\|\s*`([^`]+)`\s*\|\s*`(python -m [^`]+)`')


def listed() -> dict[str, str]:
  """file -> command, from the table in results/README.md."""
  rows = {}
  for line in (RESULTS / 'README.md').read_text().splitlines():
    match = _ROW.match(line)
    if match:
      assert match.group(1) not in rows, f'{match.group(1)} is listed twice'
      rows[match.group(1)] = match.group(2)
  return rows


COMMANDS = listed()


def files_of(module: str) -> list[str]:
  return sorted(f for f, c in COMMANDS.items() if c.split()[2] == module)


def flag_values(command: str) -> dict[str, str]:
  """The command's `--name=value` flags (and `--name` as 'true')."""
  values = {}
  for arg in shlex.split(command)[3:]:
    name, _, value = arg.removeprefix('--').partition('=')
    values[name] = value if value else 'true'
  return values


def run_command(command: str) -> str:
  out = subprocess.run([sys.executable, *shlex.split(command)[1:]], cwd=ROOT,
                       capture_output=True, text=True, check=True, timeout=600)
  return out.stdout


def structure(value):
  """Keys and nesting, without the values: dicts by key, a list as its distinct item
  structures (so the number of timing windows does not count), leaves as None."""
  if isinstance(value, dict):
    return {k: structure(v) for k, v in value.items()}
  if isinstance(value, list):
    return ['list', *sorted({json.dumps(structure(v), sort_keys=True) for v in value})]
  return None


def differences(saved, fresh, path: str = '') -> list[str]:
  """Where the saved structure departs from the fresh one: keys missing, extra or retyped."""
  if isinstance(saved, dict) and isinstance(fresh, dict):
    if not saved and path.endswith('/train_metrics'):
      return []  # a stage restored from its finished checkpoint (a rerun in its workdir)
    out = [f'{path}/{k}: missing' for k in fresh if k not in saved]
    out += [f'{path}/{k}: not written by the current code' for k in saved if k not in fresh]
    for k in saved.keys() & fresh.keys():
      out += differences(saved[k], fresh[k], f'{path}/{k}')
    return out
  return [] if structure(saved) == structure(fresh) else [f'{path}: a different structure']


def assert_same_structure(saved, fresh, name: str) -> None:
  problems = differences(saved, fresh)
  assert not problems, f'{name} is stale (rerun its command): {"; ".join(sorted(problems))}'


def test_every_file_has_its_command_in_the_readme():
  present = {p.name for p in RESULTS.iterdir()} - {'README.md'}
  rows = {name.rstrip('/') for name in COMMANDS}  # a folder is listed as `name/`
  assert present == rows, (
      f'no command in results/README.md for {sorted(present - rows)}; '
      f'listed but missing: {sorted(rows - present)}')
  known = {'suite.plan', 'suite.bench', 'text.pretraining_check', 'tasks.embedded.proxy_check',
           'vision.shape_check', 'vision.glyphs_calibration', 'suite.run', 'suite.gpu_check',
           'suite.gemm_rates'}
  assert {c.split()[2] for c in COMMANDS.values()} <= known, 'a command no test here checks'


# ---------------------------------------------------------------- pure and deterministic: exact


@pytest.mark.parametrize('name', files_of('suite.plan'))
def test_plan_file_is_what_the_plan_prints_now(name):
  printed, saved = run_command(COMMANDS[name]), (RESULTS / name).read_text()
  if name.endswith('.json'):
    assert json.loads(saved) == json.loads(printed), f'{name} is stale: rerun its command'
  else:
    assert saved.strip() == printed.strip(), f'{name} is stale: rerun its command'


@pytest.mark.parametrize('name', files_of('tasks.embedded.proxy_check'))
def test_proxy_check_file_is_what_the_check_prints_now(name):
  saved, fresh = json.loads((RESULTS / name).read_text()), json.loads(
      run_command(COMMANDS[name]))
  assert_same_structure(saved, fresh, name)
  for task, scores in fresh['tasks'].items():
    for key, value in scores.items():
      if isinstance(value, dict) and key != 'examples':  # scores, rounded to 0.1: allow a
        for half, score in value.items():              # last-digit change between BLAS builds
          assert saved['tasks'][task][key][half] == pytest.approx(score, abs=0.11), (task, key)
      else:
        assert saved['tasks'][task][key] == value, (task, key)
  assert saved['vectors'] == fresh['vectors']


# ---------------------------------------------------------------- text.pretraining_check


@pytest.fixture(scope='module')
def tiny_pretraining_check(tmp_path_factory):
  return pretraining_check.run(str(tmp_path_factory.mktemp('ptcheck')), ['embedded_sst_v1'],
                               pretrain_steps=1, finetune_steps=1, batch_size=2,
                               learning_rate=3e-3, max_eval_examples=2)


def metric_names(task_name: str) -> set[str]:
  """The names the task's own scoring gives (scored here on its targets as predictions)."""
  task = registry.get_text(task_name)
  examples = evaluation.split_examples(task, 'validation', 4)
  targets = [ex['targets_pretokenized'].decode() for ex in examples]
  return set(evaluation.score(task, examples, targets))


@pytest.mark.parametrize('name', files_of('text.pretraining_check'))
def test_pretraining_check_file_has_the_current_structure(name, tiny_pretraining_check):
  saved, fresh = json.loads((RESULTS / name).read_text()), tiny_pretraining_check
  assert_same_structure({k: v for k, v in saved.items() if k != 'tasks'},
                        {k: v for k, v in fresh.items() if k != 'tasks'}, name)
  flags = flag_values(COMMANDS[name])
  tasks = flags['tasks'].split(',') if 'tasks' in flags else (
      pretraining_check.FLAGS['tasks'].default)
  assert list(saved['tasks']) == tasks
  assert saved['pretrain']['steps'] == int(
      flags.get('pretrain_steps', pretraining_check.FLAGS['pretrain_steps'].default))
  reference = fresh['tasks']['embedded_sst_v1']
  for task, runs in saved['tasks'].items():
    assert set(runs) == set(reference), task
    for start in ('pretrained', 'scratch'):
      assert set(runs[start]) == metric_names(task), (task, start)


# ---------------------------------------------------------------- suite.bench


def normalized_method(method: str) -> set[str]:
  """The method's clauses with numbers elided, the MFU clause (device-dependent) as one."""
  clauses = {re.sub(r'\d+(\.\d+)?', 'N', c) for c in method.split('; ')}
  return {'MFU' if 'MFU' in c else c for c in clauses}


# Per domain, the command line itself (so the allocator setting and the reference runs are as
# in the files) on a small shape at tiny sizes.
TINY_BENCH = {
    'text': 'python -m suite.bench --domain=text --shapes=tiny-nl2-dm128-ff512-nh2 --batch=2 '
            '--input_length=8 --target_length=4 --steps=1 --repeats=1 --warmup=0 '
            '--compare=reference',
    'vision': 'python -m suite.bench --domain=vision --shapes=Ti/8-nl2 --image_size=16 --batch=2 '
              '--steps=1 --repeats=1 --warmup=0 --compare=reference',
}


@pytest.fixture(scope='module')
def tiny_bench():
  """domain -> the first item a tiny run of the command prints (run once per domain)."""
  runs = {}

  def run(domain: str) -> dict:
    if domain not in runs:
      runs[domain] = json.loads(run_command(TINY_BENCH[domain]))[0]
    return runs[domain]
  return run


@pytest.mark.parametrize('name', files_of('suite.bench'))
def test_bench_file_has_the_current_structure(name, tiny_bench):
  flags = flag_values(COMMANDS[name])
  items = json.loads((RESULTS / name).read_text())
  assert [item['name'] for item in items] == flags['shapes'].split(',')
  tiny = tiny_bench(flags.get('domain', 'text'))
  for item in items:
    expected = dict(tiny)
    if flags.get('compare') != 'reference':
      expected = {k: v for k, v in expected.items()
                  if not k.startswith(('reference', 'speedup_vs_reference'))}
    assert_same_structure(item, expected, name)
    for flag in ('batch', 'input_length', 'target_length', 'image_size', 'optimizer'):
      if flag in flags:
        assert str(item[flag]) == flags[flag], (name, flag)
    # The method is the current code's: the same clauses, and the loop clause (no XLA FLOP
    # cross-check) exactly when the step ran in loops.
    method = normalized_method(item['method'])
    loops = {c for c in method if c.startswith('no XLA FLOP')}
    assert method - loops == normalized_method(tiny['method']), name
    assert bool(loops) == ('scan' in flags or int(flags.get('microbatches', 1)) > 1), name


# ---------------------------------------------------------------- suite.gpu_check


@pytest.mark.parametrize('name', files_of('suite.gpu_check'))
def test_gpu_check_file_has_the_current_structure(name, tiny_bench):
  """The lines the current code writes (a run takes a GPU: not rerun here): the environment,
  the attention parity check, then one measurement per case asked for (retries after a
  failure included), each measured one with every field of the current bench item."""
  from suite import attention_parity, gpu_check
  lines = [json.loads(line) for line in (RESULTS / name).read_text().splitlines()]
  assert [line['kind'] for line in lines[:2]] == ['environment', 'attention_parity'], name
  assert set(lines[1].get('cases', attention_parity.CASES)) == set(attention_parity.CASES)
  measured = lines[2:]
  asked = flag_values(COMMANDS[name]).get('cases', ','.join(c.name for c in gpu_check.CASES))
  assert [line['case'] for line in measured if 'retry_of' not in line] == asked.split(','), name
  for line in measured:
    assert line['kind'] == 'measurement' and line['scan'] is True, name
    if line['status'] == 'ok':
      keys = {k for k in tiny_bench(line['domain'])
              if not k.startswith(('reference', 'speedup_vs_reference'))}
      assert keys <= set(line), (name, line['case'], sorted(keys - set(line)))


# ---------------------------------------------------------------- suite.gemm_rates


@pytest.mark.parametrize('name', files_of('suite.gemm_rates'))
def test_gemm_rates_file_has_the_current_structure(name):
  """One line per size the command asked for (or the defaults) and form, with the keys a tiny
  run of the current code writes, and ratios that follow from the rates."""
  from suite import gemm_rates
  saved = [json.loads(line) for line in (RESULTS / name).read_text().splitlines()]
  fresh = gemm_rates.measure(['8x4x2'], steps=1, warmup=0, repeats=1)[0]
  sizes = flag_values(COMMANDS[name]).get('sizes', ','.join(gemm_rates.DEFAULT_SIZES))
  assert [(line['size'], line['form']) for line in saved] == [
      (size, form) for size in sizes.split(',') for form in gemm_rates.FORMS]
  for line in saved:
    assert_same_structure(line, fresh, name)
    assert line['xla_over_torch'] == pytest.approx(line['xla_gflops'] / line['torch_gflops'])


# ---------------------------------------------------------------- vision.shape_check


@pytest.mark.parametrize('name', files_of('vision.shape_check'))
def test_vision_shape_check_file_has_the_current_structure(name):
  """The keys the current code writes, the settings the command asked for, and checks that
  follow from the file's own numbers (a full run takes CPU minutes: not rerun here)."""
  from suite import shapes
  from vision import shape_check
  saved = json.loads((RESULTS / name).read_text())
  assert tuple(saved) == shape_check.REPORT_KEYS
  fields = {f for f in shapes.Shape.__dataclass_fields__}
  for run in saved['shapes']:
    assert set(run) == set(shape_check.RUN_KEYS) | fields, run.get('strategy')
  flags = flag_values(COMMANDS[name])
  assert set(saved['flags']) == set(shape_check.FLAG_NAMES)
  for flag, value in flags.items():
    if flag in saved['flags']:
      assert str(saved['flags'][flag]) == value or ','.join(saved['flags'][flag]) == value, flag
  assert saved['checks'] == shape_check.checks(saved)


# ---------------------------------------------------------------- vision.glyphs_calibration


@pytest.mark.parametrize('name', files_of('vision.glyphs_calibration'))
def test_glyphs_calibration_file_has_the_current_structure(name):
  """The keys the current code writes, the settings the command asked for (or the defaults),
  the current small ViT and glyph tasks, and numbers consistent with each other and with the
  calibration's claims (a run takes CPU minutes: not rerun here)."""
  from absl import flags as absl_flags

  from suite import shapes
  from tasks import glyphs
  from vision import glyphs_calibration as calibration
  saved = json.loads((RESULTS / name).read_text())
  assert tuple(saved) == calibration.REPORT_KEYS
  defined = absl_flags.FlagValues()
  calibration.define_flags(defined)
  asked = flag_values(COMMANDS[name])
  assert set(saved['flags']) == set(calibration.FLAG_NAMES)
  for flag in calibration.FLAG_NAMES:
    assert str(saved['flags'][flag]) == asked.get(flag, str(defined[flag].default)), flag
  shots = {f'{k}shot' for k in images.FEWSHOT_SHOTS}
  for probe in ('raw_pixels', 'mean_rgb'):
    assert tuple(saved[probe]) == calibration.PROBE_KEYS and set(saved[probe]['fewshot']) == shots
  vit = saved['vit']
  assert tuple(vit) == calibration.VIT_KEYS and set(vit['fewshot']) == shots
  assert vit['shape'] == calibration.small_vit_shape().fields()
  assert vit['name'] == shapes.display_name(calibration.small_vit_shape())
  assert [vit[k] for k in ('steps', 'batch_size', 'learning_rate')] == [
      saved['flags'][k] for k in ('steps', 'batch_size', 'learning_rate')]
  assert saved['sizes'] == glyphs.SPLIT_SIZES
  assert set(saved['generation']) == {f'{t}/{s}' for t in glyphs.SPLIT_SIZES
                                       for s in glyphs.SPLIT_SIZES[t]}
  assert saved['fewshot_gain_over_raw_pixels'] == {
      k: round(vit['fewshot'][k] - saved['raw_pixels']['fewshot'][k], 2) for k in shots}
  assert saved['checks'] == calibration.checks(saved) and all(saved['checks'].values())


# ---------------------------------------------------------------- suite.run: the embedded report

SCREENSHOT = 'report_screenshot.png'  # headless Chromium's rendering of report.html


@pytest.mark.parametrize('name', files_of('suite.run'))
def test_run_report_is_what_the_report_rebuilds_from_its_journal(name, tmp_path):
  """The committed report is exactly what `suite.report` writes from the committed journal now
  (tables, CSVs, plots, page), and nothing else is in the folder but the journal and the
  screenshot of the page."""
  import shutil

  from suite import journal, report
  folder = RESULTS / name.rstrip('/')
  shutil.copy(folder / journal.FILENAME, tmp_path / journal.FILENAME)
  written = {pathlib.Path(p).name for p in report.write(tmp_path).values()}
  committed = {p.name for p in folder.iterdir()}
  assert committed == written | {journal.FILENAME, SCREENSHOT}, (
      f'{name} is stale: rerun `suite.report --workdir=results/{name}` (see results/README.md)')
  for file in sorted(written):
    assert (folder / file).read_bytes() == (tmp_path / file).read_bytes(), (
        f'{name}{file} differs from what suite.report writes now from the journal')
  assert (folder / SCREENSHOT).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
