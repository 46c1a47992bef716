"""ROUGE F-measures (0-100) as T5 scores summaries; rouge_score is not a dependency.

What T5 does (`t5.evaluation.metrics.rouge`): `rouge_scorer.RougeScorer(['rouge1', 'rouge2',
'rougeLsum'])` with rouge_score's defaults, so no stemming; every " . " in a target or
prediction becomes " .\\n" first, so that rougeLsum sees sentences; F-measures x 100. We match
that: the same tokenisation (lowercase, every run of characters other than a-z and 0-9 is a
space), no stemming, the same sentence split and the same summary-level LCS. We also report
`rougeL` (one LCS over the whole text), which many XSum papers quote.

Aggregation: the score is the mean over examples of the per-example F-measure, which is T5's
deterministic `rouge_mean`. T5's default `rouge` instead reports the median of 1,000 bootstrap
resamples of that mean (rouge_score's `BootstrapAggregator` mid), which is random and differs
from the mean by resampling noise only.
"""

import collections
import re
from collections.abc import Sequence

import numpy as np


def tokenize(text: str) -> list[str]:
  """rouge_score's default tokeniser without stemming."""
  return re.sub(r'[^a-z0-9]+', ' ', text.lower()).split()


def sentences(text: str) -> list[list[str]]:
  """T5's rougeLsum sentences: " . " ends a sentence, lines are sentences, empty lines drop."""
  lines = text.replace(' . ', ' .\n').split('\n')
  return [tokenize(line) for line in lines if line]


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


def _lcs_table(a: Sequence[str], b: Sequence[str]) -> list[list[int]]:
  """table[i][j] = LCS length of a[:i] and b[:j] (dynamic programming, O(len(a) * len(b)))."""
  table = [[0] * (len(b) + 1)]
  for x in a:
    previous, row = table[-1], [0]
    for j, y in enumerate(b):
      row.append(previous[j] + 1 if x == y else max(previous[j + 1], row[j]))
    table.append(row)
  return table


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
  """Length of the longest common subsequence."""
  return _lcs_table(a, b)[-1][-1]


def lcs_positions(reference: Sequence[str], candidate: Sequence[str]) -> set[int]:
  """Positions in `reference` of one longest common subsequence with `candidate`.

  Several may exist; this is the one rouge_score reads back (from the end: a match is taken,
  else the candidate steps back only when that keeps a strictly longer LCS, else the
  reference does), which matters for rougeLsum's union.
  """
  table = _lcs_table(reference, candidate)
  i, j, positions = len(reference), len(candidate), set()
  while i > 0 and j > 0:
    if reference[i - 1] == candidate[j - 1]:
      positions.add(i - 1)
      i, j = i - 1, j - 1
    elif table[i][j - 1] > table[i - 1][j]:
      j -= 1
    else:
      i -= 1
  return positions


def rouge_l(prediction: Sequence[str], reference: Sequence[str]) -> float:
  return _f_measure(lcs_length(prediction, reference), len(prediction), len(reference))


def rouge_lsum(prediction: Sequence[Sequence[str]], reference: Sequence[Sequence[str]]) -> float:
  """Summary-level LCS F-measure (Lin 2004, section 3.2) over tokenised sentences.

  Each reference sentence scores the union of its LCS positions with every predicted sentence;
  a token counts at most as often as it occurs in the reference and in the prediction.
  """
  reference_left = collections.Counter(t for sentence in reference for t in sentence)
  prediction_left = collections.Counter(t for sentence in prediction for t in sentence)
  total_reference, total_prediction = reference_left.total(), prediction_left.total()
  hits = 0
  for sentence in reference:
    union = set().union(*(lcs_positions(sentence, p) for p in prediction))
    for token in (sentence[i] for i in sorted(union)):
      if reference_left[token] > 0 and prediction_left[token] > 0:
        hits += 1
        reference_left[token] -= 1
        prediction_left[token] -= 1
  return _f_measure(hits, total_prediction, total_reference)


def rouge(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
  """seqio metric: mean rouge1, rouge2, rougeL, rougeLsum F-measures over examples, 0-100."""
  scores = collections.defaultdict(list)
  for target, prediction in zip(targets, predictions, strict=True):
    ref, pred = tokenize(target), tokenize(prediction)
    scores['rouge1'].append(rouge_n(pred, ref, 1))
    scores['rouge2'].append(rouge_n(pred, ref, 2))
    scores['rougeL'].append(rouge_l(pred, ref))
    scores['rougeLsum'].append(rouge_lsum(sentences(prediction), sentences(target)))
  return {name: 100.0 * float(np.mean(values)) for name, values in scores.items()}
