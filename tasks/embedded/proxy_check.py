r"""A linear proxy for the embedded tasks' design: can corpus knowledge reach the held-out half?

  python -m tasks.embedded.proxy_check > results/embedded_proxy_check.json

Validation examples of the embedded tasks are half "seen" (entities and sentiment words that the
training split uses) and half "held out" (ones that only the pretraining corpus describes). If
the design works, a model that knows only the training split should be near chance on the
held-out half, and knowledge learnt from the corpus should lift it. This check tests that
without a Transformer, in seconds and deterministically: for SST, RTE and STS-B it fits a
linear model (logistic regression; ridge regression for STS-B's scores) on the training split
twice, on binary bag-of-words features alone and on the same plus word vectors learnt from the
pretraining corpus (positive PMI of co-occurrence counts within a window, reduced by SVD), and
scores both on the validation split, in full and on each half. Pair tasks (RTE, STS-B) get one
bag of words per sentence and, as vector features, the words each sentence has and the other
lacks: the product and absolute difference of their mean vectors and their cosine. Prints one
JSON object (scores 0-100 as the task metrics report them, rounded to 0.1).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence

import numpy as np
import scipy.sparse
from absl import flags
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler

from suite import flagcheck
from tasks import metrics
from tasks.embedded import corpus, lexicon
from tasks.embedded import examples as generated

FLAGS = flags.FLAGS
flags.DEFINE_integer('window', 4, 'Co-occurrence window: words up to this far apart count.',
                     lower_bound=1)
flags.DEFINE_integer('dimensions', 64, 'Word-vector dimensions kept by the SVD (at most the '
                     'number of distinct corpus words).', lower_bound=1)
flags.DEFINE_float('regularization', 1.0,
                   'Inverse L2 strength C of the logistic regression (ridge alpha = 1 / C).')
flagcheck.require('regularization', lambda c: 0 < c < math.inf, 'a number > 0')

# task name -> (generator key, text fields, metric)
TASKS = {
  'embedded_sst_v1': ('sst', ('sentence',), 'accuracy'),
  'embedded_rte_v1': ('rte', ('premise', 'hypothesis'), 'accuracy'),
  'embedded_stsb_v1': ('stsb', ('sentence1', 'sentence2'), 'pearson_corrcoef'),
}
FEATURE_SETS = ('bag_of_words', 'bag_of_words_and_vectors')
HALVES = ('all', 'seen', 'held_out')
CONTEXT_SMOOTHING = 0.75  # context counts ** 0.75, the usual PPMI smoothing (Levy et al. 2015)
_WORD = re.compile(r'[a-z]+')


def words(text: str) -> list[str]:
  """Lower-case alphabetic tokens: the one tokenizer of both the vectors and the bags of words."""
  return _WORD.findall(text.lower())


def word_vectors(documents: Sequence[str], window: int,
                 dimensions: int) -> tuple[dict[str, int], np.ndarray]:
  """(word -> row, unit-length vectors) from PPMI over symmetric co-occurrence counts + SVD.

  Deterministic: each column's sign is fixed so that its largest-magnitude entry is positive.
  """
  if window < 1 or dimensions < 1:
    raise ValueError(f'window ({window}) and dimensions ({dimensions}) must be >= 1.')
  tokenized = [words(doc) for doc in documents]
  vocab = {w: i for i, w in enumerate(sorted({w for doc in tokenized for w in doc}))}
  if dimensions > len(vocab):
    raise ValueError(f'dimensions={dimensions} exceeds the corpus vocabulary ({len(vocab)} '
                     'words); pass a smaller --dimensions.')
  rows, cols = [], []
  for doc in tokenized:
    ids = np.array([vocab[w] for w in doc], dtype=np.int64)
    for offset in range(1, window + 1):
      rows += [ids[:-offset], ids[offset:]]
      cols += [ids[offset:], ids[:-offset]]
  counts = scipy.sparse.coo_matrix(
    (np.ones(sum(map(len, rows))), (np.concatenate(rows), np.concatenate(cols))),
    shape=(len(vocab),) * 2).toarray()
  # PMI = log P(w, c) / (P(w) P(c)), the context distribution smoothed: n_wc / (n_w P(c)).
  context = counts.sum(axis=0) ** CONTEXT_SMOOTHING
  with np.errstate(divide='ignore'):
    pmi = np.log(counts / counts.sum(axis=1, keepdims=True) / (context / context.sum()))
  ppmi = np.maximum(pmi, 0.0)
  u, s, _ = np.linalg.svd(ppmi)
  vectors = u[:, :dimensions] * np.sqrt(s[:dimensions])
  signs = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(dimensions)])
  vectors *= signs
  return vocab, vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _mean_vector(tokens: Sequence[str], vocab: dict[str, int], vectors: np.ndarray) -> np.ndarray:
  ids = [vocab[w] for w in tokens if w in vocab]
  return vectors[ids].mean(axis=0) if ids else np.zeros(vectors.shape[1])


def _held_out_phrases(key: str) -> tuple[dict[str, bool], list[str]]:
  """Phrases naming the entities (or sentiment words) a task draws from the seen/held-out pools:
  phrase -> held out, and the fields that carry the drawn entity."""
  world = lexicon.load()
  seed = generated.KNOWLEDGE_SPLIT_SEED
  if key == 'sst':
    groups = [(world.positive, lambda w: [w]), (world.negative, lambda w: [w])]
    fields = ['sentence']
  elif key == 'rte':
    groups = [(world.countries, lambda c: [c.name, c.capital]),
              (world.animals, lambda a: [a.name])]
    fields = ['premise']
  elif key == 'stsb':
    groups = [(world.animals, lambda a: [a.name])]
    fields = ['sentence1']
  else:
    raise ValueError(f'no held-out rule for embedded task {key!r}; valid: sst, rte, stsb.')
  phrases = {}
  for items, names in groups:
    seen, unseen = lexicon.held_out(items, seed=seed)
    for held, pool in ((False, seen), (True, unseen)):
      for item in pool:
        phrases.update({name.lower(): held for name in names(item)})
  return phrases, fields


def held_out_mask(key: str, split: str) -> np.ndarray:
  """Which examples of embedded task `key` ('sst', 'rte', 'stsb') draw a held-out entity.

  The drawn entity is the longest lexicon phrase in the example's first sentence (so 'polar
  bear' is not read as 'bear', nor 'Mexico City' as 'Mexico'); every example has exactly one.
  """
  phrases, fields = _held_out_phrases(key)
  pattern = re.compile(r'\b(' + '|'.join(
    re.escape(p) for p in sorted(phrases, key=lambda p: (-len(p), p))) + r')\b')
  mask = []
  for ex in generated.examples(key, split):
    found = pattern.findall(' '.join(ex[f] for f in fields).lower())
    if not found:
      raise ValueError(f'{key} {split} example {ex["idx"]} names no lexicon entity: {ex}')
    mask.append(phrases[max(found, key=len)])
  return np.array(mask)


def _bags(texts_by_field: list[list[str]], vectorizers: list[CountVectorizer],
          fit: bool) -> scipy.sparse.csr_matrix:
  """Binary bags of words, one block per field; `fit` learns each field's vocabulary first."""
  if fit:
    vectorizers[:] = [CountVectorizer(analyzer=words, binary=True) for _ in texts_by_field]
  blocks = [v.fit_transform(t) if fit else v.transform(t)
            for v, t in zip(vectorizers, texts_by_field, strict=True)]
  return scipy.sparse.hstack(blocks, format='csr')


