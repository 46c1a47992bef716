"""tasks.benchmark: T5's text formats, stable idx, batches from mocked TFDS and files, mixtures."""

from __future__ import annotations

import numpy as np
import pytest
import seqio
import tensorflow as tf
import tensorflow_datasets as tfds

from tasks import benchmark, sources, vocab
from tasks.benchmark import formats, seqio_tasks
from tests.tasks.fixtures import jsonl

LENGTHS = {'inputs': 48, 'targets': 8}


@pytest.fixture(scope='module')
def byte_vocabulary():
  """The tests tokenize with seqio's byte vocabulary instead of the project's SentencePiece."""
  previous = vocab.get_vocabulary
  vocab.get_vocabulary = seqio.ByteVocabulary
  yield
  vocab.get_vocabulary = previous


FIRST_VALIDATION = {
  'glue_cola_v1': ('cola sentence: The sailors rode the breeze clear of the rocks.',
                   'acceptable'),
  'glue_sst2_v1': ("sst2 sentence: it 's a charming journey . ", 'positive'),
  'glue_mrpc_v1': ('mrpc sentence1: He said the pie business fits. '
                   'sentence2: The pie business fits, he said.', 'equivalent'),
  'glue_qqp_v1': ('qqp question1: How do I learn Python? '
                  'question2: What is the best way to learn Python?', 'duplicate'),
  'glue_stsb_v1': ('stsb sentence1: A man with a hard hat is dancing. '
                   'sentence2: A man wearing a hard hat is dancing.', '5.0'),
  'glue_mnli_matched_v1': ('mnli hypothesis: A cat sat. premise: The cat sat on the mat.',
                           'entailment'),
  'glue_mnli_mismatched_v1': ('mnli hypothesis: He stayed at work. premise: He went home.',
                              'contradiction'),
  'glue_qnli_v1': ('qnli question: What came into force? '
                   'sentence: The new constitution came into force.', 'entailment'),
  'glue_rte_v1': ('rte sentence1: Dana Reeve has died of lung cancer. '
                  'sentence2: Christopher Reeve had an accident.', 'not_entailment'),
  'super_glue_boolq_v1': ('boolq passage: Ice -- Ice is cold. question: is ice hot', 'False'),
  'super_glue_cb_v1': ('cb hypothesis: Valence was helping '
                       'premise: Valence the void-brain. Did he think he was helping?',
                       'contradiction'),
  'super_glue_copa_v1': ('copa choice1: The toilet filled. choice2: Water flowed from the spout. '
                         'premise: The man turned on the faucet. question: effect', 'choice2'),
  'super_glue_multirc_v1': ('multirc question: What changes motion? answer: Forces paragraph: '
                            'Sent 1: Forces change motion. Sent 2: Mass matters. ', 'True'),
  'super_glue_record_v1': (
    'record query: @placeholder lost to the Raiders. entities: Carr, Denver, Denver Broncos, '
    'Oakland Raiders passage: The Oakland Raiders beat the Denver Broncos in Denver. Raiders win '
    'in Denver. Broncos lose at home! Carr shines', 'Denver Broncos'),
  'super_glue_rte_v1': ('rte hypothesis: Christopher Reeve had an accident. '
                        'premise: Dana Reeve has died.', 'not_entailment'),
  'super_glue_wic_v1': ('wic sentence1: An emerging professional class. '
                        'sentence2: He showed real class. word: class', 'False'),
  'super_glue_wsc_v1': ('wsc: Mark told Pete many lies about himself , which Pete included in '
                        '*his* book .', 'Mark'),
  'squad11_v1': ("question: Which state ? context: Super Bowl 50 was played at Levi ' s Stadium "
                 "in Santa Clara , California . ", 'California'),
}


def test_every_evaluation_task_has_a_golden_format():
  assert set(FIRST_VALIDATION) == set(benchmark.EVAL_TASKS)


