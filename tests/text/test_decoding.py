"""The T5 model wrapper: loss against a numpy reference, metric sums, overfitting, decoding."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from suite import shapes
from text import model as model_lib
from text import t5

SHAPE = shapes.Shape(num_encoder_layers=2, num_decoder_layers=2, d_model=32, d_ff=64,
                     num_heads=2, d_kv=16, vocab_size=64, activation='gated-gelu',
                     tie_embeddings=False)


def _batch(seed=0, batch=4, input_length=12, target_length=8, vocab=64):
  rng = np.random.default_rng(seed)
  targets = rng.integers(2, vocab, (batch, target_length)).astype(np.int32)
  targets[0, 5:] = 0  # padding, weight 0
  return {
      'encoder_input_tokens': rng.integers(1, vocab, (batch, input_length)).astype(np.int32),
      'decoder_input_tokens': np.concatenate([np.zeros((batch, 1), np.int32), targets[:, :-1]],
                                             axis=1),
      'decoder_target_tokens': targets,
      'decoder_loss_weights': (targets > 0).astype(np.float32),
  }


def _log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


@pytest.mark.parametrize('z_loss,label_smoothing', [(0.0, 0.0), (1e-4, 0.0), (1e-2, 0.1)])
def test_cross_entropy_matches_numpy(z_loss, label_smoothing):
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 5, 11)).astype(np.float32) * 3
  targets = rng.integers(0, 11, (3, 5))
  loss, z, nll, correct = model_lib.cross_entropy_with_logits(
      jnp.asarray(logits), jnp.asarray(targets), z_loss, label_smoothing)
  logp = _log_softmax(logits.astype(np.float64))
  soft = np.full(logits.shape, label_smoothing / 10)
  np.put_along_axis(soft, targets[..., None], 1 - label_smoothing, axis=-1)
  entropy = -(soft * np.log(np.where(soft > 0, soft, 1))).sum(-1)
  lse = np.log(np.exp(logits.astype(np.float64)).sum(-1))
  expected = -(soft * logp).sum(-1) - entropy + z_loss * lse ** 2
  np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(z, z_loss * lse ** 2, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(nll, -np.take_along_axis(logp, targets[..., None], -1)[..., 0],
                             rtol=1e-5)
  np.testing.assert_array_equal(correct, logits.argmax(-1) == targets)


def test_cross_entropy_gradient_is_softmax_minus_one_hot():
  rng = np.random.default_rng(1)
  logits = jnp.asarray(rng.normal(size=(2, 3, 7)).astype(np.float32) * 4)
  targets = jnp.asarray(rng.integers(0, 7, (2, 3)))
  grad = jax.grad(lambda x: model_lib.cross_entropy_with_logits(x, targets)[0].sum())(logits)
  expected = jax.nn.softmax(logits) - jax.nn.one_hot(targets, 7)
  np.testing.assert_allclose(grad, expected, atol=1e-6)


@pytest.mark.parametrize('z_loss,label_smoothing', [(0.0, 0.0), (1e-4, 0.0), (1e-2, 0.1)])
@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_cross_entropy_gradient_of_every_output(z_loss, label_smoothing, dtype):
  """The custom backward equals autodiff of a plain log-softmax formula for all outputs."""
  rng = np.random.default_rng(2)
  vocab = 13
  logits = jnp.asarray(rng.normal(size=(2, 5, vocab)) * 3, dtype)
  targets = jnp.asarray(rng.integers(0, vocab, (2, 5)))
  cotangents = [jnp.asarray(rng.normal(size=(2, 5)), jnp.float32) for _ in range(3)]

  def plain(x):
    x = x.astype(jnp.float32)
    lse = jax.nn.logsumexp(x, axis=-1)
    logp = x - lse[..., None]
    soft = jax.nn.one_hot(targets, vocab) * (1 - label_smoothing) + (
        1 - jax.nn.one_hot(targets, vocab)) * label_smoothing / (vocab - 1)
    z = z_loss * lse ** 2
    nll = -jnp.take_along_axis(logp, targets[..., None], -1)[..., 0]
    return -(soft * logp).sum(-1) + z, z, nll

  def weighted(fn):
    return lambda x: sum(jnp.sum(o * c) for o, c in zip(fn(x), cotangents, strict=True))

  ours = jax.grad(weighted(lambda x: model_lib.cross_entropy_with_logits(
      x, targets, z_loss, label_smoothing)[:3]))(logits)
  expected = jax.grad(weighted(plain))(logits)
  assert ours.dtype == dtype
  tolerance = 1e-5 if dtype == jnp.float32 else 2e-2
  np.testing.assert_allclose(np.asarray(ours, np.float32), np.asarray(expected, np.float32),
                             rtol=tolerance, atol=tolerance)


def test_cross_entropy_options_must_be_static_and_in_range():
  logits, targets = jnp.zeros((1, 2, 5)), jnp.zeros((1, 2), jnp.int32)
  with pytest.raises(ValueError, match=r'label_smoothing=1.0: must be in \[0, 1\)'):
    model_lib.cross_entropy_with_logits(logits, targets, 0.0, 1.0)
  with pytest.raises(TypeError, match='must be Python numbers'):
    jax.jit(lambda z: model_lib.cross_entropy_with_logits(logits, targets, z)[0])(1e-4)


def test_accuracy_is_argmax_with_ties_to_the_first_id():
  logits = jnp.asarray([[[1.0, 3.0, 3.0, 0.0], [2.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0],
                         [0.0, 0.0, 0.0, 0.0]]])
  targets = jnp.asarray([[1, 2, 0, 3]])
  correct = model_lib.cross_entropy_with_logits(logits, targets)[3]
  np.testing.assert_array_equal(correct, [[1.0, 0.0, 1.0, 0.0]])
  np.testing.assert_array_equal(correct, jnp.argmax(logits, -1) == targets)


@pytest.fixture(scope='module')
def model_and_params():
  model = t5.build(SHAPE, dropout_rate=0.0)
  return model, jax.jit(model.init)(jax.random.key(0))


def test_loss_is_weighted_mean_and_eval_sums_aggregate(model_and_params):
  model, params = model_and_params
  batch = _batch()
  loss, metrics = jax.jit(model.loss)(params, batch, None)
  logits = np.asarray(jax.jit(model.apply)({'params': params}, batch['encoder_input_tokens'],
                                  batch['decoder_input_tokens']), np.float64)
  logp = _log_softmax(logits)
  nll = -np.take_along_axis(logp, batch['decoder_target_tokens'][..., None], -1)[..., 0]
  weights = batch['decoder_loss_weights']
  lse = np.log(np.exp(logits).sum(-1))
  np.testing.assert_allclose(metrics['cross_entropy'], (nll * weights).sum() / weights.sum(),
                             rtol=1e-5)
  np.testing.assert_allclose(loss, ((nll + 1e-4 * lse ** 2) * weights).sum() / weights.sum(),
                             rtol=1e-5)
  assert metrics['num_tokens'] == weights.sum() == 29
  full = jax.jit(model.eval_metrics)(params, batch)
  halves = [jax.jit(model.eval_metrics)(params, {k: v[i:i + 2] for k, v in batch.items()})
            for i in (0, 2)]
  for key in full:
    np.testing.assert_allclose(full[key], halves[0][key] + halves[1][key], rtol=1e-5)
  summary = model_lib.finalize_metrics(full)
  np.testing.assert_allclose(summary['neg_log_perplexity'], -metrics['cross_entropy'], rtol=1e-5)
  np.testing.assert_allclose(summary['accuracy'], metrics['accuracy'], rtol=1e-6)


def test_gradient_accumulation_with_uneven_padding_equals_one_batch():
  """Microbatches holding different numbers of real target tokens (one holding none) give the
  one-batch step: loss, metrics and SGD-updated params; num_tokens is the whole batch's."""
  from suite import partition
  from suite.trainer import Trainer
  batch = _batch(seed=3, batch=4, target_length=8)
  targets = batch['decoder_target_tokens']
  targets[0, :] = 0  # microbatching is strided: with 4 microbatches, row i is microbatch i
  targets[1, 2:] = 0
  batch['decoder_loss_weights'] = (targets > 0).astype(np.float32)
  model = t5.build(SHAPE, dropout_rate=0.0, z_loss=1e-3, label_smoothing=0.1)
  runs = {}
  for m in (1, 2, 4):
    trainer = Trainer(model, optax.sgd(1.0), microbatches=m)
    state, metrics = trainer.train_step(trainer.init(seed=0), batch)
    runs[m] = (partition.to_host(metrics), jax.tree_util.tree_leaves(jax.device_get(state.params)))
  metrics_1, params_1 = runs[1]
  assert metrics_1['num_tokens'] == 2 + 8 + 8
  for m in (2, 4):
    metrics_m, params_m = runs[m]
    assert set(metrics_m) == set(metrics_1)
    for name in metrics_1:
      np.testing.assert_allclose(metrics_m[name], metrics_1[name], rtol=2e-5, err_msg=name)
    for a, b in zip(params_m, params_1, strict=True):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_missing_batch_key_is_named(model_and_params):
  model, params = model_and_params
  batch = _batch()
  del batch['decoder_target_tokens']
  with pytest.raises(KeyError, match='decoder_target_tokens'):
    model.loss(params, batch, None)


