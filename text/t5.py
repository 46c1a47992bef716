"""Public T5 entry points: build a model for a Shape, and exchange checkpoints with Hugging Face.

`from_hf(path) -> (network, params)` reads a local HF T5 directory (config.json plus
model.safetensors, a sharded model.safetensors.index.json, or pytorch_model.bin) without any
network access; `network.apply({'params': params}, encoder_input_tokens, decoder_input_tokens)`
gives the logits of `T5ForConditionalGeneration(input_ids=..., decoder_input_ids=...)`.
`to_hf(model, params, path)` writes config.json + model.safetensors that transformers loads.
`from_mesh_tf(model_dir, step=None)` (text/mesh_tf.py) reads the paper's Mesh TensorFlow
checkpoints the same way.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from suite.hf_checkpoint import (
  CONFIG_FILE,
  SAFETENSORS_FILE,
  CheckpointError,
  flatten,
  read_config,
  read_tensors,
  unflatten,
)
from suite.shapes import TEXT_ACTIVATIONS, Shape, closest
from text.model import T5Model
from text.network import T5Network, scan_params, unscan_params


def build(shape: Shape, dtype: Any = jnp.float32, *, dropout_rate: float = 0.1,
          attention_impl: str | None = None, remat_policy: str = 'none',
          scan_layers: bool = False, layer_norm_epsilon: float = 1e-6,
          z_loss: float = 1e-4, label_smoothing: float = 0.0) -> T5Model:
  """The T5 model wrapper (init/loss/eval_metrics/decode) for a text shape."""
  network = T5Network(shape, dtype=dtype, dropout_rate=dropout_rate,
                      attention_impl=attention_impl, layer_norm_epsilon=layer_norm_epsilon,
                      remat_policy=remat_policy, scan_layers=scan_layers)
  return T5Model(network, z_loss=z_loss, label_smoothing=label_smoothing)


# ---- config.json <-> Shape -------------------------------------------------------------------

def shape_from_config(config: Mapping[str, Any], where: str = CONFIG_FILE) -> tuple[Shape, float]:
  """(Shape, layer_norm_epsilon) for an HF T5 config dict; raises CheckpointError if not T5."""
  model_type = config.get('model_type')
  if model_type != 't5':
    raise CheckpointError(f'{where}: model_type={model_type!r}, expected "t5" '
                          '(a T5ForConditionalGeneration checkpoint).')
  activation = config.get('feed_forward_proj', 'relu')
  if activation not in TEXT_ACTIVATIONS:
    raise CheckpointError(f'{where}: feed_forward_proj={activation!r} is not supported; valid: '
                          f'{", ".join(TEXT_ACTIVATIONS)} (closest: '
                          f'{closest(activation, TEXT_ACTIVATIONS)}).')
  num_layers = config.get('num_layers', 6)
  num_decoder_layers = config.get('num_decoder_layers')
  # HF 5.x stores `scale_decoder_outputs`; older configs say `tie_word_embeddings: false` for
  # T5.1.1. Rescaled (v1.0) logits go with a tied head in our Shape.
  if 'scale_decoder_outputs' in config:
    tied = bool(config['scale_decoder_outputs'])
  else:
    tied = config.get('tie_word_embeddings', True) is not False
  try:
    shape = Shape(
        num_encoder_layers=num_layers,
        num_decoder_layers=num_layers if num_decoder_layers is None else num_decoder_layers,
        d_model=config.get('d_model', 512), d_ff=config.get('d_ff', 2048),
        num_heads=config.get('num_heads', 8), d_kv=config.get('d_kv', 64),
        activation=activation, vocab_size=config.get('vocab_size', 32128),
        tie_embeddings=tied,
        relative_buckets=config.get('relative_attention_num_buckets', 32),
        relative_max_distance=config.get('relative_attention_max_distance', 128))
  except ValueError as e:
    raise CheckpointError(f'{where}: {e}') from e
  return shape, float(config.get('layer_norm_epsilon', 1e-6))


def config_from_shape(shape: Shape, layer_norm_epsilon: float = 1e-6,
                      dropout_rate: float = 0.1) -> dict:
  """An HF T5Config dict for a shape (readable by transformers 4.x and 5.x)."""
  return {
      'architectures': ['T5ForConditionalGeneration'], 'model_type': 't5',
      'd_model': shape.d_model, 'd_ff': shape.d_ff, 'd_kv': shape.d_kv,
      'num_heads': shape.num_heads, 'num_layers': shape.num_encoder_layers,
      'num_decoder_layers': shape.num_decoder_layers, 'feed_forward_proj': shape.activation,
      'vocab_size': shape.vocab_size, 'tie_word_embeddings': shape.tie_embeddings,
      'relative_attention_num_buckets': shape.relative_buckets,
      'relative_attention_max_distance': shape.relative_max_distance,
      'layer_norm_epsilon': layer_norm_epsilon, 'dropout_rate': dropout_rate,
      'is_encoder_decoder': True, 'decoder_start_token_id': 0, 'pad_token_id': 0,
      'eos_token_id': 1, 'initializer_factor': 1.0,
  }


# ---- tensor names ----------------------------------------------------------------------------

def _tensor_map(shape: Shape) -> Iterator[tuple[tuple[str, ...], str, str]]:
  """(our param path, HF tensor name, kind) for every tensor of the shape, layers unscanned."""
  yield ('token_embedder',), 'shared.weight', 'same'
  if not shape.tie_embeddings:
    yield ('logits_dense',), 'lm_head.weight', 'transpose'
  ffn = ('wi_0', 'wi_1', 'wo') if shape.is_gated else ('wi', 'wo')
  for stack, depth in (('encoder', shape.num_encoder_layers),
                       ('decoder', shape.num_decoder_layers)):
    decoder = stack == 'decoder'
    yield (stack, 'rel_embedding'), (
        f'{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight'), 'transpose'
    yield (stack, 'final_layer_norm', 'scale'), f'{stack}.final_layer_norm.weight', 'same'
    for i in range(depth):
      ours, hf = (stack, f'layers_{i}'), f'{stack}.block.{i}.layer'
      blocks = [('self_attention' if decoder else 'attention',
                 'pre_self_attention_layer_norm' if decoder else 'pre_attention_layer_norm',
                 'SelfAttention')]
      if decoder:
        blocks.append(('encoder_decoder_attention', 'pre_cross_attention_layer_norm',
                       'EncDecAttention'))
      for j, (attention, norm, hf_attention) in enumerate(blocks):
        for name, hf_name in (('query', 'q'), ('key', 'k'), ('value', 'v'), ('out', 'o')):
          kind = 'out_proj' if name == 'out' else 'in_proj'
          yield (*ours, attention, name), f'{hf}.{j}.{hf_attention}.{hf_name}.weight', kind
        yield (*ours, norm, 'scale'), f'{hf}.{j}.layer_norm.weight', 'same'
      j = len(blocks)
      for name in ffn:
        yield (*ours, 'mlp', name), f'{hf}.{j}.DenseReluDense.{name}.weight', 'transpose'
      yield (*ours, 'pre_mlp_layer_norm', 'scale'), f'{hf}.{j}.layer_norm.weight', 'same'


def _to_ours(array: np.ndarray, kind: str, shape: Shape) -> np.ndarray:
  if kind == 'in_proj':  # [heads*d_kv, d_model] -> [d_model, heads, d_kv]
    return array.T.reshape(shape.d_model, shape.num_heads, shape.d_kv)
  if kind == 'out_proj':  # [d_model, heads*d_kv] -> [heads, d_kv, d_model]
    return array.T.reshape(shape.num_heads, shape.d_kv, shape.d_model)
  return array.T if kind == 'transpose' else array


def _to_hf(array: np.ndarray, kind: str) -> np.ndarray:
  if kind in ('in_proj', 'out_proj'):
    first = array.shape[0] if kind == 'in_proj' else array.shape[0] * array.shape[1]
    return array.reshape(first, -1).T
  return array.T if kind == 'transpose' else array


def _hf_shape(path: tuple[str, ...], kind: str, expected: Mapping) -> tuple[int, ...]:
  ours = expected[path]
  if kind == 'in_proj':
    return (ours[1] * ours[2], ours[0])
  if kind == 'out_proj':
    return (ours[2], ours[0] * ours[1])
  return tuple(reversed(ours)) if kind == 'transpose' else tuple(ours)


def _param_shapes(network: T5Network) -> dict[tuple[str, ...], tuple[int, ...]]:
  """Our unscanned parameter shapes, by path, from eval_shape (nothing allocated)."""
  unscanned = network.clone(scan_layers=False)
  tokens = jnp.ones((1, 1), jnp.int32)
  tree = jax.eval_shape(lambda: unscanned.init(jax.random.key(0), tokens, tokens))['params']
  return {path: tuple(leaf.shape) for path, leaf in flatten(nn.unbox(tree))}


# ---- reading and writing tensors -------------------------------------------------------------

# Names transformers writes that need no parameter of ours: the copies of the tied embedding
# (state_dict() and pytorch_model.bin hold them), and a bias old T5 checkpoints carry that
# transformers itself ignores on load (`_keys_to_ignore_on_load_unexpected`).
_EMBEDDING_ALIASES = ('encoder.embed_tokens.weight', 'decoder.embed_tokens.weight')
_IGNORED_TENSORS = ('decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight',)


def _check_all_used(tensors: Mapping, used: set[str], origins: Mapping[str, str], source: str,
                    shape: Shape) -> None:
  """Raises CheckpointError listing the checkpoint's tensors that the config leaves unused."""
  unused = sorted(set(tensors) - used - set(_IGNORED_TENSORS))
  if not unused:
    return
  files = sorted({origins.get(name, source) for name in unused})
  shards = ', '.join(os.path.basename(file) for file in files)
  where = files[0] if len(files) == 1 else f'{source} (shards {shards})'
  listed = ', '.join(repr(name) for name in unused[:5])
  more = f' and {len(unused) - 5} more' if len(unused) > 5 else ''
  raise CheckpointError(
      f'{where}: {len(unused)} tensor(s) unused by the model {CONFIG_FILE} describes '
      f'({shape.num_encoder_layers} encoder / {shape.num_decoder_layers} decoder layers, '
      f'activation {shape.activation}): {listed}{more}. The config and the weights disagree: '
      f'fix {CONFIG_FILE} (e.g. num_layers, num_decoder_layers, feed_forward_proj) or use the '
      'weights that match it.')


