"""text.pretraining_check: the pretrained-vs-scratch comparison runs end to end (tiny budget)."""

import pytest

from text import pretraining_check


def test_majority_baselines_are_the_constant_answer_rates():
  assert pretraining_check.majority_accuracy('embedded_sst_v1') == pytest.approx(50.8)
  # Multiple choice answers with the choice's text, which varies: a constant is rarely right.
  assert pretraining_check.majority_accuracy('embedded_mc_v1') < 10.0
  with pytest.raises(ValueError, match='embedded_rte_v1'):
    pretraining_check.majority_accuracy('embedded_stsb_v1')


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
