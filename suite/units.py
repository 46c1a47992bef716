"""A `suite.run` config expanded into its plan: the units of work, in dependency order.

A unit is one shape x recipe step x task x seed of one domain. Shapes come from the config's
base shape (a registered name plus field overrides, sized to a task through the domain's
`for_task`) scaled by each strategy to each scale x the base's cost (parameters or training
FLOPs: `suite.strategies.solve`, the shape of the closest cost the strategy reaches), plus
the config's canonical shapes, which carry their own cost ratio against the base as their
scale. A unit whose shape, step, task, seed and settings equal an earlier unit's (every
strategy gives the base at scale 1) is planned as a copy of it (`same_as`): it reuses that
unit's checkpoints and results.

A domain config with `init_from` (released checkpoints, `PATH` or `PATH@STEP`, a list or one
comma-separated string) takes its shapes from them instead (`checkpoint_rungs`): each shape
as the checkpoint's own config states it (`Domain.checkpoint_shape`), strategy `canonical`
when its name is a bare size of the domain (`small`, `B/16`), else `released`, with `@STEP`
appended for an explicit step (so each step is its own row); scale = its parameters over the
first canonical checkpoint's (else the first's). A step with `init='checkpoint'` starts from
the rung's checkpoint (`Unit.checkpoint`, a `CheckpointRef` the stage loads).

Nothing here trains or imports a domain package: domains are reached through
`suite.domains` and their `Domain` contract alone.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from suite import costs, domains, shapes, strategies
from suite.domain import CheckpointRef, Domain, Workload, check_sizes, run_id

BENCH = 'bench'
CANONICAL = 'canonical'
RELEASED = 'released'
CHECKPOINT = 'checkpoint'  # a step's `init`: the rung's released checkpoint
ROLES = ('cost', 'upstream', 'downstream', 'baseline', 'intermediate')
SHAPE_SETS = ('all', CANONICAL)
STEP_FIELDS = ('stage', 'task', 'tasks', 'steps', 'batch_size', 'eval_batch_size',
               'max_eval_examples', 'optimizer', 'optimizer_overrides', 'init', 'role', 'shapes',
               'headline', 'baseline_of', 'baseline_label', 'checkpoints', 'score', 'workload',
               'options', 'loop', 'warmup', 'repeats')


class PlanError(ValueError):
  """A config or selection that does not make a plan; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class Unit:
  """One unit of work. `key` is the human name (domain/strategy/scale/step/task), `run_id` the
  journal's stable hash; `init` the key of the unit whose params it starts from; `same_as` the
  key of an identical earlier unit whose results it copies; `config` what enters the run_id."""

  key: str
  domain: str
  strategy: str
  scale: float
  shape: shapes.Shape
  step: str
  stage: str
  task: str
  role: str
  seed: int
  spec: Mapping[str, Any]
  workload: Workload
  config: Mapping[str, Any]
  run_id: str
  init: str | None = None
  same_as: str | None = None
  checkpoint: CheckpointRef | None = None  # the released checkpoint it starts from

  @property
  def params(self) -> int:
    return costs.params(self.shape)

  def train_flops(self) -> float:
    """Training FLOPs of the unit: steps x batch x FLOPs per example (0 for evaluation)."""
    steps = self.spec.get('steps') or 0
    if self.stage == BENCH:
      steps = (self.spec.get('warmup', 1) + self.spec.get('steps', 1)
               * self.spec.get('repeats', 1))
    return float(steps * (self.spec.get('batch_size') or 0)
                 * self.workload.train_flops_per_example)


@dataclasses.dataclass(frozen=True)
class Rung:
  """A shape of the plan: the strategy and scale it stands for."""

  strategy: str
  scale: float
  label: str
  shape: shapes.Shape
  checkpoint: CheckpointRef | None = None


def _plain(value: Any) -> Any:
  """A ConfigDict / mapping / sequence as plain JSON-able Python."""
  if hasattr(value, 'to_dict'):
    value = value.to_dict()
  if isinstance(value, Mapping):
    return {str(k): _plain(v) for k, v in value.items()}
  if isinstance(value, list | tuple):
    return [_plain(v) for v in value]
  return value


def _shape(domain: Domain, entry: Any, where: str) -> shapes.Shape:
  entry = _plain(entry)
  if isinstance(entry, str):
    entry = {'name': entry}
  name, overrides = entry.get('name'), {k: v for k, v in entry.items() if k != 'name'}
  if not name:
    raise PlanError(f'{where}: a shape needs a registered `name` (plus field overrides).')
  try:
    return shapes.parse(name, domain.name).replace(**overrides)
  except (TypeError, ValueError) as error:
    raise PlanError(f'{where}: {error}') from None