def _vector_features(texts_by_field: list[list[str]], vocab: dict[str, int],
                     vectors: np.ndarray) -> np.ndarray:
  """One sentence: its mean vector. A pair: the words each has and the other lacks, compared."""
  if len(texts_by_field) == 1:
    return np.stack([_mean_vector(words(t), vocab, vectors) for t in texts_by_field[0]])
  rows = []
  for first, second in zip(*texts_by_field, strict=True):
    a, b = words(first), words(second)
    u = _mean_vector([w for w in a if w not in b], vocab, vectors)
    v = _mean_vector([w for w in b if w not in a], vocab, vectors)
    cosine = float(u @ v / max(np.linalg.norm(u) * np.linalg.norm(v), 1e-12))
    rows.append(np.concatenate([u * v, np.abs(u - v), [cosine]]))
  return np.stack(rows)


def _score(metric: str, targets: np.ndarray, predictions: np.ndarray) -> float:
  fn = metrics.accuracy if metric == 'accuracy' else metrics.pearson_corrcoef
  return round(fn(list(targets), list(predictions))[metric], 1)


def evaluate_task(task: str, vocab: dict[str, int], vectors: np.ndarray,
                  regularization: float) -> dict:
  """Validation scores of both feature sets on one task, in full and on each half."""
  key, fields, metric = TASKS[task]
  splits = {s: generated.examples(key, s) for s in ('train', 'validation')}
  texts = {s: [[ex[f] for ex in rows] for f in fields] for s, rows in splits.items()}
  labels = {s: np.array([ex['label'] for ex in rows]) for s, rows in splits.items()}
  held = held_out_mask(key, 'validation')
  if held_out_mask(key, 'train').any():
    raise AssertionError(f'{task}: a training example draws a held-out entity')
  vectorizers: list[CountVectorizer] = []
  bags = {'train': _bags(texts['train'], vectorizers, fit=True),
          'validation': _bags(texts['validation'], vectorizers, fit=False)}
  scaler = StandardScaler().fit(_vector_features(texts['train'], vocab, vectors))
  dense = {s: scipy.sparse.csr_matrix(scaler.transform(_vector_features(texts[s], vocab, vectors)))
           for s in splits}
  result = {'metric': metric, 'examples': {'train': len(splits['train']),
                                           'validation': len(held), 'held_out': int(held.sum())}}
  if metric == 'accuracy':
    values, counts = np.unique(labels['train'], return_counts=True)
    majority = values[counts.argmax()]
    result['majority'] = _score(metric, labels['validation'],
                                np.full(len(held), majority))
  for name in FEATURE_SETS:
    features = {s: bags[s] if name == 'bag_of_words' else scipy.sparse.hstack(
      [bags[s], dense[s]], format='csr') for s in splits}
    if metric == 'accuracy':
      model = LogisticRegression(C=regularization, max_iter=10_000)
    else:
      model = Ridge(alpha=1.0 / regularization)
    predictions = model.fit(features['train'], labels['train']).predict(features['validation'])
    result[name] = {half: _score(metric, labels['validation'][mask], predictions[mask])
                    for half, mask in (('all', np.ones_like(held)), ('seen', ~held),
                                       ('held_out', held))}
  return result


