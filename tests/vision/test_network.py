"""The ViT network and model wrapper: parameter counts equal suite.costs for every registered
vision shape, scan equals unrolled, bfloat16 compute keeps float32 params, logical axis names,
features, image checks, the loss and eval sums; the LayerNorm's written-out gradient equals
autodiff's."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from suite import costs, shapes
from vision import model as vision_model
from vision import network as network_module
from vision import vit
from vision.network import ViTNetwork, layer_norm, scan_params, unscan_params

# Attention width 3 x 12 = 36 != d_model 32; 40-pixel images in 8-pixel patches; 7 classes.
SMALL = shapes.Shape(2, 0, 32, 48, 3, 12, domain='vision', activation='gelu', image_size=40,
                     patch_size=8, pooling='cls', num_classes=7)
VARIANTS = {f'{pooling}-{posemb}': SMALL.replace(pooling=pooling, posemb=posemb)
            for pooling in shapes.POOLINGS for posemb in shapes.POSEMBS}
AXES = {'embed', 'mlp', 'heads', 'kv', 'classes', 'length', 'layers', None}


def _count(network, shape):
  size = shape.image_size
  tree = jax.eval_shape(network.init, jax.random.key(0),
                        jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32))
  return sum(leaf.size for leaf in jax.tree.leaves(nn.unbox(tree)))


@pytest.mark.parametrize('name', shapes.names('vision'))
def test_named_shapes_params_equal_costs(name):
  shape = shapes.parse(name)
  assert _count(ViTNetwork(shape, scan_layers=True), shape) == costs.params(shape)


@pytest.mark.parametrize('key', sorted(VARIANTS))
def test_variant_params_equal_costs(key):
  shape = VARIANTS[key]
  for scan in (False, True):
    assert _count(ViTNetwork(shape, scan_layers=scan), shape) == costs.params(shape)
  big = shapes.parse('B/16').replace(pooling=shape.pooling, posemb=shape.posemb)
  assert _count(ViTNetwork(big, scan_layers=True), big) == costs.params(big)


def _images(shape, n=3, seed=0):
  size = shape.image_size
  return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)).astype(np.float32)


def _random_params(network, seed=0):
  """Random values (not init's zeros for head, class token and biases) in the network's tree."""
  size = network.shape.image_size
  tree = nn.unbox(jax.eval_shape(network.init, jax.random.key(0),
                                 jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)))
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: rng.normal(0, 0.3, x.shape).astype(np.float32), tree)['params']


@pytest.mark.parametrize('key', ['cls-learn', 'map-sincos2d', 'gap-learn'])
def test_scan_equals_unrolled_and_features_feed_the_head(key):
  shape = VARIANTS[key]
  unrolled = ViTNetwork(shape)
  params = _random_params(unrolled)
  images = _images(shape)
  logits, features = jax.jit(lambda p, x: (unrolled.apply({'params': p}, x),
                                           unrolled.apply({'params': p}, x,
                                                          return_features=True)))(params, images)
  assert logits.shape == (3, shape.num_classes) and features.shape == (3, shape.d_model)
  head = params['head']
  np.testing.assert_allclose(logits, features @ head['kernel'] + head['bias'], atol=1e-5)
  scanned = ViTNetwork(shape, scan_layers=True, remat_policy='full')
  stacked = scan_params(params)
  assert stacked['encoder_layers']['mlp']['wi_kernel'].shape == (2, 32, 48)
  scan_logits = jax.jit(scanned.apply)({'params': stacked}, images)
  np.testing.assert_allclose(scan_logits, logits, atol=1e-5)
  assert jax.tree.all(jax.tree.map(np.array_equal, unscan_params(stacked), params))


def test_bfloat16_compute_keeps_float32_params_and_axis_names():
  model = vit.build(VARIANTS['map-learn'], jnp.bfloat16, scan_layers=True)
  boxed = jax.eval_shape(model.init, jax.random.key(0))
  leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
  assert leaves and all(isinstance(leaf, nn.LogicallyPartitioned) for leaf in leaves)
  for leaf in leaves:
    assert leaf.value.dtype == jnp.float32
    assert len(leaf.names) == leaf.value.ndim and set(leaf.names) <= AXES, leaf.names
  kernel = boxed['encoder_layers']['attention']['query_kernel']
  assert kernel.names == ('layers', 'embed', 'heads', 'kv')
  params = _random_params(model.network)
  images = _images(model.shape)
  logits = jax.jit(model.apply)({'params': params}, images)
  assert logits.dtype == jnp.bfloat16
  f32 = ViTNetwork(model.shape, scan_layers=True)
  reference = jax.jit(f32.apply)({'params': params}, images)
  scale = float(jnp.abs(reference).max())
  assert float(jnp.abs(logits.astype(jnp.float32) - reference).max()) < 0.05 * scale


def test_bad_images_name_the_expected_shape():
  network = ViTNetwork(SMALL)
  params = {'params': _random_params(network)}
  expected = r'expected \[batch, 40, 40, 3\] \(NHWC\)'
  cases = {
      'rank': (np.zeros((40, 40, 3), np.float32), expected + '.*add a batch axis'),
      'size': (np.zeros((2, 32, 32, 3), np.float32),
               r'images of shape \(2, 32, 32, 3\): ' + expected),
      'channels': (np.zeros((2, 40, 40, 1), np.float32), expected),
      'nchw': (np.zeros((2, 3, 40, 40), np.float32), 'looks like NCHW'),
      'dtype': (np.zeros((2, 40, 40, 3), np.uint8), 'images of dtype uint8: expected floats'),
  }
  for images, message in cases.values():
    with pytest.raises(ValueError, match=message):
      jax.eval_shape(network.apply, params, images)


def test_option_and_shape_errors():
  images = jax.ShapeDtypeStruct((1, 40, 40, 3), jnp.float32)
  with pytest.raises(ValueError, match="attention_impl='cudnn' computes in bfloat16"):
    jax.eval_shape(ViTNetwork(SMALL, attention_impl='cudnn').init, jax.random.key(0), images)
  with pytest.raises(ValueError, match='remat_policy=.*valid are none, full'):
    jax.eval_shape(ViTNetwork(SMALL, remat_policy='some').init, jax.random.key(0), images)
  with pytest.raises(shapes.ShapeError, match='ViTNetwork takes a vision shape'):
    jax.eval_shape(ViTNetwork(shapes.parse('small')).init, jax.random.key(0), images)
  with pytest.raises(shapes.ShapeError, match="posemb='rope'.*learn, sincos2d"):
    SMALL.replace(posemb='rope')
  with pytest.raises(shapes.ShapeError, match='sincos2d.*divisible by 4.*d_model=30'):
    SMALL.replace(d_model=30, posemb='sincos2d')
  with pytest.raises(shapes.ShapeError, match='posemb are vision options'):
    shapes.parse('small').replace(posemb='sincos2d')
  with pytest.raises(shapes.ShapeError, match="pooling='max'.*cls, gap, map"):
    SMALL.replace(pooling='max')


def test_model_loss_eval_sums_and_dropout():
  model = vit.build(VARIANTS['gap-learn'], dropout_rate=0.5, label_smoothing=0.1)
  params = _random_params(model.network)
  images = _images(model.shape, n=4)
  labels = np.array([0, 3, 6, 2], np.int32)
  batch = {'image': images, 'label': labels}
  # A weight-0 row (the padding of a ragged eval batch) counts nowhere.
  weighted = {**batch, 'weight': np.array([1, 1, 1, 0], np.float32)}

  @jax.jit  # one compilation for everything
  def run(params):
    dropped = [model.loss(params, batch, jax.random.key(k))[0] for k in (1, 2)]
    grads = jax.grad(lambda p: model.loss(p, batch, jax.random.key(1))[0])(params)
    return (model.logits(params, images), model.loss(params, batch),  # no rng: no dropout
            model.eval_metrics(params, weighted), dropped, grads)

  logits, (loss, metrics), sums, dropped, grads = run(params)
  logits = np.asarray(logits, np.float64)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  nll = -logp[np.arange(4), labels]
  smoothed = 0.9 * nll - 0.1 * logp.mean(-1)
  np.testing.assert_allclose(loss, smoothed.mean(), rtol=1e-5)
  np.testing.assert_allclose(metrics['cross_entropy'], nll.mean(), rtol=1e-5)
  assert metrics['num_examples'] == 4
  assert float(sums['weight_sum']) == 3
  np.testing.assert_allclose(sums['nll_sum'], nll[:3].sum(), rtol=1e-5)
  correct = (logits.argmax(-1) == labels)[:3].sum()
  assert float(sums['correct_sum']) == correct
  final = vision_model.finalize_metrics(sums)
  assert final['accuracy'] == pytest.approx(correct / 3)
  # Dropout: on with an rng (different losses for different keys), off without.
  assert float(dropped[0]) != float(dropped[1]) and float(loss) not in map(float, dropped)
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
  with pytest.raises(KeyError, match="lacks \\['label'\\]"):
    model.loss(params, {'image': images})


def _autodiff_layer_norm(x, scale, bias, epsilon):
  x = x.astype(jnp.float32)
  mean = jnp.mean(x, axis=-1, keepdims=True)
  variance = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
  return (x - mean) * jax.lax.rsqrt(variance + epsilon) * scale + bias


@pytest.mark.parametrize('dtype, tolerance', [(jnp.float32, 1e-5), (jnp.bfloat16, 1e-2)])
@pytest.mark.parametrize('shape', [(6, 10), (2, 3, 10)])
def test_layer_norm_gradient_equals_autodiff(shape, dtype, tolerance):
  keys = jax.random.split(jax.random.key(0), 4)
  # Rows with an offset and a spread, so that every term of the gradient matters.
  x = (3.0 + 2.0 * jax.random.normal(keys[0], shape)).astype(dtype)
  scale = 1.0 + jax.random.normal(keys[1], shape[-1:])
  bias = jax.random.normal(keys[2], shape[-1:])
  cotangent = jax.random.normal(keys[3], shape)
  ours, ours_vjp = jax.vjp(lambda *a: layer_norm(*a, 1e-6), x, scale, bias)
  ref, ref_vjp = jax.vjp(lambda *a: _autodiff_layer_norm(*a, 1e-6), x, scale, bias)
  np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
  for got, want in zip(ours_vjp(cotangent), ref_vjp(cotangent), strict=True):
    assert got.dtype == want.dtype
    np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32),
                               rtol=tolerance, atol=tolerance)


def test_network_gradients_equal_autodiff_layer_norm(monkeypatch):
  network = ViTNetwork(SMALL)
  images = jax.random.normal(jax.random.key(0), (3, 40, 40, 3))
  labels = jnp.arange(3)
  params = nn.unbox(network.init(jax.random.key(1), images)['params'])
  # A head that is not zero (its initialiser), so the gradient reaches every layer.
  params['head']['kernel'] = jax.random.normal(jax.random.key(2), params['head']['kernel'].shape)

  def grads():
    def loss(p):
      logits = network.apply({'params': p}, images)
      return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))
    return jax.jit(jax.grad(loss))(params)

  ours = grads()
  monkeypatch.setattr(network_module, 'layer_norm', _autodiff_layer_norm)
  ref = grads()
  leaves = zip(jax.tree_util.tree_leaves_with_path(ours), jax.tree.leaves(ref), strict=True)
  for (path, got), want in leaves:
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6, err_msg=jax.tree_util.keystr(path))