def from_hf(path: str, dtype: Any = jnp.float32, **network_options) -> tuple[T5Network, dict]:
  """(network, params) from a local HF T5 directory; params are float32 numpy-backed arrays.

  Raises CheckpointError naming the file and tensor when the directory, config or weights
  do not describe a T5ForConditionalGeneration: unreadable files, missing or misshapen
  tensors, and tensors the config leaves unused (e.g. more layers in the file than in it).
  """
  config = read_config(path, 'T5')
  shape, epsilon = shape_from_config(config, os.path.join(path, CONFIG_FILE))
  network_options.setdefault('dropout_rate', float(config.get('dropout_rate', 0.1)))
  network = T5Network(shape, dtype=dtype, layer_norm_epsilon=epsilon, **network_options)
  tensors, origins, source = read_tensors(path)
  used = set()
  if 'shared.weight' not in tensors and 'encoder.embed_tokens.weight' in tensors:
    tensors['shared.weight'] = tensors['encoder.embed_tokens.weight']
  if 'shared.weight' in tensors:  # transformers ties these to shared.weight on load too
    used.update(_EMBEDDING_ALIASES)
  if shape.tie_embeddings and 'lm_head.weight' in tensors and 'shared.weight' in tensors:
    if not np.array_equal(tensors['lm_head.weight'], tensors['shared.weight']):
      raise CheckpointError(
          f'{origins.get("lm_head.weight", source)}: lm_head.weight differs from shared.weight, '
          f'but {CONFIG_FILE} asks for rescaled tied logits (T5 v1.0); set tie_word_embeddings '
          'to false for an untied head.')
    used.add('lm_head.weight')
  if not shape.tie_embeddings and 'lm_head.weight' not in tensors:
    # transformers 5.x ties lm_head to shared and may omit it when saving.
    tensors['lm_head.weight'] = tensors.get('shared.weight')
  expected = _param_shapes(network)
  flat = {}
  for ours, hf_name, kind in _tensor_map(shape):
    array = tensors.get(hf_name)
    if array is None:
      raise CheckpointError(f'{source}: tensor {hf_name!r} is missing; {CONFIG_FILE} '
                            f'describes {shape} which needs it.')
    want = _hf_shape(ours, kind, expected)
    if tuple(array.shape) != want:
      raise CheckpointError(f'{origins.get(hf_name, source)}: tensor {hf_name!r} has shape '
                            f'{tuple(array.shape)} but {CONFIG_FILE} implies {want}; the '
                            'weights and config disagree.')
    flat[ours] = jnp.asarray(_to_ours(array, kind, shape))
    used.add(hf_name)
  _check_all_used(tensors, used, origins, source, shape)
  params = unflatten(flat)
  if network.scan_layers:
    params = scan_params(params)
  return network, params


