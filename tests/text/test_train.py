"""Text training end to end on the embedded tasks: pre-train, resume, finetune, decode, score."""

import json
import math

import jax
import numpy as np
import optax
import pytest

from suite import loop, metrics_log, optim, shapes, trainer
from tasks import evaluate as task_evaluate
from tasks import vocab
from tasks.embedded import examples as embedded_examples
from tasks.registry import TaskNotFoundError
from text import domain as text_domain
from text import pretraining_check, t5, train

STEPS = 30
LOOP = dict(log_every=5, checkpoint_every=None, tensorboard=False, async_checkpoints=False)
PRETRAIN = dict(batch_size=16, input_length=64, max_eval_examples=32, **LOOP)
FINETUNE = dict(steps=20, batch_size=16, input_length=64, target_length=8, eval_batch_size=100,
                **LOOP)


@pytest.fixture(scope='module')
def shape(tmp_path_factory):
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv(vocab.CACHE_ENV, str(tmp_path_factory.mktemp('vocab-cache')))
    small = shapes.parse('tiny').replace(num_encoder_layers=2, num_decoder_layers=2, d_model=64,
                                         d_ff=128, num_heads=2, d_kv=32)
    yield train.match_vocabulary(small)


@pytest.fixture(scope='module')
def pretrained(shape, tmp_path_factory):
  workdir = tmp_path_factory.mktemp('pretrain')
  return workdir, train.pretrain(shape, steps=STEPS, workdir=workdir, **PRETRAIN)


def _losses(workdir):
  return [(r['step'], r['train/loss']) for r in metrics_log.read_metrics(workdir, 'train')]


def test_pretraining_lowers_the_loss_and_reports_upstream_metrics(shape, pretrained):
  workdir, result = pretrained
  assert shape.vocab_size == vocab.get_vocabulary().vocab_size
  assert (result.stage, result.status, result.steps, result.resumed_from) == (
      'pretrain', 'ok', STEPS, None)
  losses = _losses(workdir)
  assert [s for s, _ in losses] == [5, 10, 15, 20, 25, 30]
  assert losses[-1][1] < losses[0][1] - 1.0
  upstream = result.metrics
  assert set(upstream) == {'loss', 'accuracy', 'neg_log_perplexity', 'perplexity'}
  assert upstream == result.upstream
  assert 0.0 < upstream['accuracy'] < 1.0
  assert upstream['perplexity'] == pytest.approx(math.exp(-upstream['neg_log_perplexity']),
                                                 rel=1e-5)
  # Better than a uniform guess over the vocabulary, and logged as the final evaluation.
  assert -upstream['neg_log_perplexity'] < math.log(shape.vocab_size) - 1.0
  last_eval = metrics_log.read_metrics(workdir, 'eval')[-1]
  assert last_eval['eval/neg_log_perplexity'] == pytest.approx(upstream['neg_log_perplexity'])
  record = json.loads(json.dumps(result.record()))
  assert record['steps'] == STEPS and record['wall_s'] > 0 and record['status'] == 'ok'


