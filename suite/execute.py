"""Runs one unit of a `suite.run` plan through the domain contract and builds its journal record.

A unit trains or scores in its own workdir, `W/checkpoints/<run_id>/`, so an interrupted unit
resumes from its checkpoint through the stage's own resume. What each kind of unit does:

- stage 'bench': `suite.throughput.measure` of the shape on synthetic batches (role 'cost');
- a step with `score='checkpoints'`: the stage (an evaluation) once per checkpoint kept by the
  init unit; the record holds the best checkpoint's metrics (by the headline metric, else the
  first metric), `last/<metric>` for the last checkpoint's, `best_step`, `checkpoint_steps`;
- any other step: the domain's stage, from the init unit's checkpoint when it has one.

A unit whose init unit did not finish ok is recorded `failed` without running; a unit planned
as a copy (`same_as`) takes that unit's record as its own. An exception inside a stage becomes
a `failed` record with the error (the traceback goes to the log); a NaN loss is the stage's
own `diverged` status. Every stage runs on the one Mesh the runner built (`--mesh`), which the
record names as `mesh` ('data:2,fsdp:2,model:2'); it does not enter the run_id, so a unit
interrupted on one mesh resumes on another.
"""

from __future__ import annotations

import dataclasses
import os
import time
import traceback
from collections.abc import Mapping
from typing import Any

from absl import logging
from jax.sharding import Mesh

from suite import domains, loop, optim, partition, throughput
from suite.checkpoint import Checkpointer
from suite.domain import (
  DIVERGED,
  FAILED,
  OK,
  CheckpointRef,
  ModelOptions,
  StageConfig,
  StageResult,
  journal_record,
)
from suite.domain import optimizer as domain_optimizer
from suite.units import BENCH, Unit

CHECKPOINTS = 'checkpoints'


def unit_dir(workdir: str, unit: Unit) -> str:
  """Where a unit trains and keeps its checkpoints: W/checkpoints/<run_id>."""
  return os.path.join(workdir, CHECKPOINTS, unit.run_id)


def _optimizer(domain: Any, spec: Mapping[str, Any]) -> optim.OptimizerConfig | None:
  """The step's optimizer: a domain preset (`optimizer`) with field overrides, or None for the
  stage's own default."""
  name, overrides = spec.get('optimizer'), dict(spec.get('optimizer_overrides') or {})
  if name is None and not overrides:
    return None  # the stage's own default
  return dataclasses.replace(domain_optimizer(domain, name), **overrides)


