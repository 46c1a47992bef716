"""suite.flagcheck: every flag error is one line naming the flag, the value and what is valid."""

import os
import subprocess
import sys
import textwrap

import jax
import pytest
from absl import flags

from suite import flagcheck, partition

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _flag_values() -> flags.FlagValues:
  fv = flags.FlagValues()
  flags.DEFINE_integer('steps', 10, 'Timed steps.', lower_bound=1, flag_values=fv)
  flags.DEFINE_integer('layers', 2, 'Layers.', lower_bound=1, upper_bound=12, flag_values=fv)
  flags.DEFINE_integer('limit', None, 'Examples (None: all).', lower_bound=1, flag_values=fv)
  flags.DEFINE_float('rate', 1e-3, 'Learning rate.', flag_values=fv)
  flagcheck.require('rate', lambda rate: rate > 0, 'a number > 0', flag_values=fv)
  flags.DEFINE_list('budgets', [], 'Budgets.', flag_values=fv)
  flagcheck.require('budgets', lambda budgets: all(float(b) > 0 for b in budgets),
                    'comma-separated numbers > 0, e.g. 1e8,2e8', flag_values=fv)
  flags.DEFINE_enum('format', 'json', ['json', 'table'], 'Output format.', flag_values=fv)
  flags.DEFINE_string('workdir', None, 'Where the runs go.', required=True, flag_values=fv)
  return fv


@pytest.mark.parametrize('args, expected', [
    (['--steps=0'],
     '--steps=0 is out of range: --steps takes an integer >= 1; e.g. --steps=10 (the default)'),
    (['--steps=ten'], '--steps=ten is not an integer: --steps takes an integer >= 1'),
    (['--layers=13'], '--layers=13 is out of range: --layers takes an integer from 1 to 12'),
    (['--limit=-5'],
     '--limit=-5 is out of range: --limit takes an integer >= 1, or leave --limit out'),
    (['--rate=0'], '--rate=0.0 is not valid: --rate takes a number > 0; e.g. --rate=0.001'),
    (['--budgets=1e8,-2'],
     '--budgets=1e8,-2 is not valid: --budgets takes comma-separated numbers > 0, e.g. 1e8,2e8'),
    (['--budgets=lots'], '--budgets=lots is not valid'),
    (['--format=xml'], '--format=xml: value should be one of <json|table>'),
    (['--stpes=3'], "Unknown command line flag 'stpes'. Did you mean: steps"),
    (['extra'], 'unexpected arguments extra; flags are --name=value'),
])
def test_bad_values_are_described_in_one_line(args, expected):
  with pytest.raises(flagcheck.FlagError) as error:
    flagcheck.parse(['prog', '--workdir=w', *args], _flag_values())
  message = str(error.value)
  assert message.startswith(expected) and '\n' not in message


def test_missing_required_flag_and_several_bad_values():
  with pytest.raises(flagcheck.FlagError, match=r'^--workdir is required \(Where the runs go\)$'):
    flagcheck.parse(['prog'], _flag_values())
  with pytest.raises(flagcheck.FlagError) as error:
    flagcheck.parse(['prog', '--workdir=w', '--rate=-1', '--budgets=-1'], _flag_values())
  assert str(error.value) == (
      '--rate=-1.0 is not valid: --rate takes a number > 0; e.g. --rate=0.001 (the default); '
      '--budgets=-1 is not valid: --budgets takes comma-separated numbers > 0, e.g. 1e8,2e8')


def test_good_values_parse():
  fv = _flag_values()
  assert flagcheck.parse(['prog', '--workdir=w', '--steps=1', '--budgets=1e8'], fv) == ['prog']
  assert (fv.steps, fv.limit, fv.budgets) == (1, None, ['1e8'])


def test_batch_must_split_over_the_data_shards_and_microbatches():
  mesh = partition.make_mesh()
  need = partition.batch_shards(mesh) * 2
  flagcheck.check_batch('batch', need, microbatches=2)
  flagcheck.check_batch('batch', need, microbatches=2, mesh=mesh)
  with pytest.raises(flagcheck.FlagError, match=rf'^--batch={need + 1}: .* use a batch size '
                                                rf'that is a multiple of {need}, e.g. {need} or '
                                                rf'{2 * need}$'):
    flagcheck.check_batch('batch', need + 1, microbatches=2)


def test_a_mesh_flag_becomes_a_mesh_or_one_error_naming_the_flag():
  mesh = flagcheck.check_mesh('mesh', None)
  assert mesh.axis_names == partition.MESH_AXES and mesh.size == len(jax.devices())
  with pytest.raises(flagcheck.FlagError, match=r"^--mesh=data:0,fsdp:2: mesh 'data:0,fsdp:2': "
                                                "axis 'data' has size 0"):
    flagcheck.check_mesh('mesh', 'data:0,fsdp:2')
  with pytest.raises(flagcheck.FlagError, match=r'^--config.mesh=model:3: .*would fit: '):
    flagcheck.check_mesh('config.mesh', 'model:3')


def test_copy_flags_holds_a_modules_flags_with_their_bounds():
  fv = flags.FlagValues()
  flags.DEFINE_integer('n', 3, 'How many.', lower_bound=1, flag_values=fv)
  copied = flagcheck.copy_flags(__name__, fv)
  with pytest.raises(flagcheck.FlagError, match='--n=0 is out of range'):
    flagcheck.parse(['prog', '--n=0'], copied)
  assert not fv.is_parsed() and fv['n'].value == 3
  with pytest.raises(ValueError, match='defined no flags'):
    flagcheck.copy_flags('no.such.module', fv)


PROGRAM = textwrap.dedent("""
    from absl import flags
    from suite import flagcheck
    flags.DEFINE_integer('steps', 10, 'Timed steps.', lower_bound=1)
    def main(argv):
      if flags.FLAGS.steps == 7:
        raise flagcheck.FlagError('--steps=7: found only when running')
      print('ran', flags.FLAGS.steps)
    flagcheck.run(main)
""")


@pytest.mark.parametrize('args, status, stderr', [
    (['--steps=2'], 0, ''),
    (['--steps=0'], 1, 'error: --steps=0 is out of range: --steps takes an integer >= 1; '
                       'e.g. --steps=10 (the default)\n'),
    (['--steps=7'], 1, 'error: --steps=7: found only when running\n'),
])
def test_run_prints_one_error_line_and_exits_1(args, status, stderr):
  done = subprocess.run([sys.executable, '-c', PROGRAM, *args], cwd=REPO, capture_output=True,
                        text=True, timeout=60)
  assert (done.returncode, done.stderr) == (status, stderr)
  assert done.stdout == ('ran 2\n' if status == 0 else '')
