"""Twelve text tasks beyond GLUE/SuperGLUE/SQuAD, from TFDS, in seven families.

The paper's downstream suite is GLUE, SuperGLUE and SQuAD. These add the families it misses:
NLI beyond GLUE (snli, anli r1), commonsense multiple choice (hellaswag, piqa, winogrande, ARC
challenge), sentiment on long reviews (imdb, yelp polarity), topic classification (ag news),
reading comprehension with commonsense (cosmos qa), closed-book QA (trivia qa), summarisation
(xsum). Each is declared by one `ExtraTask` row; inputs follow T5's "<task> field: text" format;
multiple-choice targets are the index (or letter) of the right choice. Data is read from the
TFDS data dir at dataset-build time (`tasks.tfds_load`); nothing is downloaded.
"""

import dataclasses
import functools
from collections.abc import Callable

import seqio
import tensorflow as tf

from tasks import metrics, rouge, text_to_text, tfds_load

MIXTURE = 'extra'

NLI_LABELS = ('entailment', 'neutral', 'contradiction')
SENTIMENT_LABELS = ('negative', 'positive')
AG_NEWS_LABELS = ('World', 'Sports', 'Business', 'Science/Technology')
INDEX_LABELS = ('0', '1', '2', '3')
LETTERS = ('A', 'B', 'C', 'D', 'E')


@dataclasses.dataclass(frozen=True)
class ExtraTask:
  """One TFDS-backed text task: where it reads from and how an example becomes text."""

  name: str
  family: str
  tfds_name: str
  splits: dict[str, str]  # task split -> TFDS split
  to_text: Callable  # tf example -> (inputs, targets) string tensors
  labels: tuple[str, ...] | None  # classification: target strings, in class-id order
  metric: str  # 'accuracy' | 'trivia_qa' | 'rouge'
  keep: Callable | None = None  # tf example -> bool; drops unlabeled examples


def _join(*parts):
  return tf.strings.join(list(parts))


def _label(labels):
  return lambda ex: tf.gather(tf.constant(labels), ex['label'])


def _choices(prefix: str, texts: list, names=INDEX_LABELS):
  parts = []
  for i, text in enumerate(texts):
    parts += [f' {prefix}{names[i]}: ', text]
  return parts


def _nli(task: str, premise_key: str):
  def fn(ex):
    inputs = _join(f'{task} premise: ', ex[premise_key], ' hypothesis: ', ex['hypothesis'])
    return inputs, _label(NLI_LABELS)(ex)

  return fn


def _listed(prefix: str, names, texts):
  """' {prefix}{name}: {text}' for each choice, joined (a variable-length choice list)."""
  n = tf.minimum(tf.size(names), tf.size(texts))
  return tf.strings.reduce_join(
    tf.strings.join([f' {prefix}', names[:n], ': ', texts[:n]]), separator=''
  )


def _hellaswag(ex):
  names = tf.strings.as_string(tf.range(tf.size(ex['endings'])))
  inputs = _join('hellaswag context: ', ex['context'], _listed('ending', names, ex['endings']))
  return inputs, tf.strings.as_string(ex['label'])


def _piqa(ex):
  inputs = _join('piqa goal: ', ex['goal'], *_choices('solution', [ex['sol1'], ex['sol2']]))
  return inputs, _label(INDEX_LABELS)(ex)


def _winogrande(ex):
  options = _choices('option', [ex['option1'], ex['option2']])
  return _join('winogrande sentence: ', ex['sentence'], *options), _label(INDEX_LABELS)(ex)


def _arc(ex):
  letters = tf.gather(tf.constant(LETTERS), ex['choices']['label'])
  listed = _listed('choice', letters, ex['choices']['text'])
  return _join('arc question: ', ex['question'], listed), tf.gather(
    tf.constant(LETTERS), ex['answerKey']
  )


def _review(task: str):
  return lambda ex: (_join(f'{task} review: ', ex['text']), _label(SENTIMENT_LABELS)(ex))


def _ag_news(ex):
  inputs = _join('ag_news title: ', ex['title'], ' description: ', ex['description'])
  return inputs, _label(AG_NEWS_LABELS)(ex)


def _cosmos(ex):
  answers = [ex[f'answer{i}'] for i in range(4)]
  question = ['cosmos_qa context: ', ex['context'], ' question: ', ex['question']]
  inputs = _join(*question, *_choices('answer', answers))
  return inputs, _label(INDEX_LABELS)(ex)


