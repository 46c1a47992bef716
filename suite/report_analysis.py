"""The report's statistics: Pareto flags, Kendall's tau, equal-cost comparisons, compute regions
and baselines. Pure functions of suite.report_data's rows and journal records.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from suite.report_data import CANONICAL, Domain, Row, headline_value, mean, shape_key, step_of


def pareto_efficient(points: Sequence[tuple[float | None, float | None]]) -> list[bool | None]:
  """Per (cost, quality) point, lower cost and higher quality being better: True when no other
  point is at least as cheap and at least as good with one of the two strictly better; None when
  the point lacks either number (it then takes no part)."""
  flags: list[bool | None] = []
  for i, (cost, quality) in enumerate(points):
    if cost is None or quality is None:
      flags.append(None)
      continue
    dominated = any(
        j != i and c is not None and q is not None and c <= cost and q >= quality
        and (c < cost or q > quality) for j, (c, q) in enumerate(points))
    flags.append(not dominated)
  return flags


def domain_pareto(domain: Domain, axis: str) -> list[bool | None]:
  """Per row of `domain`, efficient on cost `axis` against its downstream summary."""
  sign = 1.0 if domain.summary_higher_is_better else -1.0
  points = []
  for row in domain.rows:
    quality = domain.summary(row)
    points.append((row.cost(axis), None if quality is None else sign * quality))
  return pareto_efficient(points)


@dataclasses.dataclass(frozen=True)
class Tau:
  """Kendall's tau-b of two rankings, with its pair counts."""

  n: int
  tau: float | None
  concordant: int
  discordant: int
  tied: int  # pairs tied in either ranking

  @property
  def pairs(self) -> int:
    return self.n * (self.n - 1) // 2


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> Tau:
  """Kendall's tau-b (ties in either variable corrected, as scipy.stats.kendalltau computes
  it), by counting all pairs: exact for the few shapes a report holds. None when either
  ranking is constant or fewer than two points are given."""
  if len(x) != len(y):
    raise ValueError(f'kendall_tau needs equal lengths, got {len(x)} and {len(y)}.')
  n = len(x)
  concordant = discordant = tied_x = tied_y = tied = 0
  for i in range(n):
    for j in range(i + 1, n):
      dx = (x[i] > x[j]) - (x[i] < x[j])
      dy = (y[i] > y[j]) - (y[i] < y[j])
      tied_x += dx == 0
      tied_y += dy == 0
      tied += dx == 0 or dy == 0
      concordant += dx * dy > 0
      discordant += dx * dy < 0
  pairs = n * (n - 1) // 2
  denominator = math.sqrt((pairs - tied_x) * (pairs - tied_y))
  tau = (concordant - discordant) / denominator if denominator else None
  return Tau(n, tau, concordant, discordant, tied)


def upstream_downstream_tau(domain: Domain) -> list[tuple[str, Tau]]:
  """Per upstream column: tau between upstream and downstream-summary quality, both oriented so
  that larger is better (a positive tau: better upstream goes with better downstream). A shape
  that several rows share (the base of every strategy, a strategy that builds the canonical
  shapes) counts once."""
  result = []
  for column in domain.upstream:
    up_sign = 1.0 if column.higher_is_better else -1.0
    down_sign = 1.0 if domain.summary_higher_is_better else -1.0
    xs, ys = [], []
    seen = set()
    for row in domain.rows:
      up = row.quality.get((column.role, column.step, column.task))
      down = domain.summary(row)
      if up is not None and down is not None and row.shape_name not in seen:
        seen.add(row.shape_name)
        xs.append(up_sign * up)
        ys.append(down_sign * down)
    result.append((column.title, kendall_tau(xs, ys)))
  return result


@dataclasses.dataclass(frozen=True)
class Comparison:
  """One shape against the canonical shape of the nearest cost on one axis."""

  row: Row
  canonical: Row
  cost_ratio: float  # row cost / canonical cost
  difference: float  # summary(row) - summary(canonical)
  ratio: float | None  # summary(row) / summary(canonical)
  better: bool  # the row's summary is better (in the summary's direction)


def equal_cost_comparisons(domain: Domain, axis: str) -> list[Comparison]:
  """Each non-canonical row with a summary and a cost on `axis`, against the canonical row
  nearest in cost (smallest |log cost ratio|; ties to the cheaper, then by name)."""
  canon = [r for r in domain.rows if r.strategy == CANONICAL and r.cost(axis)
           and domain.summary(r) is not None]
  result = []
  for row in domain.rows:
    cost, quality = row.cost(axis), domain.summary(row)
    if row.strategy == CANONICAL or not cost or quality is None or not canon:
      continue
    nearest = min(canon, key=lambda c: (abs(math.log(cost / c.cost(axis))), c.cost(axis),
                                        c.shape_name))
    base = domain.summary(nearest)
    difference = quality - base
    result.append(Comparison(
        row=row, canonical=nearest, cost_ratio=cost / nearest.cost(axis), difference=difference,
        ratio=quality / base if base else None,
        better=difference > 0 if domain.summary_higher_is_better else difference < 0))
  return result


