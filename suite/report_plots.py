"""The report's figures (matplotlib, Agg, no pyplot state): upstream vs downstream per domain
(Tay et al.'s Figure 1), downstream vs each cost axis with the Pareto frontier (Figure 2), and
the strategy ladders. Each function writes one PNG and returns False when the data has nothing
to draw.
"""

from __future__ import annotations

from collections.abc import Sequence

from suite.report_analysis import domain_pareto
from suite.report_data import COST_AXES, COST_AXIS_TITLES, Domain, Row

# PNGs without the matplotlib version in their metadata, so that they depend on the data alone.
_METADATA = {'Software': None}


def _figure(width: float, height: float):
  import matplotlib
  matplotlib.use('Agg')
  from matplotlib.figure import Figure
  return Figure(figsize=(width, height), dpi=100, layout='constrained')


def _colors(strategies: Sequence[str]) -> dict[str, str]:
  palette = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2',
             '#17becf', '#bcbd22', '#7f7f7f']
  return {s: palette[i % len(palette)] for i, s in enumerate(sorted(set(strategies)))}


def _by_strategy(rows: Sequence[Row]) -> dict[str, list[Row]]:
  groups: dict[str, list[Row]] = {}
  for row in rows:
    groups.setdefault(row.strategy, []).append(row)
  return dict(sorted(groups.items()))


# Where a label may sit beside its marker, tried in order: (offset in points, alignment).
_LABEL_SPOTS = tuple(((4, sign * (3 + 8 * line)), 'left', 'bottom' if sign > 0 else 'top')
                     for line in range(5) for sign in (1, -1))


def _overlap(box, other) -> float:
  width = min(box.x1, other.x1) - max(box.x0, other.x0)
  height = min(box.y1, other.y1) - max(box.y0, other.y0)
  return max(width, 0.0) * max(height, 0.0)


