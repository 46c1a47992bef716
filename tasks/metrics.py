"""Benchmark metrics and postprocessors, as GLUE, SuperGLUE, SQuAD and TriviaQA define them (0-100).

Metric functions take `(targets, predictions)` lists of postprocessed values and return a flat
`{name: float}` dict, the seqio/T5 convention. Postprocessors turn decoded model text (or a
task's target text) into those values. An unrecognised prediction maps to -1 (an invalid class),
which every classification metric counts as wrong.
"""

from __future__ import annotations

import collections
import math
import re
import string
import warnings
from collections.abc import Callable, Hashable, Sequence

import numpy as np
import scipy.stats
import sklearn.metrics

MetricFn = Callable[[Sequence, Sequence], dict[str, float]]

INVALID = -1


def as_text(value) -> str:
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------- postprocessors


def string_label_to_class_id(text, label_classes: Sequence[str]) -> int:
  """Index of `text` in `label_classes` (exact match, as T5), else -1."""
  text = as_text(text)
  return list(label_classes).index(text) if text in label_classes else INVALID


_DECIMAL = re.compile(r'\s*[-+]?(\d+(\.\d*)?|\.\d+)\s*', re.ASCII)


def string_to_float(text, default: float = -1.0) -> float:
  """STS-B: the decoded plain decimal number ('3.8', '-1', '+.5'), else `default`.

  Only ASCII digits with an optional sign and point are numbers: 'nan', 'inf', exponents,
  underscores and other scripts' digits, all of which `float` accepts, would let one decoded
  prediction turn the Pearson and Spearman correlations into NaN (or hide a wrong answer).
  """
  text = as_text(text)
  if not _DECIMAL.fullmatch(text):
    return default
  value = float(text)
  return value if math.isfinite(value) else default


_WSC_DETERMINERS = frozenset({
  'a', 'an', 'few', 'her', 'his', 'each', 'every', 'many', 'much', 'my', 'our', 'some', 'that',
  'the', 'their', 'these', 'this', 'those', 'which', 'whose', 'your'})


def _wsc_clean(text: str) -> str:
  words = text.strip().lower().split(' ')
  return ' '.join(w for w in words if w not in _WSC_DETERMINERS)


def wsc_predicts_referent(prediction, referent) -> int:
  """T5's WSC rule: 1 if the predicted noun phrase names the candidate referent, else 0.

  Case and determiners are ignored; either word set may contain the other ("fuzzy bunny" vs
  "bunny"), but a possessive on one side only is a mismatch ("Bob" vs "Bob's hat"). An empty
  prediction is -1 so that it never matches a 0 label by accident.
  """
  prediction, referent = _wsc_clean(as_text(prediction)), _wsc_clean(as_text(referent))
  if not prediction:
    return INVALID
  if ("'" in prediction) != ("'" in referent):
    return 0
  pred_words, ref_words = set(prediction.split(' ')), set(referent.split(' '))
  return int(pred_words <= ref_words or ref_words <= pred_words)


# ---------------------------------------------------------------- classification / regression


def accuracy(targets: Sequence, predictions: Sequence) -> dict[str, float]:
  return {'accuracy': 100.0 * float(sklearn.metrics.accuracy_score(targets, predictions))}


def matthews_corrcoef(targets: Sequence, predictions: Sequence) -> dict[str, float]:
  """CoLA: Matthews correlation; invalid predictions stay a class of their own (never right)."""
  return {'matthews_corrcoef':
          100.0 * float(sklearn.metrics.matthews_corrcoef(targets, predictions))}


def f1_with_invalid(targets: Sequence, predictions: Sequence) -> dict[str, float]:
  """Binary F1 of the positive class 1; a prediction that is neither 0 nor 1 counts as wrong."""
  targets = np.asarray(targets, dtype=np.int64)
  predictions = np.array(predictions, dtype=np.int64)
  invalid = (predictions != 0) & (predictions != 1)
  predictions[invalid] = 1 - targets[invalid]
  return {'f1': 100.0 * float(sklearn.metrics.f1_score(targets, predictions))}


def mean_multiclass_f1(num_classes: int) -> MetricFn:
  """CB: macro-averaged F1 over classes 0..num_classes-1 (an invalid prediction is a miss)."""

  def metric(targets: Sequence, predictions: Sequence) -> dict[str, float]:
    value = sklearn.metrics.f1_score(
      targets, predictions, labels=list(range(num_classes)), average='macro', zero_division=0)
    return {f'mean_{num_classes}class_f1': 100.0 * float(value)}

  return metric


