r"""Shapes and their costs, without running anything.

  python -m suite.plan --domain=text --shapes=small-nl16,base --format=table
  python -m suite.plan --domain=vision --strategy=deep_narrow --base=S/16 \
      --budgets=5e7,1e8 --budget_kind=params
  python -m suite.plan --shapes=base,large,xl --mesh=data:2,fsdp:2,model:2 --batch=64 \
      --remat=full --scan --device_memory_gib=16 --format=table

JSON (a list, one item per shape) goes to stdout. Unknown names or strategies, and flag values
out of range, exit with status 1 and a one-line error on stderr that lists the closest valid
names or the valid range.

The training-memory estimate (`suite.costs.train_memory`) is per device: with `--mesh` it
shards parameters, optimizer state and activations as the domain's logical-axis rules shard
them on that mesh, without needing its devices (plan a pod from a laptop).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Mapping, Sequence

from absl import flags

from suite import costs, flagcheck, shapes, strategies

_DOMAIN = flags.DEFINE_enum('domain', shapes.TEXT, shapes.DOMAINS, 'Model family.')
_SHAPES = flags.DEFINE_list('shapes', [], 'Shape names, e.g. small-nl16,base or S/16,B/16.')
_STRATEGY = flags.DEFINE_string('strategy', None,
                                f'Scaling strategy: {", ".join(strategies.STRATEGIES)}.')
_BASE = flags.DEFINE_string('base', None, 'Base shape name the strategy scales from.')
_BUDGETS = flags.DEFINE_list('budgets', [], 'Budgets to solve for, e.g. 1e8,2e8.')
flagcheck.require('budgets', lambda budgets: all(0 < float(b) < math.inf for b in budgets),
                  'comma-separated numbers > 0, e.g. 1e8,2e8')
_BUDGET_KIND = flags.DEFINE_enum('budget_kind', 'params', strategies.BUDGET_KINDS,
                                 'What a budget counts: parameters or training FLOPs/example.')
_STEPS = flags.DEFINE_list(
    'steps', [], f'Ladder steps k (0 = base, |k| <= {strategies.LADDER_MAX_STEP}), e.g. -1,0,1,2: '
    f'the factor {strategies.LADDER_BASE:g}^k. For depth, uniform, deep_narrow and width_first '
    f'each step multiplies the layer parameters by about {strategies.LADDER_BASE:g}; for '
    'encoder_depth, decoder_depth, width, ff, heads and kv it multiplies that one dimension, '
    'so the layer parameters grow by less (x1.43 to x1.57 from small) except for width; for '
    'canonical it moves one size along the table.')
_INPUT_LENGTH = flags.DEFINE_integer('input_length', costs.DEFAULT_INPUT_LENGTH,
                                     'Text: encoder input length in tokens.', lower_bound=1)
_TARGET_LENGTH = flags.DEFINE_integer('target_length', costs.DEFAULT_TARGET_LENGTH,
                                      'Text: decoder target length in tokens.', lower_bound=1)
_BATCH = flags.DEFINE_integer('batch', 32, 'Batch size of the training-memory estimate.',
                              lower_bound=1)
_OPTIMIZER = flags.DEFINE_enum('optimizer', 'adafactor', costs.OPTIMIZERS,
                               'Optimizer of the training-memory estimate.')
_MESH = flags.DEFINE_string(
    'mesh', None, 'Mesh of the memory estimate, e.g. data:2,fsdp:2,model:2 (axes data, fsdp, '
    'model; unnamed axes are 1): memory is per device of that mesh. Default: one device.')
_REMAT = flags.DEFINE_enum('remat', 'none', costs.REMAT_POLICIES,
                           'Rematerialisation policy of the memory estimate.')
_SCAN = flags.DEFINE_bool('scan', False, 'Memory estimate with the layers under nn.scan.')
_DTYPE = flags.DEFINE_enum('dtype', 'bfloat16', ('bfloat16', 'float32'),
                           'Compute dtype of the memory estimate (parameters stay float32).')
_ATTENTION = flags.DEFINE_enum('attention', 'xla', costs.ATTENTION_KERNELS,
                               "Attention kernel of the memory estimate ('cudnn': fused).")
_DEVICE_MEMORY = flags.DEFINE_float(
    'device_memory_gib', None, 'Memory of one device in GiB: each item says whether its '
    'estimate fits, and the table lists the shapes that do not.')
flagcheck.require('device_memory_gib', lambda v: v is None or 0 < v < math.inf,
                  'a number of GiB > 0, e.g. 80')
_FORMAT = flags.DEFINE_enum('format', 'json', ('json', 'table'), 'Output format.')
GIB = 2 ** 30


class PlanError(ValueError):
  """A flag combination or value the planner cannot use; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class MemoryOptions:
  """What the training-memory estimate assumes (`suite.costs.train_memory`): the global batch,
  optimizer, compute dtype, remat policy, scan, attention kernel, and the mesh's axis sizes
  (None: one device) with the logical-axis rules that shard it. device_memory_gib: one
  device's memory, to say whether the estimate fits (None: not said)."""

  batch_size: int = 32
  optimizer: str = 'adafactor'
  dtype: str = 'bfloat16'
  remat: str = 'none'
  scan: bool = False
  attention: str = 'xla'
  mesh: Mapping[str, int] | None = None
  rules: Sequence = ()
  device_memory_gib: float | None = None

  def estimate(self, shape: shapes.Shape, input_length: int, target_length: int) -> dict:
    """The estimate as a JSON-able dict, with `fits` when the device memory is known."""
    memory = costs.train_memory(
        shape, self.batch_size, self.optimizer, activation_dtype=self.dtype,
        input_length=input_length, target_length=target_length, remat=self.remat,
        scan=self.scan, attention=self.attention, mesh=self.mesh, rules=self.rules).as_dict()
    memory.update(dtype=self.dtype, attention=self.attention)
    if self.device_memory_gib is not None:
      memory['device_memory_bytes'] = int(self.device_memory_gib * GIB)
      memory['fits'] = memory['total_bytes'] <= memory['device_memory_bytes']
    return memory


