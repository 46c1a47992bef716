"""`python -m tasks.list` and `python -m tasks.show`: in-process and as programs."""

import json
import subprocess
import sys

import pytest
from absl import flags

from suite import flagcheck
from tasks import extra, images, show, sources, vocab
from tasks import list as task_list
from tasks.embedded import tasks as embedded


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
  monkeypatch.setenv(vocab.CACHE_ENV, str(tmp_path_factory.getbasetemp() / 'vocab-cache'))


def test_listing_groups_by_domain():
  data = task_list.listing()
  text = data['text']['tasks']
  assert sorted(text['embedded']) == sorted([embedded.PRETRAIN, *embedded.DOWNSTREAM])
  extras = [n for group, names in text.items() if group.startswith('extra/') for n in names]
  assert sorted(extras) == sorted(extra.TASKS)
  assert data['text']['mixtures']['embedded'] == sorted(embedded.DOWNSTREAM)
  assert set(data['vision']['tasks']) == set(images.IMAGE_TASKS)
  assert 'embedded_digits_v1' in task_list.table(data)


def test_show_text_task(capsys):
  assert show.show('embedded_sst_v1', n=2) == 0
  out = capsys.readouterr().out
  assert out.count('embedded_sst_v1 [validation] example') == 2
  assert 'embedded_sst sentence:' in out and 'targets (' in out


def test_show_image_task_as_json(capsys):
  assert show.show('embedded_digits_v1', split='train', n=2, as_json=True) == 0
  rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
  assert len(rows) == 2 and rows[0]['shape'] == [32, 32, 3]
  assert -1.0 <= rows[0]['min'] <= rows[0]['max'] <= 1.0


def test_show_unknown_name_is_one_line_with_closest(capsys):
  assert show.show('embeded_sst') == 1
  err = capsys.readouterr().err.strip()
  assert err.startswith('error: unknown') and 'embedded_sst_v1' in err and '\n' not in err


def test_show_missing_data_is_one_line(tmp_path, capsys):
  sources.configure(tfds_data_dir=str(tmp_path))
  try:
    assert show.show('snli_v1', n=1) == 1
  finally:
    sources.configure()
  err = capsys.readouterr().err.strip()
  assert err.startswith('error: TFDS dataset snli') and str(tmp_path) in err and '\n' not in err


def test_programs_run(tmp_path):
  env = {'SHAPEBENCH_CACHE': str(tmp_path), 'PATH': '/usr/bin:/bin', 'HOME': str(tmp_path)}
  listed = subprocess.run([sys.executable, '-m', 'tasks.list', '--format=json'],
                          capture_output=True, text=True, env=env, timeout=300)
  assert listed.returncode == 0, listed.stderr
  assert 'snli_v1' in json.loads(listed.stdout)['text']['tasks']['extra/nli']
  bad = subprocess.run([sys.executable, '-m', 'tasks.show', '--task=embeded_sst'],
                       capture_output=True, text=True, env=env, timeout=300)
  assert bad.returncode == 1
  assert 'embedded_sst_v1' in bad.stderr.strip().splitlines()[-1]
  assert not list(tmp_path.rglob('*.model'))  # registering tasks trains no vocabulary


def test_show_unknown_split_is_one_line_with_the_valid_splits(capsys):
  assert show.show('embedded_sst_v1', split='tset', n=1) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "split 'tset'" in err[0] and 'validation' in err[0]


def _parse(module, *args):
  flag_values = flags.FlagValues()
  module.define_flags(flag_values)
  return flagcheck.parse([module.__name__, *args], flag_values)


@pytest.mark.parametrize('args, expected', [
    (['--n=0'], '--n=0 is out of range: --n takes an integer >= 1; e.g. --n=3 (the default)'),
    (['--n=three'], '--n=three is not an integer: --n takes an integer >= 1'),
    (['--inputs_length=0'], '--inputs_length=0 is out of range: --inputs_length takes an '
                            'integer >= 1'),
    (['--targets_length=-8'], '--targets_length=-8 is out of range'),
    (['--seed=-1'], '--seed=-1 is out of range: --seed takes an integer >= 0'),
    (['--format=yaml'], '--format=yaml: value should be one of <text|json>'),
    (['extra'], 'unexpected arguments extra'),
])
def test_show_flags_are_checked_in_one_line(args, expected):
  with pytest.raises(flagcheck.FlagError) as error:
    _parse(show, '--task=embedded_sst_v1', *args)
  assert str(error.value).startswith(expected) and '\n' not in str(error.value)


def test_show_needs_a_task_and_list_a_known_format():
  with pytest.raises(flagcheck.FlagError, match=r'^--task is required \(Task or mixture name'):
    _parse(show)
  assert _parse(show, '--task=embedded_sst_v1', '--n=1') == ['tasks.show']
  with pytest.raises(flagcheck.FlagError, match=r'^--format=csv: value should be one of '
                                                r'<table\|json>$'):
    _parse(task_list, '--format=csv')
