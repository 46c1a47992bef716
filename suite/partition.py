"""Device mesh, logical-axis rules and shardings for parameters, optimizer state and batches.

The mesh has three axes, ('data', 'fsdp', 'model'); one device is a 1x1x1 mesh, so the same
code runs on a laptop, one GPU or a pod slice. A mesh is written `data:2,fsdp:2,model:2`
(`parse_mesh`); axes not named are 1, and no text at all puts every device on `data`.

- The batch is split over `data` and `fsdp` together (`BATCH_AXES`): `fsdp` is data
  parallelism whose parameters and optimizer state are sharded too (ZeRO-3, as t5x and
  big_vision do), so every device still sees a distinct slice of the batch.
- Networks name their parameter and activation axes logically ('batch', 'embed', 'mlp',
  'heads', ...) with `nn.with_logical_partitioning`; each domain supplies the rules that map
  those names to mesh axes (t5x style; `RULES` is the generic default). A dimension that its
  mesh axes do not divide is replicated instead (e.g. the embedded vocabulary of 1079 on a
  2-way model axis, logged), and names missing from the rules are replicated.
- On several processes each one feeds its own rows of a global batch (`process_rows`).
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from absl import logging
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA = 'data'
FSDP = 'fsdp'
MODEL = 'model'
MESH_AXES = (DATA, FSDP, MODEL)
BATCH_AXES = (DATA, FSDP)  # the batch is split over both
REST = -1  # an axis of this size takes the devices the other axes leave

# Logical axis name -> mesh axis, a tuple of mesh axes, or None (replicated).
Rules = Sequence[tuple[str, str | tuple[str, ...] | None]]

# Generic logical axis name -> mesh axes (None: replicated). First matching rule wins. Domains
# supply their own (`Domain.logical_axis_rules`); these serve models without one (tests, toys).
RULES: Rules = (
    ('batch', BATCH_AXES),
    ('vocab', MODEL),
    ('mlp', MODEL),
    ('heads', MODEL),
    ('joined_kv', MODEL),
    ('embed', FSDP),
    ('classes', None),
    ('kv', None),
    ('length', None),
    ('relpos_buckets', None),
    ('layers', None),
)


class PartitionError(ValueError):
  """A mesh or a batch cannot be laid out as asked; the message says what would work."""


# Mesh specs: 'data:2,fsdp:2,model:2' <-> {'data': 2, 'fsdp': 2, 'model': 2}.

def parse_mesh(text: str | Mapping[str, int] | None) -> dict[str, int]:
  """A mesh spec as {axis: size} over all of `MESH_AXES`, in that order.

  'data:2,fsdp:2,model:2' -> {'data': 2, 'fsdp': 2, 'model': 2}; axes not named are 1;
  None or '' -> {'data': -1, 'fsdp': 1, 'model': 1} (data takes every device). A size of -1
  means "the devices the other axes leave"; at most one axis may have it. A mapping is
  checked the same way. Bad text raises PartitionError naming the bad part and the valid axes.
  """
  if text is None or (isinstance(text, str) and not text.strip()):
    return {DATA: REST, FSDP: 1, MODEL: 1}
  if isinstance(text, Mapping):
    items = [(str(axis), size, f'{axis}:{size}') for axis, size in text.items()]
  elif isinstance(text, str):
    items = []
    for part in text.split(','):
      axis, sep, size = part.strip().partition(':')
      if not sep or not axis.strip() or not size.strip():
        raise PartitionError(
            f'mesh {text!r}: {part.strip()!r} is not axis:size; write e.g. '
            f'data:2,fsdp:2,model:2 with axes from {", ".join(MESH_AXES)}')
      items.append((axis.strip(), size.strip(), part.strip()))
  else:
    raise PartitionError(
        f'mesh {text!r} is a {type(text).__name__}; give text such as data:2,fsdp:2,model:2 '
        'or a mapping {axis: size}')
  sizes: dict[str, int] = {}
  for axis, size, part in items:
    if axis not in MESH_AXES:
      raise PartitionError(
          f'mesh {_text_of(text)!r}: unknown axis {axis!r} in {part!r}; the axes are '
          f'{", ".join(MESH_AXES)}')
    if axis in sizes:
      raise PartitionError(f'mesh {_text_of(text)!r}: axis {axis!r} is given twice')
    whole = (isinstance(size, int) and not isinstance(size, bool)) or (
        isinstance(size, str) and re.fullmatch(r'-?[0-9]+', size))
    if not whole:
      raise PartitionError(
          f'mesh {_text_of(text)!r}: size {size!r} of axis {axis!r} is not an integer; use a '
          'number of devices >= 1, or -1 for the devices the other axes leave')
    value = int(size)
    if value < 1 and value != REST:
      raise PartitionError(
          f'mesh {_text_of(text)!r}: axis {axis!r} has size {value}; use a number of devices '
          '>= 1, or -1 for the devices the other axes leave')
    sizes[axis] = value
  rest = [axis for axis, size in sizes.items() if size == REST]
  if len(rest) > 1:
    raise PartitionError(
        f'mesh {_text_of(text)!r}: axes {", ".join(rest)} are all -1; at most one axis can '
        'take the devices the others leave')
  return {axis: sizes.get(axis, 1) for axis in MESH_AXES}


def _text_of(spec: str | Mapping[str, int] | None) -> str:
  if isinstance(spec, Mapping):
    return ','.join(f'{axis}:{size}' for axis, size in spec.items())
  return str(spec)


def mesh_text(shape: Mapping[str, int] | Mesh) -> str:
  """The canonical text of a mesh or mesh shape, every axis named: 'data:2,fsdp:2,model:2'."""
  sizes = dict(shape.shape) if isinstance(shape, Mesh) else dict(shape)
  return ','.join(f'{axis}:{sizes.get(axis, 1)}' for axis in MESH_AXES)


def _short_text(sizes: Mapping[str, int]) -> str:
  """'data:4,fsdp:2': the axes larger than 1 (data alone when all are 1)."""
  named = [f'{axis}:{sizes[axis]}' for axis in MESH_AXES if sizes[axis] != 1]
  return ','.join(named) or f'{DATA}:1'


def _fitting(wanted: Mapping[str, int], named: Sequence[str], num_devices: int,
             n: int = 2) -> list[str]:
  """The `n` meshes over exactly `num_devices` closest to `wanted` (-1: any size).

  Closest means fewest `named` (user-given) axes changed, then fewest axes changed, then the
  smallest change in log size; on a tie, changing `data` beats `fsdp`, which beats `model`.
  """
  divisors = [d for d in range(1, num_devices + 1) if num_devices % d == 0]
  options = []
  for data, fsdp in itertools.product(divisors, divisors):
    if num_devices % (data * fsdp):
      continue
    sizes = {DATA: data, FSDP: fsdp, MODEL: num_devices // (data * fsdp)}
    changed = [axis for axis in MESH_AXES if wanted[axis] not in (REST, sizes[axis])]
    distance = sum(abs(math.log2(sizes[a]) - math.log2(wanted[a])) for a in changed)
    options.append((sum(a in named for a in changed), len(changed), distance,
                    tuple(MESH_AXES.index(a) for a in changed), _short_text(sizes)))
  return [text for *_, text in sorted(options)[:n]]


def mesh_shape(spec: str | Mapping[str, int] | None, num_devices: int) -> dict[str, int]:
  """`parse_mesh(spec)` with -1 resolved so that the sizes multiply to `num_devices`.

  Raises PartitionError when they cannot, saying which axis does not fit and which meshes
  would (e.g. 'data:4,fsdp:2' for 8 devices).
  """
  sizes = parse_mesh(spec)
  if num_devices < 1:
    raise PartitionError(f'a mesh needs at least one device, got {num_devices}')
  fixed = math.prod(size for size in sizes.values() if size != REST)
  rest = [axis for axis, size in sizes.items() if size == REST]
  if (fixed == num_devices and not rest) or (rest and num_devices % fixed == 0):
    if rest:
      sizes[rest[0]] = num_devices // fixed
    return sizes
  # Name the axis at fault: the first that does not divide the devices left for it.
  left, culprit = num_devices, None
  for axis in MESH_AXES:
    if sizes[axis] != REST:
      if left % sizes[axis]:
        culprit = axis
        break
      left //= sizes[axis]
  if culprit is not None:
    where = _count(left) + (' that the axes before it leave' if left != num_devices else '')
    problem = f'axis {culprit}:{sizes[culprit]} does not divide the {where}'
  else:  # every axis divides, but the axes use fewer devices than there are
    used = ', '.join(f'{a}:{s}' for a, s in sizes.items() if s not in (1, REST)) or 'data:1'
    problem = (f'{used} uses only {fixed} of the {_count(num_devices)}; make an axis larger '
               'or let one take the rest with -1')
  named = [axis for axis in MESH_AXES if sizes[axis] != 1]
  raise PartitionError(
      f'mesh {_text_of(spec)} does not fit {_count(num_devices)}: {problem}; would fit: '
      f'{" or ".join(_fitting(sizes, named, num_devices))}')


def _count(devices: int) -> str:
  return f'{devices} device' + ('s' if devices != 1 else '')


def make_mesh(spec: str | Mapping[str, int] | None = None,
              devices: Sequence[Any] | None = None) -> Mesh:
  """A ('data', 'fsdp', 'model') mesh over `devices` (default: all) as `spec` lays it out.

  `spec` is mesh text or a mapping (`parse_mesh`); None puts every device on `data`.
  """
  devices = list(jax.devices() if devices is None else devices)
  sizes = mesh_shape(spec, len(devices))
  shape = tuple(sizes[axis] for axis in MESH_AXES)
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
    size = math.prod(mesh.shape[a] for a in names)
    if size > 1 and dim % size:
      logging.warning('%s: dimension %d is not divisible by mesh axes %s (size %d); '
                      'replicating it', what, dim, names, size)
      out.append(None)
    else:
      out.append(axes)
  return PartitionSpec(*out)


def logical_shardings(boxed_tree: Any, mesh: Mesh, rules: Rules = RULES) -> Any:
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


# Batches: split over ('data', 'fsdp'); each process feeds the rows its devices hold.

def batch_shards(mesh: Mesh) -> int:
  """How many slices the batch is split into: the product of the `BATCH_AXES` sizes."""
  return math.prod(mesh.shape[axis] for axis in BATCH_AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Batches are split along their leading dimension over the 'data' and 'fsdp' axes."""
  return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def _process_shards(mesh: Mesh, process: int | None = None) -> list[int]:
  """The batch slices (0 .. batch_shards-1, in batch order) that `process`'s devices hold."""
  return list(_held_shards(mesh, jax.process_index() if process is None else process))


