"""The T5 model wrapper (t5x-style): loss, teacher-forced metrics and cached greedy decoding.

The network (text.network.T5Network) is a pure Flax module; this wrapper is what the shared
training core drives (suite.trainer.Model): `init(rng) -> params`, `loss(params, batch, rng)
-> (loss, metrics)`, `example_metrics(params, batch) -> {name: [batch]}` (teacher-forced
per-example sums, which the core adds up with the per-row eval weights) and
`predict(params, batch, max_decode_len)` (cached greedy decoding, run by the core under the
training mesh). Batches use seqio EncDecFeatureConverter names: encoder_input_tokens,
decoder_input_tokens, decoder_target_tokens, decoder_loss_weights.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp

from suite.shapes import Shape
from text.network import T5Network

EOS_ID = 1
DECODER_START_ID = 0
BATCH_KEYS = ('encoder_input_tokens', 'decoder_input_tokens', 'decoder_target_tokens')


def cross_entropy_with_logits(logits: jax.Array, targets: jax.Array, z_loss: float = 0.0,
                              label_smoothing: float = 0.0):
  """Per-token (loss, z_loss, nll, correct), all float32; logits may be bfloat16.

  loss = smoothed cross-entropy + z_loss * logsumexp**2 (t5x); nll is the plain -log p(target)
  used for perplexity; the float32 upcast fuses into the reductions under jit. `correct` is
  argmax(logits) == target, ties going to the first id as in argmax. Differentiable in the
  logits (`correct` has no gradient). `z_loss` and `label_smoothing` are Python numbers (they
  shape the custom gradient), label_smoothing in [0, 1).
  """
  try:
    z_loss, label_smoothing = float(z_loss), float(label_smoothing)
  except (TypeError, jax.errors.ConcretizationTypeError):
    raise TypeError(f'z_loss and label_smoothing must be Python numbers, not traced values '
                    f'(got {type(z_loss).__name__}, {type(label_smoothing).__name__}); pass '
                    'them as static values.') from None
  if not 0.0 <= label_smoothing < 1.0:
    raise ValueError(f'label_smoothing={label_smoothing}: must be in [0, 1).')
  return _cross_entropy(logits, targets, z_loss, label_smoothing)


def _smoothing(label_smoothing: float, vocab: int) -> tuple[float, float]:
  """(weight of the target, weight of every other id) in the smoothed target distribution."""
  if not label_smoothing:
    return 1.0, 0.0
  return 1.0 - label_smoothing, label_smoothing / (vocab - 1)


def _cross_entropy_fwd(logits, targets, z_loss, label_smoothing):
  logits32 = logits.astype(jnp.float32)
  vocab = logits.shape[-1]
  top = jnp.max(logits32, axis=-1)
  lse = top + jnp.log(jnp.sum(jnp.exp(logits32 - top[..., None]), axis=-1))
  target_logit = jnp.take_along_axis(logits32, targets[..., None], axis=-1)[..., 0]
  nll = lse - target_logit
  if label_smoothing:
    confidence, low = _smoothing(label_smoothing, vocab)
    normalizer = -(confidence * math.log(confidence) + (vocab - 1) * low * math.log(low + 1e-20))
    soft_logit = confidence * target_logit + low * (jnp.sum(logits32, axis=-1) - target_logit)
    loss = lse - soft_logit - normalizer
  else:
    loss = nll
  z = z_loss * jnp.square(lse)
  # argmax == target, without argmax's (value, index) reduction, slow on XLA CPU: the target
  # holds the max and no earlier id reaches it (argmax takes the first of tied maxima).
  earlier = jnp.arange(vocab) < targets[..., None]
  best_earlier = jnp.max(jnp.where(earlier, logits32, -jnp.inf), axis=-1)
  correct = ((target_logit >= top) & (best_earlier < top)).astype(jnp.float32)
  return (loss + z, z, nll, correct), (logits, lse, targets)


def _cross_entropy_bwd(z_loss, label_smoothing, residuals, cotangents):
  """d/dlogits of the three differentiable outputs, in one elementwise pass over the logits.

  With p = softmax(logits) and q the (smoothed) target distribution:
  d(ce + z)/dl = p (1 + 2 z_loss lse) - q, dz/dl = 2 z_loss lse p, dnll/dl = p - onehot.
  Autodiff of the forward instead keeps exp(logits - max) as a second [tokens, vocab] array
  and scatters the target's term into the gradient.
  """
  logits, lse, targets = residuals
  g_loss, g_z, g_nll, _ = cotangents
  vocab = logits.shape[-1]
  confidence, low = _smoothing(label_smoothing, vocab)
  probs_scale = g_loss * (1.0 + 2.0 * z_loss * lse) + g_z * (2.0 * z_loss * lse) + g_nll
  target_scale = g_loss * (confidence - low) + g_nll
  probs = jnp.exp(logits.astype(jnp.float32) - lse[..., None])
  grad = probs * probs_scale[..., None] - jnp.where(
      jnp.arange(vocab) == targets[..., None], target_scale[..., None], 0.0)
  if low:
    grad = grad - (g_loss * low)[..., None]
  return grad.astype(logits.dtype), None


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _cross_entropy(logits, targets, z_loss, label_smoothing):
  return _cross_entropy_fwd(logits, targets, z_loss, label_smoothing)[0]


_cross_entropy.defvjp(_cross_entropy_fwd, _cross_entropy_bwd)


def _weights(batch: Mapping[str, jax.Array]) -> jax.Array:
  weights = batch.get('decoder_loss_weights')
  if weights is None:
    weights = batch['decoder_target_tokens'] > 0
  return weights.astype(jnp.float32)


def _check_batch(batch: Mapping[str, jax.Array]):
  missing = [k for k in BATCH_KEYS if k not in batch]
  if missing:
    raise KeyError(f'batch lacks {missing}; a T5 batch has {", ".join(BATCH_KEYS)} and '
                   'optionally decoder_loss_weights (seqio EncDecFeatureConverter names).')


@dataclasses.dataclass(frozen=True)
class T5Model:
  """Loss, metrics and decoding around a T5Network; hashable, so it can be a static jit arg."""

  network: T5Network
  z_loss: float = 1e-4
  label_smoothing: float = 0.0
  eos_id: int = EOS_ID
  decoder_start_id: int = DECODER_START_ID
  # The loss is a mean over target tokens of weight > 0: gradient accumulation weights each
  # microbatch by this metric (suite.trainer).
  loss_weight_key: str = 'num_tokens'

  @property
  def shape(self) -> Shape:
    return self.network.shape

  def init(self, rng: jax.Array) -> dict:
    """Float32 params with flax LogicallyPartitioned boxes (logical axis names)."""
    tokens = jnp.ones((1, 1), jnp.int32)
    return self.network.init({'params': rng}, tokens, tokens)['params']

  def apply(self, variables: Mapping, encoder_input_tokens: jax.Array,
            decoder_input_tokens: jax.Array, **kwargs) -> jax.Array:
    """Logits [batch, target_len, vocab], as `network.apply`."""
    return self.network.apply(variables, encoder_input_tokens, decoder_input_tokens, **kwargs)

  def _logits(self, params, batch, rng=None):
    enable_dropout = rng is not None and self.network.dropout_rate > 0.0
    return self.network.apply(
        {'params': params}, batch['encoder_input_tokens'], batch['decoder_input_tokens'],
        enable_dropout=enable_dropout, rngs={'dropout': rng} if enable_dropout else None)

  def loss(self, params, batch: Mapping[str, jax.Array],
           rng: jax.Array | None = None) -> tuple[jax.Array, dict]:
    """Mean per target token of cross-entropy + z-loss; dropout on when rng is given."""
    _check_batch(batch)
    logits = self._logits(params, batch, rng)
    loss, z, nll, correct = cross_entropy_with_logits(
        logits, batch['decoder_target_tokens'], self.z_loss, self.label_smoothing)
    weights = _weights(batch)
    count = jnp.sum(weights)
    denominator = jnp.where(count > 0, count, 1.0)  # loss x num_tokens = the sum, exactly
    total = jnp.sum(loss * weights) / denominator
    metrics = {
        'loss': total,
        'cross_entropy': jnp.sum(nll * weights) / denominator,
        'z_loss': jnp.sum(z * weights) / denominator,
        'accuracy': jnp.sum(correct * weights) / denominator,
        'num_tokens': count,
    }
    return total, metrics

  def example_metrics(self, params, batch: Mapping[str, jax.Array]) -> dict:
    """Teacher-forced sums over each example's target tokens, `[batch]` each; the core adds
    them over an evaluation set (suite.evaluation), then `finalize_metrics` gives means."""
    _check_batch(batch)
    logits = self._logits(params, batch)
    loss, _, nll, correct = cross_entropy_with_logits(
        logits, batch['decoder_target_tokens'], self.z_loss, self.label_smoothing)
    weights = _weights(batch)
    return {
        'loss_sum': jnp.sum(loss * weights, axis=-1),
        'nll_sum': jnp.sum(nll * weights, axis=-1),
        'correct_sum': jnp.sum(correct * weights, axis=-1),
        'weight_sum': jnp.sum(weights, axis=-1),
        'num_examples': jnp.ones(weights.shape[:1], jnp.float32),
    }

  def eval_metrics(self, params, batch: Mapping[str, jax.Array]) -> dict:
    """`example_metrics` summed over the batch (every row counted)."""
    return {k: jnp.sum(v) for k, v in self.example_metrics(params, batch).items()}

  def predict(self, params, batch: Mapping[str, jax.Array],
              max_decode_len: int | None = None) -> jax.Array:
    """Greedy decodes `[batch, max_decode_len]` of `batch['encoder_input_tokens']` (`decode`);
    max_decode_len None: the length of `batch['decoder_target_tokens']`."""
    if max_decode_len is None:
      if 'decoder_target_tokens' not in batch:
        raise ValueError('predict needs max_decode_len, or decoder_target_tokens in the batch '
                         'to take the decode length from.')
      max_decode_len = batch['decoder_target_tokens'].shape[1]
    return self.decode(params, batch['encoder_input_tokens'], max_decode_len)

  def decode(self, params, encoder_input_tokens: jax.Array, max_decode_len: int) -> jax.Array:
    """Greedy tokens [batch, max_decode_len] under jit, self-attention keys/values cached (the
    cross-attention keys/values are recomputed from the encoder output at every step).

    Starts from decoder_start_id; an example stops after it emits eos_id (kept), and the
    positions after it are 0; the loop ends when all stopped or at max_decode_len.
    """
    return _greedy_decode(self, params, jnp.asarray(encoder_input_tokens, jnp.int32),
                          int(max_decode_len))


def finalize_metrics(sums: Mapping[str, jax.Array]) -> dict[str, float]:
  """Means from summed eval metrics: loss, accuracy, neg_log_perplexity, perplexity."""
  weight = max(float(sums['weight_sum']), 1.0)
  nll = float(sums['nll_sum']) / weight
  return {
      'loss': float(sums['loss_sum']) / weight,
      'accuracy': float(sums['correct_sum']) / weight,
      'neg_log_perplexity': -nll,
      'perplexity': float(jnp.exp(nll)),
  }


@functools.partial(jax.jit, static_argnums=(0, 3))
def _greedy_decode(model: T5Model, params, encoder_input_tokens, max_decode_len):
  network = model.network
  variables = {'params': params}
  batch = encoder_input_tokens.shape[0]
  encoded = network.apply(variables, encoder_input_tokens, method=network.encode)
  # The first decode=True call only sizes the cache (zeros) and its position-bias table.
  _, state = network.apply(variables, encoded, encoder_input_tokens,
                           jnp.zeros((batch, max_decode_len), jnp.int32), decode=True,
                           mutable=['cache'], method=network.decode)

  def step(carry):
    i, cache, tokens, last, done = carry
    logits, state = network.apply({**variables, 'cache': cache}, encoded, encoder_input_tokens,
                                  last[:, None], decode=True, mutable=['cache'],
                                  method=network.decode)
    token = jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32)
    token = jnp.where(done, 0, token)
    tokens = jax.lax.dynamic_update_slice_in_dim(tokens, token[:, None], i, axis=1)
    return i + 1, state['cache'], tokens, token, done | (token == model.eos_id)

  def keep_going(carry):
    i, _, _, _, done = carry
    return (i < max_decode_len) & ~jnp.all(done)

  start = jnp.full((batch,), model.decoder_start_id, jnp.int32)
  carry = (jnp.asarray(0), state['cache'], jnp.zeros((batch, max_decode_len), jnp.int32),
           start, jnp.zeros((batch,), bool))
  return jax.lax.while_loop(keep_going, step, carry)[2]