def pearson_corrcoef(targets: Sequence, predictions: Sequence) -> dict[str, float]:
  """STS-B Pearson r; NaN (undefined) when either side is constant."""
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', scipy.stats.ConstantInputWarning)
    return {'pearson_corrcoef': 100.0 * float(scipy.stats.pearsonr(targets, predictions)[0])}


def spearman_corrcoef(targets: Sequence, predictions: Sequence) -> dict[str, float]:
  """STS-B Spearman rho; NaN (undefined) when either side is constant."""
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', scipy.stats.ConstantInputWarning)
    return {'spearman_corrcoef': 100.0 * float(scipy.stats.spearmanr(targets, predictions)[0])}


# ---------------------------------------------------------------- MultiRC


def multirc_f1a(targets: Sequence[dict], predictions: Sequence[dict]) -> dict[str, float]:
  """MultiRC F1a: binary F1 over every answer option of every question."""
  return f1_with_invalid([t['value'] for t in targets], [p['value'] for p in predictions])


def multirc_exact_match(targets: Sequence[dict], predictions: Sequence[dict]) -> dict[str, float]:
  """MultiRC EM: percent of questions (targets' `group`) whose answer options are all right."""
  groups: dict[Hashable, bool] = collections.OrderedDict()
  for target, prediction in zip(targets, predictions, strict=True):
    key = target['group']
    groups[key] = groups.get(key, True) and target['value'] == prediction['value']
  return {'exact_match': 100.0 * float(np.mean(list(groups.values())))}


# ---------------------------------------------------------------- SQuAD / ReCoRD / TriviaQA


def normalize_answer(text: str) -> str:
  """The official SQuAD v1.1 normalisation: lowercase, drop punctuation, articles, extra spaces."""
  text = text.lower()
  text = ''.join(ch for ch in text if ch not in _PUNCTUATION)
  return _drop_articles_and_spaces(text)


def normalize_trivia_qa(text: str) -> str:
  """The official TriviaQA normalisation (T5's `normalize_trivia_qa`): lowercase; ASCII
  punctuation, underscores and the quotes ‘ ’ ´ ` become spaces (SQuAD's deletes them, so
  'Mary-Kate' is 'mary kate' here, 'marykate' there); then articles and extra spaces go."""
  text = text.lower()
  text = ''.join(' ' if ch in _TRIVIA_QA_PUNCTUATION else ch for ch in text)
  return _drop_articles_and_spaces(text)


def _drop_articles_and_spaces(text: str) -> str:
  return ' '.join(re.sub(r'\b(a|an|the)\b', ' ', text).split())


_PUNCTUATION = frozenset(string.punctuation)
_TRIVIA_QA_PUNCTUATION = _PUNCTUATION | frozenset('\u2018\u2019\u00b4`_')


def exact_match_score(prediction: str, gold: str) -> float:
  return float(normalize_answer(prediction) == normalize_answer(gold))


def _token_f1(pred_tokens: Sequence[str], gold_tokens: Sequence[str]) -> float:
  common = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
  num_same = sum(common.values())
  if num_same == 0:
    return 0.0
  precision = num_same / len(pred_tokens)
  recall = num_same / len(gold_tokens)
  return 2 * precision * recall / (precision + recall)


def token_f1_score(prediction: str, gold: str) -> float:
  """Bag-of-tokens F1 between normalised answers (official SQuAD v1.1 definition)."""
  return _token_f1(normalize_answer(prediction).split(), normalize_answer(gold).split())


def _qa_scores(targets: Sequence[Sequence[str]], predictions: Sequence[str],
               normalize: Callable[[str], str]) -> dict[str, float]:
  """EM and token F1 of normalised answers, each the max over an example's golds, x100."""
  em, f1 = [], []
  for golds, prediction in zip(targets, predictions, strict=True):
    golds = [normalize(as_text(g)) for g in golds]
    if not golds:
      raise ValueError('an example has no gold answers; QA scoring needs at least one')
    prediction = normalize(as_text(prediction))
    em.append(max(float(prediction == g) for g in golds))
    f1.append(max(_token_f1(prediction.split(), g.split()) for g in golds))
  return {'em': 100.0 * float(np.mean(em)), 'f1': 100.0 * float(np.mean(f1))}


def squad(targets: Sequence[Sequence[str]], predictions: Sequence[str]) -> dict[str, float]:
  """SQuAD and ReCoRD: EM and F1, each the max over an example's gold answers, averaged."""
  return _qa_scores(targets, predictions, normalize_answer)


def trivia_qa(targets: Sequence[Sequence[str]], predictions: Sequence[str]) -> dict[str, float]:
  """TriviaQA as T5 scores it: EM and F1 under the TriviaQA normalisation, max over aliases."""
  return _qa_scores(targets, predictions, normalize_trivia_qa)
