"""Hugging Face T5 checkpoints: from_hf logits equal transformers', to_hf loads back, errors."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

from safetensors.numpy import load_file, save_file  # noqa: E402

from suite import shapes  # noqa: E402
from text import t5  # noqa: E402

VOCAB = 97
# Depths differ, heads * d_kv = 36 != d_model = 32; lengths beyond max_distance use all buckets.
CONFIG = dict(vocab_size=VOCAB, d_model=32, d_ff=48, d_kv=12, num_heads=3, num_layers=2,
              num_decoder_layers=3, dropout_rate=0.0, relative_attention_max_distance=40)
VARIANTS = {
    'relu_tied': {},
    'gated_untied': dict(feed_forward_proj='gated-gelu', tie_word_embeddings=False),
}


def _hf_model(variant):
  torch.manual_seed(0)
  model = transformers.T5ForConditionalGeneration(
      transformers.T5Config(**CONFIG, **VARIANTS[variant])).eval()
  if variant == 'gated_untied':  # transformers 5.x ties lm_head at init; give it its own values
    model.lm_head.weight = torch.nn.Parameter(torch.randn(VOCAB, 32) * 32 ** -0.5)
  return model


@pytest.fixture(scope='module', params=list(VARIANTS))
def hf(request, tmp_path_factory):
  """(variant, transformers model, safetensors dir, pytorch_model.bin dir)."""
  model = _hf_model(request.param)
  root = tmp_path_factory.mktemp(request.param)
  safetensors_dir, bin_dir = str(root / 'safetensors'), str(root / 'bin')
  model.save_pretrained(safetensors_dir)
  os.makedirs(bin_dir)
  model.config.to_json_file(os.path.join(bin_dir, 'config.json'))
  torch.save(model.state_dict(), os.path.join(bin_dir, 'pytorch_model.bin'))
  return request.param, model, safetensors_dir, bin_dir


def _inputs(seed=0, batch=2, input_length=60, target_length=50):
  rng = np.random.default_rng(seed)
  encoder = rng.integers(1, VOCAB, (batch, input_length))
  decoder = rng.integers(0, VOCAB, (batch, target_length))
  decoder[:, 0] = 0
  return encoder, decoder


def _hf_logits(model, encoder, decoder, attention_mask=None):
  with torch.no_grad():
    return model(input_ids=torch.tensor(encoder), decoder_input_ids=torch.tensor(decoder),
                 attention_mask=attention_mask).logits.numpy()


def _our_logits(network, params, encoder, decoder):
  return np.asarray(jax.jit(network.apply)({'params': params}, jnp.asarray(encoder),
                                           jnp.asarray(decoder)))


def test_from_hf_shape(hf):
  variant, _, path, _ = hf
  network, _ = t5.from_hf(path)
  shape = network.shape
  assert (shape.num_encoder_layers, shape.num_decoder_layers) == (2, 3)
  assert (shape.d_model, shape.d_ff, shape.num_heads, shape.d_kv) == (32, 48, 3, 12)
  assert shape.relative_max_distance == 40 and shape.vocab_size == VOCAB
  assert shape.activation == ('relu' if variant == 'relu_tied' else 'gated-gelu')
  assert shape.tie_embeddings == (variant == 'relu_tied')


@pytest.mark.parametrize('weights', ['safetensors', 'bin'])
def test_from_hf_logits_match_transformers(hf, weights):
  _, model, safetensors_dir, bin_dir = hf
  network, params = t5.from_hf(safetensors_dir if weights == 'safetensors' else bin_dir)
  encoder, decoder = _inputs()
  ref = _hf_logits(model, encoder, decoder)
  np.testing.assert_allclose(_our_logits(network, params, encoder, decoder), ref, atol=1e-4)
  # Right-padded encoder inputs (id 0) match transformers given attention_mask = ids > 0.
  encoder[0, 35:] = 0
  ref = _hf_logits(model, encoder, decoder, torch.tensor(encoder > 0))
  np.testing.assert_allclose(_our_logits(network, params, encoder, decoder), ref, atol=1e-4)


def test_to_hf_loads_back_into_transformers(hf, tmp_path):
  _, model, path, _ = hf
  network, params = t5.from_hf(path)
  t5.to_hf(network, params, str(tmp_path))
  reloaded, info = transformers.T5ForConditionalGeneration.from_pretrained(
      str(tmp_path), output_loading_info=True)
  assert not info['missing_keys'] and not info['unexpected_keys']
  encoder, decoder = _inputs(seed=1)
  np.testing.assert_allclose(_hf_logits(reloaded.eval(), encoder, decoder),
                             _hf_logits(model, encoder, decoder), atol=1e-5)
  _, again = t5.from_hf(str(tmp_path))
  assert jax.tree.all(jax.tree.map(np.array_equal, again, params))


@pytest.mark.parametrize('shape', [
    shapes.Shape(num_encoder_layers=1, num_decoder_layers=2, d_model=16, d_ff=24, num_heads=2,
                 d_kv=4, vocab_size=50),
    shapes.Shape(num_encoder_layers=2, num_decoder_layers=1, d_model=16, d_ff=24, num_heads=4,
                 d_kv=8, vocab_size=50, activation='gated-gelu', tie_embeddings=False),
], ids=['relu', 'gated'])
def test_built_model_exports_to_transformers(shape, tmp_path):
  model = t5.build(shape, scan_layers=True)
  params = jax.jit(model.init)(jax.random.key(1))
  t5.to_hf(model, params, str(tmp_path))
  reloaded = transformers.T5ForConditionalGeneration.from_pretrained(str(tmp_path)).eval()
  encoder, decoder = _inputs(seed=2, input_length=9, target_length=7)
  encoder, decoder = encoder % 50, decoder % 50
  encoder[encoder == 0] = 1
  ours = np.asarray(jax.jit(model.apply)({'params': params}, jnp.asarray(encoder),
                                         jnp.asarray(decoder)))
  np.testing.assert_allclose(ours, _hf_logits(reloaded, encoder, decoder), atol=1e-4)


# ---- bad input --------------------------------------------------------------------------------

@pytest.fixture()
def checkpoint(tmp_path):
  model = _hf_model('relu_tied')
  model.save_pretrained(str(tmp_path))
  return tmp_path


def _edit_config(path, **changes):
  with open(path / 'config.json') as f:
    config = json.load(f)
  config.update(changes)
  with open(path / 'config.json', 'w') as f:
    json.dump(config, f)


def test_missing_directory_and_config(tmp_path):
  with pytest.raises(t5.CheckpointError, match='not a directory'):
    t5.from_hf(str(tmp_path / 'absent'))
  with pytest.raises(t5.CheckpointError, match='config.json.*missing'):
    t5.from_hf(str(tmp_path))


def test_other_architecture(checkpoint):
  _edit_config(checkpoint, model_type='bert')
  with pytest.raises(t5.CheckpointError, match="config.json: model_type='bert'"):
    t5.from_hf(str(checkpoint))


def test_unsupported_activation(checkpoint):
  _edit_config(checkpoint, feed_forward_proj='gated-silu')
  with pytest.raises(t5.CheckpointError, match='gated-silu.*gated-gelu'):
    t5.from_hf(str(checkpoint))


def test_weights_disagree_with_config(checkpoint):
  _edit_config(checkpoint, d_ff=64)
  with pytest.raises(t5.CheckpointError,
                     match=r"model.safetensors: tensor 'encoder.block.0.layer.1.DenseReluDense"
                           r".wi.weight' has shape \(48, 32\) but config.json implies \(64, 32\)"):
    t5.from_hf(str(checkpoint))


def test_missing_tensor(checkpoint):
  weights = load_file(str(checkpoint / 'model.safetensors'))
  del weights['decoder.block.2.layer.1.EncDecAttention.v.weight']
  save_file(weights, str(checkpoint / 'model.safetensors'), metadata={'format': 'pt'})
  with pytest.raises(t5.CheckpointError,
                     match="model.safetensors: tensor 'decoder.block.2.layer.1.EncDecAttention"
                           ".v.weight' is missing"):
    t5.from_hf(str(checkpoint))


def test_missing_weights_file(checkpoint):
  os.remove(checkpoint / 'model.safetensors')
  with pytest.raises(t5.CheckpointError, match='no weights; expected model.safetensors'):
    t5.from_hf(str(checkpoint))


@pytest.mark.parametrize('config,tied', [
    ({}, True),  # T5 v1.0 configs say nothing: rescaled, tied
    ({'tie_word_embeddings': False}, False),  # T5.1.1 as transformers 4.x saves it
    ({'tie_word_embeddings': True, 'scale_decoder_outputs': False}, False),  # 5.x T5.1.1
    ({'tie_word_embeddings': True, 'scale_decoder_outputs': True}, True),  # 5.x v1.0
])
def test_config_styles_of_tying(config, tied):
  shape, epsilon = t5.shape_from_config({'model_type': 't5', **config})
  assert shape.tie_embeddings is tied and epsilon == 1e-6
  assert shape == shapes.parse('small').replace(tie_embeddings=tied)


def test_untied_checkpoint_without_lm_head_uses_shared(tmp_path):
  # transformers 5.x may save a T5.1.1 whose lm_head it tied to shared without lm_head.weight.
  model = _hf_model('relu_tied')
  model.save_pretrained(str(tmp_path))
  _edit_config(tmp_path, scale_decoder_outputs=False)
  network, params = t5.from_hf(str(tmp_path))
  assert not network.shape.tie_embeddings
  np.testing.assert_array_equal(params['logits_dense'], params['token_embedder'].T)


def test_rescaled_checkpoint_with_a_distinct_head(checkpoint):
  weights = load_file(str(checkpoint / 'model.safetensors'))
  weights['lm_head.weight'] = weights['shared.weight'] + 1.0
  save_file(weights, str(checkpoint / 'model.safetensors'), metadata={'format': 'pt'})
  with pytest.raises(t5.CheckpointError, match='lm_head.weight differs from shared.weight'):
    t5.from_hf(str(checkpoint))


def test_config_with_fewer_layers_than_the_weights(checkpoint):
  _edit_config(checkpoint, num_decoder_layers=1)  # the file holds decoder blocks 0, 1 and 2
  with pytest.raises(t5.CheckpointError,
                     match=r"model.safetensors: 26 tensor\(s\) unused .*1 decoder layers.*"
                           r"'decoder.block.1.layer.0.SelfAttention.k.weight'.* and 21 more\. "
                           r"The config and the weights disagree: fix config.json"):
    t5.from_hf(str(checkpoint))


def test_unknown_extra_tensor(checkpoint):
  weights = load_file(str(checkpoint / 'model.safetensors'))
  weights['encoder.block.0.layer.0.SelfAttention.extra.weight'] = np.zeros((2, 2), np.float32)
  save_file(weights, str(checkpoint / 'model.safetensors'), metadata={'format': 'pt'})
  with pytest.raises(t5.CheckpointError, match=r"1 tensor\(s\) unused .*'encoder.block.0.layer"
                                               r".0.SelfAttention.extra.weight'\."):
    t5.from_hf(str(checkpoint))


def test_tensors_transformers_writes_without_a_parameter_are_accepted(checkpoint):
  # state_dict() copies of the tied embedding and head, and the cross-attention bias old T5
  # checkpoints carry (transformers ignores it on load).
  weights = load_file(str(checkpoint / 'model.safetensors'))
  for alias in ('encoder.embed_tokens.weight', 'decoder.embed_tokens.weight', 'lm_head.weight'):
    weights[alias] = weights['shared.weight']
  bias = 'decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight'
  weights[bias] = np.zeros((32, 3), np.float32)
  save_file(weights, str(checkpoint / 'model.safetensors'), metadata={'format': 'pt'})
  _, params = t5.from_hf(str(checkpoint))
  np.testing.assert_array_equal(params['token_embedder'], weights['shared.weight'])


@pytest.mark.parametrize('damage', ['truncated', 'garbage'])
def test_unreadable_safetensors(checkpoint, damage):
  file = checkpoint / 'model.safetensors'
  data = file.read_bytes()
  file.write_bytes(data[:len(data) // 2] if damage == 'truncated' else b'not safetensors')
  with pytest.raises(t5.CheckpointError, match=f'{file}: cannot read as safetensors') as error:
    t5.from_hf(str(checkpoint))
  assert error.value.__cause__ is not None


@pytest.mark.parametrize('damage', ['truncated', 'garbage'])
def test_unreadable_pytorch_bin(checkpoint, damage):
  os.remove(checkpoint / 'model.safetensors')
  file = checkpoint / 'pytorch_model.bin'
  torch.save(_hf_model('relu_tied').state_dict(), file)
  data = file.read_bytes()
  file.write_bytes(data[:len(data) // 2] if damage == 'truncated' else b'garbage')
  with pytest.raises(t5.CheckpointError, match=f'{file}: cannot read as a PyTorch state dict'):
    t5.from_hf(str(checkpoint))


@pytest.fixture()
def sharded(tmp_path):
  """(directory of a checkpoint in several safetensors shards, its weight_map)."""
  _hf_model('relu_tied').save_pretrained(str(tmp_path), max_shard_size='40KB')
  with open(tmp_path / 'model.safetensors.index.json') as f:
    weight_map = json.load(f)['weight_map']
  assert len(set(weight_map.values())) > 2
  return tmp_path, weight_map


def test_sharded_checkpoint_loads_and_names_shards(sharded, tmp_path_factory):
  path, weight_map = sharded
  single = tmp_path_factory.mktemp('single')
  _hf_model('relu_tied').save_pretrained(str(single))
  _, params = t5.from_hf(str(path))
  _, expected = t5.from_hf(str(single))
  assert jax.tree.all(jax.tree.map(np.array_equal, params, expected))
  # A shape error names the shard that holds the tensor.
  _edit_config(path, d_ff=64)
  name = 'encoder.block.0.layer.1.DenseReluDense.wi.weight'
  with pytest.raises(t5.CheckpointError, match=f"{path / weight_map[name]}: tensor '{name}'"):
    t5.from_hf(str(path))


def test_unreadable_or_missing_shard(sharded):
  path, weight_map = sharded
  shard = path / weight_map['decoder.final_layer_norm.weight']
  shard.write_bytes(b'garbage')
  with pytest.raises(t5.CheckpointError, match=f'{shard}: cannot read as safetensors'):
    t5.from_hf(str(path))
  os.remove(shard)
  with pytest.raises(t5.CheckpointError, match=f'{shard}: missing; .*index.json lists it'):
    t5.from_hf(str(path))