def run(window: int = 4, dimensions: int = 64, regularization: float = 1.0,
        tasks: Sequence[str] = tuple(TASKS)) -> dict:
  """The whole check: vector settings, then each task's scores (what the command prints)."""
  unknown = [t for t in tasks if t not in TASKS]
  if unknown:
    raise ValueError(f'unknown proxy-check tasks {unknown}; valid: {", ".join(TASKS)}.')
  if regularization <= 0:
    raise ValueError(f'regularization={regularization} must be > 0.')
  documents = corpus.documents('train')
  vocab, vectors = word_vectors(documents, window, dimensions)
  return {
    'vectors': {'corpus_documents': len(documents), 'vocabulary': len(vocab), 'window': window,
                'dimensions': dimensions, 'context_smoothing': CONTEXT_SMOOTHING},
    'regularization': regularization,
    'tasks': {task: evaluate_task(task, vocab, vectors, regularization) for task in tasks},
  }


def main(argv):
  del argv  # flagcheck.run rejects positional arguments
  vocabulary = len({w for doc in corpus.documents('train') for w in words(doc)})
  if FLAGS.dimensions > vocabulary:
    raise flagcheck.FlagError(f'--dimensions={FLAGS.dimensions} is out of range: at most the '
                              f'corpus vocabulary, {vocabulary} words; e.g. --dimensions=64 '
                              '(the default).')
  print(json.dumps(run(FLAGS.window, FLAGS.dimensions, FLAGS.regularization), indent=1))


if __name__ == '__main__':
  flagcheck.run(main)
