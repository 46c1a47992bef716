"""Registers the benchmark tasks and mixtures with seqio.

Each task's source formats examples in Python (`tasks.benchmark.formats`) and hands seqio the
text; seqio tokenizes with the project vocabulary (`tasks.vocab.VOCABULARY`, which resolves
`tasks.vocab.get_vocabulary()` at use, so registering trains nothing) and appends EOS.

Mixtures mix training tasks in proportion to their number of training examples, capped at
2**19 as T5's examples-proportional mixing (the cap binds on none of these tasks; MNLI's
392,702 is the largest): `glue` (8 tasks), `super_glue` (8 tasks), `glue_super_glue_squad`
(all 17). MNLI matched/mismatched ride along at rate 0 so that evaluating a mixture covers them.
"""

from __future__ import annotations

import functools

import numpy as np
import seqio
import tensorflow as tf

from tasks import sources, vocab
from tasks.benchmark import specs

VOCABULARY = vocab.VOCABULARY

OUTPUT_FEATURES = vocab.OUTPUT_FEATURES

EXAMPLE_SIGNATURE = {
  'inputs': tf.TensorSpec([], tf.string),
  'targets': tf.TensorSpec([], tf.string),
  'idx': tf.TensorSpec([], tf.int32),
  'label': tf.TensorSpec([], tf.int32),
  'answers': tf.TensorSpec([None], tf.string),
  'group': tf.TensorSpec([], tf.string),
}


def dataset_fn(split: str, shuffle_files: bool = False, seed: int | None = None, *,
               name: str) -> tf.data.Dataset:
  """The formatted examples of `name`'s split as a tf.data.Dataset (see EXAMPLE_SIGNATURE).

  Evaluation splits come in `idx` order, whatever `shuffle_files`. `train` comes in storage
  order; read from original files (`--data_dir`) with `shuffle_files` (seqio's shuffle=True),
  it comes as a permutation drawn from `seed` (None: a fresh one), read whole first: seqio's
  1000-example shuffle buffer alone would barely mix files stored clustered (SQuAD by article,
  MultiRC by paragraph). TFDS shuffled its records when it prepared them and streams as is.
  `idx` stays the storage position; every epoch repeats the seed's permutation.
  """
  specs.get(name)
  ordered = split != 'train'
  shuffle = shuffle_files and not ordered and sources.config().data_dir is not None

  def generate():
    examples = specs.iter_examples(name, split, ordered=ordered)
    if shuffle:
      examples = list(examples)
      examples = [examples[i] for i in np.random.default_rng(seed).permutation(len(examples))]
    for example in examples:
      yield {key: example[key] for key in EXAMPLE_SIGNATURE}

  return tf.data.Dataset.from_generator(generate, output_signature=EXAMPLE_SIGNATURE)


MIXTURES: dict[str, tuple[str, ...]] = {
  'glue': tuple(n for n, s in specs.SPECS.items() if s.benchmark == 'glue'),
  'super_glue': tuple(n for n, s in specs.SPECS.items() if s.benchmark == 'super_glue'),
  'glue_super_glue_squad': tuple(specs.SPECS),
}


def register() -> None:
  """Adds every benchmark task and mixture to seqio's registries (idempotent)."""
  for name, spec in specs.SPECS.items():
    if name in seqio.TaskRegistry.names():
      continue
    seqio.TaskRegistry.add(
      name,
      source=seqio.FunctionDataSource(
        functools.partial(dataset_fn, name=name), splits=tuple(spec.splits)),
      preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim],
      output_features=OUTPUT_FEATURES,
      postprocess_fn=spec.postprocess,
      metric_fns=list(spec.metric_fns),
    )
  for mixture, names in MIXTURES.items():
    if mixture not in seqio.MixtureRegistry.names():
      seqio.MixtureRegistry.add(mixture, [(n, specs.SPECS[n].rate) for n in names])
