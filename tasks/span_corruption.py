"""T5's span-corruption objective as seqio preprocessors.

A raw token sequence is split into noise spans (15% of the tokens, mean span length 3) and
non-noise spans, alternating and starting with non-noise. Inputs keep the non-noise tokens and
replace noise span k by sentinel k (`<extra_id_k>`, id `vocab_size - 1 - k`); targets are the
sentinels, each followed by the span it replaced. Appending EOS to both is left to the task's
output features (`add_eos=True`). Raw chunks are sized so that corrupted inputs are exactly
`sequence_length['inputs']` long (568 raw tokens -> 512 inputs and 114 targets, as in T5).
Randomness comes from seqio's per-map seeds, so a dataset built with a seed is reproducible.
"""

import dataclasses
from collections.abc import Mapping

import seqio
import tensorflow as tf

NOISE_DENSITY = 0.15
MEAN_NOISE_SPAN_LENGTH = 3.0


@dataclasses.dataclass(frozen=True)
class CorruptionLengths:
  """Raw tokens per example and the resulting inputs and targets lengths (EOS included)."""

  raw: int
  inputs: int
  targets: int


def _counts(length: int, noise_density: float, mean_span: float) -> tuple[int, int]:
  """(noise tokens, noise spans) for a raw sequence of `length` tokens (length >= 2)."""
  num_noise = min(max(int(round(length * noise_density)), 1), length - 1)
  num_spans = max(int(round(num_noise / mean_span)), 1)
  return num_noise, num_spans


def corrupted_lengths(
  raw_length: int,
  noise_density: float = NOISE_DENSITY,
  mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH,
) -> CorruptionLengths:
  """Inputs and targets lengths, each with one EOS, after corrupting `raw_length` tokens."""
  if raw_length < 2:
    raise ValueError(f'raw_length must be at least 2 to hold a noise span, got {raw_length}')
  num_noise, num_spans = _counts(raw_length, noise_density, mean_noise_span_length)
  return CorruptionLengths(
    raw=raw_length,
    inputs=raw_length - num_noise + num_spans + 1,
    targets=num_noise + num_spans + 1,
  )


def lengths_for_inputs(
  inputs_length: int,
  noise_density: float = NOISE_DENSITY,
  mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH,
) -> CorruptionLengths:
  """The longest raw chunk whose corrupted inputs fit `inputs_length` (512 -> raw 568)."""
  if inputs_length < 3:
    raise ValueError(f'inputs_length must be at least 3, got {inputs_length}')
  raw = 2
  while corrupted_lengths(raw + 1, noise_density, mean_noise_span_length).inputs <= inputs_length:
    raw += 1
  return corrupted_lengths(raw, noise_density, mean_noise_span_length)


def _segment_lengths(num_items: tf.Tensor, num_segments: tf.Tensor, seed) -> tf.Tensor:
  """Random composition of `num_items` into `num_segments` positive lengths (uniform cuts)."""
  scores = tf.random.stateless_uniform([num_items - 1], seed=seed)
  cuts = tf.sort(tf.argsort(scores)[: num_segments - 1] + 1)
  bounds = tf.concat([[0], cuts, [num_items]], axis=0)
  return bounds[1:] - bounds[:-1]


def noise_mask(
  length: tf.Tensor,
  seeds,
  noise_density: float = NOISE_DENSITY,
  mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH,
) -> tf.Tensor:
  """Boolean [length] mask, True on noise: alternating spans, starting with non-noise."""
  padded = tf.maximum(length, 2)
  # float64, as `_counts` (Python floats): in float32 the rounding differs for some lengths
  # (e.g. 190), and the targets would no longer match `lengths_for_inputs`.
  num_noise = tf.cast(tf.round(tf.cast(padded, tf.float64) * noise_density), tf.int32)
  num_noise = tf.clip_by_value(num_noise, 1, padded - 1)
  num_spans = tf.round(tf.cast(num_noise, tf.float64) / mean_noise_span_length)
  num_spans = tf.maximum(tf.cast(num_spans, tf.int32), 1)
  noise_lengths = _segment_lengths(num_noise, num_spans, seeds[0])
  keep_lengths = _segment_lengths(padded - num_noise, num_spans, seeds[1])
  span_lengths = tf.reshape(tf.stack([keep_lengths, noise_lengths], axis=1), [-1])
  span_is_noise = tf.tile([False, True], [num_spans])
  return tf.repeat(span_is_noise, span_lengths)[:length]


def _replace_spans(tokens: tf.Tensor, drop: tf.Tensor, vocab_size: int) -> tf.Tensor:
  """Replaces each run of `drop` tokens by one sentinel (k-th run -> vocab_size - 1 - k)."""
  previous = tf.concat([[False], drop[:-1]], axis=0)
  run_start = drop & ~previous
  sentinels = vocab_size - tf.cumsum(tf.cast(run_start, tokens.dtype))
  replaced = tf.where(run_start, sentinels, tokens)
  return tf.boolean_mask(replaced, ~(drop & previous))


def corrupt(tokens: tf.Tensor, mask: tf.Tensor, vocab_size: int) -> dict[str, tf.Tensor]:
  """{'inputs', 'targets'} for `tokens` and its noise `mask` (no EOS yet)."""
  # Targets number the sentinels of the noise spans, which start each (non-noise, noise) pair,
  # so replacing non-noise runs gives the same sentinel ids, shifted to precede each span.
  inputs = _replace_spans(tokens, mask, vocab_size)
  targets = _replace_spans(tokens, ~mask, vocab_size)
  return {'inputs': inputs, 'targets': targets}


def split_tokens(dataset: tf.data.Dataset, raw_length: int, key: str = 'targets'):
  """Concatenates the token sequences of `key` and cuts them into chunks of `raw_length`."""
  tokens = dataset.map(lambda ex: ex[key]).unbatch()
  return tokens.batch(raw_length).map(lambda chunk: {key: chunk})


def span_corruption(
  dataset: tf.data.Dataset,
  sequence_length: Mapping[str, int] | None,
  output_features: Mapping[str, seqio.Feature],
  noise_density: float = NOISE_DENSITY,
  mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH,
) -> tf.data.Dataset:
  """seqio preprocessor: tokenized 'targets' text -> span-corrupted {'inputs', 'targets'}."""
  if not sequence_length or 'inputs' not in sequence_length:
    raise ValueError(
      "span corruption needs sequence_length={'inputs': N, 'targets': M}; "
      f'got {sequence_length!r}. Pass it to get_dataset (T5 uses 512 and 114).'
    )
  lengths = lengths_for_inputs(sequence_length['inputs'], noise_density, mean_noise_span_length)
  vocab_size = output_features['targets'].vocabulary.vocab_size
  dataset = split_tokens(dataset, lengths.raw)

  @seqio.map_over_dataset(num_seeds=2)
  def _corrupt(ex, seeds):
    tokens = ex['targets']
    mask = noise_mask(tf.size(tokens), seeds, noise_density, mean_noise_span_length)
    return corrupt(tokens, mask, vocab_size)

  return _corrupt(dataset)
