"""Exact parameter counts, analytic FLOPs and a training-memory estimate for any Shape.

Pure functions of a `Shape` (no jax import): the runner, the planner and the reports all
take their costs from here, so that every table names one formula.

Conventions:
- Parameters are counted as the model's own tree counts them: Hugging Face
  `T5ForConditionalGeneration.num_parameters()` for text (shared embedding counted once,
  an untied head added), `ViTForImageClassification` for vision (biases everywhere,
  LayerNorm scale and bias, class token and learned positions, a 1000-way head).
- FLOPs count matrix multiplications only, 2*M*N*K each: attention projections, scores and
  values, feed-forward, the output head and the ViT patch embedding. Elementwise work
  (softmax, norms, activations, the loss) is left out; it is under 2% of XLA's count for
  realistic widths. Backward costs twice the forward matmuls, except the patch embedding
  whose input (pixels) needs no gradient: once.
"""

from __future__ import annotations

import dataclasses
import math

from suite.shapes import TEXT, Shape

DEFAULT_INPUT_LENGTH = 512
DEFAULT_TARGET_LENGTH = 114
# Adafactor keeps factored second moments for a tensor whose second-largest dimension is at
# least this. Attention kernels are [d_model, heads, d_kv]: 16 factors them for every released
# shape (d_kv >= 16), as T5 factored its 2-D attention matrices; optax's default, 128, would
# keep full second moments for every d_kv-64 kernel. suite.optim uses the same default.
ADAFACTOR_MIN_DIM_TO_FACTOR = 16
OPTIMIZERS = ('adafactor', 'adamw', 'sgd')
DTYPE_BYTES = {'float32': 4, 'bfloat16': 2, 'float16': 2}


@dataclasses.dataclass(frozen=True)
class Tensor:
  """One parameter tensor of a model, repeated `count` times (once per layer, say)."""

  name: str
  shape: tuple[int, ...]
  count: int = 1

  @property
  def size(self) -> int:
    return math.prod(self.shape) * self.count


def parameter_tensors(shape: Shape) -> list[Tensor]:
  """The parameter tensors of the model a shape describes, grouped per layer type."""
  return _text_tensors(shape) if shape.domain == TEXT else _vision_tensors(shape)


def _text_tensors(s: Shape) -> list[Tensor]:
  d, enc, dec = s.d_model, s.num_encoder_layers, s.num_decoder_layers
  h, kv = s.num_heads, s.d_kv
  ffn_in = ('wi_0', 'wi_1') if s.is_gated else ('wi',)
  tensors = [Tensor('token_embedding', (s.vocab_size, d))]
  if not s.tie_embeddings:
    tensors.append(Tensor('lm_head', (d, s.vocab_size)))
  for stack, layers, attentions, norms in (('encoder', enc, ('self',), 2),
                                           ('decoder', dec, ('self', 'cross'), 3)):
    for attention in attentions:
      # As the network stores them: [d_model, heads, d_kv] and [heads, d_kv, d_model].
      for proj in ('q', 'k', 'v'):
        tensors.append(Tensor(f'{stack}/{attention}_attention/{proj}', (d, h, kv), layers))
      tensors.append(Tensor(f'{stack}/{attention}_attention/o', (h, kv, d), layers))
    for name in ffn_in:
      tensors.append(Tensor(f'{stack}/mlp/{name}', (d, s.d_ff), layers))
    tensors.append(Tensor(f'{stack}/mlp/wo', (s.d_ff, d), layers))
    tensors.append(Tensor(f'{stack}/layer_norms', (d,), layers * norms))
    # T5 keeps one relative-position bias table, in the first layer of each stack.
    tensors.append(Tensor(f'{stack}/relative_attention_bias', (s.num_heads, s.relative_buckets)))
    tensors.append(Tensor(f'{stack}/final_layer_norm', (d,)))
  return tensors


