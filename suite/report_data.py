"""The report's view of a results journal: one row per shape, its costs and its quality.

Pure functions over journal records (suite/journal.py's schema 1); nothing here reads a file or
draws. Everything domain-specific (metric, label, direction, task, role, stage) comes from the
records' `role` and `headline` fields; the only outside table is `tasks.summary`
(the GLUE / SuperGLUE / SQuAD / AVG summary columns), loaded only to check a journal's tasks
against it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from suite import journal
from tasks import summary

CANONICAL = 'canonical'
COST_AXES = ('params', 'flops', 'speed')
COST_AXIS_TITLES = {'params': 'params', 'flops': 'train FLOPs/example', 'speed': 'steps/s'}
# tasks.summary keys -> column titles, in the paper's order.
BENCHMARK_SUMMARY = {'glue_average': 'GLUE', 'super_glue_average': 'SuperGLUE',
                     'squad': 'SQuAD', 'avg': 'AVG'}


@dataclasses.dataclass(frozen=True)
class Headline:
  """What a column's number is: its metric, direction and the record's own words for it."""

  metric: str
  higher_is_better: bool
  label: str


@dataclasses.dataclass(frozen=True)
class Column:
  """One upstream or downstream quality column of a domain table."""

  role: str
  step: str
  task: str
  title: str
  headlines: tuple[Headline, ...]  # distinct headlines among the column's records

  @property
  def higher_is_better(self) -> bool:
    return self.headlines[0].higher_is_better


@dataclasses.dataclass
class Row:
  """One shape of one domain, with what the journal's `ok` records say about it."""

  domain: str
  strategy: str
  scale: float | None
  shape_name: str
  shape: dict[str, Any]
  params: float | None = None
  flops: float | None = None
  workload: dict[str, Any] = dataclasses.field(default_factory=dict)
  steps_per_s: float | None = None
  device: str | None = None
  quality: dict[tuple[str, str, str], float] = dataclasses.field(default_factory=dict)
  task_metrics: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
  summary: dict[str, float] = dataclasses.field(default_factory=dict)
  seeds: set[int] = dataclasses.field(default_factory=set)

  @property
  def key(self) -> tuple[str, float, str]:
    return (self.strategy, -1.0 if self.scale is None else float(self.scale), self.shape_name)

  def cost(self, axis: str) -> float | None:
    """The row's cost on `axis` (lower is cheaper): params, FLOPs, or seconds per step."""
    if axis == 'params':
      return self.params
    if axis == 'flops':
      return self.flops
    if axis == 'speed':
      return 1.0 / self.steps_per_s if self.steps_per_s else None
    raise ValueError(f'unknown cost axis {axis!r}; valid: {", ".join(COST_AXES)}.')


@dataclasses.dataclass
class Domain:
  """A domain's rows and what its summary column is."""

  name: str
  rows: list[Row]
  upstream: list[Column]
  downstream: list[Column]
  summary_columns: list[tuple[str, str]]  # (key in Row.summary, title)
  summary_key: str | None  # the summary that Pareto, Kendall and regions use
  summary_higher_is_better: bool
  summary_note: str
  seeds: list[int]
  bench_devices: list[str]

  @property
  def summary_title(self) -> str:
    return dict(self.summary_columns).get(self.summary_key, 'summary')

  def summary(self, row: Row) -> float | None:
    return row.summary.get(self.summary_key) if self.summary_key else None


@dataclasses.dataclass
class Journal:
  """The records the report reads, split by status."""

  records: list[dict[str, Any]]  # latest record of each run_id
  ok: list[dict[str, Any]]
  not_ok: list[dict[str, Any]]
  cut_last_line: bool


def load(workdir: str | os.PathLike) -> Journal:
  """The journal of `workdir` (journal.JournalError when damaged or of another schema)."""
  records, cut = journal.load(workdir)
  journal.check_schema(records, workdir)
  latest = sorted(journal.latest_by_run(records).values(), key=_record_order)
  return Journal(records=latest, ok=[r for r in latest if r.get('status') == 'ok'],
                 not_ok=[r for r in latest if r.get('status') != 'ok'], cut_last_line=cut)