def _sized(domain: Domain, shape: shapes.Shape, task: str, where: str) -> shapes.Shape:
  try:
    return domain.for_task(shape, task)
  except Exception as error:  # noqa: BLE001 - a domain's own task error, shown in one line
    raise PlanError(f'{where}: {error}') from None


# The workload sizes `strategies.solve` prices FLOPs budgets at (the others do not apply).
_SOLVE_SIZES = tuple(p for p in inspect.signature(strategies.solve).parameters
                     if p not in ('strategy', 'base', 'budget', 'kind'))


def scale_label(scale: float) -> str:
  return f'x{scale:.3g}'


def rungs(domain: Domain, config: Mapping[str, Any], selected: Sequence[str],
          scales: Sequence[float], budget_kind: str) -> list[Rung]:
  """The shapes of one domain: each selected strategy at each scale, then the canonical ones
  (when `canonical` is selected): the config's list of shapes, each at its cost ratio to the
  base, or, when `canonical` names a strategy, that strategy's shapes at the same scales (so
  a toy config can take the base grown uniformly, as T5's own sizes grow, as its canonical
  family: identical work then runs once)."""
  where = f'domains.{domain.name}'
  base = _shape(domain, {'name': config['base'], **_plain(config.get('base_overrides') or {})},
                f'{where}.base')
  base = _sized(domain, base, config['size_to_task'], f'{where}.size_to_task')
  sizes = _plain(config.get('workload') or {})
  base_cost = _cost(domain, base, budget_kind, sizes)
  lengths = {k: v for k, v in sizes.items() if k in _SOLVE_SIZES}
  def ladder(name: str, label: str) -> list[Rung]:
    strategy = strategies.get(name)
    out = []
    for scale in scales:
      try:
        shape = strategies.solve(strategy, base, scale * base_cost, budget_kind, **lengths)
      except (ValueError, shapes.ShapeError) as error:
        raise PlanError(f'{where}: strategy {name} at scale {scale:g} ({budget_kind} budget '
                        f'{scale * base_cost:.4g}): {error}') from None
      out.append(Rung(label, float(scale), scale_label(scale), shape))
    return out

  out = [rung for name in selected if name != CANONICAL for rung in ladder(name, name)]
  if CANONICAL in selected:
    entries = config.get('canonical') or []
    if isinstance(entries, str):  # the canonical sizes are one strategy's ladder from the base
      return out + ladder(entries, CANONICAL)
    for i, entry in enumerate(entries):
      shape = _sized(domain, _shape(domain, entry, f'{where}.canonical[{i}]'),
                     config['size_to_task'], f'{where}.canonical[{i}]')
      ratio = _cost(domain, shape, budget_kind, sizes) / base_cost
      out.append(Rung(CANONICAL, round(ratio, 4), scale_label(ratio), shape))
  return out


def _init_from(config: Mapping[str, Any]) -> list[str]:
  entries = _plain(config.get('init_from') or [])
  if isinstance(entries, str):
    entries = entries.split(',')
  return [e.strip() for e in entries if e and e.strip()]


def checkpoint_rungs(domain: Domain, config: Mapping[str, Any],
                     selected: Sequence[str]) -> list[Rung]:
  """The shapes of the domain's released checkpoints (`init_from`), in the order given."""
  where = f'domains.{domain.name}.init_from'
  chosen = [s for s in selected if s != CANONICAL]
  if chosen:
    raise PlanError(f'--strategies={",".join(chosen)}: this config takes its shapes from '
                    f'released checkpoints ({where}); drop --strategies.')
  refs, found = [], []
  for text in _init_from(config):
    ref = CheckpointRef.parse(text)
    if ref in refs:
      raise PlanError(f'{where}: {ref} is listed twice.')
    refs.append(ref)
    try:
      shape = domain.checkpoint_shape(ref.path, ref.step, config.get('size_to_task'))
    except (ValueError, OSError) as error:
      raise PlanError(f'{where}: {" ".join(str(error).split())}') from None
    name = shapes.display_name(shape)
    strategy = CANONICAL if name in shapes.names(domain.name) else RELEASED
    if ref.step is not None:
      strategy += f'@{ref.step}'
    found.append(Rung(strategy, 1.0, name, shape, ref))
  canonical = [r for r in found if r.strategy == CANONICAL] or found
  if canonical:
    unit_params = costs.params(canonical[0].shape)
    found = [dataclasses.replace(r, scale=round(costs.params(r.shape) / unit_params, 4))
              for r in found]
  return found