@pytest.mark.parametrize('name', sorted(FIRST_VALIDATION))
def test_first_validation_example_reads_as_t5(data_dir, name):
  first = benchmark.examples(name, 'validation')[0]
  assert (first['inputs'], first['targets']) == FIRST_VALIDATION[name]
  assert first['idx'] == 0


def test_idx_is_the_position_in_source_order(data_dir):
  boolq = benchmark.examples('super_glue_boolq_v1')
  assert [ex['idx'] for ex in boolq] == [0, 1, 2]
  assert [ex['inputs'].split('question: ')[1] for ex in boolq] == [
    'is ice hot', 'is the sky blue', 'do cats bark']
  squad = benchmark.examples('squad11_v1')
  assert [ex['targets'] for ex in squad] == ['California', "Levi ' s Stadium", 'Super Bowl 50']
  assert squad[0]['answers'] == ['California', 'Santa Clara , California']
  assert benchmark.examples('squad11_v1') == squad


def test_split_specific_formats(data_dir):
  # STS-B targets round to 0.2 in float32, half to even: 4.75 -> 4.8, 0.5 -> 0.4, 0.7 -> 0.8.
  assert [ex['targets'] for ex in benchmark.examples('glue_stsb_v1')] == [
    '5.0', '4.8', '0.4', '0.8']
  # ReCoRD trains on one example per answer and evaluates one per query.
  train = list(benchmark.iter_examples('super_glue_record_v1', 'train', ordered=False))
  assert [ex['targets'] for ex in train] == ['Denver Broncos', 'Denver', 'Carr',
                                             'Oakland Raiders']
  assert [ex['answers'] for ex in benchmark.examples('super_glue_record_v1')][2] == [
    'Carr', 'Oakland Raiders']
  # WSC trains only on candidates that are the referent.
  wsc_train = list(benchmark.iter_examples('super_glue_wsc_v1', 'train', ordered=False))
  assert [ex['targets'] for ex in wsc_train] == ['The city councilmen', 'the refrigerator']
  assert benchmark.examples('super_glue_wsc_v1')[2]['inputs'] == (
    'wsc: I put the cake away in the refrigerator . It has a lot of leftovers in *it* .')
  multirc = benchmark.examples('super_glue_multirc_v1')
  assert [ex['group'] for ex in multirc] == ['0/0'] * 3 + ['0/1'] * 2 + ['1/0'] * 2


def test_stsb_rounding_matches_tensorflow_ops():
  scores = np.round(np.arange(0, 5.0001, 0.01), 3).astype(np.float32).tolist() + [0.7, 2.5]
  rounded = tf.round(tf.constant(scores, tf.float32) * 5) / 5
  expected = [s.decode() for s in tf.strings.as_string(rounded, precision=1).numpy()]
  assert [formats.stsb_target(s) for s in scores] == expected


def test_pad_punctuation_matches_re2():
  texts = ["Levi's Stadium, in  Santa\tClara!", 'naïve café — 50%', 'a\u00a0b\nc', 'U.S.']
  expected = tf.strings.regex_replace(
    tf.strings.regex_replace(tf.constant(texts), r'(\W)', r' \1 '), r'\s+', ' ')
  assert [formats.pad_punctuation(t) for t in texts] == [s.decode() for s in expected.numpy()]


def test_wsc_marks_off_by_one_and_fused_pronouns():
  text = 'Some day they might want to use it , but really for now.'
  assert formats._mark_pronoun(text, 6, 'it') == (
    'Some day they might want to use *it* , but really for now.')
  text = 'John laughed out loud. "Good for him," he said.'
  assert formats._mark_pronoun(text, 6, 'him') == (
    'John laughed out loud. "Good for *him* ," he said.')
  with pytest.raises(ValueError, match='not at word'):
    formats._mark_pronoun('The cat sat on the mat .', 3, 'it')


def _batches(name: str, split: str) -> list[dict]:
  task = seqio.get_mixture_or_task(name)
  ds = task.get_dataset(LENGTHS, split=split, shuffle=False, use_cached=False)
  return list(tfds.as_numpy(ds.padded_batch(2).take(2)))


