"""tasks.evaluate: gold predictions score 100, constants score what the metric defines, bad files
fail naming the line, and the CLI answers unknown names with the closest ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from absl import flags

from suite import flagcheck
from tasks import benchmark, evaluate

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _write(path, records) -> str:
  with open(path, 'w', encoding='utf-8') as f:
    for record in records:
      f.write(record if isinstance(record, str) else json.dumps(record))
      f.write('\n')
  return str(path)


def _score(tmp_path, task, predictions):
  path = _write(tmp_path / 'predictions.jsonl',
                [{'idx': i, 'prediction': p} for i, p in enumerate(predictions)])
  return evaluate.evaluate(task, path)['metrics']


@pytest.mark.parametrize('task', benchmark.EVAL_TASKS)
def test_gold_predictions_score_100(data_dir, tmp_path, task):
  examples = benchmark.examples(task)
  if task == 'super_glue_wsc_v1':
    # The target names the candidate; naming it is right only where the label says it is the
    # referent, so the oracle names something else for the other candidates.
    gold = [ex['targets'] if ex['label'] == 1 else 'nobody' for ex in examples]
  else:
    gold = [ex['targets'] for ex in examples]
  scores = _score(tmp_path, task, gold)
  assert scores and all(value == pytest.approx(100.0) for value in scores.values()), scores


def test_wsc_targets_as_predictions_score_the_referent_rate(data_dir, tmp_path):
  # Fixture labels 0, 1, 1: predicting every candidate is right on the two true referents.
  examples = benchmark.examples('super_glue_wsc_v1')
  scores = _score(tmp_path, 'super_glue_wsc_v1', [ex['targets'] for ex in examples])
  assert scores == {'accuracy': pytest.approx(200 / 3)}


@pytest.mark.parametrize('task, prediction, expected', [
  ('glue_cola_v1', 'acceptable', {'matthews_corrcoef': 0.0}),
  # labels 1 0 1 1: accuracy 3/4; F1 with P = 3/4, R = 1.
  ('glue_mrpc_v1', 'equivalent', {'accuracy': 75.0, 'f1': 100 * 1.5 / 1.75}),
  ('glue_sst2_v1', 'banana', {'accuracy': 0.0}),
  # contradiction, neutral, entailment, entailment: only entailment's F1 (P 1/2, R 1) is > 0.
  ('super_glue_cb_v1', 'entailment', {'accuracy': 50.0, 'mean_3class_f1': 100 * (2 / 3) / 3}),
  # answers 1 0 1 | 1 0 | 1 0: TP 4, FP 3 -> F1a 8/11; no question has every answer right.
  ('super_glue_multirc_v1', 'True', {'f1': 100 * 8 / 11, 'exact_match': 0.0}),
  # golds [Denver Broncos], [Denver], [Carr, Oakland Raiders]: EM 0 1 0, F1 2/3 1 0.
  ('super_glue_record_v1', 'Denver', {'em': 100 / 3, 'f1': 100 * (5 / 3) / 3}),
  ('squad11_v1', 'California', {'em': 100 / 3, 'f1': 100 / 3}),
  # referents Mark (label 0), The city councilmen (1), the refrigerator (1).
  ('super_glue_wsc_v1', 'the refrigerator', {'accuracy': 200 / 3}),
  ('glue_stsb_v1', '3.0', {'pearson_corrcoef': None, 'spearman_corrcoef': None}),
])
def test_constant_predictions(data_dir, tmp_path, task, prediction, expected):
  n = len(benchmark.examples(task))
  scores = _score(tmp_path, task, [prediction] * n)
  assert set(scores) == set(expected)
  for name, value in expected.items():
    assert scores[name] == (None if value is None else pytest.approx(value)), name


@pytest.mark.parametrize('lines, message', [
  (['{"idx": 0, "prediction": "a"}', '{"idx": 1, "prediction": '], r':2: not valid JSON'),
  (['{"idx": 0, "prediction": "a"}', '{"prediction": "b"}'], r':2: expected \{"idx"'),
  (['{"idx": 0, "prediction": "a"}', '{"idx": 0, "prediction": "b"}'],
   r':2: duplicate idx 0 \(first on line 1\)'),
  (['{"idx": 7, "prediction": "a"}'], r':1: idx 7 is not in the split \(valid: 0..3\)'),
  (['{"idx": "0", "prediction": "a"}'], r':1: idx must be an integer'),
  (['{"idx": 0, "prediction": 1}'], r':1: prediction must be a string'),
  (['{"idx": 0, "prediction": "a"}', '', '{"idx": 2, "prediction": "a"}'],
   r'no prediction for 2 of 4 examples \(idx 1, 3\)'),
])
def test_malformed_prediction_files(lines, message):
  with pytest.raises(evaluate.PredictionsError, match=message):
    evaluate.parse_predictions(lines, num_examples=4)


def test_blank_lines_and_any_order_are_fine():
  lines = ['{"idx": 1, "prediction": "b"}', '', '{"idx": 0, "prediction": "a"}']
  assert evaluate.parse_predictions(lines, num_examples=2) == ['a', 'b']


def _cli(*args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  return subprocess.run([sys.executable, '-m', 'tasks.evaluate', *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)


def test_cli_scores_and_rejects_unknown_names(data_dir, tmp_path):
  examples = benchmark.examples('super_glue_cb_v1')
  path = _write(tmp_path / 'cb.jsonl',
                [{'idx': ex['idx'], 'prediction': ex['targets']} for ex in examples])
  done = _cli('--task=super_glue_cb_v1', f'--predictions={path}', f'--data_dir={data_dir}')
  assert done.returncode == 0, done.stderr
  result = json.loads(done.stdout)
  assert result == {'task': 'super_glue_cb_v1', 'split': 'validation', 'num_examples': 4,
                    'metrics': {'mean_3class_f1': 100.0, 'accuracy': 100.0}}
  done = _cli('--task=super_glue_cb', f'--predictions={path}', f'--data_dir={data_dir}')
  assert done.returncode != 0 and done.stdout == ''
  error = [line for line in done.stderr.splitlines() if line.startswith('error:')]
  assert len(error) == 1 and 'super_glue_cb_v1' in error[0]


def test_other_seqio_tasks_score_with_their_own_metrics(tmp_path):
  import seqio
  import tensorflow as tf

  from tasks import metrics

  name = 'test_evaluate_tiny_v1'
  if name not in seqio.TaskRegistry.names():
    texts = {'inputs': ['a', 'b', 'c'], 'targets': ['yes', 'no', 'yes']}
    seqio.TaskRegistry.add(
      name,
      source=seqio.FunctionDataSource(
        lambda split, shuffle_files: tf.data.Dataset.from_tensor_slices(texts),
        splits=('validation',)),
      preprocessors=[seqio.preprocessors.tokenize],
      output_features={k: seqio.Feature(seqio.ByteVocabulary()) for k in texts},
      postprocess_fn=lambda text, example=None, is_target=False: (
        metrics.string_label_to_class_id(text, ('no', 'yes'))),
      metric_fns=[metrics.accuracy])
  assert _score(tmp_path, name, ['yes', 'yes', 'maybe']) == {'accuracy': pytest.approx(100 / 3)}


@pytest.mark.parametrize('args, expected', [
    (['--predictions=p.jsonl'], r'^--task is required \(Registered task name'),
    (['--task=glue_cola_v1'], r'^--predictions is required \(JSONL file'),
    (['--task=glue_cola_v1', '--predictions=p.jsonl', 'more'], r'^unexpected arguments more'),
])
def test_missing_flags_are_one_line_errors(args, expected):
  flag_values = flags.FlagValues()
  evaluate.define_flags(flag_values)
  with pytest.raises(flagcheck.FlagError, match=expected):
    flagcheck.parse(['tasks.evaluate', *args], flag_values)