@functools.lru_cache(maxsize=64)
def _held_shards(mesh: Mesh, process: int) -> tuple[int, ...]:
  """`_process_shards`, cached: the per-step batch checks walk the mesh's devices once."""
  fsdp = mesh.shape[FSDP]
  held = set()
  for (d, f, _), device in np.ndenumerate(mesh.devices):
    if device.process_index == process:
      held.add(d * fsdp + f)
  return tuple(sorted(held))


def process_batch_shards(mesh: Mesh) -> int:
  """How many of the batch slices this process's devices hold (all of them on one process);
  a process's share of any batch is a multiple of this many rows."""
  return len(_process_shards(mesh))


def _multiples(size: int, unit: int) -> str:
  """'16 or 24': the multiples of `unit` around `size`."""
  below, above = size // unit * unit, (size // unit + 1) * unit
  return f'{below} or {above}' if below else str(above)


def _check_global(size: int, mesh: Mesh, multiple: int) -> None:
  need = batch_shards(mesh) * multiple
  if size % need:
    parts = [f'{axis} ({mesh.shape[axis]})' for axis in BATCH_AXES]
    if multiple > 1:
      parts.append(f'microbatches ({multiple})')
    raise PartitionError(
        f'global batch size {size} is not divisible by {" x ".join(parts)} = {need}; use a '
        f'batch size that is a multiple of {need}, e.g. {_multiples(size, need)}')