def _eval_or_first_split(name: str) -> str:
  splits = benchmark.SPECS[name].splits
  return 'validation' if 'validation' in splits else next(iter(splits))


def _check_batch(batch: dict) -> None:
  assert batch['inputs'].shape[0] == 2 and batch['inputs'].shape[1] <= LENGTHS['inputs']
  assert batch['targets'].shape[1] <= LENGTHS['targets']
  assert (batch['targets'][:, 0] > 0).all()
  assert batch['inputs_pretokenized'].dtype == object


@pytest.mark.parametrize('name', sorted(benchmark.SPECS))
def test_batches_from_data_dir_files(byte_vocabulary, data_dir, name):
  _check_batch(_batches(name, _eval_or_first_split(name))[0])


@pytest.mark.parametrize('name, split', [(name, split) for name, spec in benchmark.SPECS.items()
                                         for split in spec.splits])
def test_every_split_reads_from_files(data_dir, name, split):
  examples = list(benchmark.iter_examples(name, split, ordered=split != 'train'))
  assert examples and all(ex['inputs'] and ex['targets'] for ex in examples)


def _wsc_as_dataset(self, split, **kwargs):
  """WSC mock examples whose pronoun index points at the pronoun (random text would not)."""
  del split, kwargs
  example = {'text': 'The trophy does not fit because it is big .', 'span1_index': 0,
             'span2_index': 6, 'span1_text': 'The trophy', 'span2_text': 'it', 'idx': 0,
             'label': 1}
  return tf.data.Dataset.from_tensors(
    {k: tf.constant(v, dtype=self.info.features[k].dtype) for k, v in example.items()}
  ).repeat(3)


@pytest.mark.parametrize('name', sorted(benchmark.SPECS))
def test_batches_from_mocked_tfds(byte_vocabulary, name):
  as_dataset_fn = _wsc_as_dataset if name == 'super_glue_wsc_v1' else None
  previous = sources.config()
  sources.configure()
  try:
    with tfds.testing.mock_data(num_examples=3, as_dataset_fn=as_dataset_fn):
      batches = _batches(name, _eval_or_first_split(name))
  finally:
    sources.configure(previous.data_dir, previous.tfds_data_dir)
  _check_batch(batches[0])


def test_mixtures_rate_by_training_examples():
  assert set(benchmark.MIXTURES) == {'glue', 'super_glue', 'glue_super_glue_squad'}
  mixture = seqio.get_mixture_or_task('glue_super_glue_squad')
  rates = {task.name: mixture.get_rate(task) for task in mixture.tasks}
  assert sum(rate > 0 for rate in rates.values()) == 17
  assert rates['glue_mnli_v1'] == 392_702 and rates['super_glue_cb_v1'] == 250
  assert rates['glue_mnli_matched_v1'] == 0
  assert all(rate <= benchmark.CAP for rate in rates.values())
  glue = seqio.get_mixture_or_task('glue')
  assert {t.name for t in glue.tasks} == {n for n in benchmark.SPECS if n.startswith('glue_')}


def test_unknown_task_lists_closest():
  with pytest.raises(KeyError, match='glue_cola_v1'):
    benchmark.get('glue_cola')


def _all_scores(value: float) -> dict[str, dict[str, float]]:
  scores = {'squad11_v1': {'em': value, 'f1': value}}
  for columns in benchmark.COLUMNS.values():
    for parts in columns.values():
      for task, metric in parts:
        scores.setdefault(task, {})[metric] = value
  return scores