def test_tiny_model_overfits_a_batch():
  model = t5.build(SHAPE, dropout_rate=0.0)
  params = jax.jit(model.init)(jax.random.key(1))
  optimizer = optax.adam(1e-2)
  batch = _batch(seed=3)

  @jax.jit
  def step(params, opt_state, rng):
    (loss, _), grads = jax.value_and_grad(model.loss, has_aux=True)(params, batch, rng)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  opt_state = optimizer.init(params)
  losses = []
  for i in range(40):
    params, opt_state, loss = step(params, opt_state, jax.random.key(i))
    losses.append(float(loss))
  assert losses[-1] < losses[0] / 10, losses
  metrics = model_lib.finalize_metrics(jax.jit(model.eval_metrics)(params, batch))
  assert metrics['accuracy'] == 1.0


def _uncached_greedy(model, params, encoder, steps, eos_id):
  apply = jax.jit(model.apply)
  decoder = np.zeros((encoder.shape[0], steps + 1), np.int32)
  for i in range(steps):
    logits = apply({'params': params}, encoder, jnp.asarray(decoder[:, :i + 1]))
    decoder[:, i + 1] = np.asarray(logits[:, -1]).argmax(-1)
  tokens = decoder[:, 1:]
  for row in tokens:  # everything after the first EOS is padding
    hits = np.flatnonzero(row == eos_id)
    if hits.size:
      row[hits[0] + 1:] = 0
  return tokens