def _cost(domain: Domain, shape: shapes.Shape, kind: str, sizes: Mapping[str, int]) -> float:
  if kind == 'params':
    return float(costs.params(shape))
  if kind == 'flops':
    return float(domain.workload(domain.at_workload(shape, **sizes), **sizes)
                 .train_flops_per_example)
  raise PlanError(f'budget_kind={kind!r}: valid kinds are {", ".join(strategies.BUDGET_KINDS)}.')


def _ordered_steps(config: Mapping[str, Any], where: str) -> list[tuple[str, dict]]:
  """The recipe's steps with every step after its `init`, in `order` where given."""
  recipe = {name: _plain(step) for name, step in _plain(config.get('recipe') or {}).items()}
  if not recipe:
    raise PlanError(f'{where}.recipe is empty: a domain needs at least one step.')
  order = list(config.get('order') or [])
  unknown = [n for n in order if n not in recipe]
  if unknown:
    raise PlanError(f'{where}.order names {unknown}, not steps of the recipe '
                    f'({", ".join(recipe)}).')
  rank = {n: i for i, n in enumerate(order + sorted(set(recipe) - set(order)))}
  done: list[str] = []
  pending = sorted(recipe, key=rank.get)
  while pending:
    ready = [n for n in pending if recipe[n].get('init') in (None, CHECKPOINT, *done)]
    if not ready:
      bad = pending[0]
      raise PlanError(f'{where}.recipe.{bad}.init={recipe[bad].get("init")!r}: not a step of '
                      f'the recipe, or a cycle; steps: {", ".join(recipe)}.')
    done.append(ready[0])
    pending.remove(ready[0])
  return [(n, recipe[n]) for n in done]


def _check_step(domain: Domain, name: str, step: Mapping[str, Any], where: str) -> None:
  unknown = sorted(set(step) - set(STEP_FIELDS))
  if unknown:
    raise PlanError(f'{where}: unknown fields {unknown}; valid: {", ".join(STEP_FIELDS)}.')
  stage = step.get('stage')
  if stage != BENCH and stage not in domain.stages:
    valid = [BENCH, *domain.stages]
    raise PlanError(f'{where}.stage={stage!r}: {domain.name} stages are {", ".join(valid)} '
                    f'(closest: {shapes.closest(str(stage), valid)}).')
  if step.get('role', 'cost' if stage == BENCH else None) not in ROLES:
    raise PlanError(f'{where}.role={step.get("role")!r}: valid roles are {", ".join(ROLES)}.')
  if step.get('shapes', 'all') not in SHAPE_SETS:
    raise PlanError(f'{where}.shapes={step.get("shapes")!r}: valid: {", ".join(SHAPE_SETS)}.')
  if stage != BENCH and not (step.get('task') or step.get('tasks')):
    raise PlanError(f'{where}: a step needs a `task` or `tasks`.')
  if step.get('score') not in (None, 'checkpoints'):
    raise PlanError(f"{where}.score={step.get('score')!r}: valid: 'checkpoints' or None.")
  if step.get('optimizer') is not None and step['optimizer'] not in domain.optimizers:
    raise PlanError(f'{where}.optimizer={step["optimizer"]!r}: {domain.name} presets are '
                    f'{", ".join(domain.optimizers)} (closest: '
                    f'{shapes.closest(step["optimizer"], domain.optimizers)}).')


def _step_config(name: str, step: Mapping[str, Any], task: str, sizes: Mapping[str, int],
                 init_run: str | None) -> dict[str, Any]:
  """What tells this unit's settings apart: hashed into its run_id."""
  keep = {k: v for k, v in step.items()
          if k not in ('headline', 'role', 'shapes', 'baseline_of', 'baseline_label', 'tasks',
                       'task', 'init')}
  return {'step': name, **keep, 'workload': dict(sizes), 'init_run': init_run}


