"""suite.attention: the fused-attention call that cuDNN runs, held to the networks' own attention.

cuDNN needs an NVIDIA GPU, so these tests run the same `jax.nn.dot_product_attention` call with
implementation='xla' (same arguments, any backend): outputs and gradients (queries, keys,
values and T5's relative position bias) must equal the explicit path's, for each way the
networks call it: encoder self-attention (bias, padded keys), decoder self-attention (bias,
causal), cross-attention (padded keys, no bias) and ViT's scaled attention. Then the networks
built with attention_impl='cudnn' (the call switched to 'xla') must train as the explicit ones.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from suite import attention, shapes
from text import network as text_network
from vision import network as vision_network

B, T, S, HEADS, D = 3, 8, 6, 4, 8


def _qkv(t=T, s=S, dtype=jnp.float32, seed=0):
  keys = jax.random.split(jax.random.key(seed), 3)
  q = jax.random.normal(keys[0], (B, t, HEADS, D), dtype)
  k = jax.random.normal(keys[1], (B, s, HEADS, D), dtype)
  v = jax.random.normal(keys[2], (B, s, HEADS, D), dtype)
  return q, k, v


def _relative_bias(length, bidirectional):
  table = jax.random.normal(jax.random.key(7), (HEADS, 32))
  return text_network._relative_bias_fn(length, bidirectional, 32, 128)(table)[None]


def _prefix_mask(lengths, s):
  return jnp.arange(s)[None, :] < jnp.asarray(lengths)[:, None]


def _text_explicit(q, k, v, bias, kv_valid, is_causal):
  module = text_network.Attention(num_heads=HEADS, d_kv=D, dtype=q.dtype)
  mask = None if kv_valid is None else kv_valid[:, None, None, :]
  return module._explicit_attention(q, k, v, bias, mask, is_causal)


def _assert_same_values_and_grads(explicit, fused, args, atol):
  """explicit(*args) == fused(*args), and the gradients of a weighted sum of the outputs."""
  explicit, fused = jax.jit(explicit), jax.jit(fused)
  weights = jax.random.normal(jax.random.key(3), explicit(*args).shape)

  def loss(fn, *a):
    return jnp.sum(fn(*a).astype(jnp.float32) * weights)

  argnums = tuple(range(len(args)))
  np.testing.assert_allclose(fused(*args), explicit(*args), atol=atol, rtol=atol)
  expected = jax.jit(jax.grad(functools.partial(loss, explicit), argnums))(*args)
  got = jax.jit(jax.grad(functools.partial(loss, fused), argnums))(*args)
  for g, e in zip(got, expected, strict=True):
    np.testing.assert_allclose(g, e, atol=atol, rtol=atol)


CASES = {
    # name: (q_len, kv_len, bias (bidirectional?) or None, key lengths or None, causal)
    'encoder_self': (T, T, True, [T, 5, 1], False),
    'decoder_self': (T, T, False, None, True),
    'cross': (T, S, None, [S, 2, 4], False),
}


@pytest.mark.parametrize('case', list(CASES))
def test_fused_call_equals_the_text_networks_attention(case):
  t, s, bidirectional, lengths, causal = CASES[case]
  q, k, v = _qkv(t, s)
  bias = None if bidirectional is None else _relative_bias(t, bidirectional)
  kv_valid = None if lengths is None else _prefix_mask(lengths, s)

  def explicit(q, k, v, *b):
    return _text_explicit(q, k, v, b[0] if b else None, kv_valid, causal)

  def fused(q, k, v, *b):
    return attention.fused_attention(q, k, v, scale=1.0, bias=b[0] if b else None,
                                     kv_valid=kv_valid, is_causal=causal, implementation='xla')

  args = (q, k, v) if bias is None else (q, k, v, bias)
  _assert_same_values_and_grads(explicit, fused, args, atol=2e-5)


def test_fused_call_equals_the_vision_networks_attention():
  q, k, v = _qkv(T, T)
  scale = D ** -0.5
  module = vision_network.Attention(num_heads=HEADS, d_kv=D)

  def explicit(q, k, v):
    return module._explicit_attention(q * scale, k, v)

  def fused(q, k, v):
    return attention.fused_attention(q, k, v, scale=scale, implementation='xla')

  _assert_same_values_and_grads(explicit, fused, (q, k, v), atol=2e-5)


def test_a_row_without_valid_keys_attends_to_its_first_key():
  """A padding row (no valid key) gets a defined, finite output, whatever the kernel does with
  an empty softmax: it attends to its first key alone."""
  q, k, v = _qkv()
  kv_valid = _prefix_mask([S, 0, 3], S)
  out = attention.fused_attention(q, k, v, scale=1.0, kv_valid=kv_valid, implementation='xla')
  np.testing.assert_allclose(out[1], jnp.broadcast_to(v[1, :1], out[1].shape), atol=1e-6)
  assert np.all(np.isfinite(out))


def test_a_bias_broadcast_over_the_batch_is_required():
  q, k, v = _qkv(T, T)
  bias = jnp.zeros((B, HEADS, T, T))
  with pytest.raises(ValueError, match=r'expected \[1, heads, q_len, kv_len\]'):
    attention.fused_attention(q, k, v, scale=1.0, bias=bias, implementation='xla')


@pytest.fixture
def fused_on_xla(monkeypatch):
  """attention_impl='cudnn' networks, with the fused call run by XLA (this machine has no GPU)."""
  calls = []

  def on_xla(*args, **kwargs):
    calls.append(kwargs.get('bias') is not None)
    return attention.fused_attention(*args, **kwargs, implementation='xla')

  monkeypatch.setattr(text_network, 'fused_attention', on_xla)
  monkeypatch.setattr(vision_network, 'fused_attention', on_xla)
  return calls


def _loss_and_grads(net, params, *inputs):
  def loss(p):
    return jnp.mean(jnp.square(net.apply({'params': p}, *inputs).astype(jnp.float32)))
  return jax.jit(jax.value_and_grad(loss))(params)


def _relative_error(got, want) -> float:
  """|got - want| / |want| over all leaves together (bfloat16 compute on both sides: the
  networks' wiring mistakes, e.g. a bias or the causal mask left out, give 0.1 to 2)."""
  flat = [np.concatenate([np.ravel(np.asarray(x, np.float32)) for x in jax.tree.leaves(t)])
          for t in (got, want)]
  return float(np.linalg.norm(flat[0] - flat[1]) / np.linalg.norm(flat[1]))


def test_text_network_with_fused_attention_trains_as_the_explicit_one(fused_on_xla):
  shape = shapes.Shape(num_encoder_layers=1, num_decoder_layers=1, d_model=32, d_ff=64,
                       num_heads=HEADS, d_kv=D, vocab_size=101)
  rng = np.random.default_rng(0)
  enc = rng.integers(1, 101, (B, 12))
  enc[1, 7:] = 0  # right padding, as seqio pads
  enc = jnp.asarray(enc, jnp.int32)
  dec = jnp.asarray(rng.integers(1, 101, (B, 6)), jnp.int32)
  explicit = text_network.T5Network(shape, dtype=jnp.bfloat16, attention_impl='xla',
                                    dropout_rate=0.0)
  fused = explicit.clone(attention_impl='cudnn')
  params = jax.jit(explicit.init)(jax.random.key(0), enc, dec)['params']
  want = _loss_and_grads(explicit, params, enc, dec)
  got = _loss_and_grads(fused, params, enc, dec)
  # traced once: encoder self-attention (bias), decoder self-attention (bias), cross (none)
  assert sorted(fused_on_xla) == [False, True, True]
  assert float(got[0]) == pytest.approx(float(want[0]), rel=1e-2)
  assert _relative_error(got[1], want[1]) < 0.05


def test_vision_network_with_fused_attention_trains_as_the_explicit_one(fused_on_xla):
  shape = shapes.parse('Ti/8-nl1', 'vision').replace(
      d_model=32, d_ff=64, num_heads=HEADS, d_kv=D, image_size=16, num_classes=5)
  images = jax.random.normal(jax.random.key(1), (B, 16, 16, 3))
  explicit = vision_network.ViTNetwork(shape, dtype=jnp.bfloat16, attention_impl='xla')
  fused = explicit.clone(attention_impl='cudnn')
  params = jax.jit(explicit.init)(jax.random.key(0), images)['params']
  # the head starts at zero (zero logits): a random one lets the loss see the attention
  params = dict(params, head={'kernel': jax.random.normal(jax.random.key(2), (32, 5)),
                              'bias': jnp.zeros((5,))})
  want = _loss_and_grads(explicit, params, images)
  got = _loss_and_grads(fused, params, images)
  assert fused_on_xla == [False]
  assert float(got[0]) == pytest.approx(float(want[0]), rel=2e-2)
  assert _relative_error(got[1], want[1]) < 0.05
