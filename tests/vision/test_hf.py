"""Hugging Face ViT checkpoints: from_hf logits equal transformers', to_hf loads back, errors."""

import json
import os

import flax.linen as nn
import jax
import numpy as np
import pytest

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

from safetensors.numpy import load_file, save_file  # noqa: E402

from suite import shapes  # noqa: E402
from vision import vit  # noqa: E402

SIZE, PATCH, CLASSES = 40, 8, 7
CONFIG = dict(hidden_size=32, num_hidden_layers=2, intermediate_size=48, image_size=SIZE,
              patch_size=PATCH, num_labels=CLASSES, layer_norm_eps=1e-12)
VARIANTS = {
    # 4 heads of 8 = d_model, exact GELU: HF's defaults.
    'square': dict(num_attention_heads=4),
    # 3 heads of 12 = 36 != d_model 32 (head_dim, transformers 5.x), tanh GELU.
    'wide': dict(num_attention_heads=3, head_dim=12, hidden_act='gelu_pytorch_tanh'),
}


def _hf_model(variant, seed=0):
  torch.manual_seed(seed)
  model = transformers.ViTForImageClassification(
      transformers.ViTConfig(**CONFIG, **VARIANTS[variant])).eval()
  with torch.no_grad():  # HF initialises biases, cls and LayerNorms to constants: vary them
    for parameter in model.parameters():
      parameter.add_(0.3 * torch.randn_like(parameter))
  return model


def _images(n=3, seed=0):
  return np.random.default_rng(seed).normal(size=(n, SIZE, SIZE, 3)).astype(np.float32)


def _hf_logits(model, images):
  with torch.no_grad():
    return model(pixel_values=torch.tensor(images.transpose(0, 3, 1, 2))).logits.numpy()


def _our_logits(network, params, images):
  return np.asarray(jax.jit(network.apply)({'params': params}, images))


@pytest.fixture(scope='module', params=list(VARIANTS))
def hf(request, tmp_path_factory):
  """(variant, transformers model, safetensors dir, pytorch_model.bin dir).

  The .bin holds `state_dict()`, which transformers 5.x spells differently from what
  save_pretrained writes (vit.layers.N.attention.q_proj vs vit.encoder.layer.N...query).
  """
  model = _hf_model(request.param)
  root = tmp_path_factory.mktemp(request.param)
  safetensors_dir, bin_dir = str(root / 'safetensors'), str(root / 'bin')
  model.save_pretrained(safetensors_dir)
  os.makedirs(bin_dir)
  model.config.to_json_file(os.path.join(bin_dir, 'config.json'))
  torch.save(model.state_dict(), os.path.join(bin_dir, 'pytorch_model.bin'))
  return request.param, model, safetensors_dir, bin_dir


@pytest.mark.parametrize('weights', ['safetensors', 'bin'])
def test_from_hf_logits_match_transformers(hf, weights):
  variant, model, safetensors_dir, bin_dir = hf
  network, params = vit.from_hf(safetensors_dir if weights == 'safetensors' else bin_dir)
  shape = network.shape
  heads, d_kv = (4, 8) if variant == 'square' else (3, 12)
  assert (shape.num_encoder_layers, shape.d_model, shape.d_ff, shape.num_heads, shape.d_kv,
          shape.image_size, shape.patch_size, shape.num_classes, shape.pooling) == (
              2, 32, 48, heads, d_kv, SIZE, PATCH, CLASSES, 'cls')
  assert network.layer_norm_epsilon == 1e-12
  assert network.gelu_approximate is (variant == 'wide')
  images = _images()
  np.testing.assert_allclose(_our_logits(network, params, images), _hf_logits(model, images),
                             atol=1e-4)


def test_to_hf_loads_back_into_transformers(hf, tmp_path):
  _, model, path, _ = hf
  network, params = vit.from_hf(path, scan_layers=True)
  vit.to_hf(network, params, str(tmp_path))
  reloaded, info = transformers.ViTForImageClassification.from_pretrained(
      str(tmp_path), output_loading_info=True)
  assert not info['missing_keys'] and not info['unexpected_keys']
  images = _images(seed=1)
  np.testing.assert_allclose(_hf_logits(reloaded.eval(), images), _hf_logits(model, images),
                             atol=1e-5)
  again_network, again = vit.from_hf(str(tmp_path))
  assert again_network.shape == network.shape
  assert again_network.gelu_approximate == network.gelu_approximate
  _, unscanned = vit.from_hf(path)
  assert jax.tree.all(jax.tree.map(np.array_equal, again, unscanned))