def mesh_sizes(text: str | None) -> dict[str, int] | None:
  """`--mesh` text as {axis: size} (None: one device); every size must be given, since a
  plan has no devices to fill in -1."""
  if not text:
    return None
  from suite import partition  # jax: only when a mesh is planned
  sizes = partition.parse_mesh(text)
  if partition.REST in sizes.values():
    raise PlanError(f'--mesh={text}: a plan has no devices to fill in -1; give every axis a '
                    'size, e.g. --mesh=data:2,fsdp:2,model:2')
  return sizes


def logical_axis_rules(domain: str) -> Sequence:
  """The rules by which the domain's partitioner shards its models."""
  from suite import domains  # the domain's model code: only when a mesh is planned
  return domains.get(domain).logical_axis_rules


def describe(shape: shapes.Shape, input_length: int = costs.DEFAULT_INPUT_LENGTH,
             target_length: int = costs.DEFAULT_TARGET_LENGTH,
             memory: MemoryOptions = MemoryOptions(), name: str | None = None) -> dict:
  """One plan item: name, domain, shape fields, exact costs and a per-device memory estimate.

  `name` defaults to `shapes.display_name(shape)`, a label that never reads as another size;
  shapes the user named keep their name (in canonical form).
  """
  item = {'name': name or shapes.display_name(shape), **shape.fields(),
          'params': costs.params(shape),
          'forward_flops_per_example': costs.forward_flops_per_example(
              shape, input_length, target_length),
          'train_flops_per_example': costs.train_flops_per_example(
              shape, input_length, target_length)}
  if shape.domain == shapes.TEXT:
    item.update(input_length=input_length, target_length=target_length)
  item['flops_breakdown'] = costs.flops_breakdown(shape, input_length, target_length)
  item['memory_estimate'] = memory.estimate(shape, input_length, target_length)
  return item


_NUMBER_EXAMPLES = {'budgets': 'numbers, e.g. 1e8,2e8',
                    'steps': f'whole numbers from {-strategies.LADDER_MAX_STEP} to '
                             f'{strategies.LADDER_MAX_STEP}, e.g. -1,0,1,2'}


def _numbers(values: list[str], kind: type, flag: str) -> list:
  try:
    return [kind(v) for v in values]
  except ValueError:
    raise PlanError(f'--{flag}={",".join(values)}: expected comma-separated '
                    f'{_NUMBER_EXAMPLES[flag]}.') from None


