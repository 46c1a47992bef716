"""What each model family keeps for the backward pass, per example: the activation tables of
suite.memory's training-memory model, one function per family (found through
`suite.costs.FAMILIES`).

Counted from the networks (text/network.py, vision/network.py) as JAX linearises them and XLA
keeps them (checked by tests/suite/test_memory.py against JAX's saved residuals of one
layer, and end to end against XLA's memory analysis): per token and layer, the residual
stream, each norm's output (and a T5 norm's normalised values in float32), the attention's
queries, keys, values and output, three float32 score-sized tensors per head (logits,
exponentials and probabilities), and the feed-forward's pre- and post-activations. Logical axis
names are the networks' own ('length', 'embed', 'heads', 'kv', 'mlp', 'vocab'), so that the
partitioner's rules shard them as they shard the real tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

from suite.memory import BOOL, FLOAT32, Activation, FamilyActivations, LayerActivations
from suite.shapes import Shape

TOKENS = ('length', 'embed')
HEADS = ('length', 'heads', 'kv')
SCORES = ('heads', 'length', None)
FFN = ('length', 'mlp')


def _norm(name: str, length: int, d: int, normalized: int, consumers: int) -> list[Activation]:
  """A norm over `length` tokens: `normalized` float32 [length, d] tensors and its output; under
  scan JAX also keeps, for an autodiffed norm, the squared input, and for each matmul that
  reads the output a copy of it. T5's RMS norm (autodiffed) keeps the normalised values (1);
  the ViT's LayerNorm has its gradient written out (vision.network.layer_norm) and keeps only
  its input, counted where that is made, and per-token statistics (0)."""
  return [*([Activation(f'{name}/normalized', (length, d), TOKENS, normalized, FLOAT32),
             Activation(f'{name}/squared', (length, d), TOKENS, 1, FLOAT32, scan_only=True)]
            if normalized else []),
          Activation(f'{name}/output', (length, d), TOKENS),
          Activation(f'{name}/output_copies', (length, d), TOKENS, consumers - 1,
                     scan_only=True)]


def _attention(name: str, s: Shape, queries: int, keys: int, masked: bool,
               fused: bool) -> tuple[list[Activation], list[Activation], list[Activation]]:
  """(residuals, projection outputs, batched matmul outputs) of one attention. fused: cuDNN's
  flash attention, which keeps its output and the softmax statistics (one float32 per query
  and head) instead of the score-sized tensors, and has no batched matmuls a policy saves."""
  h, kv = s.num_heads, s.d_kv
  residuals = [
      Activation(f'{name}/queries', (queries, h, kv), HEADS),
      Activation(f'{name}/keys_values', (keys, h, kv), HEADS, 2),
      Activation(f'{name}/output', (queries, h, kv), HEADS),
  ]
  if fused:
    residuals.append(Activation(f'{name}/softmax_stats', (h, queries), SCORES[:2], 1, FLOAT32))
  else:
    residuals += [
        Activation(f'{name}/scores', (h, queries, keys), SCORES, 3, FLOAT32),
        Activation(f'{name}/probabilities', (h, queries, keys), SCORES, cast_only=True)]
    if masked:
      residuals.append(Activation(f'{name}/mask', (h, queries, keys), SCORES, 1, BOOL,
                                  scan_only=True))
  projections = [Activation(f'{name}/q', (queries, h, kv), HEADS),
                 Activation(f'{name}/kv', (keys, h, kv), HEADS, 2),
                 Activation(f'{name}/out', (queries, s.d_model), TOKENS)]
  batched = [] if fused else [Activation(f'{name}/logits', (h, queries, keys), SCORES),
                              Activation(f'{name}/values', (queries, h, kv), HEADS)]
  return residuals, projections, batched


# Feed-forward activation -> (tensors XLA keeps, extra ones JAX keeps under scan, matmuls in).
_FFN = {'relu': (2, 0, 1), 'gelu': (3, 3, 1), 'gated-gelu': (5, 2, 2)}


def _mlp(name: str, s: Shape, length: int) -> tuple[list[Activation], list[Activation]]:
  """(residuals, projection outputs) of the feed-forward block over `length` tokens."""
  kept, scan_extra, inputs = _FFN[s.activation]
  shape = (length, s.d_ff)
  return ([Activation(f'{name}/hidden', shape, FFN, kept),
           Activation(f'{name}/hidden_scan', shape, FFN, scan_extra, scan_only=True)],
          [Activation(f'{name}/wi', shape, FFN, inputs)])


def _weights(tensors: Sequence, prefix: str, layers: int) -> tuple:
  """(shape, axes) of the matrices a layer stack repeats once per layer."""
  return tuple((t.shape, t.axes) for t in tensors
               if t.name.startswith(f'{prefix}/') and t.count == layers and len(t.shape) > 1)


def _layer(name: str, s: Shape, tensors: Sequence, count: int, length: int,
           attentions: Sequence[tuple[str, int, bool]], normalized: int,
           fused: bool) -> LayerActivations:
  """One pre-norm layer over `length` tokens: a norm before each attention (name, key length,
  masked) and before the feed-forward, a residual add after each."""
  d, gated = s.d_model, s.is_gated
  residuals, projections, batched = [], [], []
  for attention, keys, masked in attentions:
    consumers = 3 if keys == length else 1  # self-attention: q, k, v; cross: q
    residuals += _norm(f'{name}/{attention}_norm', length, d, normalized, consumers)
    r, p, b = _attention(f'{name}/{attention}', s, length, keys, masked, fused)
    residuals += r + [Activation(f'{name}/{attention}_residual', (length, d), TOKENS)]
    projections += p
    batched += b
  residuals += _norm(f'{name}/mlp_norm', length, d, normalized, 2 if gated else 1)
  r, p = _mlp(f'{name}/mlp', s, length)
  return LayerActivations(
      name=name, count=count,
      inputs=(Activation(f'{name}/input', (length, d), TOKENS),),
      residuals=tuple(residuals + r),
      projections=tuple(projections + p),
      batched=tuple(batched),
      weights=_weights(tensors, name, count))


def text_activations(s: Shape, tensors: Sequence, inputs: int, targets: int, *,
                     fused_attention: bool = False) -> FamilyActivations:
  """T5: encoder layers over the inputs, decoder layers (self- and cross-attention) over the
  targets, the embeddings, final norms and the [targets, vocab] logits and their gradient.
  tensors: its parameter tensors (suite.costs); fused_attention: cuDNN's kernel."""
  d = s.d_model
  encoder = _layer('encoder', s, tensors, s.num_encoder_layers, inputs,
                   [('attention', inputs, True)], 1, fused_attention)
  decoder = _layer('decoder', s, tensors, s.num_decoder_layers, targets,
                   [('self_attention', targets, True), ('cross_attention', inputs, True)],
                   1, fused_attention)
  other = [
      # Token ids, targets and loss weights: 4 bytes each.
      Activation('batch', (inputs + 3 * targets,), (None,), 1, FLOAT32),
      Activation('encoder/embedded', (inputs, d), TOKENS, 1, FLOAT32),
      Activation('decoder/embedded', (targets, d), TOKENS, 1, FLOAT32),
      *_norm('encoder/final_norm', inputs, d, 1, 1),
      *_norm('decoder/final_norm', targets, d, 1, 1),
  ]
  if s.tie_embeddings:  # the output scaled by d_model**-0.5 and the table in compute dtype
    other += [Activation('decoder/scaled_output', (targets, d), TOKENS),
              Activation('embedding_copy', (s.vocab_size, d), ('vocab', 'embed'),
                         cast_only=True, per_example=False)]
  logits = (Activation('logits', (targets, s.vocab_size), ('length', 'vocab'), 2),)
  return FamilyActivations((encoder, decoder), tuple(other), logits)


