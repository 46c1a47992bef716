"""suite.bench: the measurement record, its cross-checks, and the command line."""

import json
import platform
import subprocess
import sys

import pytest

from suite import bench, costs, flagcheck, shapes
from suite.domain import ModelOptions

NAME = 'tiny-nl2-dm128-ff512-nh2'


@pytest.fixture(scope='module')
def record():
  return bench.bench_shape(
      'text', NAME, batch_size=8, steps=2, warmup=1, repeats=2,
      options=ModelOptions(dtype='float32'), optimizer_name=None, microbatches=1,
      compare=True, workload={'input_length': 64, 'target_length': 16})


def test_record_carries_the_plan_and_the_measurement(record):
  shape = shapes.parse(NAME)
  assert record['name'] == NAME and record['domain'] == 'text'
  assert record['params'] == costs.params(shape)
  assert record['train_flops_per_example'] == costs.train_flops_per_example(shape, 64, 16)
  assert len(record['step_s_windows']) == 2 and record['step_s'] > 0
  assert record['tokens_per_s'] == pytest.approx(8 * (64 + 16) / record['step_s'])
  assert record['model_tflops_per_s'] == pytest.approx(
      record['train_flops_per_example'] * 8 / record['step_s'] / 1e12)
  assert record['mfu'] is None and record['peak_tflops'] is None  # CPUs have no dense peak
  assert record['compile_s'] > 0
  assert record['mesh'] == 'data:1,fsdp:1,model:1'  # every device (here one) on data


def test_method_states_the_measurement_and_why_there_is_no_mfu(record):
  # the fixture's repeats=2, steps=2, warmup=1; on CPU only the last clause depends on the peak
  assert record['method'].split('; ') == [
      'median of 2 windows of 2 steps after 1 warm-up steps',
      'compile excluded',
      'model FLOPs = suite.costs train_flops_per_example (matmul FLOPs, 3x forward) x batch',
      'no MFU: no dense peak known for this device',
  ]


@pytest.mark.parametrize('flag, default', [('input_length', 512), ('target_length', 114)])
def test_text_length_flags_default_to_t5_pretraining_lengths(flag, default):
  assert bench.FLAGS[flag].default == default


def test_compiled_step_flops_agree_with_the_cost_model(record):
  # XLA's count also holds the optimizer update (here over a 32128-row embedding, large next
  # to this small batch) and elementwise work; tests/text/test_flops.py holds the model to 2%.
  assert 1.0 < record['xla_over_model_flops'] < 1.05


def test_no_xla_flop_cross_check_for_steps_with_loops():
  """Scanned layers and microbatches run in loops, whose bodies XLA's cost analysis counts once
  (it gave 0.30x the cost model for a scanned 16+16-layer step): the record leaves it out."""
  looped = bench.bench_shape(
      'text', NAME, batch_size=4, steps=1, warmup=1, repeats=1,
      options=ModelOptions(dtype='float32', scan=True), optimizer_name='adamw', microbatches=2,
      compare=False, workload={'input_length': 16, 'target_length': 8})
  assert looped['xla_flops_per_step'] is None and looped['xla_over_model_flops'] is None
  assert 'no XLA FLOP cross-check' in looped['method']
  assert looped['step_s'] > 0 and looped['final_loss'] > 0 and looped['optimizer'] == 'adamw'


def test_reference_is_timed_on_the_same_batch(record):
  reference = record['reference']
  assert 'transformers' in reference['implementation']
  assert reference['step_s'] > 0 and reference['tokens_per_s'] > 0
  assert len(reference['step_s_windows']) == 2  # the same windows as ours
  # this process did not tune its allocator, so neither did the reference's fresh process
  assert record['host_memory'] == reference['host_memory'] == 'system default'
  assert 'reference_same_host_memory' not in record
  assert record['speedup_vs_reference'] == pytest.approx(
      reference['step_s'] / record['step_s'])


@pytest.mark.parametrize('args, expected', [
    (['--steps=0'], '--steps=0 is out of range: --steps takes an integer >= 1; '
                    'e.g. --steps=10 (the default)'),
    (['--steps=ten'], '--steps=ten is not an integer: --steps takes an integer >= 1'),
    (['--repeats=0'], '--repeats=0 is out of range: --repeats takes an integer >= 1'),
    (['--warmup=-1'], '--warmup=-1 is out of range: --warmup takes an integer >= 0'),
    (['--batch=0'], '--batch=0 is out of range: --batch takes an integer >= 1'),
    (['--microbatches=0'], '--microbatches=0 is out of range'),
    (['--input_length=0'], '--input_length=0 is out of range: --input_length takes an integer'),
    (['--target_length=-4'], '--target_length=-4 is out of range'),
    (['--dtype=float16'], '--dtype=float16: value should be one of <auto|float32|bfloat16>'),
    (['--remat=some'], '--remat=some: value should be one of <none|full|dots|dots_no_batch>'),
    (['--image_size=0'], '--image_size=0 is out of range'),
    (['small'], 'unexpected arguments small'),
])
def test_bad_flag_values_are_one_line_errors(args, expected):
  """Checked as flags are parsed, before main(): --steps=0 used to divide by zero and
  --repeats=0 take the median of no windows."""
  with pytest.raises(flagcheck.FlagError) as error:
    flagcheck.parse(['suite.bench', *args], flagcheck.copy_flags(bench))
  assert str(error.value).startswith(expected) and '\n' not in str(error.value)