def _record_order(record: Mapping[str, Any]) -> tuple:
  return (str(record.get('domain')), str(record.get('strategy')), _scale(record),
          str(record.get('shape_name')), str(record.get('step') or record.get('stage')),
          str(record.get('task')), str(record.get('seed')), str(record.get('run_id')))


def _scale(record: Mapping[str, Any]) -> float:
  scale = record.get('scale')
  return -1.0 if scale is None else float(scale)


def _headline(record: Mapping[str, Any]) -> Headline | None:
  headline = record.get('headline')
  if not isinstance(headline, Mapping) or 'metric' not in headline:
    return None
  return Headline(str(headline['metric']), bool(headline.get('higher_is_better', True)),
                  str(headline.get('label') or headline['metric']))


def headline_value(record: Mapping[str, Any], metric: str | None = None) -> float | None:
  """The record's headline metric (or `metric`) as a finite float, else None."""
  if metric is None:
    headline = _headline(record)
    if headline is None:
      return None
    metric = headline.metric
  value = (record.get('metrics') or {}).get(metric)
  if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
    return None
  return float(value)


def mean(values: Iterable[float]) -> float | None:
  values = list(values)
  return sum(values) / len(values) if values else None


def step_of(record: Mapping[str, Any]) -> str:
  return str(record.get('step') or record.get('stage'))


def shape_key(record: Mapping[str, Any]) -> tuple[str, str, float, str]:
  return (str(record['domain']), str(record.get('strategy') or CANONICAL), _scale(record),
          str(record.get('shape_name')))


def benchmark_averages() -> types.ModuleType:
  """tasks.summary: the paper's GLUE / SuperGLUE / SQuAD / AVG columns (numpy only: importing
  it registers no task)."""
  return summary


def benchmark_tasks(averages: types.ModuleType | None) -> set[str]:
  if averages is None:
    return set()
  tasks = {task for columns in averages.COLUMNS.values() for parts in columns.values()
           for task, _ in parts}
  return tasks | {averages.SQUAD[0]}


def domains(ok: Sequence[Mapping[str, Any]]) -> list[Domain]:
  """One Domain per domain in the `ok` records, rows sorted by (strategy, scale, shape)."""
  by_domain: dict[str, list[Mapping[str, Any]]] = {}
  for record in ok:
    if record.get('shape_name') is not None and record.get('domain') is not None:
      by_domain.setdefault(str(record['domain']), []).append(record)
  averages = None
  names = {str(r.get('task')) for r in ok if r.get('role') == 'downstream'}
  if names:
    averages = benchmark_averages()
    if not names & benchmark_tasks(averages):
      averages = None
  return [_domain(name, by_domain[name], averages) for name in sorted(by_domain)]