def _loop(spec: Mapping[str, Any]) -> dict[str, Any]:
  """LoopConfig fields: the step's `loop`, and `checkpoints` evenly spaced checkpoints kept."""
  options = dict(spec.get('loop') or {})
  count = spec.get('checkpoints')
  if count:
    steps = spec.get('steps') or 1
    options.setdefault('checkpoint_every', max(1, steps // count))
    options.setdefault('keep_checkpoints', count + 1)
  return options


def stage_config(unit: Unit, domain: Any, init_dir: str | None,
                 init_step: int | None = None, mesh: Mesh | None = None) -> StageConfig:
  spec = unit.spec
  return StageConfig(
      task=unit.task, steps=spec.get('steps') or 0, batch_size=spec.get('batch_size') or 32,
      seed=unit.seed, workload=dict(unit.workload.sizes),
      optimizer=_optimizer(domain, spec), init_params=init_dir, init_step=init_step,
      eval_batch_size=spec.get('eval_batch_size'), max_eval_examples=spec.get(
          'max_eval_examples'), loop=_loop(spec) if spec.get('steps') else {},
      mesh=mesh, options=dict(spec.get('options') or {}))


def _headline_metric(unit: Unit, metrics: Mapping[str, float]) -> str | None:
  headline = unit.spec.get('headline') or {}
  if headline.get('metric'):
    return headline['metric']
  return next(iter(metrics), None)


def _bench(unit: Unit, options: ModelOptions, mesh: Mesh | None) -> StageResult:
  domain = domains.get(unit.domain)
  spec = unit.spec
  start = time.perf_counter()
  item = throughput.measure(
      domain, unit.shape, label=unit.key, batch_size=spec.get('batch_size', 16),
      steps=spec.get('steps', 5), warmup=spec.get('warmup', 1), repeats=spec.get('repeats', 1),
      options=options.resolved(unit.shape), optimizer_name=spec.get('optimizer'),
      workload=dict(unit.workload.sizes), mesh=mesh)
  per_s = f'{unit.workload.unit}_per_s'
  metrics = {'steps_per_s': item['steps_per_s'],
             'examples_per_s': item['steps_per_s'] * item['batch'],
             per_s: item[per_s], 'tflops_per_s': item['model_tflops_per_s'],
             'mfu': item['mfu'] if item['mfu'] is not None else float('nan'),
             'compile_s': item['compile_s']}
  return StageResult(stage=BENCH, task=unit.task, status=OK, metrics=metrics, steps=0,
                     wall_s=time.perf_counter() - start)


def _score_checkpoints(unit: Unit, domain: Any, options: ModelOptions, init_dir: str,
                       workdir: str, mesh: Mesh | None) -> tuple[StageResult, dict[str, Any]]:
  """The stage at each checkpoint the init unit kept; best (by the headline) and last."""
  start = time.perf_counter()
  with Checkpointer(os.path.join(init_dir, loop.CHECKPOINT_DIR)) as checkpointer:
    steps = checkpointer.all_steps()
  if not steps:
    raise FileNotFoundError(f'{init_dir}: the init unit kept no checkpoint to score.')
  stage = domain.stages[unit.stage]
  scored = []
  for step in steps:
    result = stage(unit.shape, options, stage_config(unit, domain, init_dir, step, mesh),
                   os.path.join(workdir, f'step_{step}'))
    scored.append((step, result))
  metric = _headline_metric(unit, scored[-1][1].metrics)
  higher = (unit.spec.get('headline') or {}).get('higher_is_better', True)

  def score(item):
    value = item[1].metrics.get(metric, float('nan'))
    value = value if value == value else float('-inf') if higher else float('inf')
    return value if higher else -value

  best_step, best = max(scored, key=score)  # the first of equal scores: the earliest step
  last_step, last = scored[-1]
  metrics = {**best.metrics, **{f'last/{k}': v for k, v in last.metrics.items()}}
  result = StageResult(stage=unit.stage, task=unit.task, status=OK, metrics=metrics, steps=0,
                       wall_s=time.perf_counter() - start)
  return result, {'best_step': best_step, 'last_step': last_step, 'checkpoint_steps': steps}


def _headline(unit: Unit, metrics: Mapping[str, float], extra: Mapping[str, Any]) -> dict | None:
  spec = unit.spec
  headline = dict(spec.get('headline') or {})
  if unit.role not in ('upstream', 'downstream', 'baseline') or not headline:
    return None
  headline['metric'] = _headline_metric(unit, metrics)
  headline.setdefault('higher_is_better', True)
  label = headline.get('label', headline['metric'])
  if 'checkpoint_steps' in extra:
    label += f' ({len(extra["checkpoint_steps"])} checkpoints)'
  headline['label'] = f'{label}, seed {unit.seed}'
  if unit.role == 'baseline':
    headline['baseline_of'] = spec.get('baseline_of')
    headline['baseline_label'] = spec.get('baseline_label')
  return {k: v for k, v in headline.items() if v is not None}


def record(unit: Unit, result: StageResult,
           extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """The journal record of a unit's result: the core's fields plus the runner's."""
  extra = dict(extra or {})
  out = journal_record(result, domain=unit.domain, shape=unit.shape, workload=unit.workload,
                       seed=unit.seed, strategy=unit.strategy, scale=unit.scale,
                       config=unit.config)
  assert out['run_id'] == unit.run_id, (out['run_id'], unit.run_id)
  out.update(unit=unit.key, step=unit.step, role=unit.role, config=dict(unit.config),
             init=unit.init or (str(unit.checkpoint) if unit.checkpoint else None), **extra)
  headline = _headline(unit, result.metrics, extra)
  if headline:
    out['headline'] = headline
  return out


def failed(unit: Unit, error: str) -> dict[str, Any]:
  result = StageResult(stage=unit.stage, task=unit.task, status=FAILED, metrics={}, steps=0,
                       wall_s=0.0, error=error)
  return record(unit, result)


def copied(unit: Unit, source: Mapping[str, Any]) -> dict[str, Any]:
  """The record of a unit planned as a copy of `source`'s unit: its results, this identity."""
  result = StageResult(stage=unit.stage, task=unit.task, status=source['status'],
                       metrics=source['metrics'], steps=source.get('steps', 0), wall_s=0.0,
                       error=source.get('error'))
  extra = {k: source[k] for k in ('best_step', 'last_step', 'checkpoint_steps', 'mesh')
           if k in source}
  return {**record(unit, result, extra), 'same_as': source['unit']}


def run(unit: Unit, workdir: str, options: ModelOptions,
        init_dir: str | CheckpointRef | None, mesh: Mesh | None = None) -> dict[str, Any]:
  """Runs `unit` (its init unit finished ok, its checkpoints in `init_dir`) on `mesh` (None:
  every device on 'data') and returns its journal record; an exception becomes a `failed`
  record."""
  domain = domains.get(unit.domain)
  directory = unit_dir(workdir, unit)
  mesh = mesh if mesh is not None else partition.make_mesh()
  extra: dict[str, Any] = {}
  try:
    if unit.stage == BENCH:
      result = _bench(unit, options, mesh)
    elif unit.spec.get('score') == 'checkpoints':
      result, extra = _score_checkpoints(unit, domain, options, init_dir, directory, mesh)
    else:
      result = domain.stages[unit.stage](
          unit.shape, options, stage_config(unit, domain, init_dir, mesh=mesh), directory)
  except Exception as error:  # noqa: BLE001 - the plan goes on; the record names the error
    logging.error('%s failed:\n%s', unit.key, traceback.format_exc())
    return {**failed(unit, f'{type(error).__name__}: {" ".join(str(error).split())}'),
            'mesh': partition.mesh_text(mesh)}
  if result.status == DIVERGED:
    logging.error('%s diverged at step %d', unit.key, result.steps)
  return record(unit, result, {**extra, 'mesh': partition.mesh_text(mesh)})
