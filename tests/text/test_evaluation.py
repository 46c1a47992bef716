"""Evaluation of a T5 on seqio tasks: scoring, decoding into predictions, teacher-forced sums."""

import json

import jax
import numpy as np
import pytest

from suite import shapes
from suite.trainer import unbox
from tasks import vocab
from tasks.embedded import tasks as embedded
from tests.text.evaluation_golden import GOLDEN
from text import evaluation, t5, train

# The best value each embedded task's metrics can take.
PERFECT = {'accuracy': 100.0, 'pearson_corrcoef': 100.0, 'spearman_corrcoef': 100.0,
           'em': 100.0, 'f1': 100.0}
METRIC_NAMES = {'embedded_sst_v1': ['accuracy'], 'embedded_rte_v1': ['accuracy'],
                'embedded_stsb_v1': ['pearson_corrcoef', 'spearman_corrcoef'],
                'embedded_mc_v1': ['accuracy'], 'embedded_squad_v1': ['em', 'f1']}


@pytest.fixture(scope='module', autouse=True)
def _vocab_cache(tmp_path_factory):
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv(vocab.CACHE_ENV, str(tmp_path_factory.mktemp('vocab-cache')))
    yield


@pytest.fixture(scope='module')
def model_and_params():
  shape = train.match_vocabulary(shapes.Shape(
      num_encoder_layers=1, num_decoder_layers=1, d_model=32, d_ff=64, num_heads=2, d_kv=16))
  model = t5.build(shape, dropout_rate=0.0)
  return model, unbox(jax.jit(model.init)(jax.random.key(0)))


@pytest.mark.parametrize('task', sorted(embedded.DOWNSTREAM))
def test_gold_predictions_score_perfectly(task):
  seqio_task = evaluation.resolve(task)
  examples = evaluation.split_examples(seqio_task, 'validation', max_examples=50)
  gold = [ex['targets_pretokenized'].decode() for ex in examples]
  metrics = evaluation.score(seqio_task, examples, gold)
  assert metrics and all(metrics[k] == pytest.approx(PERFECT[k]) for k in metrics)
  wrong = evaluation.score(seqio_task, examples, ['zzz'] * len(examples))
  assert wrong and all(wrong[k] != pytest.approx(PERFECT[k]) for k in wrong)  # NaN counts


def test_predictions_are_the_cached_greedy_decodes_whatever_the_batching(model_and_params):
  model, params = model_and_params
  task = evaluation.resolve('embedded_rte_v1')
  examples = evaluation.split_examples(task, 'validation', max_examples=7)
  vocabulary = task.output_features['targets'].vocabulary
  by_four = evaluation.predict(model, params, examples, vocabulary, batch_size=4,
                               input_length=None, max_decode_len=6)
  by_eight = evaluation.predict(model, params, examples, vocabulary, batch_size=8,
                                input_length=None, max_decode_len=6)
  assert by_four == by_eight and len(by_four) == 7
  tokens = np.zeros((1, 64), np.int32)
  tokens[0, :len(examples[3]['inputs'])] = examples[3]['inputs']
  direct = np.asarray(model.decode(params, tokens, 6))[0]
  assert by_four[3] == vocabulary.decode(direct.tolist())
  # Trimming keeps a final EOS, as seqio's append_eos_after_trim does in training.
  trimmed = evaluation._trim(np.asarray(examples[0]['inputs']), 5, vocabulary.eos_id)
  assert trimmed.tolist() == list(examples[0]['inputs'][:4]) + [vocabulary.eos_id]


def test_mixture_metrics_are_prefixed_by_task(model_and_params, tmp_path):
  model, params = model_and_params
  metrics = evaluation.evaluate_task(model, params, 'embedded', batch_size=4, max_examples=4,
                                     max_decode_len=4, predictions_dir=tmp_path)
  assert set(metrics) == {f'{task}/{name}' for task, names in METRIC_NAMES.items()
                          for name in names}
  assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
      f'{name}.validation.jsonl' for name in embedded.DOWNSTREAM)


def test_upstream_metrics_are_token_means_that_padding_rows_do_not_change(model_and_params):
  model, params = model_and_params
  lengths = {'inputs': 64, 'targets': 8}
  task = 'embedded_sst_v1'
  batch = next(evaluation.eval_batches(task, lengths, batch_size=6, max_examples=6)())
  _, expected = jax.jit(model.loss)(params, batch)
  whole = evaluation.upstream_metrics(model, params, task, lengths, batch_size=6,
                                      max_examples=6)
  padded = evaluation.upstream_metrics(model, params, task, lengths, batch_size=4,
                                       max_examples=6)
  assert whole['neg_log_perplexity'] == pytest.approx(-float(expected['cross_entropy']),
                                                      rel=1e-5)
  assert whole['accuracy'] == pytest.approx(float(expected['accuracy']), rel=1e-5)
  assert padded == pytest.approx(whole, rel=1e-5)


def test_decoding_needs_prediction_metrics(model_and_params):
  model, params = model_and_params
  with pytest.raises(ValueError, match='upstream_metrics'):
    evaluation.evaluate_task(model, params, embedded.PRETRAIN)
  with pytest.raises(ValueError, match="no 'test' split"):
    evaluation.evaluate_task(model, params, 'embedded_sst_v1', split='test')


def test_span_corrupted_validation_is_the_same_at_every_evaluation(model_and_params):
  model, params = model_and_params
  lengths = {'inputs': 32, 'targets': 8}
  first, second = (evaluation.upstream_metrics(model, params, embedded.PRETRAIN, lengths,
                                               batch_size=8, max_examples=8) for _ in range(2))
  assert first == second


def test_text_evaluation_keeps_its_numbers(tmp_path):
  """Decoding and scoring through the core's evaluation steps (fixed-size weighted batches,
  predict jitted on the mesh) give exactly the predictions and metrics that the code before
  the move gave (tests/text/evaluation_golden.py); teacher-forced means agree to float32
  rounding (the sums are now per example, then over rows)."""
  shape = train.match_vocabulary(shapes.Shape(
      num_encoder_layers=2, num_decoder_layers=2, d_model=32, d_ff=64, num_heads=2, d_kv=16))
  model = t5.build(shape, dropout_rate=0.0)
  params = jax.tree.map(lambda x: x * 4, unbox(jax.jit(model.init)(jax.random.key(7))))
  for task, golden in GOLDEN.items():
    metrics = evaluation.evaluate_task(model, params, task, batch_size=16, input_length=64,
                                       max_decode_len=12, max_examples=50,
                                       predictions_dir=tmp_path)
    lines = (tmp_path / f'{task}.validation.jsonl').read_text().splitlines()
    assert [json.loads(line)['prediction'] for line in lines] == golden['predictions']
    assert metrics == golden['metrics']
    upstream = evaluation.upstream_metrics(model, params, task, {'inputs': 64, 'targets': 16},
                                           batch_size=16, max_examples=50)
    perplexity = upstream.pop('perplexity')  # exp(49 nats): float32 rounding x 49
    assert perplexity == pytest.approx(golden['upstream']['perplexity'], rel=1e-5)
    assert upstream == pytest.approx(
        {k: v for k, v in golden['upstream'].items() if k != 'perplexity'}, rel=1e-6)
