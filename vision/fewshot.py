"""Few-shot linear probes on frozen features: the paper's vision metric, as big_vision measures it.

A probe is closed-form L2-regularised least squares from image features to one-hot targets,
fitted on `shots` examples per class and scored by top-1 on the task's test split. The
recipe is big_vision's few-shot evaluator's (`evaluators/fewshot_lsr.py`):

- features are standardised with the training examples' own mean and std (population std plus
  1e-5, so a constant feature stays finite);
- a constant feature of 100 is appended for the bias: its weight costs l2_reg / 100**2 per unit
  squared, so the bias is almost, not entirely, unregularised;
- targets are one-hot rescaled to {-1, 1} (2 * onehot - 1);
- weights W = argmin ||X W - Y||^2 + l2_reg ||W||^2 with l2_reg = 2**10, solved in whichever of
  the feature or the example dimension is smaller (X^T X or X X^T, Cholesky);
- the prediction is argmax of the test features' scores; accuracy is a fraction in [0, 1].

Equivalently, scikit-learn's `RidgeClassifier(alpha=l2_reg, fit_intercept=False)` fitted on
the standardised features with the constant 100 column appended gives the same weights
(`coef_` = W^T) and predictions; its `fit_intercept=True` is a different estimator (it centres
features and targets and leaves the intercept entirely unpenalised).

The probe is a pure numpy function in float64 on the host: big_vision also solves on the CPU
(`jit_cpu`), the systems are small (a few hundred examples, a few thousand features at most),
and numpy needs no compilation per (examples, features) size, where XLA took 1-2 s for each,
far longer than the solve. The figures then depend on neither accelerator nor matmul precision.

`fewshot_eval` draws 1, 5, 10 and 25 shots per class from an image task's few-shot pool
(`tasks.images`), averages over seeds of the draw, and returns
`{"fewshot/<task>/<shots>shot": accuracy}`. A feature function maps images [N, H, W, 3] to
features [N, D]: the ViT's pooled pre-logits (`functools.partial(jax.jit(model.features),
params)`), or `pixel_features`, the raw-pixel baseline the experiments compare against.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import scipy.linalg

from tasks import images as image_tasks

L2_REG = 2.0**10  # big_vision's default (configs/common_fewshot.py)
BIAS_FEATURE = 100.0  # the constant feature that carries the bias
STD_EPSILON = 1e-5  # added to the training features' std before dividing
SEEDS = (0, 1, 2)  # big_vision averages three draws
PIXELS_PREFIX = 'fewshot_pixels'

FeatureFn = Callable[[np.ndarray], np.ndarray]


class LinearProbe(NamedTuple):
  """A fitted probe: standardisation statistics [D] and weights [D + 1, C] (last row: bias)."""

  mean: np.ndarray
  std: np.ndarray
  weights: np.ndarray


# ---- the closed-form probe ----------------------------------------------------------------------

def _standardise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
  """(x - mean) / std with the constant bias feature appended: [N, D] -> [N, D + 1]."""
  x = (x - mean) / std
  return np.concatenate([x, np.full((len(x), 1), BIAS_FEATURE)], axis=1)


def _ridge(x: np.ndarray, targets: np.ndarray, l2_reg: float) -> np.ndarray:
  """argmin_W ||x W - targets||^2 + l2_reg ||W||^2, via the smaller Gram matrix (Cholesky)."""
  n, d = x.shape
  if n >= d:  # primal: (X^T X + l2 I)^-1 X^T Y, a [D, D] system
    gram = x.T @ x + l2_reg * np.eye(d)
    return scipy.linalg.cho_solve(scipy.linalg.cho_factor(gram), x.T @ targets)
  gram = x @ x.T + l2_reg * np.eye(n)  # dual: X^T (X X^T + l2 I)^-1 Y, an [N, N] system
  return x.T @ scipy.linalg.cho_solve(scipy.linalg.cho_factor(gram), targets)


def _check_features(name: str, features) -> np.ndarray:
  features = np.asarray(features)
  if features.ndim != 2:
    raise ValueError(f'{name} has shape {features.shape}; expected [examples, features] (rank 2). '
                     'Flatten or pool image features first (pixel_features flattens images).')
  if features.dtype.kind not in 'fiu':
    raise ValueError(f'{name} has dtype {features.dtype}; expected real numbers.')
  return features.astype(np.float64)


def _check_labels(name: str, labels, count: int, num_classes: int) -> np.ndarray:
  labels = np.asarray(labels)
  if labels.ndim != 1 or labels.shape[0] != count:
    raise ValueError(f'{name} has shape {labels.shape}; expected [{count}], one label per row '
                     'of the features.')
  if labels.dtype.kind not in 'iu':
    raise ValueError(f'{name} has dtype {labels.dtype}; expected integer class indices.')
  bad = labels[(labels < 0) | (labels >= num_classes)]
  if bad.size:
    raise ValueError(f'{name} holds {np.unique(bad)[:10].tolist()}, outside [0, {num_classes}) '
                     f'for num_classes={num_classes}; relabel the classes 0..num_classes-1.')
  return labels.astype(np.int64)


def fit_probe(train_features, train_labels, num_classes: int,
              l2_reg: float = L2_REG) -> LinearProbe:
  """The probe fitted on features [N, D] and integer labels [N] in [0, num_classes).

  Raises ValueError for features of another rank, labels that do not match them or lie
  outside the classes, fewer examples than classes, a class without an example, or a
  non-positive l2_reg.
  """
  if num_classes < 2:
    raise ValueError(f'num_classes={num_classes}: a probe needs at least 2 classes.')
  if not (np.isfinite(l2_reg) and l2_reg > 0):
    raise ValueError(f'l2_reg={l2_reg}: must be a positive number (big_vision: 2**10).')
  x = _check_features('train_features', train_features)
  labels = _check_labels('train_labels', train_labels, len(x), num_classes)
  if len(x) < num_classes:
    raise ValueError(f'{len(x)} training examples for {num_classes} classes: a probe needs at '
                     'least one example of every class (few-shot draws give shots x classes).')
  missing = np.flatnonzero(np.bincount(labels, minlength=num_classes) == 0)
  if missing.size:
    raise ValueError(f'classes {missing[:10].tolist()} have no training example; a probe needs '
                     'at least one per class (draw them with tasks.images.fewshot_arrays).')
  mean = x.mean(axis=0)
  std = x.std(axis=0) + STD_EPSILON
  targets = 2.0 * np.eye(num_classes)[labels] - 1.0
  return LinearProbe(mean, std, _ridge(_standardise(x, mean, std), targets, float(l2_reg)))


def probe_scores(probe: LinearProbe, features) -> np.ndarray:
  """Scores [N, C] (float64) of the probe on features [N, D]; argmax is the prediction."""
  x = _check_features('features', features)
  if x.shape[1] != probe.mean.shape[0]:
    raise ValueError(f'features have {x.shape[1]} columns, the probe was fitted on '
                     f'{probe.mean.shape[0]}: use features of the same model.')
  return _standardise(x, probe.mean, probe.std) @ probe.weights


def probe_accuracy(train_features, train_labels, test_features, test_labels, num_classes: int,
                   l2_reg: float = L2_REG) -> float:
  """Top-1 accuracy (0-1) on the test rows of the probe fitted on the training rows."""
  probe = fit_probe(train_features, train_labels, num_classes, l2_reg)
  test = _check_features('test_features', test_features)
  labels = _check_labels('test_labels', test_labels, len(test), num_classes)
  if not len(test):
    raise ValueError('test_features is empty: accuracy needs at least one test example.')
  return float(np.mean(np.argmax(probe_scores(probe, test), axis=1) == labels))


# ---- the few-shot evaluation of an image task ---------------------------------------------------

def pixel_features(images: np.ndarray) -> np.ndarray:
  """The raw-pixel baseline's features: images [N, H, W, C] flattened to [N, H*W*C]."""
  images = np.asarray(images)
  return images.reshape(len(images), -1)


