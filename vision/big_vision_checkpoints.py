"""big_vision / vit_jax `.npz` ViT checkpoints -> ViTNetwork's parameter tree (vision.vit's
`from_big_vision` is the public call).

The flat `'/'`-joined keys of `np.savez`, in either layout: the vit_jax one of the released
AugReg checkpoints (`Transformer/encoderblock_N/MultiHeadDotProductAttention_1`, `LayerNorm_2`,
`MlpBlock_3`, `Transformer/posembed_input/pos_embedding` with the class token's row first) or
big_vision's own (`MultiHeadDotProductAttention_0`, `LayerNorm_1`, `MlpBlock_0`, a top-level
`pos_embedding` over the patches only, `MAPHead_0`, a scanned `encoderblock` whose arrays have a
leading depth axis). The shape is read off the arrays.
"""

from __future__ import annotations

import math
import os
import re

import jax
import numpy as np

from suite.hf_checkpoint import CheckpointError, Path, flatten, unflatten
from suite.shapes import VISION, Shape
from vision.network import CHANNELS

_INDEXED = re.compile(r'^(.*)_(\d+)$')


def _per_type_numbering(tree: dict) -> dict:
  """Renumbers `Type_N` children per type (0, 1, ... in order of N), at every level: the
  vit_jax layout numbers a block's children across types (LayerNorm_0,
  MultiHeadDotProductAttention_1, LayerNorm_2, MlpBlock_3), big_vision's per type
  (LayerNorm_0, MultiHeadDotProductAttention_0, LayerNorm_1, MlpBlock_0)."""
  groups: dict[str, list[tuple[int, str]]] = {}
  for key in tree:
    match = _INDEXED.match(key)
    if match:
      groups.setdefault(match.group(1), []).append((int(match.group(2)), key))
  rename = {}
  for base, members in groups.items():
    for new, (_, key) in enumerate(sorted(members)):
      rename[key] = f'{base}_{new}'
  return {rename.get(k, k): _per_type_numbering(v) if isinstance(v, dict) else v
          for k, v in tree.items()}


def read_npz(path: str) -> dict:
  """The nested tree of a big_vision / vit_jax `.npz` (keys split on '/')."""
  if not os.path.isfile(path):
    raise CheckpointError(f'{path}: no such file; from_big_vision takes a local .npz of '
                          'a big_vision or vit_jax ViT checkpoint.')
  try:
    with np.load(path, allow_pickle=False) as data:
      flat = {key: np.asarray(data[key], np.float32) for key in data.files}
  except Exception as e:  # BadZipFile, ValueError, OSError: an unusable file
    raise CheckpointError(f'{path}: cannot read as .npz ({type(e).__name__}: {e}).') from e
  return unflatten({tuple(key.split('/')): value for key, value in flat.items()})


def _take(tree: dict, *path: str) -> np.ndarray | None:
  """Pops the leaf tree[path[0]][path[1]]...; None when there is none."""
  node = tree
  for key in path[:-1]:
    node = node.get(key)
    if not isinstance(node, dict):
      return None
  value = node.get(path[-1])
  if value is None or isinstance(value, dict):
    return None
  del node[path[-1]]
  return value


def _need(tree: dict, path: Path, source: str) -> np.ndarray:
  value = _take(tree, *path)
  if value is None:
    raise CheckpointError(f'{source}: no array {"/".join(path)}; a big_vision ViT classifier '
                          'has it (vit_jax names are renumbered per module type first, e.g. '
                          'LayerNorm_2 -> LayerNorm_1, MlpBlock_3 -> MlpBlock_0).')
  return value


def _is_square(n: int) -> bool:
  return n >= 1 and math.isqrt(n) ** 2 == n


