"""big_vision / vit_jax `.npz` checkpoints: from_big_vision logits equal an independent reference
forward pass over the same arrays (written here, following big_vision's and vit_jax's models),
in both key layouts and every pooling; resizing, and the errors."""

import math

import jax
import numpy as np
import pytest

from vision import vit

WIDTH, HEADS, D_KV, MLP, DEPTH, PATCH, SIZE, CLASSES = 32, 4, 8, 48, 2, 8, 40, 7
GRID = SIZE // PATCH


def _random_tree(layout: str, pooling: str, posemb: str = 'learn', seed: int = 0) -> dict:
  """Flat {'a/b/c': array} in big_vision's ('bv') or vit_jax's ('vit_jax') naming."""
  rng = np.random.default_rng(seed)

  def r(*shape, scale=0.3):
    return rng.normal(0.0, scale, shape).astype(np.float32)

  old = layout == 'vit_jax'
  names = (('LayerNorm_0', 'MultiHeadDotProductAttention_1', 'LayerNorm_2', 'MlpBlock_3') if old
           else ('LayerNorm_0', 'MultiHeadDotProductAttention_0', 'LayerNorm_1', 'MlpBlock_0'))
  flat = {'embedding/kernel': r(PATCH, PATCH, 3, WIDTH, scale=0.1), 'embedding/bias': r(WIDTH),
          'head/kernel': r(WIDTH, CLASSES), 'head/bias': r(CLASSES),
          'Transformer/encoder_norm/scale': 1 + r(WIDTH), 'Transformer/encoder_norm/bias': r(WIDTH)}

  def block(prefix, norms=True):
    out = {}
    for proj in ('query', 'key', 'value'):
      out[f'{prefix}/{names[1]}/{proj}/kernel'] = r(WIDTH, HEADS, D_KV)
      out[f'{prefix}/{names[1]}/{proj}/bias'] = r(HEADS, D_KV)
    out[f'{prefix}/{names[1]}/out/kernel'] = r(HEADS, D_KV, WIDTH)
    out[f'{prefix}/{names[1]}/out/bias'] = r(WIDTH)
    out[f'{prefix}/{names[3]}/Dense_0/kernel'] = r(WIDTH, MLP)
    out[f'{prefix}/{names[3]}/Dense_0/bias'] = r(MLP)
    out[f'{prefix}/{names[3]}/Dense_1/kernel'] = r(MLP, WIDTH)
    out[f'{prefix}/{names[3]}/Dense_1/bias'] = r(WIDTH)
    for norm in (names[0], names[2]) if norms else ():
      out[f'{prefix}/{norm}/scale'] = 1 + r(WIDTH)
      out[f'{prefix}/{norm}/bias'] = r(WIDTH)
    return out

  for i in range(DEPTH):
    flat.update(block(f'Transformer/encoderblock_{i}'))
  if pooling == 'cls':
    flat['cls'] = r(1, 1, WIDTH)
  if pooling == 'map':
    names = ('LayerNorm_0', 'MultiHeadDotProductAttention_0', 'LayerNorm_0', 'MlpBlock_0')
    flat.update(block('MAPHead_0', norms=False))
    flat['MAPHead_0/probe'] = r(1, 1, WIDTH)
    flat['MAPHead_0/LayerNorm_0/scale'] = 1 + r(WIDTH)
    flat['MAPHead_0/LayerNorm_0/bias'] = r(WIDTH)
  if posemb == 'learn':
    if old:  # vit_jax: one row per token, the class token's first
      rows = GRID * GRID + (pooling == 'cls')
      flat['Transformer/posembed_input/pos_embedding'] = r(1, rows, WIDTH)
    else:
      flat['pos_embedding'] = r(1, GRID * GRID, WIDTH)
  return flat


def _scanned(flat: dict) -> dict:
  """big_vision's scanned layout: encoderblock_N stacked into one encoderblock."""
  out = {k: v for k, v in flat.items() if '/encoderblock_' not in k}
  for key in [k for k in flat if k.startswith('Transformer/encoderblock_0/')]:
    rest = key[len('Transformer/encoderblock_0/'):]
    out[f'Transformer/encoderblock/{rest}'] = np.stack(
        [flat[f'Transformer/encoderblock_{i}/{rest}'] for i in range(DEPTH)])
  return out


# ---- reference forward pass, straight from the arrays --------------------------------------------

def _layer_norm(x, p, prefix):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + 1e-6) * p[f'{prefix}/scale'] + p[f'{prefix}/bias']


