"""ROUGE-1, ROUGE-2 and ROUGE-L F-measures (0-100); rouge_score is not a dependency.

Tokenisation follows rouge_score's default: lowercase, every run of characters other than a-z
and 0-9 becomes a space. No stemming (rouge_score's `use_stemmer=True`, which T5 reports, applies
Porter stemming; our scores are therefore slightly lower on inflected words). Scores are the mean
over examples of per-example F-measures, as rouge_score's aggregator's mid value.
"""

import collections
import re
from collections.abc import Sequence

import numpy as np


def tokenize(text: str) -> list[str]:
  return re.sub(r'[^a-z0-9]+', ' ', text.lower()).split()


def _f_measure(overlap: int, predicted: int, reference: int) -> float:
  if overlap == 0:
    return 0.0
  precision, recall = overlap / predicted, overlap / reference
  return 2 * precision * recall / (precision + recall)


def rouge_n(prediction: Sequence[str], reference: Sequence[str], n: int) -> float:
  """F-measure of clipped n-gram overlap between two token lists."""
  grams = lambda tokens: collections.Counter(
    tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
  pred, ref = grams(prediction), grams(reference)
  return _f_measure(sum((pred & ref).values()), sum(pred.values()), sum(ref.values()))


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
  """Length of the longest common subsequence (dynamic programming, O(len(a) * len(b)))."""
  previous = [0] * (len(b) + 1)
  for x in a:
    current = [0]
    for j, y in enumerate(b):
      current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
    previous = current
  return previous[-1]


def rouge_l(prediction: Sequence[str], reference: Sequence[str]) -> float:
  return _f_measure(lcs_length(prediction, reference), len(prediction), len(reference))


def rouge(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
  """seqio metric: mean rouge1, rouge2, rougeL F-measures over examples, 0-100."""
  scores = collections.defaultdict(list)
  for target, prediction in zip(targets, predictions, strict=True):
    ref, pred = tokenize(target), tokenize(prediction)
    scores['rouge1'].append(rouge_n(pred, ref, 1))
    scores['rouge2'].append(rouge_n(pred, ref, 2))
    scores['rougeL'].append(rouge_l(pred, ref))
  return {name: 100.0 * float(np.mean(values)) for name, values in scores.items()}