@pytest.mark.parametrize('scan_layers', [False, True])
def test_cached_greedy_decoding_equals_uncached(model_and_params, scan_layers):
  model, params = model_and_params
  if scan_layers:
    from text.network import scan_params
    model = t5.build(SHAPE, dropout_rate=0.0, scan_layers=True)
    params = scan_params(nn.unbox(params))
  encoder = jnp.asarray(np.random.default_rng(5).integers(1, 64, (3, 10)), jnp.int32)
  expected = _uncached_greedy(model, params, encoder, 8, eos_id=1)
  np.testing.assert_array_equal(model.decode(params, encoder, 8), expected)


def test_decoding_stops_at_eos(model_and_params):
  model, params = model_and_params
  encoder = jnp.asarray(np.random.default_rng(6).integers(1, 64, (3, 10)), jnp.int32)
  free = np.asarray(model.decode(params, encoder, 8))
  eos = int(free[0, 2])  # a token the first example emits at step 3: call it EOS
  stopping = model_lib.T5Model(model.network, eos_id=eos)
  tokens = np.asarray(stopping.decode(params, encoder, 8))
  np.testing.assert_array_equal(tokens, _uncached_greedy(model, params, encoder, 8, eos))
  first = np.flatnonzero(free[0] == eos)[0]
  assert tokens[0, first] == eos and not tokens[0, first + 1:].any()