@dataclasses.dataclass(frozen=True)
class Region:
  """One compute region of a domain: its rows, the winner and the best other strategy."""

  name: str
  low: float
  high: float
  rows: tuple[Row, ...]
  winner: Row
  runner_up: Row | None  # the best row of another strategy


REGION_NAMES = {1: ('all',), 2: ('small', 'large'), 3: ('small', 'medium', 'large')}


def regions(domain: Domain, axis: str = 'flops', count: int = 3) -> list[Region]:
  """The rows with a cost and a summary, sorted by cost on `axis` and split into `count` (at most
  as many as rows) groups of near-equal size (the first groups take one more); in each, the
  strategy of the best summary wins."""
  rows = sorted((r for r in domain.rows if r.cost(axis) and domain.summary(r) is not None),
                key=lambda r: (r.cost(axis), r.key))
  count = min(count, len(rows), 3)
  if not count:
    return []
  sign = 1.0 if domain.summary_higher_is_better else -1.0
  result, start = [], 0
  for index in range(count):
    size = len(rows) // count + (index < len(rows) % count)
    group = rows[start:start + size]
    start += size
    ranked = sorted(group, key=lambda r: (-sign * domain.summary(r), r.key))
    runner_up = next((r for r in ranked if r.strategy != ranked[0].strategy), None)
    result.append(Region(REGION_NAMES[count][index], group[0].cost(axis), group[-1].cost(axis),
                         tuple(group), ranked[0], runner_up))
  return result


@dataclasses.dataclass(frozen=True)
class BaselineGroup:
  """A model against a baseline over the shape x task pairs that have both."""

  domain: str
  step: str  # the step whose model is compared
  label: str  # the baseline's label, e.g. 'no pretraining'
  metric: str  # the tasks' headline metrics, comma-separated when they differ ('accuracy, em')
  higher_is_better: bool
  pairs: tuple[tuple[str, str, float, float], ...]  # (shape_name, task, model, baseline)

  @property
  def model_mean(self) -> float:
    return mean(p[2] for p in self.pairs)

  @property
  def baseline_mean(self) -> float:
    return mean(p[3] for p in self.pairs)

  @property
  def wins(self) -> int:
    sign = 1.0 if self.higher_is_better else -1.0
    return sum(sign * (p[2] - p[3]) > 0 for p in self.pairs)

  @property
  def tasks(self) -> list[str]:
    return sorted({p[1] for p in self.pairs})

  @property
  def beats(self) -> bool:
    difference = self.model_mean - self.baseline_mean
    return difference > 0 if self.higher_is_better else difference < 0

  @property
  def subject(self) -> str:
    """What the model side is: the baseline's label without its 'no ' ('pretraining'), else
    the step's name."""
    return self.label[3:] if self.label.lower().startswith('no ') else f'`{self.step}`'


def baselines(ok: Sequence[Mapping[str, Any]]) -> list[BaselineGroup]:
  """Baseline records (role baseline, `baseline_of`, `baseline_label`) paired with the
  downstream record of the same shape, task and seed from step `baseline_of`; and downstream
  records with a `baseline_metric` paired with themselves."""
  downstream = {}
  for record in ok:
    if record.get('role') == 'downstream':
      downstream[(shape_key(record), step_of(record), str(record.get('task')),
                  record.get('seed'))] = record
  groups: dict[tuple, list] = {}
  metrics: dict[tuple, set[str]] = {}
  higher_is_better: dict[tuple, bool] = {}

  def add(domain, step, label, record, model, base, metric, higher):
    if model is None or base is None:
      return
    key = (domain, step, label)
    groups.setdefault(key, []).append((str(record.get('shape_name')), str(record.get('task')),
                                       record.get('seed'), model, base))
    metrics.setdefault(key, set()).add(metric)
    higher_is_better.setdefault(key, higher)

  for record in ok:
    headline = record.get('headline') or {}
    higher = bool(headline.get('higher_is_better', True))

    def field(name: str, record=record, headline=headline) -> Any:
      """A baseline field: in the record's headline (as suite.run writes it) or top level."""
      return headline.get(name, record.get(name))

    label = str(field('baseline_label') or 'baseline')
    if record.get('role') == 'baseline' and field('baseline_of'):
      match = downstream.get((shape_key(record), str(field('baseline_of')),
                              str(record.get('task')), record.get('seed')))
      if match is not None:
        add(str(record['domain']), str(field('baseline_of')), label, record,
            headline_value(match), headline_value(record), str(headline.get('metric')), higher)
    elif record.get('role') == 'downstream' and field('baseline_metric'):
      add(str(record['domain']), step_of(record), label, record, headline_value(record),
          headline_value(record, str(field('baseline_metric'))), str(headline.get('metric')),
          higher)
  result = []
  for key in sorted(groups):
    by_pair: dict[tuple[str, str], list] = {}
    for shape, task, _, model, base in groups[key]:
      by_pair.setdefault((shape, task), []).append((model, base))
    pairs = tuple((shape, task, mean(m for m, _ in v), mean(b for _, b in v))
                  for (shape, task), v in sorted(by_pair.items()))
    result.append(BaselineGroup(*key, ', '.join(sorted(metrics[key])), higher_is_better[key],
                                pairs))
  return result