def _place_labels(fig, ax, labels: Sequence[tuple[float, float, str]]) -> None:
  """Writes each distinct (x, y, text) beside its marker where it overlaps the legend and the
  labels already placed least (none, if a spot allows) and stays inside the axes: right of the
  marker, or left of it for markers in the right part of the axes, level with it or up to four
  lines above or below. Call once the axes' scales and limits are set: spots are judged in
  display space."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
  fig.draw_without_rendering()  # lay the figure out, so that display positions are final
  renderer = canvas.get_renderer()
  frame = ax.get_window_extent(renderer)
  legend = ax.get_legend()
  placed = [legend.get_window_extent(renderer)] if legend is not None else []
  # A shape that several strategies reach is one marker: label it once.
  for x, y, text in dict.fromkeys(labels):
    right_part = ax.transAxes.inverted().transform(ax.transData.transform((x, y)))[0] > 0.6
    best = None
    for (dx, dy), ha, va in _LABEL_SPOTS:
      if right_part:
        dx, ha = -dx, 'right'
      label = ax.annotate(text, (x, y), fontsize=7, xytext=(dx, dy), textcoords='offset points',
                          ha=ha, va=va, color='#444444')
      box = label.get_window_extent(renderer)
      outside = box.width * box.height - _overlap(box, frame)
      cost = outside + sum(_overlap(box, other) for other in placed)
      if best is None or cost < best[0]:
        if best is not None:
          best[1].remove()
        best = (cost, label, box)
      else:
        label.remove()
      if cost == 0:
        break
    placed.append(best[2])


def upstream_vs_downstream(domain: Domain, path: str) -> bool:
  """Downstream summary against each upstream headline, one point per shape."""
  columns = [c for c in domain.upstream
             if sum(1 for r in domain.rows if r.quality.get((c.role, c.step, c.task)) is not None
                    and domain.summary(r) is not None) >= 1]
  if not columns:
    return False
  fig = _figure(6.2 * len(columns), 4.6)
  axes = fig.subplots(1, len(columns), squeeze=False)[0]
  colors = _colors([r.strategy for r in domain.rows])
  placements = []
  for ax, column in zip(axes, columns, strict=True):
    labels = []
    for strategy, rows in _by_strategy(domain.rows).items():
      points = [(r.quality.get((column.role, column.step, column.task)), domain.summary(r), r)
                for r in rows]
      points = [p for p in points if p[0] is not None and p[1] is not None]
      if not points:
        continue
      ax.scatter([p[0] for p in points], [p[1] for p in points], s=42, color=colors[strategy],
                 label=strategy, edgecolor='white', linewidth=0.6, zorder=3)
      labels += [(x, y, row.shape_name) for x, y, row in points]
    placements.append((ax, labels))
    direction = 'higher' if column.higher_is_better else 'lower'
    ax.set_xlabel(f'upstream: {column.title}, {column.headlines[0].metric} '
                  f'({direction} is better)', fontsize=9)
    ax.set_ylabel(f'downstream {domain.summary_title}', fontsize=9)
    if not column.higher_is_better:
      ax.invert_xaxis()  # better to the right
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc='best')
  fig.suptitle(f'{domain.name}: upstream vs downstream quality', fontsize=11)
  for ax, labels in placements:
    _place_labels(fig, ax, labels)
  fig.savefig(path, format='png', metadata=_METADATA)
  return True


def pareto(domain: Domain, path: str) -> bool:
  """Downstream summary against each cost axis, the Pareto frontier as a step line."""
  axes_with_data = [a for a in COST_AXES
                    if any(r.cost(a) and domain.summary(r) is not None for r in domain.rows)]
  if not axes_with_data:
    return False
  fig = _figure(5.0 * len(axes_with_data), 4.4)
  axes = fig.subplots(1, len(axes_with_data), squeeze=False)[0]
  colors = _colors([r.strategy for r in domain.rows])
  placements = []
  for ax, axis in zip(axes, axes_with_data, strict=True):
    efficient = domain_pareto(domain, axis)
    shown, labels = set(), []
    for row, is_efficient in zip(domain.rows, efficient, strict=True):
      cost, quality = row.cost(axis), domain.summary(row)
      if not cost or quality is None:
        continue
      x = row.steps_per_s if axis == 'speed' else cost
      ax.scatter([x], [quality], s=60 if is_efficient else 34, color=colors[row.strategy],
                 marker='o' if is_efficient else 'x', zorder=3,
                 label=row.strategy if row.strategy not in shown else None)
      labels.append((x, quality, row.shape_name))
      shown.add(row.strategy)
    placements.append((ax, labels))
    frontier = sorted(((r.steps_per_s if axis == 'speed' else r.cost(axis)), domain.summary(r))
                      for r, e in zip(domain.rows, efficient, strict=True) if e)
    if frontier:
      ax.step([p[0] for p in frontier], [p[1] for p in frontier],
              where='post' if axis != 'speed' else 'pre', color='#444444', linewidth=1,
              linestyle='--', zorder=2, label='Pareto frontier')
    ax.set_xscale('log')
    if axis == 'speed':
      ax.invert_xaxis()  # cheaper (faster) to the left, as on the other axes
    ax.set_xlabel(COST_AXIS_TITLES[axis] + (' (faster to the left)' if axis == 'speed' else ''),
                  fontsize=9)
    ax.set_ylabel(f'downstream {domain.summary_title}', fontsize=9)
    ax.grid(True, which='both', alpha=0.25)
    ax.legend(fontsize=7, loc='best')
  fig.suptitle(f'{domain.name}: downstream quality vs cost (o: Pareto-efficient, x: not)',
               fontsize=11)
  for ax, labels in placements:
    _place_labels(fig, ax, labels)
  fig.savefig(path, format='png', metadata=_METADATA)
  return True


def ladders(domain: Domain, path: str) -> bool:
  """Per strategy: its shapes' depth against d_model, and downstream summary against params."""
  rows = [r for r in domain.rows if r.shape.get('d_model')]
  if not rows:
    return False
  fig = _figure(11.0, 4.4)
  left, right = fig.subplots(1, 2)
  colors = _colors([r.strategy for r in domain.rows])
  for strategy, group in _by_strategy(rows).items():
    group = sorted(group, key=lambda r: (r.params or 0, r.key))
    depth = [int(r.shape.get('num_encoder_layers', 0)) + int(r.shape.get('num_decoder_layers', 0))
             for r in group]
    left.plot([r.shape['d_model'] for r in group], depth, marker='o', color=colors[strategy],
              label=strategy, linewidth=1.2)
    points = [(r.params, domain.summary(r)) for r in group
              if r.params and domain.summary(r) is not None]
    if points:
      right.plot([p[0] for p in points], [p[1] for p in points], marker='o',
                 color=colors[strategy], label=strategy, linewidth=1.2)
  left.set_xscale('log', base=2)
  left.set_xlabel('d_model', fontsize=9)
  left.set_ylabel('layers (encoder + decoder)', fontsize=9)
  left.set_title('shapes each strategy builds', fontsize=10)
  right.set_xscale('log')
  right.set_xlabel('params', fontsize=9)
  right.set_ylabel(f'downstream {domain.summary_title}', fontsize=9)
  right.set_title('downstream quality along each ladder', fontsize=10)
  for ax in (left, right):
    ax.grid(True, which='both', alpha=0.25)
    ax.legend(fontsize=7, loc='best')
  fig.suptitle(f'{domain.name}: strategy ladders', fontsize=11)
  fig.savefig(path, format='png', metadata=_METADATA)
  return True
