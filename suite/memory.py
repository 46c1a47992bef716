"""The training-memory model behind `suite.costs.train_memory`: what one device holds at the
peak of a train step, from the shape alone (no jax: a pod can be planned from a laptop).

Per device, in bytes: parameters, gradients (one float32 copy each), optimizer state, the
activations the backward pass needs, and the logits with their gradient. Their sum is the
estimate; `tests/suite/test_memory_xla.py` holds it to XLA's own memory analysis of the
compiled train step.

- **Sharding**: every parameter and activation names its dimensions logically ('embed',
  'heads', 'mlp', 'vocab', 'length', ...), and a domain's rules map those names to mesh axes as
  flax's `logical_to_mesh_axes` does (first free rule wins). A dimension that its mesh axes do
  not divide is replicated, as `suite.partition` does. The batch is split over the mesh axes
  the rules give 'batch'.
- **Optimizer state** (`OPTIMIZERS`): Adafactor's factored statistics (a row and a column per
  matrix whose second-largest dimension is at least `ADAFACTOR_MIN_DIM_TO_FACTOR`, else a full
  one); AdamW's two moments; big_vision's Adafactor adds a bfloat16 momentum; SGD (big_vision's
  transfer recipe) a float32 momentum. Full-size statistics are sharded like their parameter,
  factored ones are replicated (`suite.partition.follow_params`).
- **Activations** (`Activation`, `LayerActivations`): each model family lists, per layer
  type, the tensors its backward pass reads, as XLA keeps them once it has fused elementwise
  work into its consumers (matmul inputs, softmax outputs, norm statistics). Under `scan` the
  layers' residuals are loop outputs that JAX chooses, not XLA, so elementwise intermediates
  (GELU's tanh, a norm's square) are kept too (`Activation.scan_only`), and so are the
  reshaped attention kernels; without remat every layer's weights are also kept when the
  matmuls read a cast (bfloat16) or gathered (fsdp) copy of them. With a remat policy
  (`REMAT_POLICIES`) every layer keeps its input and the matmul outputs the policy saves, and
  the backward pass recomputes one layer at a time: one layer's residuals come on top.

Limits: an estimate of XLA's own plan, checked on XLA CPU, the one backend the tests have
(README "Training memory"). There bfloat16 work runs in float32 buffers, so only float32 steps
are compared, and remat saves memory only under scan: for unrolled layers XLA CPU schedules
every recomputed forward pass ahead of the backward pass. Remat is modelled as it works on
accelerators, one layer recomputed at a time.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

OPTIMIZERS = ('adafactor', 'adamw', 'big_vision_adafactor', 'sgd')
# Adafactor keeps factored second moments for a tensor whose second-largest dimension is at
# least this. Attention kernels are [d_model, heads, d_kv]: 16 factors them for every released
# shape (d_kv >= 16), as T5 factored its 2-D attention matrices; optax's default, 128, would
# keep full second moments for every d_kv-64 kernel. suite.optim uses the same default.
ADAFACTOR_MIN_DIM_TO_FACTOR = 16
DTYPE_BYTES = {'float32': 4, 'bfloat16': 2, 'float16': 2}
# Remat policy -> the kinds of layer values it keeps (suite.network_options.REMAT_POLICIES).
REMAT_POLICIES: Mapping[str, frozenset[str]] = {
    'none': frozenset(),  # everything: see LayerActivations.residuals
    'full': frozenset({'input'}),
    'dots': frozenset({'input', 'projection', 'batched'}),
    'dots_no_batch': frozenset({'input', 'projection'}),
}
COMPUTE, FLOAT32, BOOL = 'compute', 'float32', 'bool'
BATCH = 'batch'
# Logical axis name -> a mesh axis, several, or None (replicated); first match wins.
Rules = Sequence[tuple[str, str | tuple[str, ...] | None]]


@dataclasses.dataclass(frozen=True)
class Activation:
  """A tensor the backward pass reads, per example (no batch dimension).

  axes: the logical name of each dimension of `shape` (None: never sharded). copies: how
  many tensors of this shape. dtype: COMPUTE (the compute dtype), FLOAT32 or BOOL. scan_only:
  kept only when the layers run under `nn.scan` (elementwise intermediates XLA otherwise
  recomputes inside a fusion). cast_only: a copy that exists only when the compute dtype is
  not float32. per_example: False for a tensor the batch does not scale (a weight's copy).
  """

  name: str
  shape: tuple[int, ...]
  axes: tuple[str | None, ...]
  copies: int = 1
  dtype: str = COMPUTE
  scan_only: bool = False
  cast_only: bool = False
  per_example: bool = True

  def __post_init__(self):
    if len(self.shape) != len(self.axes):
      raise ValueError(f'{self.name}: shape {self.shape} and axes {self.axes} differ in rank.')


@dataclasses.dataclass(frozen=True)
class LayerActivations:
  """One type of layer, `count` times: its input (kept under every remat policy), the
  residuals its backward pass reads without remat, the outputs of its matmuls without batch
  dimensions (`projections`: kept by 'dots' and 'dots_no_batch') and with them (`batched`:
  attention scores and values, kept by 'dots'), and its weights as (shape, axes) pairs."""

  name: str
  count: int
  inputs: tuple[Activation, ...]
  residuals: tuple[Activation, ...]
  projections: tuple[Activation, ...]
  batched: tuple[Activation, ...]
  weights: tuple[tuple[tuple[int, ...], tuple[str | None, ...]], ...]

  def kept(self, policy: str) -> tuple[Activation, ...]:
    """What each layer keeps for the backward pass under a remat policy other than 'none'."""
    kinds = REMAT_POLICIES[policy]
    return (self.inputs + (self.projections if 'projection' in kinds else ())
            + (self.batched if 'batched' in kinds else ()))


@dataclasses.dataclass(frozen=True)
class FamilyActivations:
  """Everything a model family keeps for the backward pass: its layer types, the tensors
  outside the layers (inputs, embeddings, final norms, pooling) and its logits."""

  layers: tuple[LayerActivations, ...]
  other: tuple[Activation, ...]
  logits: tuple[Activation, ...]


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
  """Training memory per device in bytes, per component (see the module docstring).

  `total_bytes` is their sum: the gradients coexist with the activations at the peak (under
  scan the backward loop allocates them all before its first layer), and XLA keeps about as
  many parameter-sized working buffers when it does not. `devices` is the mesh's size, `mesh`
  its axes (None: one device).
  """

  params_bytes: int
  grads_bytes: int
  optimizer_bytes: int
  activations_bytes: int
  logits_bytes: int
  batch_size: int
  optimizer: str
  remat: str
  scan: bool
  mesh: Mapping[str, int] | None
  devices: int

  @property
  def total_bytes(self) -> int:
    return (self.params_bytes + self.grads_bytes + self.optimizer_bytes
            + self.activations_bytes + self.logits_bytes)

  def as_dict(self) -> dict:
    out = dataclasses.asdict(self)
    out['mesh'] = dict(self.mesh) if self.mesh else None
    return {**out, 'total_bytes': self.total_bytes}


# --- Sharding arithmetic -------------------------------------------------------------------


_UNASSIGNED = object()


def mesh_axes(axes: Sequence[str | None], rules: Rules) -> list[tuple[str, ...]]:
  """The mesh axes of each dimension, as flax's `logical_to_mesh_axes` assigns them: rules in
  order; a rule applies to a dimension not yet assigned if none of its mesh axes is used."""
  result: list = [_UNASSIGNED if isinstance(a, str) else () for a in axes]
  used: set[str] = set()
  for logical, targets in rules:
    if logical not in axes:
      continue
    names = (() if targets is None else (targets,) if isinstance(targets, str)
             else tuple(targets))
    pos = list(axes).index(logical)
    if result[pos] is _UNASSIGNED and not used.intersection(names):
      result[pos] = names
      used.update(names)
  return [() if r is _UNASSIGNED else r for r in result]


def shard_shape(shape: Sequence[int], axes: Sequence[str | None], mesh: Mapping[str, int],
                rules: Rules) -> tuple[int, ...]:
  """One device's share of a tensor: each dimension divided by the size of its mesh axes, or
  whole when they do not divide it (replicated, as suite.partition does)."""
  out = []
  for dim, names in zip(shape, mesh_axes(axes, rules), strict=True):
    size = math.prod(mesh.get(n, 1) for n in names)
    out.append(dim // size if size > 1 and dim % size == 0 else dim)
  return tuple(out)


def batch_shards(batch_size: int, mesh: Mapping[str, int], rules: Rules) -> int:
  """How many ways the batch is split (the mesh axes of 'batch'); it must divide the batch."""
  (names,) = mesh_axes((BATCH,), rules)
  shards = math.prod(mesh.get(n, 1) for n in names)
  if batch_size % shards:
    raise ValueError(f'batch_size={batch_size} does not split over the batch mesh axes '
                     f'{"x".join(names)} ({shards} shards): use a multiple of {shards}.')
  return shards


# --- Optimizer state -----------------------------------------------------------------------


def _factored(shape: Sequence[int]) -> tuple[int, int] | None:
  """(rows, columns) elements of Adafactor's factored statistics, None for a full one."""
  dims = sorted(shape, reverse=True)
  if len(dims) < 2 or dims[1] < ADAFACTOR_MIN_DIM_TO_FACTOR:
    return None
  size = math.prod(shape)
  return size // dims[0], size // dims[1]


def optimizer_state_bytes(shape: Sequence[int], local: Sequence[int], optimizer: str) -> int:
  """Bytes of one tensor's optimizer state on one device; `local` is its per-device shape
  (full-size statistics are sharded like the parameter, factored ones replicated)."""
  share = math.prod(local)
  if optimizer == 'adamw':
    return 2 * 4 * share
  if optimizer == 'sgd':
    return 4 * share  # momentum
  factored = _factored(shape)
  second_moment = 4 * (sum(factored) if factored else share)
  if optimizer == 'big_vision_adafactor':
    return second_moment + 2 * share  # bfloat16 momentum
  return second_moment


def check_optimizer(optimizer: str) -> None:
  """ValueError unless `optimizer` is one of `OPTIMIZERS`."""
  if optimizer not in OPTIMIZERS:
    raise ValueError(f'optimizer={optimizer!r}: valid optimizers are {", ".join(OPTIMIZERS)}.')


# --- Activations ---------------------------------------------------------------------------


def _itemsize(a: Activation, compute_bytes: int) -> int:
  return {COMPUTE: compute_bytes, FLOAT32: 4, BOOL: 1}[a.dtype]


def _present(a: Activation, scan: bool, cast: bool) -> bool:
  return (scan or not a.scan_only) and (cast or not a.cast_only)


def activation_bytes(items: Sequence[Activation], examples: int, compute_bytes: int,
                     mesh: Mapping[str, int], rules: Rules, scan: bool = False) -> int:
  """Bytes of `items` for `examples` examples on one device."""
  cast = compute_bytes != 4
  return sum((examples if a.per_example else 1) * a.copies * _itemsize(a, compute_bytes)
             * math.prod(shard_shape(a.shape, a.axes, mesh, rules))
             for a in items if _present(a, scan, cast))


def _gathered(mesh: Mapping[str, int], rules: Rules) -> dict[str, int]:
  """The mesh as a layer's matmuls see its weights: gathered over the batch's axes (fsdp)."""
  (batch_axes,) = mesh_axes((BATCH,), rules)
  return {k: (1 if k in batch_axes else v) for k, v in mesh.items()}


def weight_copy_bytes(layer: LayerActivations, compute_bytes: int, mesh: Mapping[str, int],
                      rules: Rules, matrices_only: bool = False) -> int:
  """One layer's weights as its matmuls read them: in the compute dtype and gathered over the
  batch's mesh axes (fsdp), still split over the others (model). matrices_only: only the
  weights stored with more than two dimensions (attention kernels [d_model, heads, d_kv]),
  which the matmuls read reshaped to matrices."""
  gathered = _gathered(mesh, rules)
  return compute_bytes * sum(math.prod(shard_shape(shape, axes, gathered, rules))
                             for shape, axes in layer.weights
                             if not matrices_only or len(shape) > 2)


def _gathers(layer: LayerActivations, mesh: Mapping[str, int], rules: Rules) -> bool:
  """Whether the batch's mesh axes split this layer's weights (fsdp), so that its matmuls
  read gathered copies."""
  gathered = _gathered(mesh, rules)
  return any(shard_shape(shape, axes, mesh, rules) != shard_shape(shape, axes, gathered, rules)
             for shape, axes in layer.weights)


def layer_activation_bytes(family: FamilyActivations, examples: int, compute_bytes: int,
                           mesh: Mapping[str, int], rules: Rules, remat: str,
                           scan: bool) -> int:
  """What the layers keep for the backward pass on one device under a remat policy, plus the
  working set of the layer the backward pass is in: with remat, its recomputed residuals; when
  fsdp splits the weights, its gathered weights and its gradient before the reduce-scatter."""
  cast = compute_bytes != 4
  total, working = 0, 0
  for layer in family.layers:
    if not layer.count:
      continue
    gathers = _gathers(layer, mesh, rules)
    gathered = weight_copy_bytes(layer, 1, mesh, rules)  # elements
    if remat == 'none':
      kept = activation_bytes(layer.residuals + layer.inputs, examples, compute_bytes, mesh,
                              rules, scan)
      if cast or gathers:  # the matmuls read a converted or gathered copy of every layer
        kept += gathered * compute_bytes
      elif scan:  # the slices of the stacked kernels that the matmuls reshape
        kept += weight_copy_bytes(layer, compute_bytes, mesh, rules, matrices_only=True)
      step = gathered * 4 if gathers else 0
    else:
      kept = activation_bytes(layer.kept(remat), examples, compute_bytes, mesh, rules, scan)
      step = activation_bytes(layer.residuals, examples, compute_bytes, mesh, rules)
      step += gathered * (compute_bytes + 4) if gathers else 0
    total += layer.count * kept
    working = max(working, step)
  return total + working
