"""Exact parameter counts against released checkpoints; analytic FLOPs against XLA."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from suite import costs, shapes

# Parameter counts of released checkpoints, as transformers' `model.num_parameters()` reports.
RELEASED_PARAMS = {
    'small': 60_506_624,  # google/t5-efficient-small (= t5-small)
    'base': 222_903_552,  # google/t5-efficient-base (= t5-base)
    'large': 737_668_096,  # t5-large
    'tiny-nl32': 66_986_752,  # google/t5-efficient-tiny-nl32
    't5.1.1-small': 76_961_152,  # google/t5-v1_1-small
    't5.1.1-base': 247_577_856,  # google/t5-v1_1-base
    'B/16': 86_567_656,  # google/vit-base-patch16-224
}


@pytest.mark.parametrize('name', sorted(RELEASED_PARAMS))
def test_params_match_released_checkpoints(name):
  assert costs.params(shapes.parse(name)) == RELEASED_PARAMS[name]


def _hf_t5(shape):
  from transformers import T5Config, T5ForConditionalGeneration
  config = T5Config(vocab_size=shape.vocab_size, d_model=shape.d_model, d_kv=shape.d_kv,
                    d_ff=shape.d_ff, num_layers=shape.num_encoder_layers,
                    num_decoder_layers=shape.num_decoder_layers, num_heads=shape.num_heads,
                    relative_attention_num_buckets=shape.relative_buckets,
                    feed_forward_proj=shape.activation,
                    tie_word_embeddings=shape.tie_embeddings)
  return T5ForConditionalGeneration(config)


# Small shapes covering every knob: depth asymmetry, attention width != d_model, gating, tying.
HF_TEXT_SHAPES = {
    'asymmetric': shapes.Shape(3, 2, 64, 96, 3, 16, vocab_size=101),
    'wide_attention': shapes.Shape(1, 1, 32, 48, 4, 24, vocab_size=77, relative_buckets=8),
    'gated': shapes.Shape(2, 1, 48, 40, 2, 8, vocab_size=64, activation='gated-gelu'),
}
# transformers 5 always ties T5's lm_head to the shared embedding (its T5Config forces
# tie_word_embeddings=True), so untied heads are checked by difference instead.


def test_untied_head_adds_one_vocab_by_d_model_matrix():
  tied = shapes.parse('t5.1.1-base').replace(tie_embeddings=True)
  untied = shapes.parse('t5.1.1-base')
  assert costs.params(untied) - costs.params(tied) == untied.vocab_size * untied.d_model


@pytest.mark.parametrize('key', sorted(HF_TEXT_SHAPES))
def test_text_params_match_hf_tree(key):
  shape = HF_TEXT_SHAPES[key]
  assert costs.params(shape) == _hf_t5(shape).num_parameters()


VISION_SHAPES = {
    'cls': shapes.Shape(2, 0, 48, 80, 3, 16, domain='vision', activation='gelu', image_size=32,
                        patch_size=8, pooling='cls', num_classes=10),
    'gap': shapes.Shape(1, 0, 32, 64, 2, 16, domain='vision', activation='gelu', image_size=16,
                        patch_size=4, pooling='gap', num_classes=7),
}


def test_vision_params_match_hf_tree():
  from transformers import ViTConfig, ViTForImageClassification
  shape = VISION_SHAPES['cls']  # HF's ViT has a class token and attention width = d_model
  config = ViTConfig(hidden_size=shape.d_model, num_hidden_layers=shape.num_encoder_layers,
                     num_attention_heads=shape.num_heads, intermediate_size=shape.d_ff,
                     image_size=shape.image_size, patch_size=shape.patch_size,
                     num_labels=shape.num_classes)
  assert costs.params(shape) == ViTForImageClassification(config).num_parameters()


def test_gap_pooling_has_no_class_token():
  gap = VISION_SHAPES['gap']
  cls = dataclasses.replace(gap, pooling='cls')
  assert costs.params(cls) - costs.params(gap) == 2 * gap.d_model  # class token + its position


@pytest.mark.parametrize('name', shapes.names('text') + shapes.names('vision'))
def test_every_named_shape_has_positive_costs(name):
  shape = shapes.parse(name)
  assert costs.params(shape) > 0
  forward = costs.forward_flops_per_example(shape)
  assert 2 * forward < costs.train_flops_per_example(shape) <= 3 * forward
  assert all(v > 0 for v in costs.flops_breakdown(shape).values())


def test_flops_grow_with_lengths_and_cross_attention_uses_encoder_length():
  small = shapes.parse('small')
  a = costs.flops_breakdown(small, 512, 114)
  b = costs.flops_breakdown(small, 1024, 114)
  assert b['decoder_cross_attention_projections'] > a['decoder_cross_attention_projections']
  assert b['decoder_mlp'] == a['decoder_mlp']
  assert a['output_head'] == 2 * 114 * 512 * 32128
  with pytest.raises(ValueError, match='input_length'):
    costs.forward_flops_per_example(small, 0, 114)


def test_small_nl16_vs_base_training_flops():
  ratio = (costs.train_flops_per_example(shapes.parse('small-nl16'))
           / costs.train_flops_per_example(shapes.parse('base')))
  assert ratio == pytest.approx(0.6212, abs=5e-4)  # the paper reports 63.1%


def test_memory_estimate_components():
  base = shapes.parse('base')
  adam = costs.train_memory(base, 8, 'adamw')
  ada = costs.train_memory(base, 8, 'adafactor')
  n = costs.params(base)
  assert adam.params_bytes == adam.grads_bytes == 4 * n
  assert adam.optimizer_bytes == 8 * n
  assert 0 < ada.optimizer_bytes < n  # factored: rows + columns, far below one copy
  assert ada.total_bytes == sum(ada.as_dict()[k] for k in
                                ('params_bytes', 'grads_bytes', 'optimizer_bytes',
                                 'activations_bytes', 'logits_bytes'))
  double = costs.train_memory(base, 16, 'adafactor')
  # Per example, activations double with the batch; the bfloat16 copies of the weights that
  # the matmuls read (every matrix but the relative-position tables) do not.
  matrices = sum(t.size for t in costs.parameter_tensors(base)
                 if len(t.shape) > 1 and 'relative' not in t.name)
  assert 2 * ada.activations_bytes - double.activations_bytes == 2 * matrices
  assert double.logits_bytes == 2 * ada.logits_bytes == 2 * 8 * 2 * 114 * 32128 * 2
  with pytest.raises(ValueError, match='valid optimizers'):
    costs.train_memory(base, 8, 'lion')


# --- FLOPs against XLA: plain JAX references with the models' matmul structure. ---


def _init(shapes_by_name, seed=0):
  keys = jax.random.split(jax.random.PRNGKey(seed), len(shapes_by_name))
  return {n: 0.02 * jax.random.normal(k, s) for k, (n, s) in zip(keys, shapes_by_name.items(),
                                                                     strict=True)}


def _rms(x, scale):
  return x * jax.lax.rsqrt(jnp.mean(x * x, -1, keepdims=True) + 1e-6) * scale


def _attention(p, prefix, x, memory, bias):
  q = jnp.einsum('btd,dhk->bthk', x, p[prefix + 'q'])
  k = jnp.einsum('bsd,dhk->bshk', memory, p[prefix + 'k'])
  v = jnp.einsum('bsd,dhk->bshk', memory, p[prefix + 'v'])
  scores = jnp.einsum('bthk,bshk->bhts', q, k) + bias
  out = jnp.einsum('bhts,bshk->bthk', jax.nn.softmax(scores, -1), v)
  return jnp.einsum('bthk,hkd->btd', out, p[prefix + 'o'])


def _mlp(p, prefix, x, activation):
  if activation == 'gated-gelu':
    hidden = jax.nn.gelu(x @ p[prefix + 'wi_0']) * (x @ p[prefix + 'wi_1'])
  else:
    hidden = activation(x @ p[prefix + 'wi'])
  return hidden @ p[prefix + 'wo']


def _t5_params(s):
  d, h, k, f = s.d_model, s.num_heads, s.d_kv, s.d_ff
  named = {'emb': (s.vocab_size, d), 'enc_bias': (s.relative_buckets, h),
           'dec_bias': (s.relative_buckets, h), 'enc_norm': (d,), 'dec_norm': (d,)}
  if not s.tie_embeddings:
    named['head'] = (d, s.vocab_size)
  ffn = {'wi_0': (d, f), 'wi_1': (d, f)} if s.is_gated else {'wi': (d, f)}
  ffn['wo'] = (f, d)
  for stack, layers, attns in (('enc', s.num_encoder_layers, ('self',)),
                               ('dec', s.num_decoder_layers, ('self', 'cross'))):
    for i in range(layers):
      for a in attns:
        named.update({f'{stack}{i}{a}q': (d, h, k), f'{stack}{i}{a}k': (d, h, k),
                      f'{stack}{i}{a}v': (d, h, k), f'{stack}{i}{a}o': (h, k, d),
                      f'{stack}{i}{a}norm': (d,)})
      named.update({f'{stack}{i}mlp{n}': v for n, v in ffn.items()})
      named[f'{stack}{i}mlpnorm'] = (d,)
  return named


def _t5_loss(p, s, inputs, targets):
  relu = jax.nn.relu if s.activation == 'relu' else s.activation
  n_in, n_tg = inputs.shape[1], targets.shape[1]

  def bias(table, length_q, length_k, causal):
    rel = jnp.arange(length_k)[None, :] - jnp.arange(length_q)[:, None]
    buckets = jnp.clip(jnp.abs(rel), 0, s.relative_buckets - 1)
    b = jnp.transpose(table[buckets], (2, 0, 1))[None]
    return jnp.where(rel > 0, -1e9, b) if causal else b

  x = p['emb'][inputs]
  enc_bias = bias(p['enc_bias'], n_in, n_in, False)
  for i in range(s.num_encoder_layers):
    y = _rms(x, p[f'enc{i}selfnorm'])
    x = x + _attention(p, f'enc{i}self', y, y, enc_bias)
    x = x + _mlp(p, f'enc{i}mlp', _rms(x, p[f'enc{i}mlpnorm']), relu)
  memory = _rms(x, p['enc_norm'])
  x = p['emb'][targets]
  dec_bias = bias(p['dec_bias'], n_tg, n_tg, True)
  for i in range(s.num_decoder_layers):
    y = _rms(x, p[f'dec{i}selfnorm'])
    x = x + _attention(p, f'dec{i}self', y, y, dec_bias)
    x = x + _attention(p, f'dec{i}cross', _rms(x, p[f'dec{i}crossnorm']), memory, 0.0)
    x = x + _mlp(p, f'dec{i}mlp', _rms(x, p[f'dec{i}mlpnorm']), relu)
  x = _rms(x, p['dec_norm'])
  logits = x @ (p['emb'].T * s.d_model ** -0.5 if s.tie_embeddings else p['head'])
  logp = jax.nn.log_softmax(logits, -1)
  return -jnp.mean(jnp.take_along_axis(logp, targets[..., None], -1))


def _vit_params(s):
  d, h, k, f = s.d_model, s.num_heads, s.d_kv, s.d_ff
  tokens = s.num_patches + (s.pooling == 'cls')
  named = {'patch': (s.patch_size ** 2 * 3, d), 'patch_b': (d,), 'pos': (tokens, d),
           'cls': (d,), 'norm': (d,), 'head': (d, s.num_classes), 'head_b': (s.num_classes,)}
  for i in range(s.num_encoder_layers):
    named.update({f'l{i}q': (d, h, k), f'l{i}k': (d, h, k), f'l{i}v': (d, h, k),
                  f'l{i}o': (h, k, d), f'l{i}wi': (d, f), f'l{i}wo': (f, d),
                  f'l{i}n1': (d,), f'l{i}n2': (d,)})
  return named


def _layer_norm(x, scale):
  mean = jnp.mean(x, -1, keepdims=True)
  return (x - mean) * jax.lax.rsqrt(jnp.var(x, -1, keepdims=True) + 1e-6) * scale


def _vit_loss(p, s, images, labels):
  b, size, p_ = images.shape[0], s.image_size, s.patch_size
  grid = size // p_
  patches = images.reshape(b, grid, p_, grid, p_, 3).transpose(0, 1, 3, 2, 4, 5)
  x = patches.reshape(b, grid * grid, p_ * p_ * 3) @ p['patch'] + p['patch_b']
  if s.pooling == 'cls':
    x = jnp.concatenate([jnp.broadcast_to(p['cls'], (b, 1, s.d_model)), x], 1)
  x = x + p['pos']
  for i in range(s.num_encoder_layers):
    y = _layer_norm(x, p[f'l{i}n1'])
    x = x + _attention(p, f'l{i}', y, y, 0.0)
    x = x + _mlp(p, f'l{i}', _layer_norm(x, p[f'l{i}n2']), jax.nn.gelu)
  x = _layer_norm(x, p['norm'])
  pooled = x[:, 0] if s.pooling == 'cls' else jnp.mean(x, 1)
  logp = jax.nn.log_softmax(pooled @ p['head'] + p['head_b'], -1)
  return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], -1))


def _xla_train_flops(loss, params, *batch):
  # Backend optimisation off: compiles faster; the HLO, hence the FLOP count, is the same.
  compiled = jax.jit(jax.grad(loss)).lower(params, *batch).compile(
      compiler_options={'xla_backend_optimization_level': 0})
  analysis = compiled.cost_analysis()
  analysis = analysis[0] if isinstance(analysis, list) else analysis
  return analysis['flops']


# Text: a tiny-like shape, a deep-narrow one, a wide one (attention width != d_model), a
# gated untied one; 64 input and 16 target tokens.
TEXT_FLOP_SHAPES = {
    'tiny_like': shapes.Shape(2, 1, 256, 1024, 4, 64, vocab_size=4096),
    'deep_narrow': shapes.Shape(4, 4, 128, 512, 2, 64, vocab_size=2048),
    'wide': shapes.Shape(1, 1, 512, 2048, 4, 96, vocab_size=2048),
    'gated_untied': shapes.Shape(1, 1, 256, 640, 4, 64, vocab_size=4096,
                                 activation='gated-gelu', tie_embeddings=False),
}


@pytest.mark.parametrize('key', sorted(TEXT_FLOP_SHAPES))
def test_text_train_flops_match_xla(key):
  s = TEXT_FLOP_SHAPES[key]
  batch, n_in, n_tg = 2, 64, 16
  params = _init(_t5_params(s))
  inputs = jnp.zeros((batch, n_in), jnp.int32)
  targets = jnp.ones((batch, n_tg), jnp.int32)
  xla = _xla_train_flops(lambda p, i, t: _t5_loss(p, s, i, t), params, inputs, targets)
  ours = batch * costs.train_flops_per_example(s, n_in, n_tg)
  assert ours == pytest.approx(xla, rel=0.02)


# Vision: S/16-like at 64 pixels, and a class-token-free (gap) variant.
VISION_FLOP_SHAPES = {
    'S16_like': shapes.Shape(2, 0, 384, 1536, 6, 64, domain='vision', activation='gelu',
                             image_size=64, patch_size=16, pooling='cls', num_classes=100),
    'gap': shapes.Shape(1, 0, 384, 1536, 6, 64, domain='vision', activation='gelu',
                        image_size=64, patch_size=8, pooling='gap', num_classes=10),
}


@pytest.mark.parametrize('key', sorted(VISION_FLOP_SHAPES))
def test_vision_train_flops_match_xla(key):
  s = VISION_FLOP_SHAPES[key]
  batch = 2
  params = _init(_vit_params(s))
  images = jnp.asarray(np.random.default_rng(0).normal(size=(batch, s.image_size,
                                                             s.image_size, 3)), jnp.float32)
  labels = jnp.zeros((batch,), jnp.int32)
  xla = _xla_train_flops(lambda p, x, y: _vit_loss(p, s, x, y), params, images, labels)
  ours = batch * costs.train_flops_per_example(s)
  assert ours == pytest.approx(xla, rel=0.02)
