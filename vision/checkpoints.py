"""Hugging Face ViTForImageClassification checkpoints <-> ViTNetwork's parameter tree, and the
tree helpers the checkpoint readers share (vision.vit's `from_hf` / `to_hf` are the public calls).

A directory holds config.json plus model.safetensors, a sharded model.safetensors.index.json or
pytorch_model.bin. Tensor names are read in both spellings transformers uses: the saved one
(`vit.encoder.layer.N.attention.attention.query.weight`, written by 4.x and 5.x) and 5.x's
in-memory one (`vit.layers.N.attention.q_proj.weight`, what its `state_dict()` holds); they are
written in the saved spelling, which both versions load.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from suite.hf_checkpoint import CONFIG_FILE, CheckpointError, Path, flatten, read_tensors, unflatten
from suite.shapes import VISION, Shape
from vision.network import CHANNELS, ViTNetwork, posemb_sincos_2d

# HF hidden_act -> our gelu_approximate: 'gelu' is exact (erf), the others the tanh form.
HF_ACTIVATIONS = {'gelu': False, 'gelu_new': True, 'gelu_pytorch_tanh': True}
# transformers 5.x in-memory names -> the saved names (the inverse of its conversion mapping).
_HF_V5_NAMES = ((r'^vit\.layers\.(\d+)\.', r'vit.encoder.layer.\1.'),
                (r'\.attention\.q_proj\.', '.attention.attention.query.'),
                (r'\.attention\.k_proj\.', '.attention.attention.key.'),
                (r'\.attention\.v_proj\.', '.attention.attention.value.'),
                (r'\.attention\.o_proj\.', '.attention.output.dense.'),
                (r'\.mlp\.fc1\.', '.intermediate.dense.'),
                (r'\.mlp\.fc2\.', '.output.dense.'))


# ---- our tree ----------------------------------------------------------------------------------

def param_shapes(network: ViTNetwork) -> dict[Path, tuple[int, ...]]:
  """Our unscanned parameter shapes by path, from eval_shape (nothing allocated)."""
  size = network.shape.image_size
  unscanned = network.clone(scan_layers=False)
  images = jax.ShapeDtypeStruct((1, size, size, CHANNELS), jnp.float32)
  tree = jax.eval_shape(lambda x: unscanned.init(jax.random.key(0), x), images)['params']
  return {path: tuple(leaf.shape) for path, leaf in flatten(nn.unbox(tree))}


def check_and_build(network: ViTNetwork, flat: Mapping[Path, np.ndarray], source: str) -> dict:
  """Params (unscanned or scanned as the network asks) after checking every shape."""
  from vision.network import scan_params
  expected = param_shapes(network)
  for path, want in expected.items():
    if path not in flat:
      raise CheckpointError(f'{source}: no value for {"/".join(path)}; the shape '
                            f'{network.shape} needs it.')
    if tuple(flat[path].shape) != want:
      raise CheckpointError(f'{source}: {"/".join(path)} would have shape '
                            f'{tuple(flat[path].shape)}, the shape implies {want}.')
  params = unflatten({path: jnp.asarray(flat[path], jnp.float32) for path in expected})
  return scan_params(params) if network.scan_layers else params


def _block_paths(prefix: Path) -> Iterator[tuple[Path, str]]:
  """(our path, generic role) of one encoder block's (or the MAP head's) tensors."""
  for proj in ('query', 'key', 'value', 'out'):
    for part in ('kernel', 'bias'):
      yield (*prefix, 'attention', f'{proj}_{part}'), f'{proj}_{part}'
  for layer in ('wi', 'wo'):
    for part in ('kernel', 'bias'):
      yield (*prefix, 'mlp', f'{layer}_{part}'), f'{layer}_{part}'


# ---- Hugging Face ------------------------------------------------------------------------------

def _square(config: Mapping, key: str, default: int, where: str) -> int:
  value = config.get(key, default)
  if isinstance(value, (list, tuple)):
    if len(value) != 2 or value[0] != value[1]:
      raise CheckpointError(f'{where}: {key}={value}: only square sizes are supported.')
    value = value[0]
  return value


def shape_from_config(config: Mapping[str, Any], where: str = CONFIG_FILE
                      ) -> tuple[Shape, dict[str, Any]]:
  """(Shape, network numerics options) for an HF ViT config dict."""
  if config.get('model_type') != 'vit':
    raise CheckpointError(f'{where}: model_type={config.get("model_type")!r}, expected "vit" '
                          '(a ViTForImageClassification checkpoint).')
  activation = config.get('hidden_act', 'gelu')
  if activation not in HF_ACTIVATIONS:
    raise CheckpointError(f'{where}: hidden_act={activation!r} is not supported; valid: '
                          f'{", ".join(HF_ACTIVATIONS)}.')
  if config.get('num_channels', CHANNELS) != CHANNELS:
    raise CheckpointError(f'{where}: num_channels={config["num_channels"]}; this ViT takes '
                          f'{CHANNELS}-channel (RGB) images.')
  d_model = config.get('hidden_size', 768)
  heads = config.get('num_attention_heads', 12)
  head_dim = config.get('head_dim')
  if head_dim is None:
    if d_model % heads:
      raise CheckpointError(f'{where}: hidden_size={d_model} is not a multiple of '
                            f'num_attention_heads={heads}, and there is no head_dim.')
    head_dim = d_model // heads
  labels = config.get('id2label')
  num_classes = len(labels) if labels else config.get('num_labels', 2)
  try:
    shape = Shape(num_encoder_layers=config.get('num_hidden_layers', 12), num_decoder_layers=0,
                  d_model=d_model, d_ff=config.get('intermediate_size', 3072), num_heads=heads,
                  d_kv=head_dim, domain=VISION, activation='gelu',
                  image_size=_square(config, 'image_size', 224, where),
                  patch_size=_square(config, 'patch_size', 16, where), pooling='cls',
                  num_classes=num_classes)
  except ValueError as e:
    raise CheckpointError(f'{where}: {e}') from e
  numerics = {'layer_norm_epsilon': float(config.get('layer_norm_eps', 1e-12)),
              'gelu_approximate': HF_ACTIVATIONS[activation]}
  return shape, numerics


def config_from_shape(shape: Shape, layer_norm_epsilon: float, gelu_approximate: bool,
                      dropout_rate: float = 0.0) -> dict:
  """An HF ViTConfig dict for a shape (pooling 'cls' only; see `hf_tensors`)."""
  return {
      'architectures': ['ViTForImageClassification'], 'model_type': 'vit',
      'hidden_size': shape.d_model, 'num_hidden_layers': shape.num_encoder_layers,
      'num_attention_heads': shape.num_heads, 'head_dim': shape.d_kv,
      'intermediate_size': shape.d_ff,
      'hidden_act': 'gelu_pytorch_tanh' if gelu_approximate else 'gelu',
      'layer_norm_eps': layer_norm_epsilon, 'image_size': shape.image_size,
      'patch_size': shape.patch_size, 'num_channels': CHANNELS, 'qkv_bias': True,
      'hidden_dropout_prob': dropout_rate, 'attention_probs_dropout_prob': 0.0,
      'id2label': {str(i): f'LABEL_{i}' for i in range(shape.num_classes)},
      'label2id': {f'LABEL_{i}': i for i in range(shape.num_classes)},
  }


def _hf_map(shape: Shape) -> Iterator[tuple[Path, str, str]]:
  """(our path, HF tensor name, conversion kind) for every tensor, layers unscanned."""
  embeddings = 'vit.embeddings'
  yield ('patch_kernel',), f'{embeddings}.patch_embeddings.projection.weight', 'conv'
  yield ('patch_bias',), f'{embeddings}.patch_embeddings.projection.bias', 'same'
  yield ('cls_token',), f'{embeddings}.cls_token', 'lead1'
  yield ('position_embedding',), f'{embeddings}.position_embeddings', 'lead1'
  hf_roles = {'query': 'attention.attention.query', 'key': 'attention.attention.key',
              'value': 'attention.attention.value', 'out': 'attention.output.dense',
              'wi': 'intermediate.dense', 'wo': 'output.dense'}
  for i in range(shape.num_encoder_layers):
    ours, hf = (f'encoder_layers_{i}',), f'vit.encoder.layer.{i}'
    for norm, hf_norm in (('pre_attention_layer_norm', 'layernorm_before'),
                          ('pre_mlp_layer_norm', 'layernorm_after')):
      yield (*ours, norm, 'scale'), f'{hf}.{hf_norm}.weight', 'same'
      yield (*ours, norm, 'bias'), f'{hf}.{hf_norm}.bias', 'same'
    for path, role in _block_paths(ours):
      layer, part = role.split('_')
      name = f'{hf}.{hf_roles[layer]}.{"weight" if part == "kernel" else "bias"}'
      if part == 'bias':
        kind = 'flat' if layer in ('query', 'key', 'value') else 'same'
      else:
        kind = {'query': 'in_proj', 'key': 'in_proj', 'value': 'in_proj',
                'out': 'out_proj'}.get(layer, 'transpose')
      yield path, name, kind
  yield ('encoder_norm', 'scale'), 'vit.layernorm.weight', 'same'
  yield ('encoder_norm', 'bias'), 'vit.layernorm.bias', 'same'
  yield ('head', 'kernel'), 'classifier.weight', 'transpose'
  yield ('head', 'bias'), 'classifier.bias', 'same'


def _hf_shape(ours: tuple[int, ...], kind: str) -> tuple[int, ...]:
  if kind == 'conv':  # ours [p, p, 3, d]; HF Conv2d weight [d, 3, p, p]
    return (ours[3], ours[2], ours[0], ours[1])
  if kind == 'lead1':
    return (1,) * (3 - len(ours)) + ours
  if kind == 'in_proj':  # ours [d, h, kv]; HF [h*kv, d]
    return (ours[1] * ours[2], ours[0])
  if kind == 'out_proj':  # ours [h, kv, d]; HF [d, h*kv]
    return (ours[2], ours[0] * ours[1])
  if kind == 'flat':
    return (math.prod(ours),)
  return tuple(reversed(ours)) if kind == 'transpose' else ours


def _from_hf_array(array: np.ndarray, kind: str, ours: tuple[int, ...]) -> np.ndarray:
  if kind == 'conv':
    return array.transpose(2, 3, 1, 0)
  if kind in ('in_proj', 'out_proj', 'transpose'):
    return array.T.reshape(ours)
  return array.reshape(ours)


def _to_hf_array(array: np.ndarray, kind: str) -> np.ndarray:
  if kind == 'conv':
    return array.transpose(3, 2, 0, 1)
  if kind == 'in_proj':
    return array.reshape(array.shape[0], -1).T
  if kind == 'out_proj':
    return array.reshape(-1, array.shape[-1]).T
  if kind == 'transpose':
    return array.T
  if kind == 'lead1':
    return array.reshape((1,) * (3 - array.ndim) + array.shape)
  return array.reshape(-1) if kind == 'flat' else array


def read_hf_tensors(path: str) -> tuple[dict[str, np.ndarray], str]:
  """(tensors as float32 numpy arrays under their saved names, the weights file or index)."""
  tensors, _, source = read_tensors(path)
  renamed = {}
  for name, value in tensors.items():
    for pattern, replacement in _HF_V5_NAMES:
      name = re.sub(pattern, replacement, name)
    renamed[name] = value
  return renamed, source


def from_hf_tensors(network: ViTNetwork, tensors: Mapping[str, np.ndarray], source: str,
                    qkv_bias: bool = True) -> dict:
  """Our params from HF tensors (saved names); every tensor must be used, except the pooler
  of a ViTModel, which ViTForImageClassification has no place for and ignores too."""
  shape = network.shape
  expected = param_shapes(network)
  flat, used = {}, set()
  for ours, name, kind in _hf_map(shape):
    want = _hf_shape(expected[ours], kind)
    if name not in tensors and not qkv_bias and re.search(r'\.(query|key|value)\.bias$', name):
      flat[ours] = np.zeros(expected[ours], np.float32)  # config qkv_bias=false
      continue
    if name not in tensors:
      raise CheckpointError(f'{source}: tensor {name!r} is missing; {CONFIG_FILE} describes '
                            f'{shape}, which needs it.')
    array = tensors[name]
    if tuple(array.shape) != want:
      raise CheckpointError(f'{source}: tensor {name!r} has shape {tuple(array.shape)} but '
                            f'{CONFIG_FILE} implies {want}; the weights and config disagree.')
    flat[ours] = _from_hf_array(array, kind, expected[ours])
    used.add(name)
  unused = sorted(n for n in set(tensors) - used if not n.startswith('vit.pooler.'))
  if unused:
    more = f' and {len(unused) - 5} more' if len(unused) > 5 else ''
    raise CheckpointError(
        f'{source}: {len(unused)} tensor(s) unused by the ViT {CONFIG_FILE} describes '
        f'({shape.num_encoder_layers} layers): {", ".join(map(repr, unused[:5]))}{more}. The '
        'config and the weights disagree (e.g. num_hidden_layers), or this is not a '
        'ViTForImageClassification.')
  return check_and_build(network, flat, source)


def hf_tensors(network: ViTNetwork, params: Mapping) -> dict[str, np.ndarray]:
  """HF tensors (saved names, float32) for our params; raises for what HF cannot express."""
  shape = network.shape
  if shape.pooling != 'cls':
    raise CheckpointError(f"pooling={shape.pooling!r}: ViTForImageClassification classifies "
                          "the class token, so only pooling='cls' shapes can be written.")
  flat = _our_flat(network, params)
  if shape.posemb == 'sincos2d':  # HF learns its table: write the fixed one (cls row zero)
    grid = shape.image_size // shape.patch_size
    table = posemb_sincos_2d(grid, shape.d_model)
    flat[('position_embedding',)] = np.concatenate([np.zeros_like(table[:1]), table])
  tensors = {}
  for ours, name, kind in _hf_map(shape):
    tensors[name] = np.ascontiguousarray(_to_hf_array(flat[ours], kind))
  return tensors


def _our_flat(network: ViTNetwork, params: Mapping) -> dict[Path, np.ndarray]:
  """Our params as float32 numpy by path, layers unscanned, checked against the shape."""
  from vision.network import unscan_params
  params = nn.unbox(params)
  if 'encoder_layers' in params:
    params = unscan_params(params)
  flat = {path: np.asarray(value, np.float32) for path, value in flatten(params)}
  expected = param_shapes(network)
  for path, want in expected.items():
    if path not in flat:
      raise CheckpointError(f'params: {"/".join(path)} is missing; the shape '
                            f'{network.shape} needs it.')
    if flat[path].shape != want:
      raise CheckpointError(f'params: {"/".join(path)} has shape {flat[path].shape}, the '
                            f'shape implies {want}.')
  return flat