def test_interrupted_pretraining_resumes_on_the_same_loss_curve(shape, pretrained, tmp_path):
  workdir, _ = pretrained
  first = train.pretrain(shape, steps=STEPS // 2, workdir=tmp_path, **PRETRAIN)
  assert first.steps == STEPS // 2
  resumed = train.pretrain(shape, steps=STEPS, workdir=tmp_path, **PRETRAIN)
  assert (resumed.resumed_from, resumed.steps) == (STEPS // 2, STEPS)
  got, want = _losses(tmp_path), _losses(workdir)
  assert [s for s, _ in got] == [s for s, _ in want]
  np.testing.assert_allclose([v for _, v in got], [v for _, v in want], rtol=1e-5)


def test_finetuning_decodes_and_scores_with_the_tasks_metrics(shape, pretrained, tmp_path):
  _, pre = pretrained
  task = 'embedded_sst_v1'
  result = train.finetune(shape, task, workdir=tmp_path, init_params=pre.params, **FINETUNE)
  assert (result.stage, result.status, result.steps) == ('finetune', 'ok', 20)
  # The pre-trained params stay usable for finetuning on other tasks.
  assert not any(x.is_deleted() for x in jax.tree.leaves(pre.params))
  assert set(result.metrics) == {'accuracy'}
  assert 0.0 <= result.metrics['accuracy'] <= 100.0
  assert set(result.upstream) == {'loss', 'accuracy', 'neg_log_perplexity', 'perplexity'}
  # One prediction per validation example, keyed by idx, that the task's scorer agrees with.
  path = tmp_path / train.PREDICTIONS_DIR / f'{task}.validation.jsonl'
  lines = [json.loads(line) for line in path.read_text().splitlines()]
  assert sorted(r['idx'] for r in lines) == list(range(embedded_examples.SIZES['validation']))
  scored = task_evaluate.evaluate(task, str(path), 'validation')
  assert scored['metrics'] == pytest.approx(result.metrics)
  # T5 finetuning's constant learning rate, not pre-training's.
  lr = metrics_log.read_metrics(tmp_path, 'train')[-1]['train/learning_rate']
  assert lr == pytest.approx(optim.t5_finetune().learning_rate)


def test_finetuning_from_scratch_beats_the_baselines(shape, tmp_path):
  """Finetuning learns, not just runs: on embedded_mc_v1 (answer with the text of one of four
  choices) decoded accuracy on the first 200 validation examples beats both always giving the
  commonest answer (3.5 here) and picking one of the four choices at random (25) by 10 points.
  From scratch, this shape, 200 steps at a constant 1e-2: seeds 0, 1, 2 gave 50.0, 51.5, 52.5
  (150 steps: 45.0, 43.0; 100 steps: 38.0, 24.5, 41.0)."""
  task, examples = 'embedded_mc_v1', 200
  result = train.finetune(
      shape, task, workdir=tmp_path, steps=200, batch_size=32, input_length=72,
      target_length=8, dropout_rate=0.0, optimizer=optim.t5_finetune(1e-2), seed=0,
      max_eval_examples=examples, eval_batch_size=100, log_every=50, checkpoint_every=None,
      tensorboard=False, async_checkpoints=False)
  assert result.status == 'ok'
  majority = pretraining_check.majority_accuracy(task, max_examples=examples)
  assert result.metrics['accuracy'] >= max(majority, 25.0) + 10.0


def test_errors_name_the_fix(shape, tmp_path):
  with pytest.raises(ValueError, match='match_vocabulary'):
    train.pretrain(shape.replace(vocab_size=100), steps=1, workdir=tmp_path, **PRETRAIN)
  with pytest.raises(TaskNotFoundError, match='embedded_sst_v1'):
    train.finetune(shape, 'embedded_sst', workdir=tmp_path, **FINETUNE)
  with pytest.raises(TypeError, match='Shape or a T5Model'):
    train.finetune('tiny', 'embedded_sst_v1', workdir=tmp_path, **FINETUNE)
  assert loop.CHECKPOINT_DIR not in {p.name for p in tmp_path.iterdir()}


def test_each_step_draws_a_new_dropout_mask(shape, pretrained):
  """The trainer folds the step number into the state's RNG (suite.trainer), so dropout draws
  a new mask every step: with the params and the batch held fixed, the loss at step 0 and at
  step 1 differ, and the same step repeats bit for bit."""
  params = pretrained[1].params
  runner = trainer.Trainer(t5.build(shape, dropout_rate=0.1), optax.set_to_zero())
  batch = text_domain.synthetic_batch(shape, 4, text_domain.Lengths(16, 8), seed=0)

  def loss_at(step):
    state = runner.init_from_params(params, seed=0)
    state = state.replace(step=jax.device_put(np.int32(step), runner.state_shardings.step))
    return float(runner.train_step(state, batch)[1]['loss'])

  step0, step1, step0_again = loss_at(0), loss_at(1), loss_at(0)
  assert step0 == step0_again
  assert abs(step0 - step1) > 1e-4  # a new mask, not float noise (the repeat is exact)


def test_the_evaluate_stage_scores_a_runs_checkpoint_through_the_contract(shape, pretrained,
                                                                          tmp_path):
  """The Domain's `evaluate` stage restores a workdir's latest params onto the core's eval
  steps and gives the run's own final evaluation; the core turns its result into a journal
  record with DESIGN.md's fields."""
  from suite.domain import ModelOptions, StageConfig, journal_record
  from tasks import span_corruption
  workdir, result = pretrained
  sizes = {'input_length': 64, 'target_length': span_corruption.lengths_for_inputs(64).targets}
  config = StageConfig(task=train.PRETRAIN_TASK, batch_size=16, workload=sizes,
                       init_params=str(workdir), max_eval_examples=32)
  scored = text_domain.DOMAIN.stages['evaluate'](shape, ModelOptions(), config, tmp_path)
  assert (scored.stage, scored.status, scored.steps) == ('evaluate', 'ok', 0)
  assert scored.metrics == pytest.approx(result.metrics, rel=1e-6)
  record = journal_record(scored, domain='text', shape=shape, seed=0, strategy='canonical',
                          scale=1.0, workload=text_domain.DOMAIN.workload(shape, **sizes))
  assert set(record) == {'run_id', 'domain', 'strategy', 'scale', 'shape_name', 'shape',
                         'params', 'train_flops_per_example', 'workload', 'stage', 'task',
                         'metrics', 'steps', 'seed', 'wall_s', 'status', 'versions'}
  assert record['metrics'] == dict(scored.metrics) and record['workload'] == sizes
  assert json.loads(json.dumps(record)) == record
  again = journal_record(scored, domain='text', shape=shape, seed=1, strategy='canonical',
                         scale=1.0, workload=text_domain.DOMAIN.workload(shape, **sizes))
  assert again['run_id'] != record['run_id']  # the seed tells runs apart