@pytest.mark.parametrize('posemb', ['learn', 'sincos2d'])
def test_built_model_exports_to_transformers(posemb, tmp_path):
  shape = shapes.Shape(1, 0, 16, 24, 2, 12, domain='vision', activation='gelu', image_size=16,
                       patch_size=4, pooling='cls', num_classes=5, posemb=posemb)
  model = vit.build(shape)
  # Random values in the tree model.init makes (its head starts at zero, hiding the rest).
  rng = np.random.default_rng(1)
  params = jax.tree.map(lambda x: rng.normal(0, 0.5, x.shape).astype(np.float32),
                        nn.unbox(jax.eval_shape(model.init, jax.random.key(0))))
  vit.to_hf(model, params, str(tmp_path))
  reloaded = transformers.ViTForImageClassification.from_pretrained(str(tmp_path)).eval()
  images = np.random.default_rng(2).uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
  ours = np.asarray(jax.jit(model.apply)({'params': params}, images))
  np.testing.assert_allclose(ours, _hf_logits(reloaded, images), atol=1e-4)
  assert np.abs(ours).max() > 0.1


def test_to_hf_rejects_what_hf_cannot_express(tmp_path):
  shape = shapes.parse('Ti/16').replace(pooling='gap')
  with pytest.raises(vit.CheckpointError, match="pooling='gap'.*only pooling='cls'"):
    vit.to_hf(shape, {}, str(tmp_path))


# ---- bad input --------------------------------------------------------------------------------

@pytest.fixture()
def checkpoint(tmp_path):
  _hf_model('square').save_pretrained(str(tmp_path))
  return tmp_path


def _edit_config(path, **changes):
  with open(path / 'config.json') as f:
    config = json.load(f)
  config.update(changes)
  with open(path / 'config.json', 'w') as f:
    json.dump(config, f)


def test_missing_directory_and_config(tmp_path):
  with pytest.raises(vit.CheckpointError, match='not a directory'):
    vit.from_hf(str(tmp_path / 'absent'))
  with pytest.raises(vit.CheckpointError, match='config.json.*missing'):
    vit.from_hf(str(tmp_path))


def test_bad_configs(checkpoint):
  cases = [({'model_type': 'deit'}, "model_type='deit', expected \"vit\""),
           ({'hidden_act': 'relu'}, "hidden_act='relu' is not supported; valid: gelu"),
           ({'num_channels': 1}, 'num_channels=1'),
           ({'image_size': 36}, 'image_size=36 is not a multiple of patch_size=8'),
           ({'intermediate_size': 64},
            r"model.safetensors: tensor 'vit.encoder.layer.0.intermediate.dense.weight' has "
            r"shape \(48, 32\) but config.json implies \(64, 32\)"),
           ({'num_hidden_layers': 1},
            r"model.safetensors: 16 tensor\(s\) unused by the ViT config.json describes "
            r"\(1 layers\): 'vit.encoder.layer.1.")]
  for change, message in cases:
    original = (checkpoint / 'config.json').read_text()
    _edit_config(checkpoint, **change)
    with pytest.raises(vit.CheckpointError, match=message):
      vit.from_hf(str(checkpoint))
    (checkpoint / 'config.json').write_text(original)


def test_missing_and_unreadable_weights(checkpoint):
  file = checkpoint / 'model.safetensors'
  weights = load_file(str(file))
  del weights['vit.encoder.layer.1.attention.attention.value.bias']
  save_file(weights, str(file), metadata={'format': 'pt'})
  with pytest.raises(vit.CheckpointError,
                     match="tensor 'vit.encoder.layer.1.attention.attention.value.bias' is "
                           "missing"):
    vit.from_hf(str(checkpoint))
  file.write_bytes(b'garbage')
  with pytest.raises(vit.CheckpointError, match='model.safetensors: cannot read as safetensors'):
    vit.from_hf(str(checkpoint))
  os.remove(file)
  with pytest.raises(vit.CheckpointError, match='no weights; expected model.safetensors'):
    vit.from_hf(str(checkpoint))


def test_pooler_is_ignored_and_qkv_bias_false_reads_zero_biases(checkpoint):
  """A ViTModel pooler (which transformers drops for a classifier too) and qkv_bias=false."""
  file = checkpoint / 'model.safetensors'
  weights = load_file(str(file))
  weights['vit.pooler.dense.weight'] = np.ones((32, 32), np.float32)
  for name in [n for n in weights if n.endswith(('query.bias', 'key.bias', 'value.bias'))]:
    del weights[name]
  save_file(weights, str(file), metadata={'format': 'pt'})
  _edit_config(checkpoint, qkv_bias=False)
  _, params = vit.from_hf(str(checkpoint))
  assert not np.any(params['encoder_layers_0']['attention']['query_bias'])