def test_averages_as_t5():
  scores = _all_scores(80.0)
  scores['glue_cola_v1']['matthews_corrcoef'] = 50.0
  scores['glue_mnli_matched_v1']['accuracy'] = 90.0  # MNLI column: (90 + 70) / 2 = 80
  scores['glue_mnli_mismatched_v1']['accuracy'] = 70.0
  scores['super_glue_cb_v1']['mean_3class_f1'] = 60.0  # CB column: (60 + 80) / 2 = 70
  scores['squad11_v1'] = {'em': 81.0, 'f1': 88.5}  # the SQuAD column is EM alone
  result = benchmark.averages(scores)
  assert result['MNLI'] == 80.0 and result['CB'] == 70.0
  # By hand: GLUE (50 + 7 * 80) / 8 = 610 / 8 = 76.25; SuperGLUE (70 + 7 * 80) / 8 = 78.75;
  # AVG (76.25 + 78.75 + 81) / 3 = 236 / 3 = 78.666...
  assert result['glue_average'] == pytest.approx(76.25)
  assert result['super_glue_average'] == pytest.approx(78.75)
  assert result['squad'] == 81.0
  assert result['avg'] == pytest.approx(78.666666666666667)
  del scores['super_glue_record_v1']
  partial = benchmark.averages(scores)
  assert 'super_glue_average' not in partial and 'ReCoRD' not in partial
  assert 'avg' not in partial  # never an average over what happens to be present
  assert partial['glue_average'] == pytest.approx(76.25) and partial['squad'] == 81.0


def test_avg_needs_squad_em():
  scores = _all_scores(70.0)
  scores['squad11_v1'] = {'f1': 90.0}  # F1 alone does not make the SQuAD column
  result = benchmark.averages(scores)
  assert 'squad' not in result and 'avg' not in result
  assert result['glue_average'] == pytest.approx(70.0)
  assert result['super_glue_average'] == pytest.approx(70.0)
  scores['squad11_v1']['em'] = 85.0
  # By hand: (70 + 70 + 85) / 3 = 75.
  assert benchmark.averages(scores)['avg'] == pytest.approx(75.0)


def test_squad_scores_natural_and_padded_spellings_alike(data_dir, byte_vocabulary):
  """Gold answers are punctuation padded (T5's format); a prediction spelled naturally
  ("Levi's Stadium") must match them as the official scorer would."""
  natural = ['California', "Levi's Stadium", 'Super Bowl 50']
  padded = ['California', "Levi ' s Stadium", 'Super Bowl 50']
  for predictions in (natural, padded):
    assert benchmark.score('squad11_v1', 'validation', predictions) == {
        'em': pytest.approx(100.0), 'f1': pytest.approx(100.0)}


@pytest.fixture
def clustered_multirc(tmp_path):
  """A --data_dir whose MultiRC train and val files store 4 paragraphs x 8 answers clustered."""
  rows = [{'idx': p, 'version': 1.1, 'passage': {'text': f'Paragraph {p}.', 'questions': [
    {'question': f'Question {p}?', 'idx': 0, 'answers': [
      {'text': f'Answer {p}.{a}', 'idx': a, 'label': a % 2} for a in range(8)]}]}}
    for p in range(4)]
  for name in ('train.jsonl', 'val.jsonl'):
    jsonl(f'{tmp_path}/super_glue/MultiRC/{name}', rows)
  previous = sources.config()
  sources.configure(data_dir=str(tmp_path))
  yield
  sources.configure(previous.data_dir, previous.tfds_data_dir)


def _read(split: str, shuffle_files: bool, seed: int | None = None) -> list[tuple[int, str]]:
  ds = seqio_tasks.dataset_fn(split, shuffle_files, seed, name='super_glue_multirc_v1')
  return [(int(ex['idx']), ex['group'].decode()) for ex in ds.as_numpy_iterator()]


def test_shuffled_training_reads_are_seeded_permutations_of_the_file(clustered_multirc):
  stored = _read('train', shuffle_files=False)
  assert [idx for idx, _ in stored] == list(range(32))
  assert [group for _, group in stored[:8]] == ['0/0'] * 8  # clustered by paragraph
  first = _read('train', shuffle_files=True, seed=0)
  assert sorted(first) == stored
  assert first != stored
  assert _read('train', shuffle_files=True, seed=0) == first
  assert _read('train', shuffle_files=True, seed=1) != first
  assert len({group for _, group in first[:8]}) > 1  # mixed before seqio's buffer
  # Evaluation stays in idx (file) order even when a caller asks for shuffled files.
  assert _read('validation', shuffle_files=True, seed=0) == stored
