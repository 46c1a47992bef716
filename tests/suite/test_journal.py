"""The results journal: whole lines, a cut last line reported and ignored, versions checked."""

import json
import math
import os

import pytest

from suite import journal


def _record(run_id, status='ok', **extra):
  return {'run_id': run_id, 'domain': 'text', 'stage': 'pretrain', 'task': 't',
          'status': status, 'metrics': {'loss': 1.0}, **extra}


def test_append_then_read_round_trips_in_order(tmp_path):
  journal.append(tmp_path, _record('a'))
  journal.append(tmp_path, _record('b', metrics={'loss': math.nan, 'acc': math.inf}))
  records = journal.read(tmp_path)
  assert [r['run_id'] for r in records] == ['a', 'b']
  assert records[0]['schema'] == journal.SCHEMA_VERSION
  assert records[1]['metrics'] == {'loss': None, 'acc': None}  # JSON has no NaN
  with open(journal.path(tmp_path)) as f:
    assert all(line.endswith('\n') for line in f)


def test_missing_journal_reads_empty(tmp_path):
  assert journal.read(tmp_path / 'nowhere') == []


@pytest.mark.parametrize('tail', [b'{"run_id": "c", "sta', b'{"run_id": "c"}'])
def test_cut_last_line_is_ignored_then_dropped_on_append(tmp_path, tail, caplog):
  journal.append(tmp_path, _record('a'))
  with open(journal.path(tmp_path), 'ab') as f:
    f.write(tail)  # a write cut before its newline
  assert [r['run_id'] for r in journal.read(tmp_path)] == ['a']
  assert 'cut' in caplog.text
  journal.append(tmp_path, _record('d'))
  with open(journal.path(tmp_path)) as f:
    lines = f.read().splitlines()
  assert [json.loads(line)['run_id'] for line in lines] == ['a', 'd']


def test_damaged_middle_line_names_file_and_line(tmp_path):
  journal.append(tmp_path, _record('a'))
  with open(journal.path(tmp_path), 'a') as f:
    f.write('not json\n' + json.dumps(_record('b')) + '\n')
  for action in (journal.read, lambda w: journal.append(w, _record('c'))):
    with pytest.raises(journal.JournalError, match=r'results.jsonl:2: not a journal record'):
      action(tmp_path)


def test_foreign_records_and_other_versions_are_errors(tmp_path):
  os.makedirs(tmp_path / 'x')
  with open(journal.path(tmp_path / 'x'), 'w') as f:
    f.write('{"hello": 1}\n')
  with pytest.raises(journal.JournalError, match='without schema, run_id'):
    journal.read(tmp_path / 'x')
  with open(journal.path(tmp_path), 'w') as f:
    f.write(json.dumps({**_record('a'), 'schema': 0}) + '\n')
  assert journal.read(tmp_path)  # readable ...
  with pytest.raises(journal.JournalError, match='incompatible version.*schema 0.*writes 1'):
    journal.check_compatible(tmp_path)  # ... but not resumable


def test_append_needs_the_required_fields(tmp_path):
  with pytest.raises(journal.JournalError, match='needs metrics'):
    journal.append(tmp_path, {k: v for k, v in _record('a').items() if k != 'metrics'})


def test_finished_and_latest_prefer_ok_records():
  records = [_record('a', 'failed', error='boom'), _record('a'), _record('b', 'diverged'),
             _record('a', 'failed', error='later')]
  assert journal.finished(records) == {'a'}
  latest = journal.latest_by_run(records)
  assert latest['a']['status'] == 'ok' and latest['b']['status'] == 'diverged'
