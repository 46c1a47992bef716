"""Exact parameter counts, analytic FLOPs and a training-memory estimate for any Shape.

Pure functions of a `Shape` (no jax import): the runner, the planner and the reports all
take their costs from here, so that every table names one formula.

Conventions:
- Parameters are counted as the model's own tree counts them: Hugging Face
  `T5ForConditionalGeneration.num_parameters()` for text (shared embedding counted once,
  an untied head added), `ViTForImageClassification` for vision (biases everywhere,
  LayerNorm scale and bias, class token and learned positions, a 1000-way head), which is
  vision.network.ViTNetwork's tree too; a MAP head (pooling 'map') adds a probe, an attention
  and an MLP block; fixed sin-cos positions (posemb 'sincos2d') are no parameters.
- FLOPs count matrix multiplications only, 2*M*N*K each: attention projections, scores and
  values, feed-forward, the output head and the ViT patch embedding. Elementwise work
  (softmax, norms, activations, the loss) is left out; it is under 2% of XLA's count for
  realistic widths. Backward costs twice the forward matmuls, except the patch embedding
  whose input (pixels) needs no gradient: once.

Every public function dispatches on the shape's model family through one registry, `FAMILIES`
(keyed by `Shape.domain`: text shapes are T5 encoder-decoders, vision shapes ViT encoders),
whose entries hold that family's formulas; no function branches on the domain.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping

from suite.shapes import TEXT, VISION, Shape

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
  return family(shape).tensors(shape)


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
  """As vision.network.ViTNetwork stores them; attention kernels [d_model, heads, d_kv]."""
  d, layers = s.d_model, s.num_encoder_layers
  has_cls = s.pooling == 'cls'
  tensors = [
      Tensor('patch_kernel', (s.patch_size, s.patch_size, 3, d)),
      Tensor('patch_bias', (d,)),
  ]
  if s.posemb == 'learn':  # 'sincos2d' is a constant
    tensors.append(Tensor('position_embedding', (s.num_patches + int(has_cls), d)))
  if has_cls:
    tensors.append(Tensor('cls_token', (d,)))
  tensors += _vit_block_tensors(s, 'encoder_layers', layers)
  tensors.append(Tensor('encoder_norm', (d,), 2))  # scale + bias
  if s.pooling == 'map':  # a learned probe attends over the tokens, then an MLP block
    tensors.append(Tensor('map_head/probe', (d,)))
    tensors += _vit_block_tensors(s, 'map_head', 1, norms=1)
  tensors += [Tensor('head/kernel', (d, s.num_classes)), Tensor('head/bias', (s.num_classes,))]
  return tensors


def _vit_block_tensors(s: Shape, prefix: str, count: int, norms: int = 2) -> list[Tensor]:
  """Attention (with biases), GELU MLP and `norms` LayerNorms (scale and bias), `count` times."""
  d, h, kv, ff = s.d_model, s.num_heads, s.d_kv, s.d_ff
  tensors = []
  for proj in ('query', 'key', 'value'):
    tensors += [Tensor(f'{prefix}/attention/{proj}_kernel', (d, h, kv), count),
                Tensor(f'{prefix}/attention/{proj}_bias', (h, kv), count)]
  return tensors + [
      Tensor(f'{prefix}/attention/out_kernel', (h, kv, d), count),
      Tensor(f'{prefix}/attention/out_bias', (d,), count),
      Tensor(f'{prefix}/mlp/wi_kernel', (d, ff), count),
      Tensor(f'{prefix}/mlp/wi_bias', (ff,), count),
      Tensor(f'{prefix}/mlp/wo_kernel', (ff, d), count),
      Tensor(f'{prefix}/mlp/wo_bias', (d,), count),
      Tensor(f'{prefix}/layer_norms', (d,), count * norms * 2),  # scale + bias each
  ]


def params(shape: Shape) -> int:
  """Exact parameter count, as the model's own parameter tree counts it."""
  return sum(t.size for t in parameter_tensors(shape))


def flops_breakdown(shape: Shape, input_length: int = DEFAULT_INPUT_LENGTH,
                    target_length: int = DEFAULT_TARGET_LENGTH) -> dict[str, int]:
  """Forward matmul FLOPs per example, per component (text: at the given lengths)."""
  costs = family(shape)
  return costs.flops(shape, *costs.lengths(input_length, target_length))


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
  flops = {
      'patch_embedding': 2 * s.num_patches * s.patch_size ** 2 * 3 * d,
      'encoder_attention_projections': layers * 8 * tokens * d * a,
      'encoder_attention_scores_values': layers * 4 * tokens * tokens * a,
      'encoder_mlp': layers * _ffn(s, tokens),
      'head': 2 * d * s.num_classes,
  }
  if s.pooling == 'map':
    # One query (the probe) over the tokens: its q and out projections, keys and values of
    # every token, the scores and values, and the MLP on one token.
    flops['map_head'] = (4 * d * a + 4 * tokens * d * a + 4 * tokens * a + _ffn(s, 1))
  return flops