def batched_features(feature_fn: FeatureFn, images: np.ndarray, batch_size: int) -> np.ndarray:
  """feature_fn over `images` in batches of exactly `batch_size` (the last one padded with
  zeros, its padding rows dropped), so a jitted feature function compiles once."""
  if batch_size < 1:
    raise ValueError(f'batch_size={batch_size}: must be positive.')
  out = []
  for start in range(0, len(images), batch_size):
    chunk = images[start:start + batch_size]
    rows = len(chunk)
    if rows < batch_size:
      chunk = np.concatenate([chunk, np.zeros((batch_size - rows, *chunk.shape[1:]), chunk.dtype)])
    features = np.asarray(feature_fn(chunk))
    if features.ndim != 2 or features.shape[0] != batch_size:
      raise ValueError(f'the feature function returned shape {features.shape} for {batch_size} '
                       f'images; expected [{batch_size}, features].')
    out.append(features[:rows])
  return np.concatenate(out)


def _first_shots(labels: np.ndarray, shots: int) -> np.ndarray:
  """Indices of the first `shots` examples of each class, in their order."""
  rank = np.zeros(len(labels), np.int64)
  seen: dict[int, int] = {}
  for i, label in enumerate(labels.tolist()):
    rank[i] = seen.get(label, 0)
    seen[label] = rank[i] + 1
  return np.flatnonzero(rank < shots)