def process_rows(global_batch_size: int, mesh: Mesh, multiple: int = 1,
                 process: int | None = None) -> slice:
  """The rows of a global batch that `process` (default: this one) feeds to `shard_batch`.

  Each process passes only the rows its own devices hold (on one process, all of them);
  processes whose devices share batch slices (a `model` axis across hosts) feed the same rows.
  Raises PartitionError when the batch does not split over data x fsdp x `multiple`
  (microbatches), or when the processes cannot each take a contiguous share of it.
  """
  _check_global(global_batch_size, mesh, multiple)
  shards = _process_shards(mesh, process)
  if not shards:
    raise PartitionError(
        f'process {jax.process_index() if process is None else process} has no device in '
        f'the mesh {mesh_text(mesh)}; build the mesh over every process\'s devices')
  if shards != list(range(shards[0], shards[-1] + 1)):
    raise PartitionError(
        f'the batch slices of process {jax.process_index() if process is None else process} '
        f'on mesh {mesh_text(mesh)} are not contiguous ({shards}); order the devices so that '
        'each process holds neighbouring data/fsdp positions (the default device order does)')
  per_shard = global_batch_size // batch_shards(mesh)
  count = batch_shards(mesh) // len(shards)
  if jax.process_count() > 1 and count > 1 and global_batch_size % count:
    raise PartitionError(
        f'global batch size {global_batch_size} does not split over the {count} process '
        f'groups; use a multiple of {count * batch_shards(mesh)}')
  return slice(shards[0] * per_shard, (shards[-1] + 1) * per_shard)


def check_batch(batch: Any, mesh: Mesh, multiple: int = 1) -> int:
  """The global batch size of this process's share `batch`; raises PartitionError unless it
  splits into data x fsdp slices x `multiple` (microbatches)."""
  sizes = {np.shape(x)[0] if np.ndim(x) else None for x in jax.tree_util.tree_leaves(batch)}
  if len(sizes) != 1 or None in sizes:
    raise PartitionError(
        'every batch leaf needs the same leading batch dimension, got sizes '
        f'{sorted(map(str, sizes))}')
  local = sizes.pop()
  held = len(_process_shards(mesh)) or batch_shards(mesh)
  size = local * batch_shards(mesh) // held
  if local * batch_shards(mesh) % held:
    raise PartitionError(
        f'this process holds {held} of the {batch_shards(mesh)} batch slices, so its share '
        f'of the batch must be a multiple of {held}, got {local} rows')
  _check_global(size, mesh, multiple)
  return size


def shard_batch(batch: Any, mesh: Mesh) -> Any:
  """Places this process's share of a batch as global arrays split over data x fsdp.

  On one process the share is the whole batch; on several, each passes the rows
  `process_rows` gives it, and the global batch is their concatenation
  (`jax.make_array_from_process_local_data`).
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
