"""suite.plan as users run it: JSON and table output, ladders, one-line errors."""

import json
import re
import subprocess
import sys

import pytest

from suite import costs, domains, shapes

REQUIRED = ('name', 'domain', 'num_encoder_layers', 'num_decoder_layers', 'd_model', 'd_ff',
            'num_heads', 'd_kv', 'params', 'train_flops_per_example', 'memory_estimate')


def _plan(*flags):
  return subprocess.run([sys.executable, '-m', 'suite.plan', *flags], capture_output=True,
                        text=True, timeout=120, check=False)


def _json(*flags):
  result = _plan(*flags)
  assert result.returncode == 0, result.stderr
  return json.loads(result.stdout)


def test_text_shapes_json():
  items = _json('--domain=text', '--shapes=small-nl16,base')
  assert [it['name'] for it in items] == ['small-nl16', 'base']
  for it in items:
    assert set(REQUIRED) <= set(it)
    assert (it['input_length'], it['target_length']) == (512, 114)
    shape = shapes.parse(it['name'])
    assert it['params'] == costs.params(shape)
    assert it['train_flops_per_example'] == costs.train_flops_per_example(shape)
  assert items[1]['params'] == 222_903_552
  ratio = items[0]['train_flops_per_example'] / items[1]['train_flops_per_example']
  assert ratio == pytest.approx(0.621, abs=1e-3)


def test_table_shows_flops_relative_to_the_first_shape():
  result = _plan('--shapes=base,small-nl16', '--format=table')
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert 'vs first' in lines[0]
  assert lines[1].startswith('base') and '100.0%' in lines[1]
  assert lines[2].startswith('small-nl16') and '62.1%' in lines[2]


def test_named_shapes_keep_their_names():
  """A label never reads as another size, but a shape the user named keeps that name."""
  items = _json('--shapes=tiny-nl2-dm128-ff512-nh2')
  assert items[0]['name'] == 'tiny-nl2-dm128-ff512-nh2'


def test_vision_shapes_and_lengths():
  items = _json('--domain=vision', '--shapes=B/16,S/16-nl24')
  assert items[0]['params'] == 86_567_656 and items[0]['image_size'] == 224
  assert items[1]['num_encoder_layers'] == 24 and items[1]['num_decoder_layers'] == 0
  short = _json('--shapes=small', '--input_length=128', '--target_length=32')[0]
  assert short['train_flops_per_example'] == costs.train_flops_per_example(
      shapes.parse('small'), 128, 32)


def test_strategy_budgets_and_steps():
  items = _json('--domain=vision', '--strategy=deep_narrow', '--base=S/16',
                '--budgets=3e7,6e7', '--steps=0,1')
  assert [it.get('budget') for it in items] == [3e7, 6e7, None, None]
  assert [it.get('step') for it in items] == [None, None, 0, 1]
  assert all(it['strategy'] == 'deep_narrow' and it['base'] == 'S/16' for it in items)
  assert items[0]['params'] == pytest.approx(3e7, rel=0.1)
  assert items[2]['name'] == 'S/16' and items[3]['name'] == 'S/16-nl24'
  flops = _json('--strategy=depth', '--base=small', '--budgets=2e11', '--budget_kind=flops')
  assert flops[0]['budget_kind'] == 'flops'
  assert flops[0]['train_flops_per_example'] == pytest.approx(2e11, rel=0.1)


def _table_rows(*flags) -> list[dict]:
  result = _plan(*flags, '--format=table')
  assert result.returncode == 0, result.stderr
  header, *rows = result.stdout.splitlines()
  columns = header.split()
  return [dict(zip(columns, row.split(), strict=False)) for row in rows
          if not row.startswith('lengths:')]


def test_deep_narrow_below_the_base_is_deeper_and_narrower_than_width_first():
  """The issue's acceptance: at small-nl16's size (1.34e8) from base, DeepNarrow keeps depth
  (at least 12 layers per stack) and narrows; width_first gives up depth instead."""
  common = ('--domain=text', '--base=base', '--budgets=1.34e8')
  (deep,) = _table_rows('--strategy=deep_narrow', *common)
  (wide,) = _table_rows('--strategy=width_first', *common)
  assert int(deep['enc']) >= 12 and int(deep['dec']) >= 12 and int(deep['d_model']) < 768
  assert int(wide['enc']) <= int(deep['enc']) and int(wide['dec']) <= int(deep['dec'])
  assert int(wide['d_model']) >= int(deep['d_model'])
  assert (deep['enc'], deep['d_model'], deep['heads']) == ('12', '576', '9')
  assert (wide['name'], wide['enc'], wide['d_model']) == ('base-nl7', '7', '768')
  assert deep['name'] == 'text:el12-dl12-dm576-ff2432-nh9-kv64-relu-v32128'