@pytest.mark.parametrize('args, expected', [
    (['--shapes=tinyy'], 'closest names: tiny'),
    (['--domain=audio', '--shapes=S/16'], "unknown domain 'audio'"),
    (['--shapes=tiny', '--attention=cudnn'], "attention='cudnn' cannot run here: it needs an "
                                             'NVIDIA GPU, and this device is cpu'),
    (['--shapes=tiny', '--batch=3', '--microbatches=2'], '--batch=3: global batch size 3 is not'),
    (['--shapes=tiny', '--mesh=fsdp:2'], '--mesh=fsdp:2: mesh fsdp:2 does not fit 1 device: '
                                         'axis fsdp:2 does not divide the 1 device; would fit: '
                                         'data:1'),
])
def test_bad_names_and_values_exit_with_one_line(args, expected):
  done = subprocess.run([sys.executable, '-m', 'suite.bench', *args], capture_output=True,
                        text=True, timeout=300)
  assert done.returncode == 1 and done.stdout == ''
  errors = [line for line in done.stderr.splitlines() if line.startswith('error:')]
  assert len(errors) == 1 and expected in errors[0]


def test_cli_prints_a_json_list():
  done = subprocess.run(
      [sys.executable, '-m', 'suite.bench', f'--shapes={NAME}', '--batch=2', '--steps=1',
       '--warmup=0', '--repeats=1', '--input_length=16', '--target_length=4'],
      capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-2000:]
  (item,) = json.loads(done.stdout)
  assert item['name'] == NAME and item['batch'] == 2 and item['dtype'] == 'float32'
  assert item['input_length'] == 16 and item['target_length'] == 4
  if platform.libc_ver()[0] == 'glibc':  # the CLI keeps freed host memory by default
    assert 'suite.host_memory' in item['host_memory']


@pytest.mark.parametrize('args, expected', [([], None), (['--scan'], True),
                                           (['--noscan'], False)])
def test_scan_flag_is_unset_unless_given(args, expected):
  """Unset (None) makes main pass ModelOptions(scan='auto'): on for accelerators, off on CPU
  (tests/suite/test_network_options.py)."""
  values = flagcheck.copy_flags(bench)
  flagcheck.parse(['suite.bench', *args], values)
  assert values.scan is expected


def test_the_optimizer_and_lengths_come_from_the_domain(record):
  assert record['optimizer'] == 'adafactor'  # the text domain's first preset, its default
  assert (record['input_length'], record['target_length']) == (64, 16)
  assert record['attention'] == 'xla' and record['dtype'] == 'float32'


# Modules a GPU machine runs suite.bench without: the input pipelines and their configs.
HEAVY = ('tensorflow', 'seqio', 'tensorflow_datasets', 'clu', 'ml_collections')
BLOCKED_RUN = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name.split('.')[0] in {HEAVY!r}:
      raise ImportError(f'{{name}} is blocked: suite.bench must run without it')
sys.meta_path.insert(0, Block())
from suite import bench
from suite.domain import ModelOptions
item = bench.bench_shape('text', {NAME!r}, batch_size=2, steps=1, warmup=0, repeats=1,
                         options=ModelOptions(), optimizer_name=None, microbatches=1,
                         compare=False, workload={{'input_length': 8, 'target_length': 4}})
print(item['tokens_per_s'] > 0, sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))
"""


def test_bench_imports_and_runs_without_the_input_pipelines():
  """suite.bench and the domains it loads import no TensorFlow, seqio, TFDS, clu or
  ml_collections (stages import them when they run), so a bare GPU machine can time a step."""
  done = subprocess.run([sys.executable, '-c', BLOCKED_RUN], capture_output=True, text=True,
                        timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  assert done.stdout.split() == ['True', '[]']


def test_unknown_optimizer_names_the_domains_presets():
  done = subprocess.run([sys.executable, '-m', 'suite.bench', '--shapes=tiny',
                         '--optimizer=adam'], capture_output=True, text=True, timeout=300)
  assert done.returncode == 1 and done.stdout == ''
  assert "text has no optimizer 'adam'; valid: adafactor, adamw" in done.stderr


@pytest.mark.parametrize('fields, message', [
    ({'dtype': 'float16'}, "dtype='float16': valid compute dtypes are auto, float32, bfloat16"),
    ({'attention': 'flash'}, "attention='flash': valid kernels are auto, xla, cudnn"),
    ({'scan': 'yes'}, "scan='yes': valid are auto, True, False"),
    ({'attention': 'cudnn', 'dtype': 'float32'}, "attention='cudnn' computes in bfloat16"),
    ({'remat': 'some'}, "remat='some': valid policies are none, full, dots, dots_no_batch"),
    ({'dropout_rate': 1.0}, 'dropout_rate=1.0: must be in [0, 1)'),
])
def test_model_options_name_the_bad_value_and_the_valid_ones(fields, message):
  with pytest.raises(ValueError) as error:
    ModelOptions(**fields)
  assert message in str(error.value)
