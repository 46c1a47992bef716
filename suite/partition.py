"""Device mesh, logical-axis rules and shardings for parameters, optimizer state and batches.

The mesh has two axes, ('data', 'model'); one device is a 1x1 mesh, so the same code runs on a
laptop, one GPU or a pod slice. Networks name their parameter and activation axes logically
('batch', 'embed', 'mlp', 'heads', ...) with `nn.with_logical_partitioning`; `RULES` maps those
names to mesh axes (t5x style). A dimension that a mesh axis does not divide is replicated
instead (e.g. 6 heads on a 4-way model axis), and names missing from the rules are replicated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from absl import logging
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA = 'data'
MODEL = 'model'
MESH_AXES = (DATA, MODEL)

# Logical axis name -> mesh axis (None: replicated). First matching rule wins.
RULES: tuple[tuple[str, str | None], ...] = (
    ('batch', DATA),
    ('vocab', MODEL),
    ('mlp', MODEL),
    ('heads', MODEL),
    ('joined_kv', MODEL),
    ('classes', None),
    ('embed', None),
    ('kv', None),
    ('length', None),
    ('relpos_buckets', None),
    ('layers', None),
)


class PartitionError(ValueError):
  """A mesh or a batch cannot be laid out as asked; the message says what would work."""


def make_mesh(model_parallelism: int = 1, devices: Sequence[Any] | None = None) -> Mesh:
  """A ('data', 'model') mesh over `devices` (default: all), `model_parallelism` wide."""
  devices = list(jax.devices() if devices is None else devices)
  n = len(devices)
  if model_parallelism < 1 or n % model_parallelism:
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    raise PartitionError(
        f'model_parallelism={model_parallelism} does not divide the {n} devices; '
        f'choose one of {divisors}')
  shape = (n // model_parallelism, model_parallelism)
  try:
    grid = mesh_utils.create_device_mesh(shape, devices=devices)
  except (ValueError, NotImplementedError, AssertionError):
    grid = np.asarray(devices, dtype=object).reshape(shape)
  return Mesh(grid, MESH_AXES)


def replicated(mesh: Mesh) -> NamedSharding:
  """The sharding of a value that every device holds whole (scalars, metrics, RNG)."""
  return NamedSharding(mesh, PartitionSpec())


def _divisible_spec(spec: PartitionSpec, shape: Sequence[int], mesh: Mesh,
                    what: str) -> PartitionSpec:
  """`spec` with the mesh axes that do not divide their dimension dropped (replicated)."""
  out = []
  for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec)), strict=True):
    names = (axes,) if isinstance(axes, str) else tuple(axes or ())
    size = int(np.prod([mesh.shape[a] for a in names])) if names else 1
    if size > 1 and dim % size:
      logging.warning('%s: dimension %d is not divisible by mesh axes %s (size %d); '
                      'replicating it', what, dim, names, size)
      out.append(None)
    else:
      out.append(axes)
  return PartitionSpec(*out)


def logical_shardings(boxed_tree: Any, mesh: Mesh,
                      rules: Sequence[tuple[str, str | None]] = RULES) -> Any:
  """NamedShardings for a (possibly abstract) param tree whose leaves may be logical boxes.

  Boxed leaves (`nn.LogicallyPartitioned`) follow `rules`; plain leaves are replicated. The
  result has the structure of `nn.meta.unbox(boxed_tree)`.
  """
  def one(path, leaf):
    shape = np.shape(leaf.value if isinstance(leaf, nn.meta.AxisMetadata) else leaf)
    if isinstance(leaf, nn.LogicallyPartitioned):
      spec = nn.logical_to_mesh_axes(leaf.names, rules)
      spec = _divisible_spec(spec, shape, mesh, jax.tree_util.keystr(path))
      return NamedSharding(mesh, spec)
    return replicated(mesh)
  return jax.tree_util.tree_map_with_path(
      one, boxed_tree, is_leaf=lambda x: isinstance(x, nn.meta.AxisMetadata))


def follow_params(tree: Any, params: Any, param_shardings: Any, mesh: Mesh) -> Any:
  """Shardings for a tree that embeds copies of the param tree (optimizer state).

  A leaf whose key path ends with a parameter's key path and which has that parameter's shape
  is sharded like the parameter (Adam moments, momentum); all other leaves (step counts,
  Adafactor's factored row/column statistics) are small and replicated.
  """
  by_path = {}
  for (path, p), s in zip(jax.tree_util.tree_flatten_with_path(params)[0],
                          jax.tree_util.tree_leaves(param_shardings), strict=True):
    by_path[tuple(path)] = (np.shape(p), s)

  def one(path, leaf):
    path = tuple(path)
    for start in range(len(path)):
      hit = by_path.get(path[start:])
      if hit is not None and hit[0] == np.shape(leaf):
        return hit[1]
    return replicated(mesh)
  return jax.tree_util.tree_map_with_path(one, tree)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Batches are split along their leading dimension over the 'data' mesh axis."""
  return NamedSharding(mesh, PartitionSpec(DATA))


def check_batch(batch: Any, mesh: Mesh, multiple: int = 1) -> int:
  """The global batch size; raises if it does not split into data shards x `multiple`."""
  sizes = {np.shape(x)[0] if np.ndim(x) else None for x in jax.tree_util.tree_leaves(batch)}
  if len(sizes) != 1 or None in sizes:
    raise PartitionError(
        'every batch leaf needs the same leading batch dimension, got sizes '
        f'{sorted(map(str, sizes))}')
  size = sizes.pop() * jax.process_count()
  need = mesh.shape[DATA] * multiple
  if size % need:
    raise PartitionError(
        f'global batch size {size} is not divisible by data shards ({mesh.shape[DATA]}) x '
        f'microbatches ({multiple}) = {need}; use a batch size that is a multiple of {need}')
  return size


def shard_batch(batch: Any, mesh: Mesh) -> Any:
  """Places this process's share of a batch as global arrays split over 'data'.

  On one host the share is the whole batch; on several, each host passes its own slice and
  the global batch is their concatenation (`jax.make_array_from_process_local_data`).
  """
  sharding = batch_sharding(mesh)

  def place(x):
    if isinstance(x, jax.ShapeDtypeStruct) or (
        isinstance(x, jax.Array) and x.sharding.is_equivalent_to(sharding, x.ndim)):
      return x  # already global (or abstract, for lowering)
    return jax.make_array_from_process_local_data(sharding, np.asarray(x))
  return jax.tree_util.tree_map(place, batch)


def to_host(tree: Any) -> Any:
  """Fully replicated device values (metrics) as numpy, without cross-host gathering."""
  return jax.tree_util.tree_map(
      lambda x: np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) else np.asarray(x),
      tree)