def _vision_tensors(s: Shape) -> list[Tensor]:
  d, a, ff, layers = s.d_model, s.attention_width, s.d_ff, s.num_encoder_layers
  has_cls = s.pooling == 'cls'
  tensors = [
      Tensor('patch_embedding/kernel', (s.patch_size, s.patch_size, 3, d)),
      Tensor('patch_embedding/bias', (d,)),
      Tensor('position_embedding', (s.num_patches + int(has_cls), d)),
  ]
  if has_cls:
    tensors.append(Tensor('cls_token', (d,)))
  for proj in ('q', 'k', 'v'):
    tensors += [Tensor(f'encoder/attention/{proj}/kernel', (d, a), layers),
                Tensor(f'encoder/attention/{proj}/bias', (a,), layers)]
  tensors += [
      Tensor('encoder/attention/out/kernel', (a, d), layers),
      Tensor('encoder/attention/out/bias', (d,), layers),
      Tensor('encoder/mlp/fc1/kernel', (d, ff), layers),
      Tensor('encoder/mlp/fc1/bias', (ff,), layers),
      Tensor('encoder/mlp/fc2/kernel', (ff, d), layers),
      Tensor('encoder/mlp/fc2/bias', (d,), layers),
      Tensor('encoder/layer_norms', (d,), layers * 4),  # two LayerNorms: scale + bias each
      Tensor('final_layer_norm', (d,), 2),
      Tensor('head/kernel', (d, s.num_classes)),
      Tensor('head/bias', (s.num_classes,)),
  ]
  return tensors


def params(shape: Shape) -> int:
  """Exact parameter count, as the model's own parameter tree counts it."""
  return sum(t.size for t in parameter_tensors(shape))


def flops_breakdown(shape: Shape, input_length: int = DEFAULT_INPUT_LENGTH,
                    target_length: int = DEFAULT_TARGET_LENGTH) -> dict[str, int]:
  """Forward matmul FLOPs per example, per component (text: at the given lengths)."""
  if shape.domain == TEXT:
    return _text_flops(shape, input_length, target_length)
  return _vision_flops(shape)


def _check_lengths(input_length: int, target_length: int):
  for name, value in (('input_length', input_length), ('target_length', target_length)):
    if not isinstance(value, int) or value <= 0:
      raise ValueError(f'{name}={value!r}: must be a positive integer number of tokens.')


def _ffn(shape: Shape, tokens: int) -> int:
  return 2 * tokens * shape.d_model * shape.d_ff * (3 if shape.is_gated else 2)


def _text_flops(s: Shape, inputs: int, targets: int) -> dict[str, int]:
  _check_lengths(inputs, targets)
  d, a = s.d_model, s.attention_width
  enc, dec = s.num_encoder_layers, s.num_decoder_layers
  return {
      'encoder_attention_projections': enc * 8 * inputs * d * a,
      'encoder_attention_scores_values': enc * 4 * inputs * inputs * a,
      'encoder_mlp': enc * _ffn(s, inputs),
      'decoder_self_attention_projections': dec * 8 * targets * d * a,
      'decoder_self_attention_scores_values': dec * 4 * targets * targets * a,
      # Queries and outputs over the targets; keys and values over the encoder outputs.
      'decoder_cross_attention_projections': dec * 4 * (targets + inputs) * d * a,
      'decoder_cross_attention_scores_values': dec * 4 * targets * inputs * a,
      'decoder_mlp': dec * _ffn(s, targets),
      'output_head': 2 * targets * d * s.vocab_size,
  }


def _vision_flops(s: Shape) -> dict[str, int]:
  d, a, layers = s.d_model, s.attention_width, s.num_encoder_layers
  tokens = s.num_patches + int(s.pooling == 'cls')
  return {
      'patch_embedding': 2 * s.num_patches * s.patch_size ** 2 * 3 * d,
      'encoder_attention_projections': layers * 8 * tokens * d * a,
      'encoder_attention_scores_values': layers * 4 * tokens * tokens * a,
      'encoder_mlp': layers * _ffn(s, tokens),
      'head': 2 * d * s.num_classes,
  }


def forward_flops_per_example(shape: Shape, input_length: int = DEFAULT_INPUT_LENGTH,
                              target_length: int = DEFAULT_TARGET_LENGTH) -> int:
  """Forward matmul FLOPs for one example (text: input and target lengths in tokens)."""
  return sum(flops_breakdown(shape, input_length, target_length).values())