def big_vision_params(tree: dict, source: str, image_size: int | None
                      ) -> tuple[Shape, dict[Path, np.ndarray]]:
  """(Shape, our flat params) from a big_vision / vit_jax tree; `tree` is consumed, so what
  is left afterwards is what the ViT had no place for."""
  transformer = tree.get('Transformer', {})
  if 'encoderblock' in transformer:  # scanned: one block whose leaves have a depth axis
    block = transformer.pop('encoderblock')
    depth = jax.tree.leaves(block)[0].shape[0]
    for i in range(depth):
      transformer[f'encoderblock_{i}'] = jax.tree.map(lambda x, i=i: x[i], block)
  tree = _per_type_numbering(tree)

  def need(*path):
    return _need(tree, path, source)

  if 'pre_logits' in tree:
    raise CheckpointError(f'{source}: has a pre_logits (representation) layer, which this '
                          'ViT does not have; use a checkpoint without one (the AugReg '
                          'family has none).')
  flat: dict[Path, np.ndarray] = {}
  kernel = need('embedding', 'kernel')
  if kernel.ndim != 4 or kernel.shape[0] != kernel.shape[1] or kernel.shape[2] != CHANNELS:
    raise CheckpointError(f'{source}: embedding/kernel has shape {kernel.shape}; expected '
                          f'[patch, patch, {CHANNELS}, width].')
  patch, d_model = kernel.shape[0], kernel.shape[3]
  flat[('patch_kernel',)] = kernel
  flat[('patch_bias',)] = need('embedding', 'bias')
  depth = 0
  while f'encoderblock_{depth}' in tree.get('Transformer', {}):
    block = ('Transformer', f'encoderblock_{depth}')
    ours = (f'encoder_layers_{depth}',)
    for norm, name in (('pre_attention_layer_norm', 'LayerNorm_0'),
                       ('pre_mlp_layer_norm', 'LayerNorm_1')):
      for part in ('scale', 'bias'):
        flat[(*ours, norm, part)] = need(*block, name, part)
    _take_block(tree, block, ours, flat, source)
    depth += 1
  if not depth:
    raise CheckpointError(f'{source}: no Transformer/encoderblock_0; not a ViT checkpoint.')
  query = flat[('encoder_layers_0', 'attention', 'query_kernel')]
  heads, d_kv = query.shape[1], query.shape[2]
  d_ff = flat[('encoder_layers_0', 'mlp', 'wi_kernel')].shape[1]
  for part in ('scale', 'bias'):
    flat[('encoder_norm', part)] = need('Transformer', 'encoder_norm', part)

  pooling = 'gap'
  if 'MAPHead_0' in tree:
    pooling = 'map'
    flat[('map_head', 'probe')] = need('MAPHead_0', 'probe').reshape(-1)
    for part in ('scale', 'bias'):
      flat[('map_head', 'layer_norm', part)] = need('MAPHead_0', 'LayerNorm_0', part)
    _take_block(tree, ('MAPHead_0',), ('map_head',), flat, source)
  cls = _take(tree, 'cls')
  if cls is not None:
    pooling = 'cls'
    flat[('cls_token',)] = cls.reshape(-1)
  head = need('head', 'kernel')
  flat[('head', 'kernel')] = head
  flat[('head', 'bias')] = need('head', 'bias')

  posemb = None
  for path in (('Transformer', 'posembed_input', 'pos_embedding'),
               ('Transformer', 'pos_embedding'), ('pos_embedding',)):
    posemb = posemb if posemb is not None else _take(tree, *path)
  if posemb is None and image_size is None:
    raise CheckpointError(f'{source}: no pos_embedding (fixed sincos2d positions), so the '
                          'image size is unknown: pass image_size=.')
  if posemb is not None:
    posemb = posemb.reshape(-1, d_model)
    grid_rows, cls_row = _split_posemb(posemb, pooling == 'cls', source)
    image_size = _resolve_size(grid_rows, patch, image_size, source)
    rows = _resize_grid(grid_rows, image_size // patch)
    flat[('position_embedding',)] = rows if cls_row is None else np.concatenate([cls_row, rows])
  try:
    shape = Shape(num_encoder_layers=depth, num_decoder_layers=0, d_model=d_model, d_ff=d_ff,
                  num_heads=heads, d_kv=d_kv, domain=VISION, activation='gelu',
                  image_size=image_size, patch_size=patch, pooling=pooling,
                  num_classes=head.shape[-1], posemb='learn' if posemb is not None
                  else 'sincos2d')
  except ValueError as e:
    raise CheckpointError(f'{source}: the arrays describe no valid ViT shape: {e}') from e
  _drop_empty(tree)
  leftover = [path for path, _ in flatten(tree)]
  if leftover:
    listed = ', '.join('/'.join(p) for p in leftover[:5])
    more = f' and {len(leftover) - 5} more' if len(leftover) > 5 else ''
    raise CheckpointError(f'{source}: {len(leftover)} array(s) this ViT has no place for: '
                          f'{listed}{more} (a hybrid ResNet stem, a text tower, ...).')
  return shape, flat


def _take_block(tree: dict, prefix: Path, ours: Path, flat: dict[Path, np.ndarray],
                source: str) -> None:
  """Moves the attention and MlpBlock (flax names) under `prefix` into our `flat` params."""
  for proj in ('query', 'key', 'value', 'out'):
    for part in ('kernel', 'bias'):
      flat[(*ours, 'attention', f'{proj}_{part}')] = _need(
          tree, (*prefix, 'MultiHeadDotProductAttention_0', proj, part), source)
  for layer, dense in (('wi', 'Dense_0'), ('wo', 'Dense_1')):
    for part in ('kernel', 'bias'):
      flat[(*ours, 'mlp', f'{layer}_{part}')] = _need(tree, (*prefix, 'MlpBlock_0', dense, part),
                                                      source)


def _drop_empty(tree: dict) -> None:
  for key in list(tree):
    if isinstance(tree[key], dict):
      _drop_empty(tree[key])
      if not tree[key]:
        del tree[key]


def _split_posemb(posemb: np.ndarray, has_cls: bool, source: str
                  ) -> tuple[np.ndarray, np.ndarray | None]:
  """(patch rows, the class token's row or None). vit_jax tables hold the class token's row
  first (grid**2 + 1 rows); big_vision's hold the patches only, the class token none (zeros)."""
  rows = posemb.shape[0]
  if has_cls and not _is_square(rows) and _is_square(rows - 1):
    return posemb[1:], posemb[:1]
  if not _is_square(rows):
    raise CheckpointError(f'{source}: pos_embedding has {rows} rows, not a square grid'
                          f'{" (+1 class token)" if has_cls else ""}.')
  return posemb, (np.zeros_like(posemb[:1]) if has_cls else None)


def _resolve_size(grid_rows: np.ndarray, patch: int, image_size: int | None,
                  source: str) -> int:
  stored = math.isqrt(grid_rows.shape[0]) * patch
  if image_size is None:
    return stored
  if image_size <= 0 or image_size % patch:
    raise CheckpointError(f'image_size={image_size}: must be a positive multiple of the patch '
                          f'size {patch} of {source} (trained at {stored} pixels).')
  return image_size


def _resize_grid(rows: np.ndarray, new_grid: int) -> np.ndarray:
  """Bilinear resize of a [grid*grid, d] position table, as big_vision's resample_posemb."""
  grid = math.isqrt(rows.shape[0])
  if grid == new_grid:
    return rows
  import scipy.ndimage  # a dependency of jax
  table = rows.reshape(grid, grid, -1)
  zoom = (new_grid / grid, new_grid / grid, 1)
  return scipy.ndimage.zoom(table, zoom, order=1).reshape(new_grid * new_grid, -1)
