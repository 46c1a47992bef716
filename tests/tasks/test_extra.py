"""The twelve extra TFDS tasks (mocked TFDS data, no download) and the ROUGE metric."""

import collections

import numpy as np
import pytest
import seqio
import tensorflow_datasets as tfds

from tasks import extra, rouge, sources, tfds_load, vocab

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


# What each task's target text must be, from the raw TFDS example, written out here (not read
# from tasks.extra) so that a wrong label table, format or postprocessor fails the test.
NLI = ('entailment', 'neutral', 'contradiction')
SENTIMENT = ('negative', 'positive')
AG_NEWS = ('World', 'Sports', 'Business', 'Science/Technology')


def _expected_target(name: str, raw: dict) -> tuple[str, object]:
  """(target text, postprocessed target) that a raw validation example must give."""
  if name in ('snli_v1', 'anli_r1_v1'):
    return NLI[raw['label']], int(raw['label'])
  if name in ('imdb_reviews_v1', 'yelp_polarity_v1'):
    return SENTIMENT[raw['label']], int(raw['label'])
  if name == 'ag_news_v1':
    return AG_NEWS[raw['label']], int(raw['label'])
  if name == 'arc_challenge_v1':
    return 'ABCDE'[raw['answerKey']], int(raw['answerKey'])
  if name == 'hellaswag_v1':  # the mock's labels are arbitrary ints; 0-3 are the valid ones
    label = int(raw['label'])
    return str(label), label if 0 <= label <= 3 else -1
  if name in ('piqa_v1', 'winogrande_v1', 'cosmos_qa_v1'):
    return str(raw['label']), int(raw['label'])
  if name == 'trivia_qa_v1':  # trained on the value, scored against every alias
    return raw['answer']['value'].decode(), [a.decode() for a in raw['answer']['aliases']]
  assert name == 'xsum_v1', name
  return raw['summary'].decode(), raw['summary'].decode()


@pytest.mark.parametrize('name', list(extra.TASKS))
def test_targets_and_postprocessed_targets_match_the_raw_examples(name):
  task = seqio.get_mixture_or_task(name)
  spec = extra.TASKS[name]
  with tfds.testing.mock_data(num_examples=3):
    raws = list(tfds_load.load(spec.tfds_name, spec.splits['validation']).as_numpy_iterator())
    rows = list(task.get_dataset(LENGTHS, split='validation', shuffle=False).as_numpy_iterator())
  assert len(rows) == len(raws) == 3
  targets = []
  for raw, row in zip(raws, rows, strict=True):
    text, value = _expected_target(name, raw)
    assert row['targets_pretokenized'].decode() == text
    target = task.postprocess_fn(row['targets_pretokenized'], example=row, is_target=True)
    assert target == value
    targets.append(target)
  if name == 'trivia_qa_v1':
    # Spelled differently from an alias, a prediction still matches it under TriviaQA's
    # normalisation ('-' is a space there; SQuAD's would delete it and join the words).
    predictions = [f"The {'-'.join(t[0].upper().split())}!" for t in targets]
  else:
    predictions = [row['targets_pretokenized'].decode() for row in rows]
  predictions = [task.postprocess_fn(p.encode(), example=row)
                 for p, row in zip(predictions, rows, strict=True)]
  expected = collections.defaultdict(lambda: 100.0)
  if name == 'xsum_v1':  # a one-word summary has no bigram: ROUGE-2 0 (as rouge_score)
    expected['rouge2'] = 100.0 * np.mean([len(t.split()) > 1 for t in targets])
  for metric in task.metric_fns:
    scores = metric(targets, predictions)
    assert scores and all(v == pytest.approx(expected[k]) for k, v in scores.items()), scores
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
  # 2-grams {the cat} 1 of 2 and 1 of 4 -> F 1/3; LCS 3 -> F 0.75; one sentence, so
  # rougeLsum = rougeL.
  assert rouge.rouge(['the cat was sat here'], ['the cat sat']) == {
    'rouge1': pytest.approx(75.0), 'rouge2': pytest.approx(100 / 3),
    'rougeL': pytest.approx(75.0), 'rougeLsum': pytest.approx(75.0)}
  assert rouge.rouge(['a b'], ['c d']) == {
    'rouge1': 0.0, 'rouge2': 0.0, 'rougeL': 0.0, 'rougeLsum': 0.0}
  assert rouge.rouge(['x y', 'x y'], ['x y', 'z'])['rouge1'] == pytest.approx(50.0)


def test_no_stemming_as_t5():
  # T5's RougeScorer keeps rouge_score's default use_stemmer=False: "cats" is not "cat".
  # 1-grams: {the} of 2 and 2 -> F 0.5.
  assert rouge.rouge(['the cat'], ['the cats'])['rouge1'] == pytest.approx(50.0)


def test_rouge_lsum_is_summary_level():
  # " . " ends a sentence (T5 turns it into " .\n"). Reference [the cat sat] [the dog ran],
  # prediction [the dog sat] [the cat ran]. rougeLsum: the union of each reference sentence's
  # LCS with both predicted sentences covers all 3 of its tokens, so 6 hits of 6 -> 100.
  # rougeL over the whole text: LCS "the sat the ran" = 4 of 6 -> 66.67. 2-grams: the cat,
  # sat the, the dog are shared, 3 of 5 each way -> 60. 1-grams: the same bag -> 100.
  assert rouge.rouge(['the cat sat . the dog ran'], ['the dog sat . the cat ran']) == {
    'rouge1': pytest.approx(100.0), 'rouge2': pytest.approx(60.0),
    'rougeL': pytest.approx(200 / 3), 'rougeLsum': pytest.approx(100.0)}
  # Clipping: reference [a] [a], prediction [a]; each reference sentence's LCS is "a", but the
  # prediction has one "a": 1 hit, P 1/1, R 1/2 -> F 2/3.
  assert rouge.rouge(['a . a'], ['a'])['rougeLsum'] == pytest.approx(200 / 3)
  # Which LCS: reference [a b], prediction [b a] [a]. [a b] vs [b a] has two LCSs of length 1;
  # rouge_score reads back "a" (the reference steps back on a tie), so the union is {a}: 1 hit,
  # P 1/3, R 1/2 -> F 0.4 (reading back "b" would give 2 hits and 0.8).
  assert rouge.lcs_positions(['a', 'b'], ['b', 'a']) == {0}
  assert rouge.rouge(['a b'], ['b a . a'])['rougeLsum'] == pytest.approx(40.0)
