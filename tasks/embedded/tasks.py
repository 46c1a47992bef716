"""seqio registrations of the embedded tasks: a pretraining corpus and five downstream tasks.

| name | format | metric |
|---|---|---|
| embedded_pretrain_v1 | span corruption of the corpus | (loss only) |
| embedded_sst_v1 | single sentence -> positive/negative | accuracy |
| embedded_rte_v1 | premise + hypothesis -> entailment/not_entailment | accuracy |
| embedded_stsb_v1 | sentence pair -> similarity 0-5 (regression) | Pearson, Spearman |
| embedded_mc_v1 | question + 4 choices -> the right choice | accuracy |
| embedded_squad_v1 | question + context -> answer span | EM, F1 |

The mixture `embedded` holds the five downstream tasks with equal rates.
"""

import functools

import numpy as np
import seqio
import tensorflow as tf

from tasks import metrics, span_corruption, text_to_text
from tasks.embedded import corpus
from tasks.embedded import examples as generated
from tasks.vocab import OUTPUT_FEATURES

PRETRAIN = 'embedded_pretrain_v1'
MIXTURE = 'embedded'

SST_LABELS = ('negative', 'positive')
RTE_LABELS = ('entailment', 'not_entailment')


def _from_examples(task: str, split: str, shuffle_files: bool = False, seed=None):
  """tf.data of the generated examples, as columns (lists become fixed-width string tensors)."""
  del shuffle_files, seed  # one in-memory shard; seqio shuffles after preprocessing.
  rows = generated.examples(task, split)
  columns = {key: [row[key] for row in rows] for key in rows[0]}
  return tf.data.Dataset.from_tensor_slices({k: np.asarray(v) for k, v in columns.items()})


def _corpus(split: str, shuffle_files: bool = False, seed=None):
  del shuffle_files, seed
  return tf.data.Dataset.from_tensor_slices({'text': list(corpus.documents(split))})


def _source(task: str) -> seqio.FunctionDataSource:
  return seqio.FunctionDataSource(
    functools.partial(_from_examples, task),
    splits=generated.SPLITS,
    num_input_examples=dict(generated.SIZES),
  )


def _text_features(fn):
  """seqio map that turns an example into {'inputs', 'targets'} strings, keeping 'idx' and,
  for extractive QA, every gold answer (the metric takes the max over them)."""

  @seqio.map_over_dataset
  def mapped(ex):
    inputs, targets = fn(ex)
    features = {'inputs': inputs, 'targets': targets, 'idx': ex['idx']}
    if 'answers' in ex:
      features['answers'] = ex['answers']
    return features

  return mapped


def _label_name(labels):
  return lambda label: tf.gather(tf.constant(labels), label)


def _sst(ex):
  return tf.strings.join(['embedded_sst sentence: ', ex['sentence']]), _label_name(SST_LABELS)(
    ex['label']
  )


def _rte(ex):
  inputs = tf.strings.join(
    ['embedded_rte premise: ', ex['premise'], ' hypothesis: ', ex['hypothesis']]
  )
  return inputs, _label_name(RTE_LABELS)(ex['label'])


def _stsb(ex):
  inputs = tf.strings.join(
    ['embedded_stsb sentence1: ', ex['sentence1'], ' sentence2: ', ex['sentence2']]
  )
  # As T5 does for STS-B: round the score to the nearest 0.2 and print one decimal.
  rounded = tf.round(ex['label'] * 5.0) / 5.0
  return inputs, tf.strings.as_string(rounded, precision=1)


def _mc(ex):
  parts = ['embedded_mc question: ', ex['question']]
  for i in range(4):
    parts += [f' choice{i}: ', ex['choices'][i]]
  return tf.strings.join(parts), ex['choices'][ex['label']]


def _squad(ex):
  inputs = tf.strings.join(['question: ', ex['question'], ' context: ', ex['context']])
  return inputs, ex['answers'][0]


def _answers(text, example=None, is_target=False):
  """Targets: all gold answers of the example; predictions: the decoded text."""
  if is_target:
    return [metrics.as_text(a) for a in example['answers']]
  return metrics.as_text(text)


DOWNSTREAM = {
  # name: (generator key, to-text function, postprocess_fn, metric_fns)
  'embedded_sst_v1': (
    'sst', _sst, functools.partial(text_to_text.class_id, SST_LABELS), [metrics.accuracy]),
  'embedded_rte_v1': (
    'rte', _rte, functools.partial(text_to_text.class_id, RTE_LABELS), [metrics.accuracy]),
  'embedded_stsb_v1': (
    'stsb',
    _stsb,
    text_to_text.float_value,
    [metrics.pearson_corrcoef, metrics.spearman_corrcoef],
  ),
  'embedded_mc_v1': ('mc', _mc, text_to_text.text_value, [metrics.accuracy]),
  'embedded_squad_v1': ('squad', _squad, _answers, [metrics.squad]),
}


def _register() -> None:
  seqio.TaskRegistry.add(
    PRETRAIN,
    source=seqio.FunctionDataSource(
      _corpus, splits=tuple(corpus.DOCS_PER_ENTITY), caching_permitted=True
    ),
    preprocessors=[
      functools.partial(seqio.preprocessors.rekey, key_map={'targets': 'text'}),
      seqio.preprocessors.tokenize,
      span_corruption.span_corruption,
      seqio.preprocessors.append_eos_after_trim,
    ],
    output_features=OUTPUT_FEATURES,
    metric_fns=[],
  )
  for name, (key, to_text, postprocess, metric_fns) in DOWNSTREAM.items():
    text_to_text.register(name, _source(key), _text_features(to_text), postprocess, metric_fns)
  seqio.MixtureRegistry.add(MIXTURE, [(name, 1.0) for name in DOWNSTREAM])


_register()
