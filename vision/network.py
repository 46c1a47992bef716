"""The Vision Transformer as a Flax linen network, driven by one encoder-only `suite.shapes.Shape`.

Patch embedding (a p x p convolution with stride p, computed as one matmul over the flattened
patches), learned or fixed 2-D sin-cos position embeddings, pre-norm encoder blocks
(LayerNorm, multi-head attention with biases, LayerNorm, GELU MLP), a final LayerNorm, pooling
(class token, global average, or a MAP head: a learned probe attending over the tokens) and a
linear head. Attention width is `num_heads * d_kv`, independent of `d_model`, with the usual
1/sqrt(d_kv) scaling. Parameters are float32 with t5x-style logical axis names; computation
runs in `dtype` (bfloat16 on accelerators) while LayerNorm statistics and the softmax run in
float32. Inputs are NHWC float images `[batch, image_size, image_size, 3]`.

Two numerics options change nothing in the parameter tree, so they are network options rather
than Shape fields, set by the checkpoint readers: `gelu_approximate` (big_vision and flax use
the tanh approximation; Hugging Face's `gelu` is exact erf) and `layer_norm_epsilon`
(big_vision 1e-6, Hugging Face 1e-12).
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
from suite.shapes import VISION, Shape, ShapeError

CHANNELS = 3
Dtype = Any

_TOKENS = ('batch', 'length', 'embed')


def posemb_sincos_2d(grid: int, width: int, temperature: float = 10_000.) -> np.ndarray:
  """Fixed [grid*grid, width] position embeddings (MoCo v3, big_vision's 'sincos2d').

  Per patch at (row y, column x): sin(x w), cos(x w), sin(y w), cos(y w) over width/4
  frequencies w = temperature**(-i / (width/4 - 1)), patches in row-major order.
  """
  if width % 4:
    raise ShapeError(f'sincos2d position embeddings need a width divisible by 4, got {width}.')
  quarter = width // 4
  y, x = np.mgrid[:grid, :grid]
  omega = 1.0 / temperature ** (np.arange(quarter) / max(quarter - 1, 1))
  x = np.einsum('m,d->md', x.reshape(-1), omega)
  y = np.einsum('m,d->md', y.reshape(-1), omega)
  return np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1).astype(np.float32)


def _dense(x, kernel):
  """x [..., d_in] @ kernel [d_in, d_out], the rows flattened into one 2-D matmul.

  Its gradients are then plain GEMMs; a 3-D einsum makes XLA CPU transpose activations first.
  """
  y = x.reshape(-1, x.shape[-1]) @ kernel
  return y.reshape(*x.shape[:-1], kernel.shape[-1])


def _param(module: nn.Module, name: str, init, shape: tuple[int, ...], axes: tuple) -> jax.Array:
  """A float32 parameter with logical axis names, cast to the module's compute dtype."""
  value = module.param(name, nn.with_logical_partitioning(init, axes), shape, jnp.float32)
  return value.astype(module.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float) -> jax.Array:
  """(x - mean) / sqrt(variance + epsilon) * scale + bias over the last axis, in float32.

  The gradient is written out (`_layer_norm_bwd`): autodiff of the three-pass forward leaves
  XLA one elementwise pass per term it differentiates (the mean's, the variance's, the
  normalisation's), which on CPU cost more than the forward; the closed form takes one pass and
  two row reductions. It keeps x in its own dtype plus two float32 numbers per row, no more
  than autodiff would.
  """
  return _layer_norm_fwd(x, scale, bias, epsilon)[0]


def _layer_norm_stats(x32: jax.Array, epsilon: float) -> tuple[jax.Array, jax.Array]:
  mean = jnp.mean(x32, axis=-1, keepdims=True)
  centered = x32 - mean
  return mean, jax.lax.rsqrt(jnp.mean(jnp.square(centered), axis=-1, keepdims=True) + epsilon)


def _layer_norm_fwd(x, scale, bias, epsilon):
  mean, inv_std = _layer_norm_stats(x.astype(jnp.float32), epsilon)
  y = (x.astype(jnp.float32) - mean) * inv_std * scale + bias
  return y, (x, mean, inv_std, scale)


def _layer_norm_bwd(epsilon, residuals, g):
  del epsilon  # in inv_std already
  x, mean, inv_std, scale = residuals
  normed = (x.astype(jnp.float32) - mean) * inv_std
  g = g.astype(jnp.float32)
  rows = tuple(range(g.ndim - 1))
  g_normed = g * scale
  dx = inv_std * (g_normed - jnp.mean(g_normed, axis=-1, keepdims=True)
                  - normed * jnp.mean(g_normed * normed, axis=-1, keepdims=True))
  return dx.astype(x.dtype), jnp.sum(g * normed, axis=rows), jnp.sum(g, axis=rows)


layer_norm.defvjp(_layer_norm_fwd, _layer_norm_bwd)


class LayerNorm(nn.Module):
  """LayerNorm with scale and bias over the last axis; statistics in float32 (`layer_norm`)."""
  epsilon: float = 1e-6
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    d = x.shape[-1]
    scale = self.param('scale', nn.with_logical_partitioning(nn.initializers.ones, ('embed',)),
                       (d,), jnp.float32)
    bias = self.param('bias', nn.with_logical_partitioning(nn.initializers.zeros, ('embed',)),
                      (d,), jnp.float32)
    return layer_norm(x, scale, bias, self.epsilon).astype(self.dtype)


class Attention(nn.Module):
  """Multi-head attention of width num_heads*d_kv with biases (flax / big_vision layout):
  query, key, value kernels [d_model, heads, d_kv] and biases [heads, d_kv]; out kernel
  [heads, d_kv, d_model] and bias [d_model]. Scores are scaled by 1/sqrt(d_kv); no mask."""
  num_heads: int
  d_kv: int
  dtype: Dtype = jnp.float32
  attention_impl: str | None = None

  @nn.compact
  def __call__(self, inputs_q, inputs_kv):
    d_model = inputs_q.shape[-1]
    heads, d_kv = self.num_heads, self.d_kv
    in_init = nn.initializers.xavier_uniform(in_axis=0, out_axis=(1, 2))
    out_init = nn.initializers.xavier_uniform(in_axis=(0, 1), out_axis=2)
    zeros = nn.initializers.zeros
    axes = ('batch', 'length', 'heads', 'kv')

    def project(name, x):
      kernel = _param(self, f'{name}_kernel', in_init, (d_model, heads, d_kv),
                      ('embed', 'heads', 'kv'))
      bias = _param(self, f'{name}_bias', zeros, (heads, d_kv), ('heads', 'kv'))
      y = _dense(x, kernel.reshape(d_model, heads * d_kv)) + bias.reshape(heads * d_kv)
      return nn.with_logical_constraint(y.reshape(*x.shape[:-1], heads, d_kv), axes)

    q = project('query', inputs_q)
    k = project('key', inputs_kv)
    v = project('value', inputs_kv)
    scale = d_kv ** -0.5
    if self.attention_impl == 'cudnn':
      out = fused_attention(q, k, v, scale=scale)
    else:
      out = self._explicit_attention(q * jnp.asarray(scale, q.dtype), k, v)
    out = nn.with_logical_constraint(out, axes)
    wo = _param(self, 'out_kernel', out_init, (heads, d_kv, d_model), ('heads', 'kv', 'embed'))
    bo = _param(self, 'out_bias', zeros, (d_model,), ('embed',))
    out = out.reshape(*out.shape[:-2], heads * d_kv)
    return _dense(out, wo.reshape(heads * d_kv, d_model)) + bo

  def _explicit_attention(self, q, k, v):
    """softmax(q k^T) v with heads moved ahead of the length ([b, h, t, d]: plain batched
    matmuls, faster on XLA CPU than dot_product_attention's layouts); softmax in float32."""
    q, k, v = (x.transpose(0, 2, 1, 3) for x in (q, k, v))
    logits = jnp.matmul(q, k.swapaxes(-1, -2)).astype(jnp.float32)
    weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
    return jnp.matmul(weights, v).transpose(0, 2, 1, 3)


class Mlp(nn.Module):
  """Dense (d_model -> d_ff) with bias, GELU, dropout, dense (d_ff -> d_model) with bias."""
  d_ff: int
  dtype: Dtype = jnp.float32
  gelu_approximate: bool = True
  dropout_rate: float = 0.0
  deterministic: bool = True

  @nn.compact
  def __call__(self, x):
    d_model = x.shape[-1]
    xavier, bias_init = nn.initializers.xavier_uniform(), nn.initializers.normal(1e-6)
    wi = _param(self, 'wi_kernel', xavier, (d_model, self.d_ff), ('embed', 'mlp'))
    bi = _param(self, 'wi_bias', bias_init, (self.d_ff,), ('mlp',))
    h = nn.with_logical_constraint(_dense(x, wi) + bi, ('batch', 'length', 'mlp'))
    h = jax.nn.gelu(h, approximate=self.gelu_approximate)
    h = nn.Dropout(self.dropout_rate, deterministic=self.deterministic)(h)
    wo = _param(self, 'wo_kernel', xavier, (self.d_ff, d_model), ('mlp', 'embed'))
    bo = _param(self, 'wo_bias', bias_init, (d_model,), ('embed',))
    return _dense(h, wo) + bo


class Block(nn.Module):
  """One pre-norm encoder block; returns (x, None) for nn.scan."""
  shape: Shape
  dtype: Dtype = jnp.float32
  dropout_rate: float = 0.0
  deterministic: bool = True
  attention_impl: str | None = None
  layer_norm_epsilon: float = 1e-6
  gelu_approximate: bool = True

  @nn.compact
  def __call__(self, x, _=None):
    dropout = nn.Dropout(self.dropout_rate, deterministic=self.deterministic)
    norm = functools.partial(LayerNorm, epsilon=self.layer_norm_epsilon, dtype=self.dtype)
    h = norm(name='pre_attention_layer_norm')(x)
    h = Attention(self.shape.num_heads, self.shape.d_kv, dtype=self.dtype,
                  attention_impl=self.attention_impl, name='attention')(h, h)
    x = nn.with_logical_constraint(x + dropout(h), _TOKENS)
    h = norm(name='pre_mlp_layer_norm')(x)
    h = Mlp(self.shape.d_ff, dtype=self.dtype, gelu_approximate=self.gelu_approximate,
            dropout_rate=self.dropout_rate, deterministic=self.deterministic, name='mlp')(h)
    return nn.with_logical_constraint(x + dropout(h), _TOKENS), None


class MapHead(nn.Module):
  """Multihead attention pooling (big_vision's MAPHead): a learned probe attends over the
  tokens (same heads and d_kv as the encoder), then x + MLP(LayerNorm(x)); -> [batch, d]."""
  shape: Shape
  dtype: Dtype = jnp.float32
  attention_impl: str | None = None
  layer_norm_epsilon: float = 1e-6
  gelu_approximate: bool = True

  @nn.compact
  def __call__(self, x):
    d = x.shape[-1]
    probe = _param(self, 'probe', nn.initializers.normal(0.02), (d,), ('embed',))
    probe = jnp.broadcast_to(probe, (x.shape[0], 1, d))
    # One query per image: our own XLA attention, whatever the encoder uses.
    x = Attention(self.shape.num_heads, self.shape.d_kv, dtype=self.dtype,
                  name='attention')(probe, x)
    y = LayerNorm(self.layer_norm_epsilon, self.dtype, name='layer_norm')(x)
    x = x + Mlp(self.shape.d_ff, dtype=self.dtype, gelu_approximate=self.gelu_approximate,
                name='mlp')(y)
    return x[:, 0]


class ViTNetwork(nn.Module):
  """ViT: `apply(vars, images)` -> logits [batch, num_classes] in `dtype`.

  `images` are NHWC floats [batch, image_size, image_size, 3]. `return_features=True` returns
  the pooled pre-logits features [batch, d_model] instead (for few-shot linear probes); the
  head is then not evaluated. `enable_dropout=True` (needs a 'dropout' rng) turns on dropout
  after the position embedding, inside the MLPs and on both residual branches.
  `attention_impl`: None or 'xla' compute attention with our own XLA ops; 'cudnn' calls
  jax.nn.dot_product_attention's cuDNN kernel through `suite.attention.fused_attention`
  (NVIDIA GPUs, bfloat16 or float16; the MAP head's one-query attention runs our own ops).
  """
  shape: Shape
  dtype: Dtype = jnp.float32
  dropout_rate: float = 0.0
  attention_impl: str | None = None
  layer_norm_epsilon: float = 1e-6
  gelu_approximate: bool = True
  remat_policy: str = 'none'
  scan_layers: bool = False

  def _check_options(self):
    if self.shape.domain != VISION:
      raise ShapeError(f'ViTNetwork takes a vision shape, got domain={self.shape.domain!r}; '
                       'use text.t5 for text shapes.')
    check_options(self.attention_impl, self.dtype, self.remat_policy)

  def check_images(self, images) -> None:
    """Raises ValueError unless `images` is a float [batch, size, size, 3] array."""
    size = self.shape.image_size
    expected = f'[batch, {size}, {size}, {CHANNELS}] (NHWC)'
    shape = tuple(np.shape(images))
    if len(shape) != 4 or shape[1:] != (size, size, CHANNELS):
      hint = ''
      if len(shape) == 4 and shape[1] == CHANNELS and shape[2:] == (size, size):
        hint = ' This looks like NCHW: transpose with images.transpose(0, 2, 3, 1).'
      elif len(shape) == 3:
        hint = ' For one image, add a batch axis: images[None].'
      raise ValueError(f'images of shape {shape}: expected {expected} float pixels for this '
                       f'shape (image_size={size}, patch_size={self.shape.patch_size}).{hint}')
    if not jnp.issubdtype(images.dtype, jnp.floating):
      raise ValueError(f'images of dtype {images.dtype}: expected floats {expected}, already '
                       'normalised as the model was trained (e.g. to [-1, 1]).')

  @nn.compact
  def __call__(self, images, enable_dropout: bool = False, return_features: bool = False):
    self._check_options()
    self.check_images(images)
    shape, dtype = self.shape, self.dtype
    deterministic = not enable_dropout
    d, p = shape.d_model, shape.patch_size
    grid = shape.image_size // p

    # Patch embedding: [b, g, p, g, p, c] -> [b, g*g, p*p*c] @ kernel [p, p, c, d].
    b = images.shape[0]
    patches = images.astype(dtype).reshape(b, grid, p, grid, p, CHANNELS)
    patches = patches.transpose(0, 1, 3, 2, 4, 5).reshape(b, grid * grid, p * p * CHANNELS)
    kernel = _param(self, 'patch_kernel', nn.initializers.lecun_normal(in_axis=(0, 1, 2),
                                                                       out_axis=3),
                    (p, p, CHANNELS, d), (None, None, None, 'embed'))
    bias = _param(self, 'patch_bias', nn.initializers.zeros, (d,), ('embed',))
    x = _dense(patches, kernel.reshape(p * p * CHANNELS, d)) + bias
    if shape.posemb == 'sincos2d':  # patches only: a class token gets no position
      x = x + jnp.asarray(posemb_sincos_2d(grid, d), dtype)
    if shape.pooling == 'cls':
      cls = _param(self, 'cls_token', nn.initializers.zeros, (d,), ('embed',))
      x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, d)), x], axis=1)
    if shape.posemb == 'learn':  # after the class token, which has its own (HF layout)
      positions = _param(self, 'position_embedding', nn.initializers.normal(0.02),
                         (x.shape[1], d), ('length', 'embed'))
      x = x + positions
    x = nn.with_logical_constraint(x, _TOKENS)
    x = nn.Dropout(self.dropout_rate, deterministic=deterministic)(x)

    x = self._encoder(x, deterministic)
    if shape.pooling == 'cls':
      features = x[:, 0]
    elif shape.pooling == 'gap':
      features = jnp.mean(x.astype(jnp.float32), axis=1).astype(dtype)
    else:
      features = MapHead(shape, dtype=dtype, layer_norm_epsilon=self.layer_norm_epsilon,
                         gelu_approximate=self.gelu_approximate, name='map_head')(x)
    features = nn.with_logical_constraint(features, ('batch', 'embed'))
    if return_features:
      return features
    head = nn.Dense(shape.num_classes, dtype=dtype, param_dtype=jnp.float32,
                    kernel_init=nn.with_logical_partitioning(nn.initializers.zeros,
                                                             ('embed', 'classes')),
                    bias_init=nn.with_logical_partitioning(nn.initializers.zeros,
                                                           ('classes',)),
                    name='head')
    return nn.with_logical_constraint(head(features), ('batch', 'classes'))

  def _encoder(self, x, deterministic: bool):
    block = Block
    if self.remat_policy != 'none':
      block = nn.remat(Block, policy=REMAT_POLICIES[self.remat_policy],
                       prevent_cse=not self.scan_layers)
    kwargs = dict(shape=self.shape, dtype=self.dtype, dropout_rate=self.dropout_rate,
                  deterministic=deterministic, attention_impl=self.attention_impl,
                  layer_norm_epsilon=self.layer_norm_epsilon,
                  gelu_approximate=self.gelu_approximate)
    layers = self.shape.num_encoder_layers
    if self.scan_layers:
      scanned = nn.scan(block, variable_axes={'params': 0}, split_rngs={'params': True,
                                                                        'dropout': True},
                        length=layers, metadata_params={nn.PARTITION_NAME: 'layers'})
      x, _ = scanned(**kwargs, name='encoder_layers')(x, None)
    else:
      for i in range(layers):
        x, _ = block(**kwargs, name=f'encoder_layers_{i}')(x)
    return LayerNorm(self.layer_norm_epsilon, self.dtype, name='encoder_norm')(x)


def scan_params(params: dict) -> dict:
  """Per-layer params (`encoder_layers_{i}`) stacked on a leading axis as nn.scan keeps them."""
  out = {k: v for k, v in params.items() if not k.startswith('encoder_layers_')}
  names = sorted((k for k in params if k.startswith('encoder_layers_')),
                 key=lambda k: int(k.rsplit('_', 1)[1]))
  out['encoder_layers'] = jax.tree.map(lambda *xs: jnp.stack(xs), *[params[k] for k in names])
  return out


def unscan_params(params: dict) -> dict:
  """Inverse of `scan_params`: the scanned `encoder_layers` split into `encoder_layers_{i}`."""
  out = {k: v for k, v in params.items() if k != 'encoder_layers'}
  layers = params['encoder_layers']
  depth = jax.tree.leaves(layers)[0].shape[0]
  for i in range(depth):
    out[f'encoder_layers_{i}'] = jax.tree.map(lambda x, i=i: x[i], layers)
  return out