@pytest.mark.parametrize('flags,expected', [
    (('--shapes=smal-nl16',), 'closest names: small'),
    (('--domain=text', '--shapes=B/16'), 'unknown text shape'),
    (('--strategy=deep_narow', '--base=small', '--budgets=1e8'), 'closest: deep_narrow'),
    (('--strategy=depth', '--base=small', '--budgets=1e3'), 'reachable params run from'),
    (('--strategy=depth', '--base=small', '--budgets=lots'),
     '--budgets=lots is not valid: --budgets takes comma-separated numbers > 0, e.g. 1e8'),
    (('--strategy=depth', '--base=small', '--budgets=1e8,-2e8'), '--budgets=1e8,-2e8 is not valid'),
    (('--strategy=depth', '--base=small', '--budgets=0'), '--budgets=0 is not valid'),
    (('--shapes=small', '--input_length=0'),
     r'--input_length=0 is out of range: --input_length takes an integer >= 1; '
     r'e.g. --input_length=512 \(the default\)$'),
    (('--shapes=small', '--target_length=-1'), '--target_length=-1 is out of range'),
    (('--shapes=small', '--batch=0'), '--batch=0 is out of range: --batch takes an integer >= 1'),
    (('--shapes=small', '--batch=many'), '--batch=many is not an integer'),
    (('--shapes=small', '--format=xml'), '--format=xml: value should be one of <json|table>'),
    (('--shapes=small', 'base'), 'unexpected arguments base; flags are --name=value'),
    (('--strategy=depth', '--base=small', '--steps=1100'), 'step 1100 .* from -12 to 12'),
    (('--strategy=depth', '--base=small', '--steps=-1100'), 'step -1100 .* from -12 to 12'),
    (('--strategy=depth', '--base=small', '--steps=1.5'),
     '--steps=1.5: expected comma-separated whole numbers from -12 to 12, e.g. -1,0,1,2'),
    (('--shapes=B/16',), "unknown text shape 'B/16'.*--domain=vision"),
    (('--shapes=small-nl',), "knob 'nl' .* needs a number"),
    (('--shapes=small-el8-nl16',), 'conflicts with el8'),
    (('--strategy=depth', '--base=small'), 'needs --budgets'),
    (('--shapes=small', '--strategy=depth', '--base=small'), 'not both'),
    ((), 'nothing to plan'),
    (('--domain=vision', '--strategy=decoder_depth', '--base=B/16', '--steps=1'),
     'encoder-only'),
])
def test_errors_are_one_line(flags, expected):
  result = _plan(*flags)
  assert result.returncode == 1
  assert result.stdout == ''
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: ') and re.search(expected, lines[0])


def test_table_is_a_library_call():
  """No flags are parsed: the footnote's batch and optimizer come from the items.

  In a fresh process, since suite.plan defines absl flags (--domain, --shapes, ...) that other
  command-line modules (suite.bench) define as well.
  """
  code = ('from suite import plan, shapes\n'
          "memory = plan.MemoryOptions(batch_size=8, optimizer='adamw')\n"
          "items = [plan.describe(shapes.parse(n), memory=memory) for n in ('small', 'base')]\n"
          'print(plan.table(items))')
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=120, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  text = result.stdout.rstrip('\n')
  assert text.splitlines()[1].startswith('small') and '100.0%' in text.splitlines()[1]
  assert text.splitlines()[-1].endswith(
      'memory at batch 8, adamw, bfloat16, remat none, one device (estimate)')


def test_memory_per_device_on_a_mesh():
  """--mesh plans without the mesh's devices: parameters, optimizer state and activations per
  device, sharded by the domain's rules; --device_memory_gib says which shapes do not fit."""
  flags = ('--shapes=base,large', '--batch=64', '--remat=full', '--scan')
  one = _json(*flags)
  mesh = _json(*flags, '--mesh=data:2,fsdp:2,model:2', '--device_memory_gib=2')
  for single, sharded in zip(one, mesh, strict=True):
    memory = sharded['memory_estimate']
    assert memory['mesh'] == {'data': 2, 'fsdp': 2, 'model': 2} and memory['devices'] == 8
    assert (memory['remat'], memory['scan'], memory['batch_size']) == ('full', True, 64)
    expected = costs.train_memory(
        shapes.parse(sharded['name']), 64, remat='full', scan=True, mesh=memory['mesh'],
        rules=domains.get('text').logical_axis_rules)
    assert memory['total_bytes'] == expected.total_bytes
    # Parameters over fsdp x model (the 32128 vocabulary over model too), activations over
    # the batch's data x fsdp (and heads over model).
    ratio = single['memory_estimate']['params_bytes'] / memory['params_bytes']
    assert 3.9 < ratio <= 4
    assert memory['activations_bytes'] < single['memory_estimate']['activations_bytes'] / 4
    assert memory['fits'] == (memory['total_bytes'] <= 2 * 2 ** 30)
  assert [it['memory_estimate']['fits'] for it in mesh] == [True, False]
  rows = _plan(*flags, '--mesh=data:2,fsdp:2,model:2', '--device_memory_gib=2',
               '--format=table').stdout.splitlines()
  assert rows[0].split()[-2:] == ['GiB', 'fits']
  assert rows[1].split()[-1] == 'yes' and rows[2].split()[-1] == 'NO'
  assert rows[-2].endswith('remat full, scan, data:2,fsdp:2,model:2 (8 devices), per device '
                           '(estimate)')
  assert rows[-1] == 'do not fit in 2 GiB per device: large'


@pytest.mark.parametrize('flags,expected', [
    (('--mesh=data:2,fsdp:-1',), 'a plan has no devices to fill in -1'),
    (('--mesh=data:2,pipeline:2',), "unknown axis 'pipeline'.*data, fsdp, model"),
    (('--mesh=data:3,fsdp:2', '--batch=32'), 'batch_size=32 .* multiple of 6'),
    (('--device_memory_gib=0',), '--device_memory_gib=0.0 is not valid: .* GiB > 0'),
])
def test_mesh_errors_are_one_line(flags, expected):
  result = _plan('--shapes=small', *flags)
  assert result.returncode == 1, result.stdout
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and re.search(expected, lines[0]), lines
