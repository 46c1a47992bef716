r"""Shapes and their costs, without running anything.

  python -m suite.plan --domain=text --shapes=small-nl16,base --format=table
  python -m suite.plan --domain=vision --strategy=deep_narrow --base=S/16 \
      --budgets=5e7,1e8 --budget_kind=params

JSON (a list, one item per shape) goes to stdout. Unknown names or strategies, and flag values
out of range, exit with status 1 and a one-line error on stderr that lists the closest valid
names or the valid range.
"""

from __future__ import annotations

import json
import math
import sys

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
_FORMAT = flags.DEFINE_enum('format', 'json', ('json', 'table'), 'Output format.')


class PlanError(ValueError):
  """A flag combination or value the planner cannot use; the message says what to do."""


def describe(shape: shapes.Shape, input_length: int = costs.DEFAULT_INPUT_LENGTH,
             target_length: int = costs.DEFAULT_TARGET_LENGTH, batch_size: int = 32,
             optimizer: str = 'adafactor', name: str | None = None) -> dict:
  """One plan item: name, domain, shape fields, exact costs and a memory estimate.

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
  item['memory_estimate'] = costs.train_memory(
      shape, batch_size, optimizer, input_length=input_length,
      target_length=target_length).as_dict()
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
  options = {**lengths, 'batch_size': _BATCH.value, 'optimizer': _OPTIMIZER.value}
  domain = _DOMAIN.value
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


def table(items: list[dict]) -> str:
  """A fixed-width table of `describe` items; FLOPs also relative to the first row.

  Reads no flags: the memory footnote's batch and optimizer come from the first item's
  `memory_estimate`.
  """
  header = ('name', 'enc', 'dec', 'd_model', 'd_ff', 'heads', 'd_kv', 'params(M)',
            'train GFLOP/ex', 'vs first', 'mem GiB')
  first = items[0]['train_flops_per_example'] if items else 1
  rows = [header]
  for it in items:
    rows.append((it['name'], str(it['num_encoder_layers']), str(it['num_decoder_layers']),
                 str(it['d_model']), str(it['d_ff']), str(it['num_heads']), str(it['d_kv']),
                 f'{it["params"] / 1e6:.2f}', f'{it["train_flops_per_example"] / 1e9:.2f}',
                 f'{100 * it["train_flops_per_example"] / first:.1f}%',
                 f'{it["memory_estimate"]["total_bytes"] / 2 ** 30:.2f}'))
  widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
  lines = ['  '.join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                     enumerate(zip(r, widths, strict=True))) for r in rows]
  if items and items[0]['domain'] == shapes.TEXT:
    memory = items[0]['memory_estimate']
    lines.append(f'lengths: input {items[0]["input_length"]}, target '
                 f'{items[0]["target_length"]}; memory at batch {memory["batch_size"]}, '
                 f'{memory["optimizer"]} (estimate)')
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