def vision_activations(s: Shape, tensors: Sequence, *,
                       fused_attention: bool = False) -> FamilyActivations:
  """ViT: the pixels and patches, the encoder layers over the tokens, the final LayerNorm, a
  MAP head's attention over the tokens, and the [classes] logits and their gradient.
  tensors: its parameter tensors (suite.costs); fused_attention: cuDNN's kernel (the MAP head's
  one-query attention always runs XLA's)."""
  d, tokens = s.d_model, s.num_patches + int(s.pooling == 'cls')
  encoder = _layer('encoder_layers', s, tensors, s.num_encoder_layers, tokens,
                   [('attention', tokens, False)], 0, fused_attention)
  other = [
      # The pixels (the patches tile the image) and the label, 4 bytes each.
      Activation('batch', (s.num_patches * s.patch_size ** 2 * 3 + 1,), (None,), 1, FLOAT32),
      Activation('patches', (s.num_patches, s.patch_size ** 2 * 3), ('length', None)),
      # The final LayerNorm keeps its input, the last layer's output.
      Activation('encoder_norm/input', (tokens, d), TOKENS),
      *_norm('encoder_norm', tokens, d, 0, 1),
  ]
  if s.pooling == 'map':
    other += _attention('map_head/attention', s, 1, tokens, False, False)[0]
  logits = (Activation('logits', (s.num_classes,), ('classes',), 2),)
  return FamilyActivations((encoder,), tuple(other), logits)