def _columns(records: Sequence[Mapping[str, Any]], role: str) -> list[Column]:
  found: dict[tuple[str, str], set[Headline]] = {}
  for record in records:
    headline = _headline(record)
    if record.get('role') == role and headline is not None:
      found.setdefault((step_of(record), str(record.get('task'))), set()).add(headline)
  tasks = [task for _, task in found]
  columns = []
  for (step, task), headlines in sorted(found.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    title = task if tasks.count(task) == 1 else f'{task} ({step})'
    ordered = tuple(sorted(headlines, key=lambda h: (h.metric, h.label)))
    columns.append(Column(role, step, task, title, ordered))
  return columns


def _domain(name: str, records: Sequence[Mapping[str, Any]],
            averages: types.ModuleType | None) -> Domain:
  rows: dict[tuple, Row] = {}
  groups: dict[tuple, dict[tuple[str, str, str], list[Mapping[str, Any]]]] = {}
  for record in records:
    key = shape_key(record)
    row = rows.get(key)
    if row is None:
      row = rows[key] = Row(domain=name, strategy=key[1], scale=record.get('scale'),
                            shape_name=key[3], shape=dict(record.get('shape') or {}))
    if record.get('seed') is not None:
      row.seeds.add(int(record['seed']))
    role = record.get('role')
    if role in ('upstream', 'downstream', 'baseline'):
      groups.setdefault(key, {}).setdefault((str(role), step_of(record), str(record.get('task'))),
                                            []).append(record)
  for key, row in rows.items():
    _costs(row, [r for r in records if shape_key(r) == key])
    for (role, step, task), group in groups.get(key, {}).items():
      values = [v for v in (headline_value(r) for r in group) if v is not None]
      if values:
        row.quality[(role, step, task)] = mean(values)
      if role == 'downstream' and task not in row.task_metrics:
        row.task_metrics[task] = _mean_metrics(group)
  ordered = sorted(rows.values(), key=lambda r: (r.strategy != CANONICAL, r.key))
  upstream, downstream = _columns(records, 'upstream'), _columns(records, 'downstream')
  domain = Domain(name=name, rows=ordered, upstream=upstream, downstream=downstream,
                  summary_columns=[], summary_key=None, summary_higher_is_better=True,
                  summary_note='', seeds=sorted({s for r in ordered for s in r.seeds}),
                  bench_devices=sorted({str(r.device) for r in ordered if r.device}))
  _summarise(domain, averages)
  return domain


def _mean_metrics(group: Sequence[Mapping[str, Any]]) -> dict[str, float]:
  names = sorted({m for r in group for m in (r.get('metrics') or {})})
  result = {}
  for metric in names:
    value = mean(v for v in (headline_value(r, metric) for r in group) if v is not None)
    if value is not None:
      result[metric] = value
  return result


def _costs(row: Row, records: Sequence[Mapping[str, Any]]) -> None:
  """params and FLOPs (upstream records first: the pretraining workload), and bench speed."""
  priority = {'upstream': 0, 'cost': 1, 'downstream': 2}
  for record in sorted(records, key=lambda r: priority.get(str(r.get('role')), 3)):
    if row.params is None and record.get('params') is not None:
      row.params = float(record['params'])
    if row.flops is None and record.get('train_flops_per_example') is not None:
      row.flops = float(record['train_flops_per_example'])
      row.workload = dict(record.get('workload') or {})
  bench = [r for r in records if r.get('role') == 'cost']
  speeds = [v for v in (headline_value(r, 'steps_per_s') for r in bench) if v is not None]
  row.steps_per_s = mean(speeds)
  devices = sorted({str((r.get('versions') or {}).get('device')) for r in bench
                    if (r.get('versions') or {}).get('device')})
  row.device = ', '.join(devices) or None


def _summarise(domain: Domain, averages: types.ModuleType | None) -> None:
  """The downstream summary: the benchmark's columns when its tasks ran, else `avg`."""
  bench_tasks = benchmark_tasks(averages)
  if averages is not None and any(c.task in bench_tasks for c in domain.downstream):
    for row in domain.rows:
      scores = {t: m for t, m in row.task_metrics.items() if t in bench_tasks}
      result = averages.averages(scores) if scores else {}
      row.summary = {k: float(v) for k, v in result.items() if k in BENCHMARK_SUMMARY}
    present = [k for k in BENCHMARK_SUMMARY if any(k in r.summary for r in domain.rows)]
    domain.summary_columns = [(k, BENCHMARK_SUMMARY[k]) for k in present]
    domain.summary_key = present[-1] if 'avg' in present else (present[0] if present else None)
    domain.summary_note = (
        'GLUE and SuperGLUE are the means of their benchmark columns, SQuAD is v1.1 exact match, '
        'AVG the mean of the three (tasks.summary, as the paper reports them; each '
        'task\'s metrics as its downstream record gives them); a column is blank when one of its '
        'tasks is missing.')
    return
  columns = domain.downstream
  if not columns:
    domain.summary_note = 'no downstream records: no summary.'
    return
  directions = {c.higher_is_better for c in columns}
  if len(directions) > 1:
    domain.summary_note = ('the downstream headlines disagree on direction (some higher, some '
                           'lower is better): no average.')
    return
  domain.summary_higher_is_better = directions.pop()
  for row in domain.rows:
    values = [row.quality.get((c.role, c.step, c.task)) for c in columns]
    if values and all(v is not None for v in values):
      row.summary['avg'] = mean(values)
  domain.summary_columns = [('avg', 'avg')]
  domain.summary_key = 'avg'
  domain.summary_note = (f'avg: the unweighted mean of the {len(columns)} downstream headline '
                         'column(s); blank when a shape lacks one of them.')
