"""The ViT model wrapper (the counterpart of text.model.T5Model): loss, eval sums, features.

The network (vision.network.ViTNetwork) is a pure Flax module; this wrapper is what the shared
training core drives: `init(rng) -> params`, `loss(params, batch, rng) -> (loss, metrics)`,
`eval_metrics(params, batch) -> sums`. Batches are `{'image': float [B, H, W, 3],
'label': int [B]}` (tasks.images' layout), with an optional per-row `weight` (0 for the rows
that pad a ragged last eval batch).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp

from suite.shapes import Shape
from vision.network import ViTNetwork

BATCH_KEYS = ('image', 'label')
PREDICT_OUTPUTS = ('logits', 'features')


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0):
  """Per-example (loss, nll, correct) in float32; logits [B, classes] may be bfloat16.

  loss is the cross-entropy against (1 - label_smoothing) * onehot + label_smoothing / classes
  (optax.smooth_labels, as big_vision); nll = -log p(label); correct = argmax == label.
  """
  if not 0.0 <= label_smoothing < 1.0:
    raise ValueError(f'label_smoothing={label_smoothing}: must be in [0, 1).')
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]
  loss = nll
  if label_smoothing:
    loss = (1.0 - label_smoothing) * nll - label_smoothing * jnp.mean(logp, axis=-1)
  correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
  return loss, nll, correct


def _check_batch(batch: Mapping[str, jax.Array]):
  missing = [k for k in BATCH_KEYS if k not in batch]
  if missing:
    raise KeyError(f'batch lacks {missing}; a ViT batch has image [B, H, W, 3] float and '
                   'label [B] int, and optionally weight [B] (tasks.images layout).')


def _weights(batch: Mapping[str, jax.Array]) -> jax.Array:
  weight = batch.get('weight')
  if weight is None:
    return jnp.ones(batch['label'].shape, jnp.float32)
  return jnp.asarray(weight, jnp.float32)


@dataclasses.dataclass(frozen=True)
class ViTModel:
  """Loss, metrics and features around a ViTNetwork; hashable, so a static jit argument."""

  network: ViTNetwork
  label_smoothing: float = 0.0
  # The loss is a mean over examples of weight > 0: gradient accumulation weights each
  # microbatch by this metric (suite.trainer).
  loss_weight_key: str = 'num_examples'

  @property
  def shape(self) -> Shape:
    return self.network.shape

  def init(self, rng: jax.Array) -> dict:
    """Float32 params with flax LogicallyPartitioned boxes (logical axis names)."""
    size = self.shape.image_size
    return self.network.init({'params': rng}, jnp.zeros((1, size, size, 3), jnp.float32))['params']

  def apply(self, variables: Mapping, images: jax.Array, **kwargs) -> jax.Array:
    """Logits [batch, num_classes] (or features with return_features=True), as the network."""
    return self.network.apply(variables, images, **kwargs)

  def _logits(self, params, images, rng=None):
    enable_dropout = rng is not None and self.network.dropout_rate > 0.0
    return self.network.apply({'params': params}, images, enable_dropout=enable_dropout,
                              rngs={'dropout': rng} if enable_dropout else None)

  def loss(self, params, batch: Mapping[str, jax.Array],
           rng: jax.Array | None = None) -> tuple[jax.Array, dict]:
    """Weighted mean over examples of (smoothed) cross-entropy; dropout on when rng is given."""
    _check_batch(batch)
    loss, nll, correct = cross_entropy(self._logits(params, batch['image'], rng),
                                       batch['label'], self.label_smoothing)
    weights = _weights(batch)
    count = jnp.sum(weights)
    denominator = jnp.where(count > 0, count, 1.0)
    total = jnp.sum(loss * weights) / denominator
    return total, {
        'loss': total,
        'cross_entropy': jnp.sum(nll * weights) / denominator,
        'accuracy': jnp.sum(correct * weights) / denominator,
        'num_examples': count,
    }

  def eval_metrics(self, params, batch: Mapping[str, jax.Array]) -> dict:
    """`example_metrics` summed over the batch, each row weighted by its `weight` (1 if
    absent); add them across batches, then `finalize_metrics`."""
    values, weights = self.example_metrics(params, batch), _weights(batch)
    return {f'{name}_sum': jnp.sum(values[name] * weights)
            for name in ('loss', 'nll', 'correct')} | {'weight_sum': jnp.sum(weights)}

  def example_metrics(self, params, batch: Mapping[str, jax.Array]) -> dict:
    """Per-example values for the core's weighted eval sums (suite.evaluation): loss, nll,
    correct (top-1) and count (1 each); `summarize_example_sums` turns their sums into means."""
    _check_batch(batch)
    loss, nll, correct = cross_entropy(self._logits(params, batch['image']), batch['label'],
                                       self.label_smoothing)
    return {'loss': loss, 'nll': nll, 'correct': correct, 'count': jnp.ones_like(loss)}

  def predict(self, params, batch: Mapping[str, jax.Array], output: str = 'logits') -> jax.Array:
    """The core's predict (suite.evaluation.EvalSteps): float32 'logits' [batch, classes] or
    pooled 'features' [batch, d_model] of batch['image'], no dropout."""
    if output not in PREDICT_OUTPUTS:
      raise ValueError(f'output={output!r}: valid are {", ".join(PREDICT_OUTPUTS)}.')
    images = batch['image']
    return self.logits(params, images) if output == 'logits' else self.features(params, images)

  def logits(self, params, images: jax.Array) -> jax.Array:
    """Logits [batch, num_classes] in float32, no dropout."""
    return self._logits(params, images).astype(jnp.float32)

  def features(self, params, images: jax.Array) -> jax.Array:
    """Pooled pre-logits features [batch, d_model] in float32 (for few-shot linear probes)."""
    out = self.network.apply({'params': params}, images, return_features=True)
    return out.astype(jnp.float32)


def finalize_metrics(sums: Mapping[str, jax.Array]) -> dict[str, float]:
  """Means from summed eval metrics: loss, accuracy (top-1), cross_entropy."""
  weight = max(float(sums['weight_sum']), 1.0)
  return {
      'loss': float(sums['loss_sum']) / weight,
      'accuracy': float(sums['correct_sum']) / weight,
      'cross_entropy': float(sums['nll_sum']) / weight,
  }


def summarize_example_sums(sums: Mapping[str, float]) -> dict[str, float]:
  """Means from the core's weighted sums of `example_metrics`: loss, accuracy (top-1),
  cross_entropy, and the number of examples counted."""
  count = float(sums.get('count', 0.0))
  denominator = max(count, 1.0)
  return {'loss': float(sums['loss']) / denominator,
          'accuracy': float(sums['correct']) / denominator,
          'cross_entropy': float(sums['nll']) / denominator, 'num_examples': count}