def train_flops_per_example(shape: Shape, input_length: int = DEFAULT_INPUT_LENGTH,
                            target_length: int = DEFAULT_TARGET_LENGTH) -> int:
  """Forward + backward matmul FLOPs for one example: 3x forward, patch embedding 2x."""
  breakdown = flops_breakdown(shape, input_length, target_length)
  return 3 * sum(breakdown.values()) - breakdown.get('patch_embedding', 0)


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
  """Training memory in bytes per component. An estimate: activations assume every matmul
  input, the attention probabilities and the logits are kept for the backward pass, with no
  rematerialisation, and ignore allocator overhead and temporary buffers."""

  params_bytes: int
  grads_bytes: int
  optimizer_bytes: int
  activations_bytes: int
  batch_size: int
  optimizer: str

  @property
  def total_bytes(self) -> int:
    return self.params_bytes + self.grads_bytes + self.optimizer_bytes + self.activations_bytes

  def as_dict(self) -> dict:
    return {**dataclasses.asdict(self), 'total_bytes': self.total_bytes}


def _optimizer_state_elements(tensor: Tensor, optimizer: str) -> int:
  if optimizer == 'adamw':
    return 2 * tensor.size
  if optimizer == 'sgd':
    return 0
  dims = sorted(tensor.shape, reverse=True)
  if len(dims) >= 2 and dims[1] >= ADAFACTOR_MIN_DIM_TO_FACTOR:
    size = math.prod(tensor.shape)
    return (size // dims[0] + size // dims[1]) * tensor.count
  return tensor.size


def _activation_elements(s: Shape, inputs: int, targets: int) -> tuple[int, int]:
  """(elements kept in the activation dtype, float32 logits elements) per example."""
  d, a, ff, h = s.d_model, s.attention_width, s.d_ff, s.num_heads
  ffn = (3 if s.is_gated else 2) * ff
  # Per token per layer: norm in/out, q, k, v, attention output, residual, FFN in/hidden.
  per_token = 6 * d + 4 * a + ffn
  if s.domain == TEXT:
    encoder = s.num_encoder_layers * inputs * (per_token + 2 * h * inputs)
    cross = targets * (2 * d + 2 * a) + inputs * 2 * a + 2 * h * targets * inputs
    decoder = s.num_decoder_layers * (targets * (per_token + 2 * h * targets) + cross)
    return encoder + decoder, 2 * targets * s.vocab_size
  tokens = s.num_patches + int(s.pooling == 'cls')
  patches = s.num_patches * (s.patch_size ** 2 * 3 + d)
  return patches + s.num_encoder_layers * tokens * (per_token + 2 * h * tokens), 2 * s.num_classes


def train_memory(shape: Shape, batch_size: int, optimizer: str = 'adafactor',
                 param_dtype: str = 'float32', activation_dtype: str = 'bfloat16',
                 input_length: int = DEFAULT_INPUT_LENGTH,
                 target_length: int = DEFAULT_TARGET_LENGTH) -> MemoryEstimate:
  """Estimated bytes to train `shape` at `batch_size` on one device (see MemoryEstimate)."""
  if optimizer not in OPTIMIZERS:
    raise ValueError(f'optimizer={optimizer!r}: valid optimizers are {", ".join(OPTIMIZERS)}.')
  for name, dtype in (('param_dtype', param_dtype), ('activation_dtype', activation_dtype)):
    if dtype not in DTYPE_BYTES:
      raise ValueError(f'{name}={dtype!r}: valid dtypes are {", ".join(DTYPE_BYTES)}.')
  if not isinstance(batch_size, int) or batch_size <= 0:
    raise ValueError(f'batch_size={batch_size!r}: must be a positive integer.')
  if shape.domain == TEXT:
    _check_lengths(input_length, target_length)
  tensors = parameter_tensors(shape)
  n_params = sum(t.size for t in tensors)
  param_bytes = DTYPE_BYTES[param_dtype]
  state = sum(_optimizer_state_elements(t, optimizer) for t in tensors)
  kept, logits = _activation_elements(shape, input_length, target_length)
  return MemoryEstimate(
      params_bytes=n_params * param_bytes,
      grads_bytes=n_params * param_bytes,
      optimizer_bytes=state * 4,  # optimizer statistics are kept in float32
      activations_bytes=batch_size * (kept * DTYPE_BYTES[activation_dtype] + logits * 4),
      batch_size=batch_size,
      optimizer=optimizer,
  )