def forward_flops_per_example(shape: Shape, input_length: int = DEFAULT_INPUT_LENGTH,
                              target_length: int = DEFAULT_TARGET_LENGTH) -> int:
  """Forward matmul FLOPs for one example (text: input and target lengths in tokens)."""
  return sum(flops_breakdown(shape, input_length, target_length).values())


def train_flops_per_example(shape: Shape, input_length: int = DEFAULT_INPUT_LENGTH,
                            target_length: int = DEFAULT_TARGET_LENGTH) -> int:
  """Forward + backward matmul FLOPs for one example: 3x forward, except the components whose
  input is data (the ViT patch embedding): 2x."""
  breakdown = flops_breakdown(shape, input_length, target_length)
  data_input = sum(breakdown[k] for k in family(shape).data_input_components if k in breakdown)
  return 3 * sum(breakdown.values()) - data_input


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


def _per_token_activations(s: Shape) -> int:
  """Elements kept per token per layer: norm in/out, q, k, v, attention output, residual,
  FFN in/hidden."""
  return 6 * s.d_model + 4 * s.attention_width + (3 if s.is_gated else 2) * s.d_ff


def _text_activations(s: Shape, inputs: int, targets: int) -> tuple[int, int]:
  """(elements kept in the activation dtype, float32 logits elements) per example."""
  d, a, h = s.d_model, s.attention_width, s.num_heads
  per_token = _per_token_activations(s)
  encoder = s.num_encoder_layers * inputs * (per_token + 2 * h * inputs)
  cross = targets * (2 * d + 2 * a) + inputs * 2 * a + 2 * h * targets * inputs
  decoder = s.num_decoder_layers * (targets * (per_token + 2 * h * targets) + cross)
  return encoder + decoder, 2 * targets * s.vocab_size


def _vision_activations(s: Shape) -> tuple[int, int]:
  """(elements kept in the activation dtype, float32 logits elements) per example."""
  tokens = s.num_patches + int(s.pooling == 'cls')
  patches = s.num_patches * (s.patch_size ** 2 * 3 + s.d_model)
  per_layer = tokens * (_per_token_activations(s) + 2 * s.num_heads * tokens)
  return patches + s.num_encoder_layers * per_layer, 2 * s.num_classes


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
  costs = family(shape)
  lengths = costs.lengths(input_length, target_length)
  tensors = costs.tensors(shape)
  n_params = sum(t.size for t in tensors)
  param_bytes = DTYPE_BYTES[param_dtype]
  state = sum(_optimizer_state_elements(t, optimizer) for t in tensors)
  kept, logits = costs.activations(shape, *lengths)
  return MemoryEstimate(
      params_bytes=n_params * param_bytes,
      grads_bytes=n_params * param_bytes,
      optimizer_bytes=state * 4,  # optimizer statistics are kept in float32
      activations_bytes=batch_size * (kept * DTYPE_BYTES[activation_dtype] + logits * 4),
      batch_size=batch_size,
      optimizer=optimizer,
  )


@dataclasses.dataclass(frozen=True)
class FamilyCosts:
  """The cost formulas of one model family.

  tensors(shape): its parameter tensors. flops(shape, *lengths): forward matmul FLOPs per
  example, per component. activations(shape, *lengths): (elements kept for the backward pass
  in the activation dtype, float32 logits elements) per example. takes_lengths: whether the
  formulas take (input_length, target_length) tokens per example (text) or read everything
  off the shape (vision: image and patch size). data_input_components: flops components whose
  input is data, so that their backward pass computes the weight gradient only.
  """

  description: str
  tensors: Callable[[Shape], list[Tensor]]
  flops: Callable[..., dict[str, int]]
  activations: Callable[..., tuple[int, int]]
  takes_lengths: bool
  data_input_components: tuple[str, ...] = ()

  def lengths(self, input_length: int, target_length: int) -> tuple[int, ...]:
    """The length arguments of this family's formulas (checked), or none."""
    if not self.takes_lengths:
      return ()
    _check_lengths(input_length, target_length)
    return input_length, target_length


# Shape.domain -> the formulas of its model family.
FAMILIES: Mapping[str, FamilyCosts] = {
    TEXT: FamilyCosts('T5 encoder-decoder (v1.0 and 1.1)', _text_tensors, _text_flops,
                      _text_activations, takes_lengths=True),
    VISION: FamilyCosts('ViT encoder', _vision_tensors, _vision_flops, _vision_activations,
                        takes_lengths=False, data_input_components=('patch_embedding',)),
}


def family(shape: Shape) -> FamilyCosts:
  """The cost formulas of the shape's model family."""
  if shape.domain not in FAMILIES:
    raise ValueError(f'no cost formulas for domain {shape.domain!r}; families: '
                     f'{", ".join(FAMILIES)}.')
  return FAMILIES[shape.domain]