def _gelu_tanh(x):
  return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def _mha(q_in, kv_in, p, prefix):
  """flax MultiHeadDotProductAttention: DenseGeneral q/k/v, softmax(q k / sqrt(d_kv)) v, out."""
  q = np.einsum('btd,dhk->bthk', q_in, p[f'{prefix}/query/kernel']) + p[f'{prefix}/query/bias']
  k = np.einsum('btd,dhk->bthk', kv_in, p[f'{prefix}/key/kernel']) + p[f'{prefix}/key/bias']
  v = np.einsum('btd,dhk->bthk', kv_in, p[f'{prefix}/value/kernel']) + p[f'{prefix}/value/bias']
  logits = np.einsum('bqhk,bshk->bhqs', q / np.sqrt(q.shape[-1]), k)
  weights = np.exp(logits - logits.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  out = np.einsum('bhqs,bshk->bqhk', weights, v)
  return np.einsum('bqhk,hkd->bqd', out, p[f'{prefix}/out/kernel']) + p[f'{prefix}/out/bias']


def _mlp(x, p, prefix):
  h = _gelu_tanh(x @ p[f'{prefix}/Dense_0/kernel'] + p[f'{prefix}/Dense_0/bias'])
  return h @ p[f'{prefix}/Dense_1/kernel'] + p[f'{prefix}/Dense_1/bias']


def _sincos(grid, width):
  quarter = width // 4
  omega = 1.0 / 10_000 ** (np.arange(quarter) / (quarter - 1))
  rows, cols = np.meshgrid(np.arange(grid), np.arange(grid), indexing='ij')
  x, y = cols.reshape(-1, 1) * omega, rows.reshape(-1, 1) * omega
  return np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1)


def reference_logits(flat: dict, images: np.ndarray, layout: str) -> np.ndarray:
  """vit_jax (old) or big_vision (new) forward pass in float64 numpy."""
  p = {k: v.astype(np.float64) for k, v in flat.items()}
  old = layout == 'vit_jax'
  ln = ('LayerNorm_0', 'LayerNorm_2') if old else ('LayerNorm_0', 'LayerNorm_1')
  mha = 'MultiHeadDotProductAttention_1' if old else 'MultiHeadDotProductAttention_0'
  mlp = 'MlpBlock_3' if old else 'MlpBlock_0'
  n, grid = images.shape[0], images.shape[1] // PATCH
  x = np.zeros((n, grid, grid, WIDTH))
  for row in range(grid):  # the stem: a PATCH x PATCH convolution with stride PATCH
    for col in range(grid):
      window = images[:, row * PATCH:(row + 1) * PATCH, col * PATCH:(col + 1) * PATCH]
      x[:, row, col] = np.einsum('bijc,ijcd->bd', window, p['embedding/kernel'])
  x = (x + p['embedding/bias']).reshape(n, -1, WIDTH)
  if not old:  # big_vision adds positions to the patches, then prepends the class token
    x = x + (p['pos_embedding'] if 'pos_embedding' in p else _sincos(GRID, WIDTH)[None])
  if 'cls' in p:
    x = np.concatenate([np.tile(p['cls'], (n, 1, 1)), x], axis=1)
  if old:  # vit_jax adds them after, the class token's included
    x = x + p['Transformer/posembed_input/pos_embedding']
  for i in range(DEPTH):
    b = f'Transformer/encoderblock_{i}'
    y = _layer_norm(x, p, f'{b}/{ln[0]}')
    x = x + _mha(y, y, p, f'{b}/{mha}')
    x = x + _mlp(_layer_norm(x, p, f'{b}/{ln[1]}'), p, f'{b}/{mlp}')
  x = _layer_norm(x, p, 'Transformer/encoder_norm')
  if 'cls' in p:
    pooled = x[:, 0]
  elif 'MAPHead_0/probe' in p:
    y = _mha(np.tile(p['MAPHead_0/probe'], (n, 1, 1)), x, p,
             'MAPHead_0/MultiHeadDotProductAttention_0')
    pooled = (y + _mlp(_layer_norm(y, p, 'MAPHead_0/LayerNorm_0'), p, 'MAPHead_0/MlpBlock_0'))[:, 0]
  else:
    pooled = x.mean(1)
  return pooled @ p['head/kernel'] + p['head/bias']


# ---- tests --------------------------------------------------------------------------------------

CASES = {  # name: (layout, pooling, posemb, scanned)
    'vit_jax_cls': ('vit_jax', 'cls', 'learn', False),
    'vit_jax_gap': ('vit_jax', 'gap', 'learn', False),
    'bv_cls': ('bv', 'cls', 'learn', False),
    'bv_gap_sincos': ('bv', 'gap', 'sincos2d', False),
    'bv_map_scanned': ('bv', 'map', 'learn', True),
}


def _images(n=3, size=SIZE, seed=1):
  return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)).astype(np.float32)


