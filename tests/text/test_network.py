"""The T5 network: parameter tree vs. exact costs, bucket math, logical axes, options."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from suite import costs, shapes
from text import network as network_lib
from text import t5

KNOB_VARIANTS = ('small-nl16', 'base-el4-dl16', 'large-dm512', 'xxl-nl4', 'mini-kv32-nh16',
                 'tiny-ff6000', 't5.1.1-base-dm512', 't5.1.1-small-el2-dl12')
TINY = shapes.Shape(num_encoder_layers=2, num_decoder_layers=3, d_model=32, d_ff=48,
                    num_heads=3, d_kv=12, vocab_size=97)
TINY_GATED = TINY.replace(activation='gated-gelu', tie_embeddings=False)


def _abstract_params(net):
  tokens = jnp.ones((1, 1), jnp.int32)
  return jax.eval_shape(lambda: net.init(jax.random.key(0), tokens, tokens))['params']


def _count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nn.unbox(tree)))


def _tokens(seed, batch, length, vocab, low=1):
  return jnp.asarray(np.random.default_rng(seed).integers(low, vocab, (batch, length)), jnp.int32)


@pytest.mark.parametrize('name', shapes.names('text') + list(KNOB_VARIANTS))
def test_param_count_equals_costs(name):
  # Scanned layers trace one layer per stack: the same tree, stacked, and much faster to build.
  shape = shapes.parse(name)
  net = network_lib.T5Network(shape, scan_layers=True)
  assert _count(_abstract_params(net)) == costs.params(shape)


@pytest.mark.parametrize('name', ['small', 't5.1.1-small'])
def test_unscanned_param_count_equals_released_checkpoints(name):
  # google-t5/t5-small and google/t5-v1_1-small as transformers counts them.
  expected = {'small': 60_506_624, 't5.1.1-small': 76_961_152}[name]
  assert _count(_abstract_params(network_lib.T5Network(shapes.parse(name)))) == expected


@pytest.mark.parametrize('name', ['small-el2-dl8', 't5.1.1-small-el8-dl2-kv32'])
def test_unscanned_param_count_equals_costs(name):
  shape = shapes.parse(name)
  assert _count(_abstract_params(network_lib.T5Network(shape))) == costs.params(shape)


def test_scanned_layers_carry_a_layer_axis():
  tree = _abstract_params(network_lib.T5Network(shapes.parse('base'), scan_layers=True))
  query = tree['encoder']['layers']['attention']['query']
  assert query.names == ('layers', 'embed', 'heads', 'kv')
  assert query.value.shape == (12, 768, 12, 64)


def test_every_param_has_logical_axes():
  tree = _abstract_params(network_lib.T5Network(TINY_GATED))
  leaves = jax.tree.leaves(tree, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
  assert leaves and all(isinstance(x, nn.LogicallyPartitioned) for x in leaves)
  for leaf in leaves:
    assert len(leaf.names) == leaf.value.ndim
  assert tree['token_embedder'].names == ('vocab', 'embed')
  assert tree['logits_dense'].names == ('embed', 'vocab')
  assert tree['decoder']['rel_embedding'].names == ('heads', 'relpos_buckets')
  assert tree['decoder']['layers_0']['mlp']['wi_0'].names == ('embed', 'mlp')


@pytest.mark.parametrize('bidirectional', [True, False])
@pytest.mark.parametrize('num_buckets,max_distance', [(32, 128), (16, 64), (64, 256), (8, 20)])
def test_relative_position_buckets_match_transformers(bidirectional, num_buckets, max_distance):
  torch = pytest.importorskip('torch')
  from transformers.models.t5.modeling_t5 import T5Attention
  ours = network_lib.relative_position_buckets(300, 700, bidirectional, num_buckets,
                                               max_distance)
  relative = torch.arange(700)[None, :] - torch.arange(300)[:, None]
  ref = T5Attention._relative_position_bucket(relative, bidirectional=bidirectional,
                                              num_buckets=num_buckets,
                                              max_distance=max_distance).numpy()
  np.testing.assert_array_equal(ours, ref)
  assert ours.min() == 0 and ours.max() == num_buckets - 1


def _one_hot_bias(table, length, bidirectional):
  buckets = network_lib.relative_position_buckets(length, length, bidirectional, 32, 128)
  return jnp.einsum('hb,qkb->hqk', table, jax.nn.one_hot(buckets, 32),
                    precision=jax.lax.Precision.HIGHEST)


@pytest.mark.parametrize('bidirectional', [True, False])
@pytest.mark.parametrize('length', [1, 5, 40, 300])
def test_relative_bias_and_its_gradient_match_the_one_hot_product(bidirectional, length):
  table = jax.random.normal(jax.random.key(0), (3, 32))
  cotangent = jax.random.normal(jax.random.key(1), (3, length, length))
  ours = network_lib._relative_bias_fn(length, bidirectional, 32, 128)
  value, pullback = jax.vjp(ours, table)
  expected_value, expected_pullback = jax.vjp(
      lambda t: _one_hot_bias(t, length, bidirectional), table)
  np.testing.assert_array_equal(value, expected_value)
  np.testing.assert_allclose(pullback(cotangent)[0], expected_pullback(cotangent)[0],
                             rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize('batch', [1, 5, 16])
def test_broadcast_bias_gradient_sums_the_batch(batch):
  x = jax.random.normal(jax.random.key(0), (batch, 2, 3, 4))
  bias = jax.random.normal(jax.random.key(1), (1, 2, 3, 4))
  cotangent = jax.random.normal(jax.random.key(2), x.shape)
  ours = jax.vjp(network_lib._add_broadcast, x, bias)[1](cotangent)
  plain = jax.vjp(lambda a, b: a + b, x, bias)[1](cotangent)
  for got, expected in zip(ours, plain, strict=True):
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
  with pytest.raises(ValueError, match='leading dim 1'):
    jax.vjp(network_lib._add_broadcast, x, jnp.zeros((2, 2, 3, 4)))
  with pytest.raises(ValueError, match='leading dim 1'):
    network_lib._add_broadcast(x, jnp.zeros((2, 2, 3, 4)))


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_tied_logits_value_and_gradient_match_the_einsum(dtype):
  x = jax.random.normal(jax.random.key(0), (3, 5, 8), dtype)
  table = jax.random.normal(jax.random.key(1), (37, 8), dtype)
  cotangent = jax.random.normal(jax.random.key(2), (3, 5, 37), dtype)
  value, pullback = jax.vjp(network_lib._tied_logits, x, table)
  expected_value, expected_pullback = jax.vjp(
      lambda a, b: jnp.einsum('btd,vd->btv', a, b), x, table)
  np.testing.assert_array_equal(value, expected_value)
  tolerance = 1e-5 if dtype == jnp.float32 else 5e-2
  for got, expected in zip(pullback(cotangent), expected_pullback(cotangent), strict=True):
    assert got.shape == expected.shape and got.dtype == expected.dtype
    np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(expected, np.float32),
                               rtol=tolerance, atol=tolerance)


@pytest.fixture(scope='module')
def tiny_params():
  return t5.build(TINY_GATED).init(jax.random.key(0))


def test_scan_and_remat_give_the_same_logits(tiny_params):
  enc, dec = _tokens(0, 2, 9, 97), _tokens(1, 2, 7, 97, low=0)
  plain = network_lib.T5Network(TINY_GATED)
  params = nn.unbox(tiny_params)
  ref = jax.jit(plain.apply)({'params': params}, enc, dec)
  scanned = network_lib.T5Network(TINY_GATED, scan_layers=True, remat_policy='full')
  out = jax.jit(scanned.apply)({'params': network_lib.scan_params(params)}, enc, dec)
  np.testing.assert_allclose(out, ref, atol=1e-5)
  roundtrip = network_lib.unscan_params(network_lib.scan_params(params))
  assert jax.tree.all(jax.tree.map(np.array_equal, roundtrip, params))


def test_scan_and_remat_give_the_same_gradients(tiny_params):
  enc, dec = _tokens(0, 2, 9, 97), _tokens(1, 2, 7, 97, low=0)
  params = nn.unbox(tiny_params)

  def grads(network, tree):
    def loss(p):
      logits = network.apply({'params': p}, enc, dec)
      return jnp.sum(jax.nn.log_softmax(logits)[..., 3])
    return jax.jit(jax.grad(loss))(tree)

  ref = grads(network_lib.T5Network(TINY_GATED), params)
  for remat in ('none', 'full'):
    scanned = network_lib.T5Network(TINY_GATED, scan_layers=True, remat_policy=remat)
    out = network_lib.unscan_params(grads(scanned, network_lib.scan_params(params)))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), out, ref)


def test_bfloat16_compute_keeps_float32_params(tiny_params):
  # The network's contract: parameters are float32 whatever `dtype` is; only compute (and the
  # logits) run in `dtype`.
  enc, dec = _tokens(0, 2, 9, 97), _tokens(1, 2, 7, 97, low=0)
  model = t5.build(TINY_GATED, dtype=jnp.bfloat16)
  abstract = nn.unbox(jax.eval_shape(model.init, jax.random.key(0)))  # nothing allocated
  leaves = jax.tree_util.tree_leaves_with_path(abstract)
  assert len(leaves) == len(jax.tree.leaves(tiny_params))
  wrong = [(jax.tree_util.keystr(k), x.dtype) for k, x in leaves if x.dtype != jnp.float32]
  assert not wrong, f'bfloat16 network made non-float32 params: {wrong}'
  assert jax.eval_shape(model.apply, {'params': abstract}, enc, dec).dtype == jnp.bfloat16
  # Same init as the float32 network, and bfloat16 logits close to the float32 ones.
  params = nn.unbox(model.init(jax.random.key(0)))
  assert jax.tree.all(jax.tree.map(np.array_equal, params, nn.unbox(tiny_params)))
  out = jax.jit(model.apply)({'params': params}, enc, dec)
  ref = jax.jit(network_lib.T5Network(TINY_GATED).apply)({'params': params}, enc, dec)
  assert out.dtype == jnp.bfloat16 and ref.dtype == jnp.float32
  assert np.abs(np.asarray(out, np.float32) - np.asarray(ref)).max() < 0.1 * np.abs(ref).max()


def test_dropout_only_when_enabled(tiny_params):
  enc, dec = _tokens(0, 2, 9, 97), _tokens(1, 2, 7, 97, low=0)
  net = network_lib.T5Network(TINY_GATED, dropout_rate=0.3)
  params = {'params': nn.unbox(tiny_params)}
  apply = jax.jit(net.apply, static_argnames='enable_dropout')
  ref = apply(params, enc, dec)
  a = apply(params, enc, dec, enable_dropout=True, rngs={'dropout': jax.random.key(3)})
  b = apply(params, enc, dec, enable_dropout=True, rngs={'dropout': jax.random.key(3)})
  c = apply(params, enc, dec, enable_dropout=True, rngs={'dropout': jax.random.key(4)})
  np.testing.assert_array_equal(a, b)
  assert np.abs(np.asarray(a) - np.asarray(ref)).max() > 1e-3
  assert np.abs(np.asarray(a) - np.asarray(c)).max() > 1e-3


def test_padded_encoder_positions_do_not_change_logits(tiny_params):
  net = network_lib.T5Network(TINY_GATED)
  params = {'params': nn.unbox(tiny_params)}
  enc, dec = _tokens(0, 1, 6, 97), _tokens(1, 1, 5, 97, low=0)
  padded = jnp.concatenate([enc, jnp.zeros((1, 4), jnp.int32)], axis=1)
  apply = jax.jit(net.apply)
  np.testing.assert_allclose(apply(params, padded, dec), apply(params, enc, dec), atol=1e-5)


def test_bfloat16_gradient_has_no_float32_matmuls_over_activations():
  """In a bfloat16 step every product of activations runs in bfloat16: float32 products are
  only the small ones (the bias's batch sum with a vector of ones, the bucket one-hot)."""
  model = t5.build(TINY, dtype=jnp.bfloat16, attention_impl='xla', dropout_rate=0.0)
  params = nn.unbox(jax.eval_shape(model.init, jax.random.key(0)))
  batch = {'encoder_input_tokens': _tokens(0, 2, 9, 97),
           'decoder_input_tokens': _tokens(1, 2, 7, 97),
           'decoder_target_tokens': _tokens(2, 2, 7, 97)}
  text = jax.jit(jax.grad(lambda p: model.loss(p, batch)[0])).lower(params).as_text()
  dots = re.findall(r'stablehlo\.dot_general[^\n]*?: \(tensor<([^>]*)>, tensor<([^>]*)>\)', text)
  assert dots
  float32 = [(a, b) for a, b in dots if a.endswith('f32') or b.endswith('f32')]
  assert all(min(a.count('x'), b.count('x')) <= 2 for a, b in float32), float32
  assert sum(a.endswith('bf16') and b.endswith('bf16') for a, b in dots) > len(float32)


def test_bad_options_raise():
  tokens = jnp.ones((1, 1), jnp.int32)
  with pytest.raises(ValueError, match='attention_impl'):
    network_lib.T5Network(TINY, attention_impl='flash').init(jax.random.key(0), tokens, tokens)
  with pytest.raises(ValueError, match="'cudnn' computes in bfloat16 or float16, not float32"):
    network_lib.T5Network(TINY, attention_impl='cudnn').init(jax.random.key(0), tokens, tokens)
  with pytest.raises(ValueError, match='remat_policy'):
    network_lib.T5Network(TINY, remat_policy='some').init(jax.random.key(0), tokens, tokens)
  with pytest.raises(shapes.ShapeError, match='text shape'):
    network_lib.T5Network(shapes.parse('S/16')).init(jax.random.key(0), tokens, tokens)