def to_hf(model: T5Model | T5Network | Shape, params: Mapping, path: str,
          layer_norm_epsilon: float | None = None) -> None:
  """Writes config.json + model.safetensors (float32) of `params` into directory `path`."""
  from safetensors.numpy import save_file
  network = model.network if isinstance(model, T5Model) else model
  if isinstance(network, Shape):
    network = T5Network(network)
  shape = network.shape
  epsilon = network.layer_norm_epsilon if layer_norm_epsilon is None else layer_norm_epsilon
  params = nn.unbox(params)
  if 'encoder' in params and 'layers' in params['encoder']:
    params = unscan_params(params)
  flat = dict(flatten(params))
  expected = _param_shapes(network)
  tensors = {}
  for ours, hf_name, kind in _tensor_map(shape):
    if ours not in flat:
      raise CheckpointError(f'params: {"/".join(ours)} is missing; the shape {shape} needs it.')
    array = np.asarray(flat[ours], dtype=np.float32)
    if tuple(array.shape) != expected[ours]:
      raise CheckpointError(f'params: {"/".join(ours)} has shape {array.shape}, the shape '
                            f'implies {expected[ours]}.')
    tensors[hf_name] = np.ascontiguousarray(_to_hf(array, kind))
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, CONFIG_FILE), 'w') as f:
    json.dump(config_from_shape(shape, epsilon, network.dropout_rate), f, indent=2)
  save_file(tensors, os.path.join(path, SAFETENSORS_FILE), metadata={'format': 'pt'})


def __getattr__(name: str) -> Any:
  """Re-exports `from_mesh_tf` (text/mesh_tf.py, which imports this module) on first use."""
  if name == 'from_mesh_tf':
    from text.mesh_tf import from_mesh_tf
    return from_mesh_tf
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
