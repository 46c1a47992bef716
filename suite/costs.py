"""Exact parameter counts, analytic FLOPs and a per-device training-memory estimate for any
Shape.

Pure functions of a `Shape` (no jax import): the runner, the planner and the reports all
take their costs from here, so that every table names one formula. The memory model's
mechanics are in suite.memory, the activation tables in suite.activations.

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

Each parameter tensor carries the logical axis names the network gives it ('embed', 'heads',
'kv', 'mlp', 'vocab', ...), so that a domain's partitioning rules shard the estimate as they
shard the real parameters.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping

from suite import activations, memory
from suite.memory import ADAFACTOR_MIN_DIM_TO_FACTOR, DTYPE_BYTES, OPTIMIZERS, MemoryEstimate
from suite.shapes import TEXT, VISION, Shape

__all__ = ['ADAFACTOR_MIN_DIM_TO_FACTOR', 'DTYPE_BYTES', 'OPTIMIZERS', 'MemoryEstimate']

DEFAULT_INPUT_LENGTH = 512
DEFAULT_TARGET_LENGTH = 114
REMAT_POLICIES = tuple(memory.REMAT_POLICIES)
ATTENTION_KERNELS = ('xla', 'cudnn')  # suite.domain.ModelOptions' kernels (it imports these)


@dataclasses.dataclass(frozen=True)
class Tensor:
  """One parameter tensor of a model, repeated `count` times (once per layer, say), with the
  logical axis name of each dimension (None: never sharded)."""

  name: str
  shape: tuple[int, ...]
  count: int = 1
  axes: tuple[str | None, ...] = ()

  def __post_init__(self):
    if len(self.axes) != len(self.shape):
      raise ValueError(f'{self.name}: {len(self.shape)} dimensions {self.shape} need as many '
                       f'logical axis names, got {self.axes}.')

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
  tensors = [Tensor('token_embedding', (s.vocab_size, d), 1, ('vocab', 'embed'))]
  if not s.tie_embeddings:
    tensors.append(Tensor('lm_head', (d, s.vocab_size), 1, ('embed', 'vocab')))
  for stack, layers, attentions, norms in (('encoder', enc, ('self',), 2),
                                           ('decoder', dec, ('self', 'cross'), 3)):
    for attention in attentions:
      # As the network stores them: [d_model, heads, d_kv] and [heads, d_kv, d_model].
      for proj in ('q', 'k', 'v'):
        tensors.append(Tensor(f'{stack}/{attention}_attention/{proj}', (d, h, kv), layers,
                              ('embed', 'heads', 'kv')))
      tensors.append(Tensor(f'{stack}/{attention}_attention/o', (h, kv, d), layers,
                            ('heads', 'kv', 'embed')))
    for name in ffn_in:
      tensors.append(Tensor(f'{stack}/mlp/{name}', (d, s.d_ff), layers, ('embed', 'mlp')))
    tensors.append(Tensor(f'{stack}/mlp/wo', (s.d_ff, d), layers, ('mlp', 'embed')))
    tensors.append(Tensor(f'{stack}/layer_norms', (d,), layers * norms, ('embed',)))
    # T5 keeps one relative-position bias table per stack (HF: in its first layer).
    tensors.append(Tensor(f'{stack}/relative_attention_bias', (s.num_heads, s.relative_buckets),
                          1, ('heads', 'relpos_buckets')))
    tensors.append(Tensor(f'{stack}/final_layer_norm', (d,), 1, ('embed',)))
  return tensors


def _vision_tensors(s: Shape) -> list[Tensor]:
  """As vision.network.ViTNetwork stores them; attention kernels [d_model, heads, d_kv]."""
  d, layers = s.d_model, s.num_encoder_layers
  has_cls = s.pooling == 'cls'
  tensors = [
      Tensor('patch_kernel', (s.patch_size, s.patch_size, 3, d), 1, (None, None, None, 'embed')),
      Tensor('patch_bias', (d,), 1, ('embed',)),
  ]
  if s.posemb == 'learn':  # 'sincos2d' is a constant
    tensors.append(Tensor('position_embedding', (s.num_patches + int(has_cls), d), 1,
                          ('length', 'embed')))
  if has_cls:
    tensors.append(Tensor('cls_token', (d,), 1, ('embed',)))
  tensors += _vit_block_tensors(s, 'encoder_layers', layers)
  tensors.append(Tensor('encoder_norm', (d,), 2, ('embed',)))  # scale + bias
  if s.pooling == 'map':  # a learned probe attends over the tokens, then an MLP block
    tensors.append(Tensor('map_head/probe', (d,), 1, ('embed',)))
    tensors += _vit_block_tensors(s, 'map_head', 1, norms=1)
  tensors += [Tensor('head/kernel', (d, s.num_classes), 1, ('embed', 'classes')),
              Tensor('head/bias', (s.num_classes,), 1, ('classes',))]
  return tensors


def _vit_block_tensors(s: Shape, prefix: str, count: int, norms: int = 2) -> list[Tensor]:
  """Attention (with biases), GELU MLP and `norms` LayerNorms (scale and bias), `count` times."""
  d, h, kv, ff = s.d_model, s.num_heads, s.d_kv, s.d_ff
  tensors = []
  for proj in ('query', 'key', 'value'):
    tensors += [Tensor(f'{prefix}/attention/{proj}_kernel', (d, h, kv), count,
                       ('embed', 'heads', 'kv')),
                Tensor(f'{prefix}/attention/{proj}_bias', (h, kv), count, ('heads', 'kv'))]
  return tensors + [
      Tensor(f'{prefix}/attention/out_kernel', (h, kv, d), count, ('heads', 'kv', 'embed')),
      Tensor(f'{prefix}/attention/out_bias', (d,), count, ('embed',)),
      Tensor(f'{prefix}/mlp/wi_kernel', (d, ff), count, ('embed', 'mlp')),
      Tensor(f'{prefix}/mlp/wi_bias', (ff,), count, ('mlp',)),
      Tensor(f'{prefix}/mlp/wo_kernel', (ff, d), count, ('mlp', 'embed')),
      Tensor(f'{prefix}/mlp/wo_bias', (d,), count, ('embed',)),
      Tensor(f'{prefix}/layer_norms', (d,), count * norms * 2, ('embed',)),  # scale + bias
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


def train_memory(shape: Shape, batch_size: int, optimizer: str = 'adafactor',
                 param_dtype: str = 'float32', activation_dtype: str = 'bfloat16',
                 input_length: int = DEFAULT_INPUT_LENGTH,
                 target_length: int = DEFAULT_TARGET_LENGTH, *, remat: str = 'none',
                 scan: bool = False, attention: str = 'xla',
                 mesh: Mapping[str, int] | None = None,
                 rules: memory.Rules = ()) -> MemoryEstimate:
  """Estimated bytes per device to train `shape` at global `batch_size` (suite.memory).

  activation_dtype: the compute dtype. remat: the network's rematerialisation policy
  (`REMAT_POLICIES`); scan: layers under `nn.scan`; attention: 'xla' (our own ops) or 'cudnn'
  (cuDNN's fused kernel, `ATTENTION_KERNELS`). mesh: mesh axis sizes, e.g.
  {'data': 2, 'fsdp': 2, 'model': 2} (None: one device), sharded by `rules`, the domain's
  logical-axis rules ((logical name, mesh axis or axes or None), first match wins).
  """
  memory.check_optimizer(optimizer)
  for name, dtype in (('param_dtype', param_dtype), ('activation_dtype', activation_dtype)):
    if dtype not in DTYPE_BYTES:
      raise ValueError(f'{name}={dtype!r}: valid dtypes are {", ".join(DTYPE_BYTES)}.')
  if not isinstance(batch_size, int) or batch_size <= 0:
    raise ValueError(f'batch_size={batch_size!r}: must be a positive integer.')
  if remat not in memory.REMAT_POLICIES:
    raise ValueError(f'remat={remat!r}: valid policies are {", ".join(REMAT_POLICIES)}.')
  if attention not in ATTENTION_KERNELS:
    raise ValueError(f'attention={attention!r}: valid kernels are '
                     f'{", ".join(ATTENTION_KERNELS)}.')
  mesh = dict(mesh or {})
  for axis, size in mesh.items():
    if not isinstance(size, int) or size < 1:
      raise ValueError(f'mesh axis {axis}={size!r}: sizes must be integers >= 1 (a plan has '
                       'no devices to fill in -1).')
  if math.prod(mesh.values()) > 1 and not rules:
    raise ValueError(f'mesh {mesh} needs the logical-axis rules that shard it: pass the '
                     "domain's `logical_axis_rules`.")
  costs = family(shape)
  lengths = costs.lengths(input_length, target_length)
  tensors = costs.tensors(shape)
  acts = costs.activations(shape, tensors, *lengths, fused_attention=attention == 'cudnn')
  compute = DTYPE_BYTES[activation_dtype]
  examples = batch_size // memory.batch_shards(batch_size, mesh, rules)
  param_elements, state = 0, 0
  for t in tensors:
    local = memory.shard_shape(t.shape, t.axes, mesh, rules)
    param_elements += math.prod(local) * t.count
    state += memory.optimizer_state_bytes(t.shape, local, optimizer) * t.count
  param_bytes = param_elements * DTYPE_BYTES[param_dtype]
  return MemoryEstimate(
      params_bytes=param_bytes,
      grads_bytes=param_bytes,
      optimizer_bytes=state,
      activations_bytes=(
          memory.layer_activation_bytes(acts, examples, compute, mesh, rules, remat, scan)
          + memory.activation_bytes(acts.other, examples, compute, mesh, rules, scan)),
      logits_bytes=memory.activation_bytes(acts.logits, examples, compute, mesh, rules, scan),
      batch_size=batch_size, optimizer=optimizer, remat=remat, scan=scan,
      mesh=mesh or None, devices=math.prod(mesh.values()))


@dataclasses.dataclass(frozen=True)
class FamilyCosts:
  """The cost formulas of one model family.

  tensors(shape): its parameter tensors. flops(shape, *lengths): forward matmul FLOPs per
  example, per component. activations(shape, tensors, *lengths): what the backward pass keeps
  (suite.activations: per layer type, outside the layers, logits). takes_lengths: whether the
  formulas take (input_length, target_length) tokens per example (text) or read everything
  off the shape (vision: image and patch size). data_input_components: flops components whose
  input is data, so that their backward pass computes the weight gradient only.
  """

  description: str
  tensors: Callable[[Shape], list[Tensor]]
  flops: Callable[..., dict[str, int]]
  activations: Callable[..., memory.FamilyActivations]
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
                      activations.text_activations, takes_lengths=True),
    VISION: FamilyCosts('ViT encoder', _vision_tensors, _vision_flops,
                        activations.vision_activations,
                        takes_lengths=False, data_input_components=('patch_embedding',)),
}


def family(shape: Shape) -> FamilyCosts:
  """The cost formulas of the shape's model family."""
  if shape.domain not in FAMILIES:
    raise ValueError(f'no cost formulas for domain {shape.domain!r}; families: '
                     f'{", ".join(FAMILIES)}.')
  return FAMILIES[shape.domain]
