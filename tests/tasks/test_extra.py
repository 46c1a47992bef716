"""The twelve extra TFDS tasks (mocked TFDS data, no download) and the ROUGE metric."""

import pytest
import seqio
import tensorflow_datasets as tfds

from tasks import extra, rouge, sources, vocab

LENGTHS = {'inputs': 64, 'targets': 16}
PREFIXES = {
  'snli_v1': 'snli premise: ', 'anli_r1_v1': 'anli premise: ',
  'hellaswag_v1': 'hellaswag context: ', 'piqa_v1': 'piqa goal: ',
  'winogrande_v1': 'winogrande sentence: ',
  'arc_challenge_v1': 'arc question: ', 'imdb_reviews_v1': 'imdb review: ',
  'yelp_polarity_v1': 'yelp review: ', 'ag_news_v1': 'ag_news title: ',
  'cosmos_qa_v1': 'cosmos_qa context: ', 'trivia_qa_v1': 'trivia_qa question: ',
  'xsum_v1': 'summarize: ',
}


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
  monkeypatch.setenv(vocab.CACHE_ENV, str(tmp_path_factory.getbasetemp() / 'vocab-cache'))


def test_twelve_tasks_in_at_least_four_families():
  assert len(extra.TASKS) == 12
  assert len(extra.FAMILIES) >= 4
  mixture = seqio.get_mixture_or_task(extra.MIXTURE)
  assert sorted(t.name for t in mixture.tasks) == sorted(extra.TASKS)


@pytest.mark.parametrize('name', list(extra.TASKS))
def test_task_yields_examples_from_mocked_tfds(name):
  task = seqio.get_mixture_or_task(name)
  spec = extra.TASKS[name]
  prefix = PREFIXES[name]
  with tfds.testing.mock_data(num_examples=3):
    for split in spec.splits:
      rows = list(task.get_dataset(LENGTHS, split=split, shuffle=False).as_numpy_iterator())
      assert rows, (name, split)
      for ex in rows:
        assert 0 < len(ex['inputs']) <= LENGTHS['inputs']
        assert ex['targets'][-1] == vocab.VOCABULARY.eos_id
        assert ex['inputs_pretokenized'].decode().startswith(prefix), ex['inputs_pretokenized']
        if spec.labels is not None and name != 'hellaswag_v1':  # mock labels are random ints
          assert ex['targets_pretokenized'].decode() in spec.labels


@pytest.mark.parametrize('name', list(extra.TASKS))
def test_gold_targets_score_perfectly(name):
  task = seqio.get_mixture_or_task(name)
  spec = extra.TASKS[name]
  golds = list(spec.labels or ['the city of light', 'a cat sat on the mat'])
  example = {'answers': [b'paris', b'City of Light']}
  targets = [task.postprocess_fn(g.encode(), example=example, is_target=True) for g in golds]
  predictions = [task.postprocess_fn(g.encode(), example=example) for g in golds]
  for metric in task.metric_fns:
    scores = metric(targets, predictions)
    assert scores and all(v == pytest.approx(100.0) for v in scores.values()), scores
  if spec.labels is not None:
    assert task.postprocess_fn(b'not a label', is_target=False) == -1


def test_missing_tfds_data_names_the_directory(tmp_path):
  sources.configure(tfds_data_dir=str(tmp_path))
  try:
    task = seqio.get_mixture_or_task('snli_v1')
    with pytest.raises(sources.DataNotFoundError, match=str(tmp_path)) as info:
      next(iter(task.get_dataset(LENGTHS, split='validation', shuffle=False)))
    assert 'tfds build snli' in str(info.value)
  finally:
    sources.configure()


def test_rouge_values():
  assert rouge.tokenize("The cat's hat, 2 times!") == ['the', 'cat', 's', 'hat', '2', 'times']
  assert rouge.lcs_length('a b c d e'.split(), 'a c e x'.split()) == 3
  # prediction "the cat sat", reference "the cat was sat here": 1-grams 3/3 and 3/5 -> F 0.75;
  # 2-grams {the cat} 1 of 2 and 1 of 4 -> F 1/3; LCS 3 -> F 0.75.
  scores = rouge.rouge(['the cat was sat here'], ['the cat sat'])
  assert scores['rouge1'] == pytest.approx(75.0)
  assert scores['rouge2'] == pytest.approx(100 / 3)
  assert scores['rougeL'] == pytest.approx(75.0)
  assert rouge.rouge(['a b'], ['c d']) == {'rouge1': 0.0, 'rouge2': 0.0, 'rougeL': 0.0}
  assert rouge.rouge(['x y', 'x y'], ['x y', 'z'])['rouge1'] == pytest.approx(50.0)