@pytest.fixture(scope='module')
def npz_files(tmp_path_factory):
  root = tmp_path_factory.mktemp('big_vision')
  files = {}
  for name, (layout, pooling, posemb, scanned) in CASES.items():
    flat = _random_tree(layout, pooling, posemb)
    path = str(root / f'{name}.npz')
    np.savez(path, **(_scanned(flat) if scanned else flat))
    files[name] = (path, flat)
  return files


@pytest.mark.parametrize('name', sorted(CASES))
def test_logits_match_reference(npz_files, name):
  layout, pooling, posemb, _ = CASES[name]
  path, flat = npz_files[name]
  network, params = vit.from_big_vision(path, image_size=SIZE if posemb == 'sincos2d' else None)
  shape = network.shape
  assert (shape.num_encoder_layers, shape.d_model, shape.d_ff, shape.num_heads, shape.d_kv,
          shape.patch_size, shape.image_size, shape.num_classes) == (
              DEPTH, WIDTH, MLP, HEADS, D_KV, PATCH, SIZE, CLASSES)
  assert (shape.pooling, shape.posemb) == (pooling, posemb)
  assert network.gelu_approximate and network.layer_norm_epsilon == 1e-6
  images = _images()
  ours = np.asarray(jax.jit(network.apply)({'params': params}, images))
  reference = reference_logits(flat, images, layout)
  assert np.abs(ours - reference).max() < 1e-4, np.abs(ours - reference).max()


def test_scan_option_and_hf_export_agree(npz_files, tmp_path):
  """vit_jax checkpoint -> scanned network, and -> to_hf -> transformers: the same logits."""
  transformers = pytest.importorskip('transformers')
  torch = pytest.importorskip('torch')
  path, flat = npz_files['vit_jax_cls']
  network, params = vit.from_big_vision(path, scan_layers=True)
  assert 'encoder_layers' in params
  images = _images()
  ours = np.asarray(jax.jit(network.apply)({'params': params}, images))
  vit.to_hf(network, params, str(tmp_path / 'hf'))
  hf = transformers.ViTForImageClassification.from_pretrained(str(tmp_path / 'hf')).eval()
  with torch.no_grad():
    theirs = hf(pixel_values=torch.tensor(images.transpose(0, 3, 1, 2))).logits.numpy()
  assert np.abs(ours - theirs).max() < 1e-4
  assert np.abs(ours - reference_logits(flat, images, 'vit_jax')).max() < 1e-4


def test_resize_position_embeddings(npz_files):
  path, flat = npz_files['bv_cls']
  network, params = vit.from_big_vision(path, image_size=56)  # grid 5 -> 7
  assert network.shape.image_size == 56
  table = np.asarray(params['position_embedding'])
  assert table.shape == (1 + 49, WIDTH)
  assert np.all(table[0] == 0)  # big_vision's class token has no position
  old = flat['pos_embedding'][0].reshape(GRID, GRID, WIDTH)
  new = table[1:].reshape(7, 7, WIDTH)
  for corner in ((0, 0), (0, -1), (-1, 0), (-1, -1)):  # bilinear keeps the corners
    np.testing.assert_allclose(new[corner], old[corner], atol=1e-6)
  np.testing.assert_allclose(new[3, 3], (old[2, 2]), atol=1e-6)  # the centre stays
  logits = network.apply({'params': params}, _images(2, 56))
  assert logits.shape == (2, CLASSES)
  with pytest.raises(vit.CheckpointError, match='multiple of the patch size 8'):
    vit.from_big_vision(path, image_size=50)


def test_errors(npz_files, tmp_path):
  with pytest.raises(vit.CheckpointError, match='no such file'):
    vit.from_big_vision(str(tmp_path / 'absent.npz'))
  bad = tmp_path / 'bad.npz'
  bad.write_bytes(b'not a zip')
  with pytest.raises(vit.CheckpointError, match='cannot read as .npz'):
    vit.from_big_vision(str(bad))
  _, flat = npz_files['vit_jax_cls']
  cases = {
      'pre_logits': ({**flat, 'pre_logits/kernel': np.zeros((WIDTH, WIDTH), np.float32)},
                     'pre_logits'),
      'extra': ({**flat, 'Transformer/extra/kernel': np.zeros(3, np.float32)},
                'no place for: Transformer/extra/kernel'),
      'missing': ({k: v for k, v in flat.items() if 'encoderblock_1/MlpBlock_3/Dense_1/bias'
                   not in k}, 'Transformer/encoderblock_1/MlpBlock_0/Dense_1/bias'),
      'sincos_size': ({k: v for k, v in flat.items() if 'pos' not in k}, 'pass image_size='),
  }
  for name, (arrays, message) in cases.items():
    path = str(tmp_path / f'{name}.npz')
    np.savez(path, **arrays)
    with pytest.raises(vit.CheckpointError, match=message):
      vit.from_big_vision(path)
