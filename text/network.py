"""The T5 encoder-decoder as a Flax linen network, driven by one `suite.shapes.Shape`.

T5 v1.0 (ReLU FFN, tied embedding, logits rescaled by d_model**-0.5) and T5.1.1 (gated-GELU,
untied `logits_dense` head) in one module: RMS layer norm without bias, no dense biases,
relative position bias computed once per stack (bidirectional in the encoder, causal in the
decoder) and shared by its layers, no 1/sqrt(d_kv) attention scaling. Parameters are float32
with t5x-style logical axis names; computation runs in `dtype` (bfloat16 on accelerators).
Padding is token id 0: encoder keys with id 0 are masked, as `attention_mask=(ids > 0)` in HF.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from suite.attention import fused_attention
from suite.network_options import REMAT_POLICIES
from suite.network_options import check as check_options
from suite.shapes import TEXT, Shape, ShapeError

Dtype = Any


def relative_position_buckets(query_length: int, key_length: int, bidirectional: bool,
                              num_buckets: int, max_distance: int, offset: int = 0) -> np.ndarray:
  """Bucket of (key position - query position), [query_length, key_length] int32, as HF/T5.

  Computed in numpy float32 at trace time, with the same rounding as the reference code.
  """
  context = np.arange(query_length, dtype=np.int64)[:, None] + offset
  memory = np.arange(key_length, dtype=np.int64)[None, :]
  relative = memory - context
  buckets = np.zeros_like(relative)
  if bidirectional:
    num_buckets //= 2
    buckets += (relative > 0).astype(np.int64) * num_buckets
    relative = np.abs(relative)
  else:
    relative = -np.minimum(relative, 0)
  max_exact = num_buckets // 2
  is_small = relative < max_exact
  with np.errstate(divide='ignore'):
    scaled = (np.log(relative.astype(np.float32) / np.float32(max_exact))
              / np.float32(np.log(max_distance / max_exact))
              * np.float32(num_buckets - max_exact))
  large = max_exact + np.where(is_small, 0, scaled).astype(np.int64)
  large = np.minimum(large, num_buckets - 1)
  return (buckets + np.where(is_small, relative, large)).astype(np.int32)


class RmsNorm(nn.Module):
  """T5 layer norm: scale only, no mean subtraction, statistics in float32."""
  epsilon: float = 1e-6
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    scale = self.param('scale', nn.with_logical_partitioning(nn.initializers.ones, ('embed',)),
                       (x.shape[-1],), jnp.float32)
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.epsilon)
    return y.astype(self.dtype) * scale.astype(self.dtype)


class Attention(nn.Module):
  """Multi-head attention (width num_heads*d_kv), no scaling; bias/mask come from the stack.

  decode=True keeps keys/values in the 'cache' collection: the first (init) call sizes the
  cache from its input length; later calls take one token at `position`.
  """
  num_heads: int
  d_kv: int
  dtype: Dtype = jnp.float32
  dropout_rate: float = 0.0
  deterministic: bool = True
  attention_impl: str | None = None
  decode: bool = False

  @nn.compact
  def __call__(self, inputs_q, inputs_kv, bias=None, kv_valid=None, is_causal=False,
               position=None):
    d_model = inputs_q.shape[-1]
    heads, d_kv = self.num_heads, self.d_kv

    def kernel(name, shape, axes, std):
      init = nn.with_logical_partitioning(nn.initializers.normal(std), axes)
      return self.param(name, init, shape).astype(self.dtype)

    wq = kernel('query', (d_model, heads, d_kv), ('embed', 'heads', 'kv'), (d_model * d_kv) ** -.5)
    wk = kernel('key', (d_model, heads, d_kv), ('embed', 'heads', 'kv'), d_model ** -.5)
    wv = kernel('value', (d_model, heads, d_kv), ('embed', 'heads', 'kv'), d_model ** -.5)
    wo = kernel('out', (heads, d_kv, d_model), ('heads', 'kv', 'embed'), (heads * d_kv) ** -.5)
    axes = ('batch', 'length', 'heads', 'kv')
    q = nn.with_logical_constraint(_project(inputs_q, wq), axes)
    k = nn.with_logical_constraint(_project(inputs_kv, wk), axes)
    v = nn.with_logical_constraint(_project(inputs_kv, wv), axes)

    if self.decode:
      initialized = self.has_variable('cache', 'cached_key')
      cached_key = self.variable('cache', 'cached_key', jnp.zeros, k.shape, k.dtype)
      cached_value = self.variable('cache', 'cached_value', jnp.zeros, v.shape, v.dtype)
      if initialized:
        if q.shape[1] != 1:
          raise ValueError(f'cached decoding takes one token per step, got {q.shape[1]}.')
        start = (0, position, 0, 0)
        cached_key.value = jax.lax.dynamic_update_slice(cached_key.value, k, start)
        cached_value.value = jax.lax.dynamic_update_slice(cached_value.value, v, start)
        k, v = cached_key.value, cached_value.value
        kv_valid = jnp.broadcast_to(jnp.arange(k.shape[1]) <= position, k.shape[:2])
        is_causal = False

    mask = None if kv_valid is None else kv_valid[:, None, None, :]
    use_dropout = not self.deterministic and self.dropout_rate > 0.0
    if use_dropout:  # cuDNN's kernel does not drop attention weights here: ours does
      out = self._explicit_attention(q, k, v, bias, mask, is_causal, dropout=True)
    elif self.attention_impl == 'cudnn' and not self.decode:
      # padding as key lengths, so that the bias stays [1, heads, q, k] (suite.attention)
      out = fused_attention(q, k, v, scale=1.0, bias=bias, kv_valid=kv_valid,
                            is_causal=is_causal)
    else:
      out = self._explicit_attention(q, k, v, bias, mask, is_causal)
    out = nn.with_logical_constraint(out, axes)
    return _dense(out.reshape(*out.shape[:-2], heads * d_kv), wo.reshape(heads * d_kv, d_model))

  def _explicit_attention(self, q, k, v, bias, mask, is_causal, dropout: bool = False):
    """Same math as jax.nn.dot_product_attention, with optional dropout on the weights.

    Heads move ahead of the length first ([b, h, t, d]), so both products are plain batched
    matmuls over (batch, heads): on XLA CPU that is faster than the dot_general layouts
    dot_product_attention uses. The logits come out of the product in the compute dtype (as
    t5x's default, float32_logits=False) and the bias, mask and softmax run in float32: asking
    the product for float32 output instead made the backward's two products with the logits'
    gradient float32 matmuls in a bfloat16 step.
    """
    q, k, v = (x.transpose(0, 2, 1, 3) for x in (q, k, v))
    logits = jnp.matmul(q, k.swapaxes(-1, -2)).astype(jnp.float32)
    if bias is not None:
      logits = _add_broadcast(logits, bias.astype(jnp.float32))
    if is_causal:
      causal = jnp.tril(jnp.ones((q.shape[2], k.shape[2]), bool))
      mask = causal[None, None] if mask is None else mask & causal[None, None]
    if mask is not None:
      logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min / 2)
    weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
    if dropout:
      weights = nn.Dropout(self.dropout_rate, deterministic=False)(weights)
    return jnp.matmul(weights, v).transpose(0, 2, 1, 3)


def _check_broadcast(bias):
  if bias.shape[0] != 1:
    raise ValueError(f'bias must broadcast over the batch (leading dim 1), got {bias.shape}.')


@jax.custom_vjp
def _add_broadcast(x, bias):
  """x + bias with bias [1, ...] broadcast over x's batch axis.

  Same value and gradient as `x + bias`. On one device the bias gradient (a sum over the
  batch) is a product with a vector of ones, which streams the rows: XLA CPU's reduction over
  the leading axis of [batch, heads, q, k] ran at a few GB/s, and a sum by repeated halving
  was fused with the position bias's own backward into one loop that read the batch with a
  256 KiB stride. With several devices the batch may be sharded: there it is the plain sum
  (one all-reduce).
  """
  _check_broadcast(bias)
  return x + bias


def _add_broadcast_fwd(x, bias):
  return _add_broadcast(x, bias), None


def _add_broadcast_bwd(_, grad):
  if jax.device_count() > 1:
    return grad, jnp.sum(grad, axis=0, keepdims=True)
  ones = jnp.ones((grad.shape[0],), grad.dtype)
  # HIGHEST: a sum, not a TF32 (GPU) or bfloat16-pass (TPU) product at default precision.
  return grad, jnp.tensordot(ones, grad, axes=(0, 0), precision=jax.lax.Precision.HIGHEST)[None]


_add_broadcast.defvjp(_add_broadcast_fwd, _add_broadcast_bwd)


@jax.custom_vjp
def _tied_logits(x, table):
  """x [b, t, d] times the embedding table [vocab, d] -> logits [b, t, vocab].

  Same value and gradient as the einsum. The table's gradient is taken as
  (x^T @ dlogits)^T: the einsum's own transpose rule contracts dlogits over its leading axis,
  and XLA CPU first copied the whole [tokens, vocab] gradient into transposed order; this way
  only x and the [d, vocab] product are transposed.
  """
  return jnp.einsum('btd,vd->btv', x, table)


def _tied_logits_fwd(x, table):
  return _tied_logits(x, table), (x, table)


def _tied_logits_bwd(residuals, grad):
  x, table = residuals
  grad_x = jnp.einsum('btv,vd->btd', grad, table)
  rows = grad.reshape(-1, grad.shape[-1])
  grad_table = jnp.dot(x.reshape(-1, x.shape[-1]).T, rows, preferred_element_type=jnp.float32)
  return grad_x, grad_table.T.astype(table.dtype)


_tied_logits.defvjp(_tied_logits_fwd, _tied_logits_bwd)


def _dense(x, kernel):
  """x [..., d_in] @ kernel [d_in, d_out] with the rows flattened into one 2-D matmul.

  Its gradients are then plain GEMMs; the 3-D einsum form makes XLA CPU transpose activations
  before each weight-gradient product.
  """
  y = x.reshape(-1, x.shape[-1]) @ kernel
  return y.reshape(*x.shape[:-1], kernel.shape[-1])


def _project(x, kernel):
  """x [..., d_model] times a [d_model, heads, d_kv] kernel -> [..., heads, d_kv]."""
  d_model, heads, d_kv = kernel.shape
  y = _dense(x, kernel.reshape(d_model, heads * d_kv))
  return y.reshape(*x.shape[:-1], heads, d_kv)


class Mlp(nn.Module):
  """ReLU (T5 v1.0) or gated-GELU with the tanh GELU (T5.1.1) feed-forward block."""
  d_ff: int
  gated: bool
  dtype: Dtype = jnp.float32
  dropout_rate: float = 0.0
  deterministic: bool = True

  @nn.compact
  def __call__(self, x):
    d_model = x.shape[-1]
    normal = nn.initializers.normal
    init_in = nn.with_logical_partitioning(normal(d_model ** -.5), ('embed', 'mlp'))
    init_out = nn.with_logical_partitioning(normal(self.d_ff ** -.5), ('mlp', 'embed'))
    axes = ('batch', 'length', 'mlp')

    def dense_in(name):
      kernel = self.param(name, init_in, (d_model, self.d_ff)).astype(self.dtype)
      return nn.with_logical_constraint(_dense(x, kernel), axes)

    if self.gated:
      h = jax.nn.gelu(dense_in('wi_0'), approximate=True) * dense_in('wi_1')
    else:
      h = jax.nn.relu(dense_in('wi'))
    h = nn.Dropout(self.dropout_rate, deterministic=self.deterministic)(h)
    wo = self.param('wo', init_out, (self.d_ff, d_model)).astype(self.dtype)
    return _dense(h, wo)


class Layer(nn.Module):
  """One encoder layer, or one decoder layer when `cross_attention`; (x, None) for nn.scan."""
  shape: Shape
  cross_attention: bool
  dtype: Dtype = jnp.float32
  dropout_rate: float = 0.0
  deterministic: bool = True
  attention_impl: str | None = None
  layer_norm_epsilon: float = 1e-6
  decode: bool = False

  @nn.compact
  def __call__(self, x, bias, kv_valid, encoded, cross_valid, position):
    shape = self.shape
    dropout = nn.Dropout(self.dropout_rate, deterministic=self.deterministic)
    norm = functools.partial(RmsNorm, epsilon=self.layer_norm_epsilon, dtype=self.dtype)
    attention = functools.partial(
        Attention, num_heads=shape.num_heads, d_kv=shape.d_kv, dtype=self.dtype,
        dropout_rate=self.dropout_rate, deterministic=self.deterministic,
        attention_impl=self.attention_impl)
    axes = ('batch', 'length', 'embed')
    prefix = 'self_' if self.cross_attention else ''
    h = norm(name=f'pre_{prefix}attention_layer_norm')(x)
    h = attention(decode=self.decode, name=f'{prefix}attention')(
        h, h, bias=bias, kv_valid=kv_valid, is_causal=self.cross_attention and not self.decode,
        position=position)
    x = nn.with_logical_constraint(x + dropout(h), axes)
    if self.cross_attention:
      h = norm(name='pre_cross_attention_layer_norm')(x)
      h = attention(name='encoder_decoder_attention')(h, encoded, kv_valid=cross_valid)
      x = nn.with_logical_constraint(x + dropout(h), axes)
    h = norm(name='pre_mlp_layer_norm')(x)
    h = Mlp(shape.d_ff, shape.is_gated, dtype=self.dtype, dropout_rate=self.dropout_rate,
            deterministic=self.deterministic, name='mlp')(h)
    return nn.with_logical_constraint(x + dropout(h), axes), None


class Stack(nn.Module):
  """Encoder (decoder=False) or decoder stack over embedded inputs, with its relative bias."""
  shape: Shape
  decoder: bool
  dtype: Dtype = jnp.float32
  dropout_rate: float = 0.0
  attention_impl: str | None = None
  layer_norm_epsilon: float = 1e-6
  remat_policy: str = 'none'
  scan_layers: bool = False

  @nn.compact
  def __call__(self, x, kv_valid, encoded=None, cross_valid=None, enable_dropout=False,
               decode=False):
    shape = self.shape
    num_layers = shape.num_decoder_layers if self.decoder else shape.num_encoder_layers
    rel_embedding = self.param(
        'rel_embedding', nn.with_logical_partitioning(
            nn.initializers.normal(shape.d_model ** -.5), ('heads', 'relpos_buckets')),
        (shape.num_heads, shape.relative_buckets))
    length = x.shape[1]
    position = jnp.zeros((), jnp.int32)
    if decode:
      initialized = self.has_variable('cache', 'position')
      position_var = self.variable('cache', 'position', jnp.zeros, (), jnp.int32)
      table = self.variable('cache', 'position_bias', self._position_bias, rel_embedding, length)
      position = position_var.value
      if initialized:
        bias = jax.lax.dynamic_slice_in_dim(table.value, position, 1, axis=2)
        position_var.value = position + 1
      else:
        bias = table.value
    else:
      bias = self._position_bias(rel_embedding, length)

    deterministic = not enable_dropout
    dropout = nn.Dropout(self.dropout_rate, deterministic=deterministic)
    x = dropout(x)
    layer_cls = Layer
    if self.remat_policy != 'none':
      layer_cls = nn.remat(Layer, policy=REMAT_POLICIES[self.remat_policy],
                           prevent_cse=not self.scan_layers)
    layer_kwargs = dict(shape=shape, cross_attention=self.decoder, dtype=self.dtype,
                        dropout_rate=self.dropout_rate, deterministic=deterministic,
                        attention_impl=self.attention_impl,
                        layer_norm_epsilon=self.layer_norm_epsilon, decode=decode)
    args = (bias, kv_valid, encoded, cross_valid, position)
    if self.scan_layers:
      scanned = nn.scan(layer_cls, variable_axes={'params': 0, 'cache': 0},
                        split_rngs={'params': True, 'dropout': True},
                        in_axes=(nn.broadcast,) * len(args), length=num_layers,
                        metadata_params={nn.PARTITION_NAME: 'layers'})
      x, _ = scanned(**layer_kwargs, name='layers')(x, *args)
    else:
      for i in range(num_layers):
        x, _ = layer_cls(**layer_kwargs, name=f'layers_{i}')(x, *args)
    x = RmsNorm(self.layer_norm_epsilon, self.dtype, name='final_layer_norm')(x)
    return dropout(x)

  def _position_bias(self, rel_embedding, length):
    """[1, heads, length, length] bias, in compute dtype, from the bucket table."""
    bias = _relative_bias_fn(length, not self.decoder, self.shape.relative_buckets,
                             self.shape.relative_max_distance)
    return bias(rel_embedding.astype(self.dtype))[None]


@functools.lru_cache(maxsize=64)
def _relative_bias_fn(length: int, bidirectional: bool, num_buckets: int, max_distance: int):
  """table [heads, buckets] -> bias [heads, length, length], bias[:, q, k] = table[:, b(k - q)].

  The bucket depends on k - q only, so the bias is a Toeplitz expansion of one row per head
  over the 2*length - 1 relative positions. Forward: a gather. Backward: the gradient's
  diagonal sums (a pad-and-reshape that lines the diagonals up as columns, then one sum), then
  a [2*length - 1, buckets] one-hot matmul. All dense, and no scatter of length**2 updates into
  a few buckets nor a [length, length, buckets] one-hot contraction.
  """
  span = 2 * length - 1
  # relative position r = k - q in [-(length-1), length-1], stored at r + length - 1
  row_buckets = relative_position_buckets(1, span, bidirectional, num_buckets, max_distance,
                                          offset=length - 1)[0]
  one_hot = (row_buckets[:, None] == np.arange(num_buckets)).astype(np.float32)
  position = np.arange(length)
  toeplitz = (position[None, :] - position[:, None] + length - 1).astype(np.int32)

  @jax.custom_vjp
  def bias(table):
    return jnp.take(table, jnp.asarray(row_buckets[toeplitz]), axis=1)

  def forward(table):
    return bias(table), None

  def backward(_, grad):  # the cotangent has the table's dtype, as the bias has
    g = grad.astype(jnp.float32)[:, :, ::-1]  # column L-1-k: q + column = (L-1) - (k - q)
    heads = g.shape[0]
    g = jnp.pad(g, ((0, 0), (0, 0), (0, length)))
    g = g.reshape(heads, 2 * length * length)[:, :length * span].reshape(heads, length, span)
    per_relative = jnp.sum(g, axis=1)[:, ::-1]  # [heads, span], index r + length - 1
    table_grad = jnp.dot(per_relative, jnp.asarray(one_hot),
                         precision=jax.lax.Precision.HIGHEST)
    return (table_grad.astype(grad.dtype),)

  bias.defvjp(forward, backward)
  return bias


class T5Network(nn.Module):
  """T5 encoder-decoder: `apply(vars, encoder_input_tokens, decoder_input_tokens)` -> logits.

  Logits are [batch, target_len, vocab] in `dtype`. `attention_impl`: None or 'xla' compute
  attention with our own XLA ops (`Attention._explicit_attention`); 'cudnn' calls
  jax.nn.dot_product_attention's cuDNN kernel through `suite.attention.fused_attention`, with
  the relative position bias and padding as key lengths (NVIDIA GPUs, bfloat16; attention
  dropout and cached decoding run our own ops).
  """
  shape: Shape
  dtype: Dtype = jnp.float32
  dropout_rate: float = 0.1
  attention_impl: str | None = None
  layer_norm_epsilon: float = 1e-6
  remat_policy: str = 'none'
  scan_layers: bool = False

  def setup(self):
    shape = self.shape
    if shape.domain != TEXT:
      raise ShapeError(f'T5Network takes a text shape, got domain={shape.domain!r}; '
                       'use vision.vit for vision shapes.')
    check_options(self.attention_impl, self.dtype, self.remat_policy)
    self.token_embedder = self.param(
        'token_embedder',
        nn.with_logical_partitioning(nn.initializers.normal(1.0), ('vocab', 'embed')),
        (shape.vocab_size, shape.d_model))
    if not shape.tie_embeddings:
      self.logits_dense = self.param(
          'logits_dense', nn.with_logical_partitioning(
              nn.initializers.normal(shape.d_model ** -.5), ('embed', 'vocab')),
          (shape.d_model, shape.vocab_size))
    stack = functools.partial(
        Stack, shape=shape, dtype=self.dtype, dropout_rate=self.dropout_rate,
        attention_impl=self.attention_impl, layer_norm_epsilon=self.layer_norm_epsilon,
        remat_policy=self.remat_policy, scan_layers=self.scan_layers)
    self.encoder = stack(decoder=False)
    self.decoder = stack(decoder=True)

  def _embed(self, tokens):
    x = jnp.take(self.token_embedder, tokens, axis=0).astype(self.dtype)
    return nn.with_logical_constraint(x, ('batch', 'length', 'embed'))

  def encode(self, encoder_input_tokens, enable_dropout: bool = False):
    """Encoder output [batch, input_len, d_model] in compute dtype."""
    valid = encoder_input_tokens > 0
    return self.encoder(self._embed(encoder_input_tokens), valid, enable_dropout=enable_dropout)

  def decode(self, encoded, encoder_input_tokens, decoder_input_tokens,
             enable_dropout: bool = False, decode: bool = False):
    """Logits for decoder inputs given the encoder output; decode=True uses the kv cache."""
    x = self.decoder(self._embed(decoder_input_tokens), None, encoded, encoder_input_tokens > 0,
                     enable_dropout=enable_dropout, decode=decode)
    if self.shape.tie_embeddings:
      x = x * jnp.asarray(self.shape.d_model ** -0.5, self.dtype)
      logits = _tied_logits(x, self.token_embedder.astype(self.dtype))
    else:
      logits = x @ self.logits_dense.astype(self.dtype)
    return nn.with_logical_constraint(logits, ('batch', 'length', 'vocab'))

  def __call__(self, encoder_input_tokens, decoder_input_tokens, enable_dropout: bool = False):
    encoded = self.encode(encoder_input_tokens, enable_dropout=enable_dropout)
    return self.decode(encoded, encoder_input_tokens, decoder_input_tokens,
                       enable_dropout=enable_dropout)


def scan_params(params: dict) -> dict:
  """Per-layer params (`layers_{i}`) stacked on a leading axis as `nn.scan` keeps them."""
  out = dict(params)
  for stack in ('encoder', 'decoder'):
    tree = dict(params[stack])
    layers = sorted((k for k in tree if k.startswith('layers_')), key=lambda k: int(k[7:]))
    stacked = [tree.pop(k) for k in layers]
    tree['layers'] = jax.tree.map(lambda *xs: jnp.stack(xs), *stacked)
    out[stack] = tree
  return out


def unscan_params(params: dict) -> dict:
  """Inverse of `scan_params`: the scanned `layers` split into `layers_{i}`."""
  out = dict(params)
  for stack in ('encoder', 'decoder'):
    tree = dict(params[stack])
    layers = tree.pop('layers')
    depth = jax.tree.leaves(layers)[0].shape[0]
    for i in range(depth):
      tree[f'layers_{i}'] = jax.tree.map(lambda x, i=i: x[i], layers)
    out[stack] = tree
  return out
