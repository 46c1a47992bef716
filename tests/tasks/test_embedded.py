"""The embedded corpus and downstream tasks: deterministic, batched, scorable, knowledge-based."""

import json

import numpy as np
import pytest
import seqio

from tasks import vocab
from tasks.embedded import corpus, examples, lexicon
from tasks.embedded import tasks as embedded

ALL = [embedded.PRETRAIN, *embedded.DOWNSTREAM]
LENGTHS = {'inputs': 128, 'targets': 32}


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
  monkeypatch.setenv(vocab.CACHE_ENV, str(tmp_path_factory.getbasetemp() / 'vocab-cache'))


def test_corpus_is_fixed_and_small():
  docs = corpus.documents('train')
  assert len(docs) == 7728  # the README's figures
  assert len(corpus.text_bytes('train')) == 1_009_719
  assert corpus.documents.__wrapped__('train') == docs  # regenerated from scratch: same text
  with pytest.raises(ValueError, match='valid splits'):
    corpus.documents('test')


def test_lexicon_and_task_sizes_are_the_readmes():
  world = lexicon.load()
  assert (len(world.countries), len(world.animals), len(world.elements)) == (57, 56, 34)
  assert (len(world.positive), len(world.negative)) == (30, 30)
  assert examples.SIZES == {'train': 2000, 'validation': 500}


def test_corpus_states_the_facts_of_held_out_entities():
  text = corpus.text_bytes('train').decode()
  world = lexicon.load()
  _, held_countries = lexicon.held_out(world.countries, seed=examples.KNOWLEDGE_SPLIT_SEED)
  _, held_animals = lexicon.held_out(world.animals, seed=examples.KNOWLEDGE_SPLIT_SEED)
  for c in held_countries:
    assert c.capital in text and f'{c.name} ' in text
    assert any(s in text for s in [f'{c.capital} is the capital of {c.name}',
                                   f'The capital of {c.name} is {c.capital}',
                                   f'The capital city of {c.name} is {c.capital}'])
  for a in held_animals:
    assert f'the {a.name} is' in text.lower()


@pytest.mark.parametrize('name', ALL)
def test_task_yields_tokenized_examples(name):
  task = seqio.get_mixture_or_task(name)
  ds = task.get_dataset(LENGTHS, split='validation', shuffle=False, seed=0)
  batch = list(ds.take(4).as_numpy_iterator())
  assert len(batch) == 4
  for ex in batch:
    assert 0 < len(ex['inputs']) <= LENGTHS['inputs']
    assert 0 < len(ex['targets']) <= LENGTHS['targets']
    assert ex['targets'][-1] == vocab.VOCABULARY.eos_id


@pytest.mark.parametrize('name', list(embedded.DOWNSTREAM))
def test_targets_score_perfectly_and_majority_does_not(name):
  task = seqio.get_mixture_or_task(name)
  ds = task.get_dataset(LENGTHS, split='validation', shuffle=False, seed=0)
  rows = list(ds.as_numpy_iterator())
  assert len(rows) == examples.SIZES['validation']
  # The postprocessor sees the dataset's own examples, as tasks.evaluate and decoding do.
  targets = [task.postprocess_fn(r['targets_pretokenized'], example=r, is_target=True)
             for r in rows]
  predictions = [task.postprocess_fn(r['targets_pretokenized'], example=r, is_target=False)
                 for r in rows]
  for metric in task.metric_fns:
    assert all(v == pytest.approx(100.0) for v in metric(targets, predictions).values())
  texts = [r['targets_pretokenized'] for r in rows]
  majority = max(set(texts), key=texts.count)
  constant = [task.postprocess_fn(majority, example=r, is_target=False) for r in rows]
  if name == 'embedded_stsb_v1':
    constant[0] = constant[0] + 0.1  # a constant has no correlation; perturb to define it
  for value in task.metric_fns[0](targets, constant).values():
    assert value < 60.0


def test_train_uses_only_seen_sentiment_words_and_validation_mixes():
  world = lexicon.load()
  seen = set()
  for words in (world.positive, world.negative):
    seen |= set(lexicon.held_out(words, seed=examples.KNOWLEDGE_SPLIT_SEED)[0])

  def words_of(rows):
    return {w.strip('.,').lower() for r in rows for w in r['sentence'].split()}

  vocabulary = set(world.positive) | set(world.negative)
  train_words = words_of(examples.examples('sst', 'train')) & vocabulary
  valid_words = words_of(examples.examples('sst', 'validation')) & vocabulary
  assert train_words <= seen
  assert valid_words - seen  # held-out words appear only in validation


@pytest.mark.parametrize('task', list(examples.GENERATORS))
def test_examples_are_deterministic_and_balanced(task):
  rows = examples.examples.__wrapped__(task, 'train')
  assert rows == examples.examples(task, 'train')
  assert len(rows) == examples.SIZES['train']
  if task != 'squad':
    labels = np.array([r['label'] for r in rows])
    values, counts = np.unique(labels, return_counts=True)
    assert len(values) >= 2 and counts.max() / len(labels) < 0.6


def test_squad_answers_are_spans_of_the_context():
  for row in examples.examples('squad', 'validation'):
    assert all(a in row['context'] for a in row['answers'])


def test_mixture_mixes_the_downstream_tasks():
  mixture = seqio.get_mixture_or_task(embedded.MIXTURE)
  assert sorted(t.name for t in mixture.tasks) == sorted(embedded.DOWNSTREAM)
  ds = mixture.get_dataset(LENGTHS, split='train', shuffle=True, seed=0)
  assert len(list(ds.take(3))) == 3


@pytest.mark.parametrize('name', list(embedded.DOWNSTREAM))
def test_evaluate_scores_gold_predictions_100(name, tmp_path):
  from tasks import evaluate

  task = seqio.get_mixture_or_task(name)
  rows = task.get_dataset(LENGTHS, split='validation', shuffle=False, seed=0).as_numpy_iterator()
  path = tmp_path / 'predictions.jsonl'
  path.write_text('\n'.join(
      json.dumps({'idx': i, 'prediction': r['targets_pretokenized'].decode()})
      for i, r in enumerate(rows)))
  result = evaluate.evaluate(name, str(path))
  assert result['num_examples'] == examples.SIZES['validation']
  assert result['metrics'] and all(
      v == pytest.approx(100.0) for v in result['metrics'].values()), result
