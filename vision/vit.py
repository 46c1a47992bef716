"""Public ViT entry points: build a model for a Shape; exchange checkpoints with Hugging Face and
read big_vision's.

`from_hf(path) -> (network, params)` reads a local HF `ViTForImageClassification` directory
without network access; `network.apply({'params': params}, images)` takes NHWC float images
and returns the logits HF gives for the same pixels in NCHW. `to_hf(model, params, path)`
writes config.json + model.safetensors that transformers loads. `from_big_vision(npz)` reads
the `.npz` of a big_vision or vit_jax (AugReg) ViT classifier.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

from suite.hf_checkpoint import CONFIG_FILE, SAFETENSORS_FILE, CheckpointError, read_config
from suite.shapes import Shape
from vision import big_vision_checkpoints, checkpoints
from vision.model import ViTModel
from vision.network import ViTNetwork

__all__ = ['CheckpointError', 'build', 'from_big_vision', 'from_hf', 'to_hf']

# big_vision's numerics: flax's tanh GELU and LayerNorm epsilon.
BIG_VISION_NUMERICS = {'layer_norm_epsilon': 1e-6, 'gelu_approximate': True}


def build(shape: Shape, dtype: Any = jnp.float32, *, dropout_rate: float = 0.0,
          attention_impl: str | None = None, remat_policy: str = 'none',
          scan_layers: bool = False, layer_norm_epsilon: float = 1e-6,
          gelu_approximate: bool = True, label_smoothing: float = 0.0) -> ViTModel:
  """The ViT model wrapper (init/loss/eval_metrics/features) for a vision shape."""
  network = ViTNetwork(shape, dtype=dtype, dropout_rate=dropout_rate,
                       attention_impl=attention_impl, layer_norm_epsilon=layer_norm_epsilon,
                       gelu_approximate=gelu_approximate, remat_policy=remat_policy,
                       scan_layers=scan_layers)
  return ViTModel(network, label_smoothing=label_smoothing)


def from_hf(path: str, dtype: Any = jnp.float32, **network_options) -> tuple[ViTNetwork, dict]:
  """(network, float32 params) from a local HF ViTForImageClassification directory.

  The shape, LayerNorm epsilon and GELU form come from config.json; `network_options`
  (scan_layers, attention_impl, remat_policy, dropout_rate) pass to ViTNetwork. Raises
  CheckpointError naming the file and tensor for an unreadable directory, another model_type,
  a missing or misshapen tensor, or tensors the config has no place for.
  """
  config = read_config(path, 'ViT')
  shape, numerics = checkpoints.shape_from_config(config, os.path.join(path, 'config.json'))
  network_options.setdefault('dropout_rate', float(config.get('hidden_dropout_prob', 0.0)))
  network = ViTNetwork(shape, dtype=dtype, **numerics, **network_options)
  tensors, source = checkpoints.read_hf_tensors(path)
  params = checkpoints.from_hf_tensors(network, tensors, source,
                                       qkv_bias=bool(config.get('qkv_bias', True)))
  return network, params


def to_hf(model: ViTModel | ViTNetwork | Shape, params: Mapping, path: str) -> None:
  """Writes config.json + model.safetensors (float32) of `params` into directory `path`.

  A Shape is written with big_vision's numerics (tanh GELU, epsilon 1e-6); a network or model
  with its own. Only pooling 'cls' has an HF equivalent (CheckpointError otherwise); fixed
  sin-cos positions are written as HF's (learned) position table. Attention widths other than
  d_model are written as `head_dim`, which transformers reads from 5.0 on.
  """
  from safetensors.numpy import save_file
  network = model.network if isinstance(model, ViTModel) else model
  if isinstance(network, Shape):
    network = ViTNetwork(network, **BIG_VISION_NUMERICS)
  tensors = checkpoints.hf_tensors(network, params)
  config = checkpoints.config_from_shape(network.shape, network.layer_norm_epsilon,
                                         network.gelu_approximate, network.dropout_rate)
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, CONFIG_FILE), 'w') as f:
    json.dump(config, f, indent=2)
  save_file(tensors, os.path.join(path, SAFETENSORS_FILE), metadata={'format': 'pt'})


def from_big_vision(npz_path: str, dtype: Any = jnp.float32, *, image_size: int | None = None,
                    **network_options) -> tuple[ViTNetwork, dict]:
  """(network, float32 params) from a big_vision or vit_jax (AugReg) ViT classifier `.npz`.

  The shape comes from the arrays: width, depth, heads and d_kv (attention kernels
  [d, heads, d_kv]), d_ff, patch size, pooling (class token `cls`, `MAPHead_0`, else global
  average), classes, and the image size from the position-embedding grid. `image_size=`
  other than the checkpoint's resizes that grid bilinearly (big_vision's resample_posemb);
  checkpoints with fixed sin-cos positions need it. Numerics are big_vision's (tanh GELU,
  LayerNorm epsilon 1e-6). Raises CheckpointError for an unreadable file, a missing array, or
  arrays this ViT has no place for (a pre_logits layer, a ResNet stem).
  """
  tree = big_vision_checkpoints.read_npz(npz_path)
  shape, flat = big_vision_checkpoints.big_vision_params(tree, npz_path, image_size)
  network = ViTNetwork(shape, dtype=dtype, **BIG_VISION_NUMERICS, **network_options)
  return network, checkpoints.check_and_build(network, flat, npz_path)