def plan_items() -> list[dict]:
  """The items the flags ask for, in order."""
  lengths = {'input_length': _INPUT_LENGTH.value, 'target_length': _TARGET_LENGTH.value}
  domain = _DOMAIN.value
  mesh = mesh_sizes(_MESH.value)
  memory = MemoryOptions(
      batch_size=_BATCH.value, optimizer=_OPTIMIZER.value, dtype=_DTYPE.value,
      remat=_REMAT.value, scan=_SCAN.value, attention=_ATTENTION.value, mesh=mesh,
      rules=logical_axis_rules(domain) if mesh and math.prod(mesh.values()) > 1 else (),
      device_memory_gib=_DEVICE_MEMORY.value)
  options = {**lengths, 'memory': memory}
  if _SHAPES.value and (_STRATEGY.value or _BASE.value):
    raise PlanError('give either --shapes or --strategy with --base, not both.')
  if _SHAPES.value:
    return [describe(shapes.parse(name, domain), **options, name=shapes.canonical(name, domain))
            for name in _SHAPES.value]
  if not (_STRATEGY.value and _BASE.value):
    raise PlanError('nothing to plan: give --shapes=N1,N2, or --strategy=S --base=NAME with '
                    '--budgets=B1,B2 or --steps=K1,K2.')
  strategy = strategies.get(_STRATEGY.value)
  base = shapes.parse(_BASE.value, domain)
  budgets = _numbers(_BUDGETS.value, float, 'budgets')
  steps = _numbers(_STEPS.value, int, 'steps')
  if not budgets and not steps:
    raise PlanError(f'--strategy={strategy.name} needs --budgets=B1,B2 or --steps=K1,K2.')
  common = {'strategy': strategy.name, 'base': shapes.canonical(_BASE.value, domain)}
  items = []
  for budget in budgets:
    shape = strategies.solve(strategy, base, budget, _BUDGET_KIND.value, **lengths)
    items.append({**describe(shape, **options), **common, 'budget': budget,
                  'budget_kind': _BUDGET_KIND.value})
  for step in steps:
    items.append({**describe(strategy.step(base, step), **options), **common, 'step': step})
  return items


def _memory_footnote(memory: dict) -> str:
  """What the memory column assumes, from an item's `memory_estimate`."""
  where = 'one device'
  if memory['mesh'] and memory['devices'] > 1:
    where = (','.join(f'{axis}:{size}' for axis, size in memory['mesh'].items())
             + f' ({memory["devices"]} devices), per device')
  return (f'memory at batch {memory["batch_size"]}, {memory["optimizer"]}, '
          f'{memory.get("dtype", "bfloat16")}, remat {memory["remat"]}'
          f'{", scan" if memory["scan"] else ""}, {where} (estimate)')


def table(items: list[dict]) -> str:
  """A fixed-width table of `describe` items; FLOPs also relative to the first row.

  Reads no flags: the footnotes (lengths, what the memory estimate assumes, the shapes that
  do not fit a device) come from the items.
  """
  header = ['name', 'enc', 'dec', 'd_model', 'd_ff', 'heads', 'd_kv', 'params(M)',
            'train GFLOP/ex', 'vs first', 'mem GiB']
  fits = bool(items) and 'fits' in items[0]['memory_estimate']
  if fits:
    header.append('fits')
  first = items[0]['train_flops_per_example'] if items else 1
  rows = [header]
  for it in items:
    memory = it['memory_estimate']
    rows.append([it['name'], str(it['num_encoder_layers']), str(it['num_decoder_layers']),
                 str(it['d_model']), str(it['d_ff']), str(it['num_heads']), str(it['d_kv']),
                 f'{it["params"] / 1e6:.2f}', f'{it["train_flops_per_example"] / 1e9:.2f}',
                 f'{100 * it["train_flops_per_example"] / first:.1f}%',
                 f'{memory["total_bytes"] / GIB:.2f}'] + (
                     ['yes' if memory['fits'] else 'NO'] if fits else []))
  widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
  lines = ['  '.join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                     enumerate(zip(r, widths, strict=True))) for r in rows]
  if not items:
    return '\n'.join(lines)
  footnote = _memory_footnote(items[0]['memory_estimate'])
  if 'input_length' in items[0]:
    footnote = (f'lengths: input {items[0]["input_length"]}, target '
                f'{items[0]["target_length"]}; {footnote}')
  lines.append(footnote)
  if fits:
    limit = items[0]['memory_estimate']['device_memory_bytes'] / GIB
    over = [it['name'] for it in items if not it['memory_estimate']['fits']]
    lines.append(f'do not fit in {limit:g} GiB per device: {", ".join(over)}' if over
                 else f'all fit in {limit:g} GiB per device')
  return '\n'.join(lines)


def main(argv):
  del argv  # flagcheck.run rejects positional arguments
  try:
    items = plan_items()
  except (shapes.ShapeError, ValueError) as e:
    print(f'error: {" ".join(str(e).split())}', file=sys.stderr)
    sys.exit(1)
  print(table(items) if _FORMAT.value == 'table' else json.dumps(items, indent=1))


if __name__ == '__main__':
  flagcheck.run(main)
