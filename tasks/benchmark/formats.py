"""T5's text-to-text formats for GLUE, SuperGLUE and SQuAD, as pure functions on raw examples.

A formatter takes one raw example (TFDS feature names, see `tasks.sources`) and the split, and
yields formatted examples: `inputs` and `targets` text plus what scoring needs (`label`,
`answers`, `group`). The strings are those T5 (Raffel et al. 2020) trained and evaluated on:
the benchmark name, then `key: value` for each feature, single-space joined.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

Raw = dict[str, Any]
Formatter = Callable[[Raw, str], Iterator[Raw]]

UNK_TARGET = '<unk>'  # T5's target when an example has no label (test splits)


def _example(inputs: str, targets: str, label: int = -1, answers: Sequence[str] = (),
             group: str = '') -> Raw:
  return {'inputs': inputs, 'targets': targets, 'label': int(label), 'answers': list(answers),
          'group': group}


def glue(benchmark: str, feature_names: Sequence[str], label_names: Sequence[str]) -> Formatter:
  """`'{benchmark} k1: v1 k2: v2'` -> label name; T5 sorts keys unless it names an order."""

  def format_example(raw: Raw, split: str) -> Iterator[Raw]:
    del split
    parts = [benchmark]
    for key in feature_names:
      parts += [f'{key}:', raw[key]]
    inputs = ' '.join(parts)
    label = raw['label']
    group = ''
    if benchmark == 'multirc':
      inputs = re.sub('<(/)?b>', '', inputs.replace('<br>', ' '))
      group = f"{raw['idx']['paragraph']}/{raw['idx']['question']}"
    targets = UNK_TARGET if label == -1 else label_names[label]
    yield _example(inputs, targets, label=label, group=group)

  return format_example


def stsb_target(score: float) -> str:
  """STS-B score rounded to the nearest 0.2, one decimal (float32 half-to-even, as tf.round)."""
  value = np.round(np.float32(score) * np.float32(5)) / np.float32(5)
  return f'{float(value):.1f}'


def stsb(raw: Raw, split: str) -> Iterator[Raw]:
  del split
  inputs = f"stsb sentence1: {raw['sentence1']} sentence2: {raw['sentence2']}"
  yield _example(inputs, stsb_target(raw['label']))


def _record_passage(passage: str) -> str:
  passage = re.sub(r'(\.|\?|\!|\"|\')\n@highlight\n', r'\1 ', passage)
  return re.sub(r'\n@highlight\n', '. ', passage)


def record(raw: Raw, split: str) -> Iterator[Raw]:
  """`record query: Q entities: E1, E2 passage: P`; highlights become sentences.

  Training yields one example per gold answer (as T5); evaluation one example per query whose
  target is its first answer and whose `answers` hold them all (scored max-over-answers).
  """
  inputs = (f"record query: {raw['query']} entities: {', '.join(raw['entities'])} "
            f"passage: {_record_passage(raw['passage'])}")
  answers = list(raw['answers'])
  if split == 'train':
    for answer in answers or [UNK_TARGET]:
      yield _example(inputs, answer, answers=answers)
  else:
    yield _example(inputs, answers[0] if answers else UNK_TARGET, answers=answers)


_RE2_SPACE = re.compile(r'[\t\n\f\r ]+')  # RE2's \s (ASCII whitespace, no \v)


def pad_punctuation(text: str) -> str:
  """Spaces around every non-word character (RE2's ASCII \\W), whitespace runs collapsed."""
  return _RE2_SPACE.sub(' ', re.sub(r'(\W)', r' \1 ', text, flags=re.ASCII))


def squad(raw: Raw, split: str) -> Iterator[Raw]:
  """`question: Q context: C`, punctuation padded; target = first answer, padded likewise."""
  del split
  answers = [pad_punctuation(a) for a in raw['answers']['text']]
  inputs = _RE2_SPACE.sub(
    ' ', f"question: {pad_punctuation(raw['question'])} context: {pad_punctuation(raw['context'])}")
  yield _example(inputs, answers[0] if answers else UNK_TARGET, answers=answers)


def _mark_pronoun(text: str, index: int, pronoun: str) -> str:
  """The text with the pronoun at word `index` (single-space split) replaced by `*pronoun*`.

  Two released examples are off: a pronoun fused with punctuation ('him,"') is split from it,
  and a pronoun one word away from its index is found there (both as T5's special cases).
  """
  words = text.split(' ')
  if not 0 < index < len(words):
    raise ValueError(f'WSC pronoun index {index} is outside the text {text!r}')
  word = words[index]
  if word == pronoun:
    marked = 'X'
  elif word.startswith(pronoun) and not re.search(r'\w', word[len(pronoun):]):
    marked = 'X ' + word[len(pronoun):]
  else:
    near = [i for i in (index + 1, index - 1) if 0 <= i < len(words) and words[i] == pronoun]
    if not near:
      raise ValueError(f'WSC pronoun {pronoun!r} is not at word {index} of {text!r}')
    index, marked = near[0], 'X'
  inputs = ' '.join([' '.join(words[:index]), marked, ' '.join(words[index + 1:])])
  return inputs.replace(' X ', f' *{pronoun}* ')


def wsc(raw: Raw, split: str) -> Iterator[Raw]:
  """T5's simple WSC: `wsc: ... *pronoun* ...` -> the candidate referent (span1).

  Training keeps only the examples whose candidate is the true referent; evaluation keeps all
  and scores whether the predicted phrase names the candidate against the label.
  """
  if split == 'train' and raw['label'] != 1:
    return
  inputs = 'wsc: ' + _mark_pronoun(raw['text'], raw['span2_index'], raw['span2_text'])
  yield _example(inputs, raw['span1_text'], label=raw['label'])
