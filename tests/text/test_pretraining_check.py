"""text.pretraining_check: the pretrained-vs-scratch comparison runs end to end (tiny budget)."""

import os
import subprocess
import sys

import pytest

from suite import flagcheck
from text import pretraining_check

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_majority_baselines_are_the_constant_answer_rates():
  assert pretraining_check.majority_accuracy('embedded_sst_v1') == pytest.approx(50.8)
  # Multiple choice answers with the choice's text, which varies: a constant is rarely right.
  assert pretraining_check.majority_accuracy('embedded_mc_v1') < 10.0
  with pytest.raises(ValueError, match='embedded_rte_v1'):
    pretraining_check.majority_accuracy('embedded_stsb_v1')
  # On the first validation examples, as evaluation with max_eval_examples scores them.
  assert pretraining_check.majority_accuracy('embedded_sst_v1', max_examples=200) == 50.0
  assert pretraining_check.majority_accuracy('embedded_mc_v1', max_examples=200) == 3.5


def test_runs_both_starts_for_each_task(tmp_path):
  result = pretraining_check.run(str(tmp_path), ['embedded_sst_v1'], pretrain_steps=2,
                                 finetune_steps=2, batch_size=4, learning_rate=3e-3,
                                 max_eval_examples=8)
  assert result['pretrain']['status'] == 'ok' and result['pretrain']['steps'] == 2
  runs = result['tasks']['embedded_sst_v1']
  assert set(runs) == {'majority_accuracy', 'pretrained', 'scratch'}
  for start in ('pretrained', 'scratch'):
    assert 0.0 <= runs[start]['accuracy'] <= 100.0
  assert (tmp_path / 'embedded_sst_v1-pretrained' / 'metrics.jsonl').exists()


@pytest.mark.parametrize('args, expected', [
    (['--pretrain_steps=0'],
     '--pretrain_steps=0 is out of range: --pretrain_steps takes an integer >= 1; '
     'e.g. --pretrain_steps=2000 (the default)'),
    (['--finetune_steps=-1'], '--finetune_steps=-1 is out of range'),
    (['--batch_size=0'], '--batch_size=0 is out of range: --batch_size takes an integer >= 1'),
    (['--finetune_learning_rate=0'],
     '--finetune_learning_rate=0.0 is not valid: --finetune_learning_rate takes a number > 0'),
    (['--finetune_learning_rate=nan'], '--finetune_learning_rate=nan is not valid'),
    (['--max_eval_examples=-5'],
     '--max_eval_examples=-5 is out of range: --max_eval_examples takes an integer >= 1, '
     'or leave --max_eval_examples out'),
    (['--seed=-1'], '--seed=-1 is out of range: --seed takes an integer >= 0'),
    (['--pretrain_steps=2k'], '--pretrain_steps=2k is not an integer'),
])
def test_bad_flag_values_are_one_line_errors(args, expected):
  with pytest.raises(flagcheck.FlagError) as error:
    flagcheck.parse(['text.pretraining_check', '--workdir=w', *args],
                    flagcheck.copy_flags(pretraining_check))
  assert str(error.value).startswith(expected) and '\n' not in str(error.value)


def test_workdir_is_required():
  with pytest.raises(flagcheck.FlagError, match=r'^--workdir is required \(Where the runs'):
    flagcheck.parse(['text.pretraining_check'], flagcheck.copy_flags(pretraining_check))


def test_task_names_are_checked_with_the_closest_names():
  pretraining_check.check_tasks(['embedded_sst_v1', 'embedded_mc_v1'])
  with pytest.raises(flagcheck.FlagError, match="^--tasks=embedded_sst: 'embedded_sst' is not an "
                                                'embedded classification task; closest: '
                                                'embedded_sst_v1'):
    pretraining_check.check_tasks(['embedded_sst'])
  with pytest.raises(flagcheck.FlagError, match="'embedded_stsb_v1' is not an embedded "
                                                'classification task'):
    pretraining_check.check_tasks(['embedded_sst_v1', 'embedded_stsb_v1'])


def test_cli_rejects_an_unknown_task_in_one_line_before_training(tmp_path):
  """It used to print a traceback."""
  workdir = tmp_path / 'run'
  done = subprocess.run(
      [sys.executable, '-m', 'text.pretraining_check', f'--workdir={workdir}',
       '--tasks=embedded_sst'], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == 1 and done.stdout == ''
  assert done.stderr.splitlines()[-1] == (
      "error: --tasks=embedded_sst: 'embedded_sst' is not an embedded classification task; "
      'closest: embedded_sst_v1, embedded_rte_v1, embedded_mc_v1.')
  assert 'Traceback' not in done.stderr and not workdir.exists()