def _trivia(ex):
  return _join('trivia_qa question: ', ex['question']), ex['answer']['value']


def _xsum(ex):
  return _join('summarize: ', ex['document']), ex['summary']


_VALIDATION = {'train': 'train', 'validation': 'validation'}
_TEST_AS_VALIDATION = {'train': 'train', 'validation': 'test'}

TASKS = {
  t.name: t
  for t in [
    ExtraTask('snli_v1', 'nli', 'snli', _VALIDATION, _nli('snli', 'premise'), NLI_LABELS,
              'accuracy', keep=lambda ex: ex['label'] >= 0),
    ExtraTask('anli_r1_v1', 'nli', 'anli/r1', _VALIDATION, _nli('anli', 'context'), NLI_LABELS,
              'accuracy'),
    ExtraTask('hellaswag_v1', 'commonsense_mc', 'hellaswag', _VALIDATION, _hellaswag,
              INDEX_LABELS, 'accuracy'),
    ExtraTask('piqa_v1', 'commonsense_mc', 'piqa', _VALIDATION, _piqa, INDEX_LABELS[:2],
              'accuracy'),
    ExtraTask('winogrande_v1', 'commonsense_mc', 'winogrande',
              {'train': 'train_xl', 'validation': 'validation'}, _winogrande, INDEX_LABELS[:2],
              'accuracy'),
    ExtraTask('arc_challenge_v1', 'commonsense_mc', 'ai2_arc/ARC-Challenge', _VALIDATION, _arc,
              LETTERS, 'accuracy'),
    ExtraTask('imdb_reviews_v1', 'sentiment', 'imdb_reviews/plain_text', _TEST_AS_VALIDATION,
              _review('imdb'), SENTIMENT_LABELS, 'accuracy'),
    ExtraTask('yelp_polarity_v1', 'sentiment', 'yelp_polarity_reviews', _TEST_AS_VALIDATION,
              _review('yelp'), SENTIMENT_LABELS, 'accuracy'),
    ExtraTask('ag_news_v1', 'topic', 'ag_news_subset', _TEST_AS_VALIDATION, _ag_news,
              AG_NEWS_LABELS, 'accuracy'),
    ExtraTask('cosmos_qa_v1', 'reading_comprehension', 'cosmos_qa', _VALIDATION, _cosmos,
              INDEX_LABELS, 'accuracy'),
    ExtraTask('trivia_qa_v1', 'closed_book_qa', 'trivia_qa/unfiltered.nocontext', _VALIDATION,
              _trivia, None, 'trivia_qa'),
    ExtraTask('xsum_v1', 'summarization', 'xsum', _VALIDATION, _xsum, None, 'rouge'),
  ]
}
FAMILIES = tuple(sorted({t.family for t in TASKS.values()}))


def _dataset_fn(task: ExtraTask, split: str, shuffle_files: bool = False, seed=None):
  ds = tfds_load.load(task.tfds_name, task.splits[split], shuffle_files=shuffle_files, seed=seed)
  return ds.filter(task.keep) if task.keep is not None else ds


def _text_map(task: ExtraTask):
  @seqio.map_over_dataset
  def mapped(ex):
    inputs, targets = task.to_text(ex)
    out = {'inputs': inputs, 'targets': targets}
    if task.metric == 'trivia_qa':
      out['answers'] = ex['answer']['aliases']
    return out

  return mapped


def _answers(text, example=None, is_target=False):
  """Targets: the answer's aliases (`answer.aliases`, as T5's closed-book trivia_qa_open; the
  value, the training target, only if there are none); predictions: the decoded text."""
  if is_target:
    aliases = [metrics.as_text(a) for a in example['answers']]
    return aliases or [metrics.as_text(text)]
  return metrics.as_text(text)


def _postprocess_and_metrics(task: ExtraTask):
  if task.metric == 'accuracy':
    return functools.partial(text_to_text.class_id, task.labels), [metrics.accuracy]
  if task.metric == 'trivia_qa':
    return _answers, [metrics.trivia_qa]
  return text_to_text.text_value, [rouge.rouge]


def _register() -> None:
  for task in TASKS.values():
    postprocess, metric_fns = _postprocess_and_metrics(task)
    source = seqio.FunctionDataSource(
      functools.partial(_dataset_fn, task), splits=tuple(task.splits))
    text_to_text.register(task.name, source, _text_map(task), postprocess, metric_fns)
  seqio.MixtureRegistry.add(MIXTURE, [(name, 1.0) for name in TASKS])


_register()