def domain_units(domain: Domain, config: Mapping[str, Any], selected: Sequence[str],
                 scales: Sequence[float], seeds: Sequence[int], budget_kind: str) -> list[Unit]:
  """Every unit of one domain, each after the unit it starts from."""
  where = f'domains.{domain.name}'
  steps = _ordered_steps(config, where)
  for name, step in steps:
    _check_step(domain, name, step, f'{where}.recipe.{name}')
  released = bool(_init_from(config))
  starts = [name for name, step in steps if step.get('init') == CHECKPOINT]
  if starts and not released:
    raise PlanError(f'{where}.recipe.{starts[0]} starts from released checkpoints '
                    f"(init={CHECKPOINT!r}) but {where}.init_from is empty: give the "
                    'checkpoint folders, PATH or PATH@STEP, comma-separated (config released: '
                    '--config.checkpoints=...).')
  all_rungs = (checkpoint_rungs(domain, config, selected) if released else
               rungs(domain, config, selected, scales, budget_kind))
  base_sizes = _plain(config.get('workload') or {})
  units: list[Unit] = []
  by_key: dict[str, Unit] = {}
  seen: dict[tuple, str] = {}
  for seed in seeds:
    for rung in all_rungs:
      for name, step in steps:
        if step.get('shapes', 'all') == CANONICAL and rung.strategy != CANONICAL:
          continue
        sizes = {**base_sizes, **(step.get('workload') or {})}
        try:
          check_sizes(domain, sizes)
          shape = domain.at_workload(rung.shape, **sizes)
          workload = domain.workload(shape, **sizes)
        except ValueError as error:
          raise PlanError(f'{where}.recipe.{name}.workload: {error}') from None
        tasks = step.get('tasks') or [step.get('task') or BENCH]
        for task in tasks:
          if step['stage'] != BENCH:
            for part in task.split(','):
              _sized(domain, rung.shape, part, f'{where}.recipe.{name}.task')
          prefix = f'{domain.name}/{rung.strategy}/{rung.label}'
          suffix = f'/seed{seed}' if len(seeds) > 1 else ''
          init = checkpoint = None
          if step.get('init') == CHECKPOINT:
            checkpoint = rung.checkpoint
          elif step.get('init'):
            init_step = step['init']
            init = next((u.key for u in units if u.step == init_step and
                         u.key.startswith(prefix + '/') and u.seed == seed), None)
            if init is None:
              raise PlanError(f'{where}.recipe.{name}: its init step {init_step!r} has no unit '
                              f'for {prefix} (is its `shapes` narrower?).')
          init_unit = by_key.get(init) if init else None
          init_run = init_unit.run_id if init_unit else None
          unit_config = _step_config(name, step, task, sizes, init_run)
          if checkpoint is not None:
            unit_config['init_checkpoint'] = str(checkpoint)
          role = step.get('role') or 'cost'
          key = f'{prefix}/{name}/{task}{suffix}'
          if key in by_key:
            raise PlanError(f'two units are called {key}: give the canonical shapes of '
                            f'{where} costs that differ (their scale labels collide).')
          rid = run_id(domain.name, shape, task, step['stage'], seed, rung.strategy,
                       rung.scale, unit_config)
          # Identical work (same shape, step, task, seed, settings and init work) runs once.
          init_work = (by_key[init].same_as or init) if init else None
          settings = {k: v for k, v in unit_config.items() if k != 'init_run'}
          identity = (shape, name, task, seed, repr(sorted(settings.items(), key=str)),
                      init_work and by_key[init_work].run_id)
          unit = Unit(key=key, domain=domain.name, strategy=rung.strategy, scale=rung.scale,
                      shape=shape, step=name, stage=step['stage'], task=task, role=role,
                      seed=seed, spec=step, workload=workload, config=unit_config, run_id=rid,
                      init=init, same_as=seen.get(identity), checkpoint=checkpoint)
          seen.setdefault(identity, key)
          units.append(unit)
          by_key[key] = unit
  return units


def build(config: Mapping[str, Any], domain_names: Iterable[str] | None = None,
          strategy_names: Sequence[str] | None = None) -> list[Unit]:
  """The plan of `config`, restricted to some domains and strategies (None: the config's)."""
  configured = _plain(config['domains'])
  names = list(domain_names) if domain_names is not None else list(configured)
  for name in names:
    if name not in configured:
      raise PlanError(f'domain {name!r} is not in this config; it has '
                      f'{", ".join(configured)} (closest: {shapes.closest(name, configured)}).')
  selected = list(strategy_names or config['strategies'])
  for name in selected:
    if name != CANONICAL:
      strategies.get(name)
  if not strategy_names or CANONICAL not in selected:
    selected.append(CANONICAL)  # the shapes the strategies are compared with
  scales = [float(s) for s in config['scales']]
  bad = [s for s in scales if not s > 0 or math.isinf(s)]
  if bad or not scales:
    raise PlanError(f'scales={scales}: need finite numbers > 0 (1 = the base).')
  units: list[Unit] = []
  for name in names:
    domain = domains.get(name)
    units += domain_units(domain, configured[name], selected, scales, list(config['seeds']),
                          config.get('budget_kind', 'params'))
  return units