def fewshot_eval(feature_fn: FeatureFn, task: image_tasks.ImageTask | str,
                 shots: Sequence[int] = image_tasks.FEWSHOT_SHOTS, seeds: Sequence[int] = SEEDS,
                 l2_reg: float = L2_REG, image_size: int | None = None, batch_size: int = 256,
                 prefix: str = 'fewshot') -> dict[str, float]:
  """{f'{prefix}/{task}/{k}shot': accuracy} for each k in `shots`, the mean over `seeds`.

  For each seed, the largest shot count is drawn from the task's few-shot pool
  (`tasks.images.fewshot_arrays`, eval preprocessing at `image_size`, default the task's);
  smaller counts take the first k examples of each class of that draw, which is exactly the
  k-shot draw of the same seed. Test features are the task's eval split, computed once.
  Raises ValueError when the pool has fewer than max(shots) examples of a class.
  """
  task = image_tasks.get(task) if isinstance(task, str) else task
  shots = sorted(set(shots))
  if not shots or shots[0] < 1:
    raise ValueError(f'shots={shots}: need positive counts, e.g. {image_tasks.FEWSHOT_SHOTS}.')
  if not seeds:
    raise ValueError('seeds is empty: give at least one seed of the few-shot draw.')
  batches = image_tasks.eval_dataset(task, batch_size, image_size).as_numpy_iterator()
  test_images, test_labels = zip(*((b['image'], b['label']) for b in batches), strict=True)
  test_features = batched_features(feature_fn, np.concatenate(test_images), batch_size)
  test_labels = np.concatenate(test_labels)
  accuracies = {k: [] for k in shots}
  for seed in seeds:
    images, labels = image_tasks.fewshot_arrays(task, shots[-1], seed, image_size)
    features = batched_features(feature_fn, images, batch_size)
    for k in shots:
      index = _first_shots(labels, k)
      accuracies[k].append(probe_accuracy(features[index], labels[index], test_features,
                                          test_labels, task.num_classes, l2_reg))
  return {f'{prefix}/{task.name}/{k}shot': float(np.mean(accuracies[k])) for k in shots}


def pixel_baseline(task: image_tasks.ImageTask | str,
                   shots: Sequence[int] = image_tasks.FEWSHOT_SHOTS,
                   seeds: Sequence[int] = SEEDS, l2_reg: float = L2_REG,
                   image_size: int | None = None) -> dict[str, float]:
  """`fewshot_eval` of raw pixels: {f'fewshot_pixels/{task}/{k}shot': accuracy}."""
  return fewshot_eval(pixel_features, task, shots, seeds, l2_reg, image_size,
                      prefix=PIXELS_PREFIX)
