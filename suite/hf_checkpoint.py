"""Hugging Face checkpoint directories, read the same way for every model family.

A directory holds config.json plus model.safetensors, a sharded model.safetensors.index.json
(its shards beside it) or pytorch_model.bin. Tensors come back as float32 numpy arrays under
their saved names; every unreadable file raises CheckpointError naming it. The families map the
names onto their own parameter trees (text.t5, vision.checkpoints).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

CONFIG_FILE = 'config.json'
SAFETENSORS_FILE = 'model.safetensors'
SAFETENSORS_INDEX_FILE = 'model.safetensors.index.json'
TORCH_FILE = 'pytorch_model.bin'
Path = tuple[str, ...]


class CheckpointError(ValueError):
  """A checkpoint cannot be read or written as this model; says which file or tensor and why."""


def flatten(tree: Mapping, prefix: Path = ()) -> Iterator[tuple[Path, Any]]:
  """(path, leaf) for every leaf of a nested dict."""
  for key, value in tree.items():
    if isinstance(value, Mapping):
      yield from flatten(value, (*prefix, key))
    else:
      yield (*prefix, key), value


def unflatten(flat: Mapping[Path, Any]) -> dict:
  """The nested dict whose leaves `flat` lists by path."""
  tree: dict = {}
  for path, value in flat.items():
    node = tree
    for key in path[:-1]:
      node = node.setdefault(key, {})
    node[path[-1]] = value
  return tree


def read_config(path: str, model: str) -> dict:
  """config.json of a local Hugging Face directory of a `model` ('T5', 'ViT')."""
  if not os.path.isdir(path):
    raise CheckpointError(f'{path}: not a directory; from_hf takes a local Hugging Face {model} '
                          'directory holding config.json and model.safetensors or '
                          'pytorch_model.bin.')
  config_path = os.path.join(path, CONFIG_FILE)
  if not os.path.isfile(config_path):
    raise CheckpointError(f'{config_path}: missing; a Hugging Face {model} directory needs its '
                          'config.json (save_pretrained writes it).')
  try:
    with open(config_path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise CheckpointError(f'{config_path}: not valid JSON ({e}).') from e


def read_tensors(path: str) -> tuple[dict[str, np.ndarray], dict[str, str], str]:
  """(tensors as float32 numpy arrays, the file each came from, the checkpoint's main file).

  The main file is the weights file, or the shard index for a sharded safetensors checkpoint.
  """
  single = os.path.join(path, SAFETENSORS_FILE)
  index = os.path.join(path, SAFETENSORS_INDEX_FILE)
  torch_file = os.path.join(path, TORCH_FILE)
  if os.path.isfile(single):
    return *_read_safetensors([single]), single
  if os.path.isfile(index):
    return *_read_safetensors(shard_files(path, index)), index
  if os.path.isfile(torch_file):
    tensors = _read_torch(torch_file)
    return tensors, dict.fromkeys(tensors, torch_file), torch_file
  raise CheckpointError(f'{path}: no weights; expected {SAFETENSORS_FILE}, '
                        f'{SAFETENSORS_INDEX_FILE} or {TORCH_FILE}.')


def shard_files(path: str, index: str) -> list[str]:
  """The shard files a model.safetensors.index.json names, checked to exist."""
  try:
    with open(index) as f:
      weight_map = json.load(f)['weight_map']
    shards = sorted(set(weight_map.values()))
  except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
    raise CheckpointError(f'{index}: not a shard index ({type(e).__name__}: {e}); it must be '
                          'JSON with a "weight_map" of tensor name -> shard file, as '
                          'save_pretrained writes it.') from e
  files = [os.path.join(path, shard) for shard in shards]
  for file in files:
    if not os.path.isfile(file):
      raise CheckpointError(f'{file}: missing; {index} lists it as a shard. Copy every shard '
                            'of the checkpoint into the directory.')
  return files


def _read_safetensors(files: list[str]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
  from safetensors import safe_open
  tensors, origins = {}, {}
  for file in files:
    try:
      # The 'flax' framework reads bfloat16 too, which plain numpy cannot.
      with safe_open(file, framework='flax') as f:
        for key in f.keys():
          tensors[key] = np.asarray(f.get_tensor(key), dtype=np.float32)
          origins[key] = file
    except Exception as e:  # SafetensorError, OSError, ...: all mean an unusable file
      raise CheckpointError(
          f'{file}: cannot read as safetensors ({type(e).__name__}: {e}); the file is truncated '
          'or corrupt: download it again or re-save the model with save_pretrained.') from e
  return tensors, origins


def _read_torch(file: str) -> dict[str, np.ndarray]:
  import torch  # optional dependency (the `hf` extra); only for .bin checkpoints
  try:
    state = torch.load(file, map_location='cpu', weights_only=True)
  except Exception as e:  # UnpicklingError, EOFError, RuntimeError, OSError, ...
    first_line = str(e).strip().split('\n')[0][:300]
    raise CheckpointError(
        f'{file}: cannot read as a PyTorch state dict ({type(e).__name__}: {first_line}); the '
        'file is truncated, corrupt, or not a plain state dict of tensors: download it again '
        'or re-save the model with save_pretrained.') from e
  if not isinstance(state, Mapping):
    raise CheckpointError(f'{file}: holds a {type(state).__name__}, not a state dict of '
                          'tensors; re-save the model with save_pretrained.')
  tensors = {}
  for key, value in state.items():
    if not isinstance(value, torch.Tensor):
      raise CheckpointError(f'{file}: entry {key!r} is a {type(value).__name__}, not a tensor; '
                            're-save the model with save_pretrained.')
    tensors[key] = value.detach().to(torch.float32).numpy()
  return tensors
