r"""`python -m suite.report --workdir=W`: every table and plot, rebuilt from `W/results.jsonl`.

Writes in W: `report.md`, one CSV per table (`report_<table>.csv`), PNG plots
(`plot_<name>.png`) and `report.html`, one self-contained page (inline CSS, plots as data:
URIs) that opens offline. The same journal gives the same `report.md`, byte for byte: nothing
in it depends on the clock or the order of the journal's lines. `suite.run` calls `write` at
its end.

  $ python -m suite.report --workdir=/tmp/shapebench
  {"markdown": "/tmp/shapebench/report.md", "html": "/tmp/shapebench/report.html", ...}

Everything domain-specific (which metric, its direction and its words, which step is upstream
or downstream, which task) comes from the records' `role` and `headline` fields.
"""

from __future__ import annotations

import glob
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from absl import flags

from suite import flagcheck, journal, report_doc, report_plots
from suite.report_analysis import (
  baselines,
  domain_pareto,
  equal_cost_comparisons,
  regions,
  upstream_downstream_tau,
)
from suite.report_data import (
  CANONICAL,
  COST_AXES,
  COST_AXIS_TITLES,
  Domain,
  Journal,
  domains,
  load,
)
from suite.report_doc import Block, Heading, Paragraph, Plot, Table, count, flag, flops
from suite.report_doc import number as num
from suite.report_doc import scale as fmt_scale

EQUAL_COST_AXES = ('params', 'flops')
REGION_AXIS = 'flops'
TITLE = 'shapebench report'


def write(workdir: str | os.PathLike, equal_cost: str = 'params') -> dict[str, str]:
  """Writes the report of `workdir`'s journal into `workdir`; returns {kind: path} (kinds:
  'markdown', 'html', 'csv:<table>', 'png:<plot>'). A journal without records, or a damaged
  one, raises journal.JournalError."""
  if equal_cost not in EQUAL_COST_AXES:
    raise ValueError(f'equal_cost={equal_cost!r}: valid cost axes are '
                     f'{", ".join(EQUAL_COST_AXES)}.')
  workdir = os.fspath(workdir)
  data = load(workdir)
  if not data.records:
    raise journal.JournalError(f'{journal.path(workdir)} has no records; run `python -m '
                               f'suite.run --workdir={workdir}` first to write them.')
  blocks, plots = build(data, equal_cost)
  paths: dict[str, str] = {}
  images: dict[str, bytes] = {}
  written = set()
  for name, (draw, domain) in plots.items():
    filename = os.path.join(workdir, f'plot_{name}.png')
    draw(domain, filename)
    with open(filename, 'rb') as f:
      images[os.path.basename(filename)] = f.read()
    paths[f'png:{name}'] = filename
    written.add(filename)
  for block in blocks:
    if isinstance(block, Table):
      filename = os.path.join(workdir, f'report_{block.slug}.csv')
      _write_text(filename, block.csv())
      paths[f'csv:{block.slug}'] = filename
      written.add(filename)
  for stale in glob.glob(os.path.join(workdir, 'plot_*.png')) + glob.glob(
      os.path.join(workdir, 'report_*.csv')):
    if stale not in written:  # from an earlier report of a journal that had more
      os.remove(stale)
  paths['markdown'] = os.path.join(workdir, 'report.md')
  _write_text(paths['markdown'], report_doc.markdown(blocks))
  paths['html'] = os.path.join(workdir, 'report.html')
  _write_text(paths['html'], report_doc.page(blocks, images, TITLE))
  return dict(sorted(paths.items()))


def _write_text(filename: str, text: str) -> None:
  partial = filename + '.partial'
  with open(partial, 'w', encoding='utf-8', newline='\n') as f:
    f.write(text)
  os.replace(partial, filename)


PlotSpec = tuple[Any, Domain]


def build(data: Journal, equal_cost: str = 'params') -> tuple[list[Block], dict[str, PlotSpec]]:
  """The report's blocks, and the plots they show ({name: (draw function, domain)})."""
  all_domains = domains(data.ok)
  plots: dict[str, PlotSpec] = {}
  blocks: list[Block] = [Heading(1, TITLE), Paragraph(_overview(data, all_domains))]
  comparisons = {d.name: equal_cost_comparisons(d, equal_cost) for d in all_domains}
  taus = {d.name: upstream_downstream_tau(d) for d in all_domains}
  domain_regions = {d.name: regions(d, REGION_AXIS) for d in all_domains}
  groups = baselines(data.ok)
  blocks += [Heading(2, 'Findings'),
             *_findings(all_domains, comparisons, taus, domain_regions, groups, equal_cost)]
  for domain in all_domains:
    blocks += [Heading(2, f'Domain: {domain.name}'), _domain_table(domain)]
    for name, draw, title, caption in (
        ('upstream_downstream', report_plots.upstream_vs_downstream,
         'upstream vs downstream', 'each point a shape; the paper\'s Figure 1.'),
        ('pareto', report_plots.pareto, 'downstream vs cost',
         'downstream summary against params, train FLOPs/example and measured steps/s; the '
         'dashed line joins the Pareto-efficient shapes (the paper\'s Figure 2).'),
        ('ladders', report_plots.ladders, 'strategy ladders',
         'left: the shapes each strategy builds (layers vs d_model); right: downstream summary '
         'against params along each strategy.')):
      if _drawable(name, domain):
        slug = f'{name}_{domain.name}'
        plots[slug] = (draw, domain)
        blocks.append(Plot(slug, f'{domain.name}: {title}',
                           f'{domain.name}: {caption} Downstream: {domain.summary_title}.',
                           f'plot_{slug}.png'))
  blocks += [Heading(2, 'Strategies against canonical shapes of equal cost'),
             _equal_cost_table(all_domains, comparisons, equal_cost)]
  blocks += [Heading(2, 'Does upstream quality predict downstream quality?'),
             _tau_table(all_domains, taus)]
  blocks += [Heading(2, 'Which strategy wins in each compute region'),
             _regions_table(all_domains, domain_regions)]
  blocks += [Heading(2, 'Baselines'), _baselines_table(groups)]
  blocks += [Heading(2, 'Units that did not finish'), *_not_finished(data)]
  blocks += [Heading(2, 'Versions and devices'), _versions_table(data)]
  return blocks, plots


def _drawable(name: str, domain: Domain) -> bool:
  has_summary = any(domain.summary(r) is not None for r in domain.rows)
  if name == 'upstream_downstream':
    return has_summary and any(r.quality.get((c.role, c.step, c.task)) is not None
                               and domain.summary(r) is not None
                               for c in domain.upstream for r in domain.rows)
  if name == 'pareto':
    return has_summary and any(r.cost(a) and domain.summary(r) is not None
                               for a in COST_AXES for r in domain.rows)
  return any(r.shape.get('d_model') for r in domain.rows)


def _overview(data: Journal, all_domains: Sequence[Domain]) -> str:
  statuses = {}
  for record in data.records:
    statuses[record.get('status')] = statuses.get(record.get('status'), 0) + 1
  status_text = ', '.join(f'{n} {s}' for s, n in sorted(statuses.items(), key=str))
  seeds = sorted({r.get('seed') for r in data.ok if r.get('seed') is not None})
  text = (f'Built from `{journal.FILENAME}` alone: {len(data.records)} units (the latest record '
          f'of each run id: {status_text}); domains: '
          f'{", ".join(d.name for d in all_domains) or "none"}; seeds: '
          f'{", ".join(map(str, seeds)) or "none recorded"} (a value from several seeds is their '
          'mean). Every quality column says below its table what it is (metric, split and '
          'checkpoint rule, from the records\' headline labels).')
  if data.cut_last_line:
    text += (' The journal\'s last line was cut by an interrupted write and is ignored (its '
             'unit runs again).')
  return text


def _findings(all_domains, comparisons, taus, domain_regions, groups, equal_cost) -> list[Block]:
  """Sentences computed from the tables: no conclusion is written in advance."""
  paragraphs: list[Block] = []
  axis = COST_AXIS_TITLES[equal_cost]
  for domain in all_domains:
    sentences = []
    ranked = [r for r in domain.rows if domain.summary(r) is not None]
    if not ranked:
      paragraphs.append(Paragraph(f'**{domain.name}**: no downstream summary to compare.'))
      continue
    sign = 1 if domain.summary_higher_is_better else -1
    best = max(ranked, key=lambda r: sign * domain.summary(r))  # the first in row order on ties
    sentences.append(f'The best downstream {domain.summary_title} is {num(domain.summary(best))} '
                     f'({best.shape_name}, {best.strategy} {fmt_scale(best.scale)}).')
    by_strategy: dict[str, list] = {}
    for c in comparisons[domain.name]:
      by_strategy.setdefault(c.row.strategy, []).append(c)
    for strategy, all_items in sorted(by_strategy.items()):
      # A shape that is its canonical shape (the base, or a strategy that builds the canonical
      # family's shapes) tells nothing about the strategy: counted, not compared.
      items = [c for c in all_items if c.row.shape_name != c.canonical.shape_name]
      same = len(all_items) - len(items)
      same_note = (f'; {same} of its shapes {"is" if same == 1 else "are"} the canonical shape '
                   'itself' if same else '')
      if not items:
        sentences.append(f'At equal {axis}, {strategy} builds the canonical shapes themselves '
                         f'({same} of {len(all_items)}): nothing to compare.')
        continue
      wins = sum(c.better for c in items)
      losses = sum(c.difference != 0 and not c.better for c in items)
      mean_difference = sum(c.difference for c in items) / len(items)
      detail = '; '.join(f'{fmt_scale(c.row.scale)} {num(c.difference, signed=True)} vs '
                         f'{c.canonical.shape_name} ({axis} ratio {c.cost_ratio:.2f})'
                         for c in items)
      verdict = ('the same as' if not wins and not losses else
                 'better than' if not losses else 'worse than' if not wins else 'mixed against')
      sentences.append(f'At equal {axis}, {strategy} is {verdict} the canonical shapes: better at '
                       f'{wins} of {len(items)} shapes, worse at {losses}, mean difference '
                       f'{num(mean_difference, signed=True)} {domain.summary_title} ({detail}'
                       f'{same_note}).')
    if not by_strategy:
      sentences.append('No strategy shape has a canonical shape with a downstream summary to '
                       'compare with.')
    for title, tau in taus[domain.name]:
      if tau.tau is None:
        sentences.append(f'Upstream ({title}) vs downstream: too few distinct shapes for a '
                         f'rank correlation (n={tau.n}).')
      else:
        sentences.append(f'Upstream ({title}) ranks the shapes as downstream does with Kendall '
                         f'tau {tau.tau:+.2f} (n={tau.n}); {tau.discordant} of {tau.pairs} shape '
                         'pairs are ordered the other way downstream.')
    if domain_regions[domain.name]:
      sentences.append('By train FLOPs/example region, the winners are: ' + ', '.join(
          f'{g.name}: {g.winner.strategy}' for g in domain_regions[domain.name]) + '.')
    for group in (g for g in groups if g.domain == domain.name):
      verb = 'beats' if group.beats else 'does not beat'
      sentences.append(
          f'{group.subject[:1].upper()}{group.subject[1:]} {verb} {group.label} on average: '
          f'{num(group.model_mean)} vs {num(group.baseline_mean)} ({group.metric}) over '
          f'{len(group.pairs)} shape x task pairs on {len(group.tasks)} task(s); better in '
          f'{group.wins} of {len(group.pairs)}.')
    paragraphs.append(Paragraph(f'**{domain.name}**: ' + ' '.join(sentences)))
  return paragraphs


def _domain_table(domain: Domain) -> Table:
  quality = domain.upstream + domain.downstream
  columns = (['strategy', 'scale', 'shape', 'params', 'train FLOPs/ex', 'steps/s']
             + [f'{c.role}: {c.title}' for c in quality]
             + [title for _, title in domain.summary_columns]
             + [f'Pareto: {a}' for a in COST_AXES])
  table = Table(f'{domain.name}_shapes', f'{domain.name}: shapes, costs and quality', columns)
  pareto = {a: domain_pareto(domain, a) for a in COST_AXES}
  for i, row in enumerate(domain.rows):
    cells = [(row.strategy, row.strategy), (row.scale, fmt_scale(row.scale)),
             (row.shape_name, row.shape_name), (row.params, count(row.params)),
             (row.flops, flops(row.flops)),
             (row.steps_per_s, num(row.steps_per_s))]
    for c in quality:
      value = row.quality.get((c.role, c.step, c.task))
      cells.append((value, num(value)))
    for key, _ in domain.summary_columns:
      value = row.summary.get(key)
      cells.append((value, num(value)))
    cells += [(pareto[a][i], flag(pareto[a][i])) for a in COST_AXES]
    table.add(cells)
  workloads = sorted({json.dumps(r.workload, sort_keys=True) for r in domain.rows if r.workload})
  no_bench = [r.shape_name for r in domain.rows if r.steps_per_s is None]
  table.notes.append(
      'params: exact count; train FLOPs/ex: forward + backward FLOPs of one training example at '
      f'the workload {" or ".join(workloads) or "(not recorded)"}; steps/s: measured train '
      f'steps per second (suite.bench, mean over its records) on '
      f'{", ".join(domain.bench_devices) or "no device (no bench record)"}.')
  if no_bench:
    table.notes.append(f'no bench record (steps/s and Pareto: speed blank): '
                       f'{", ".join(no_bench)}.')
  for c in quality:
    words = '; '.join(f'{h.label} (metric `{h.metric}`, '
                      f'{"higher" if h.higher_is_better else "lower"} is better)'
                      for h in c.headlines)
    table.notes.append(f'{c.role}: {c.title} = {words}; step `{c.step}`.')
  if domain.summary_note:
    table.notes.append(domain.summary_note)
  table.notes.append(
      f'Pareto: yes when no other shape is at least as cheap on that axis (params, train '
      f'FLOPs/ex, or time per step = 1 / steps/s) and at least as good on '
      f'{domain.summary_title}, with one of the two strictly better; – when a number is missing.')
  table.notes.append(f'seeds: {", ".join(map(str, domain.seeds)) or "none recorded"}.')
  return table


def _equal_cost_table(all_domains, comparisons, equal_cost) -> Table:
  names = [d.name for d in all_domains]
  columns = ['strategy', 'scale']
  for name in names:
    columns += [f'{name}: shape vs canonical', f'{name}: {equal_cost} ratio',
                f'{name}: Δ summary', f'{name}: summary ratio']
  table = Table('equal_cost', f'each strategy vs the canonical shape of nearest '
                f'{COST_AXIS_TITLES[equal_cost]}, side by side per domain', columns)
  keys = sorted({(c.row.strategy, c.row.key[1]) for cs in comparisons.values() for c in cs})
  for strategy, scale_key in keys:
    cells = [(strategy, strategy), (scale_key, fmt_scale(None if scale_key < 0 else scale_key))]
    for name in names:
      found = [c for c in comparisons[name] if (c.row.strategy, c.row.key[1]) ==
               (strategy, scale_key)]
      if found:
        c = found[0]
        cells += [(f'{c.row.shape_name} vs {c.canonical.shape_name}',
                   f'{c.row.shape_name} vs {c.canonical.shape_name}'),
                  (c.cost_ratio, f'{c.cost_ratio:.2f}'),
                  (c.difference, num(c.difference, signed=True)),
                  (c.ratio, '–' if c.ratio is None else f'{c.ratio:.3f}')]
      else:
        cells += [(None, '–')] * 4
    table.add(cells)
  for domain in all_domains:
    direction = 'higher' if domain.summary_higher_is_better else 'lower'
    table.notes.append(f'{domain.name}: summary = downstream {domain.summary_title} '
                       f'({direction} is better).')
  table.notes.append(
      f'each strategy shape is paired with the canonical shape (strategy `{CANONICAL}`) whose '
      f'{COST_AXIS_TITLES[equal_cost]} is nearest on a log scale; {equal_cost} ratio = the '
      'shape\'s cost / the canonical\'s (1.00 = equal cost); Δ summary = shape minus canonical; '
      'summary ratio = shape / canonical.')
  return table


def _tau_table(all_domains, taus) -> Table:
  table = Table('kendall', 'rank correlation of upstream and downstream quality (Kendall tau-b)',
                ['domain', 'upstream', 'downstream', 'n shapes', 'tau', 'concordant pairs',
                 'discordant pairs', 'tied pairs', 'discordant share'])
  for domain in all_domains:
    for title, tau in taus[domain.name]:
      share = tau.discordant / tau.pairs if tau.pairs else None
      table.add([(domain.name, domain.name), (title, title),
                 (domain.summary_title, domain.summary_title), (tau.n, str(tau.n)),
                 (tau.tau, '–' if tau.tau is None else f'{tau.tau:+.3f}'),
                 (tau.concordant, str(tau.concordant)), (tau.discordant, str(tau.discordant)),
                 (tau.tied, str(tau.tied)),
                 (share, '–' if share is None else f'{100 * share:.0f}%')])
  table.notes.append(
      'both qualities are oriented so that larger is better before ranking; tau > 0: shapes '
      'better upstream tend to be better downstream (1: the same ranking), tau < 0: the '
      'opposite, 0: unrelated. "Upstream can mislead" is the discordant share: the fraction of '
      'shape pairs that upstream quality orders one way and downstream quality the other. n '
      'counts the shapes with both numbers; with few shapes tau is coarse (each pair moves it '
      'by 2 / (n(n-1)/2)).')
  return table


def _regions_table(all_domains, domain_regions) -> Table:
  table = Table('regions', 'winning strategy per compute region (train FLOPs/example terciles)',
                ['domain', 'region', 'FLOPs/ex from', 'to', 'shapes', 'winner', 'winning shape',
                 'summary', 'runner-up strategy', 'its best', 'margin'])
  for domain in all_domains:
    for region in domain_regions[domain.name]:
      winner, runner = region.winner, region.runner_up
      best, second = domain.summary(winner), domain.summary(runner) if runner else None
      margin = None if second is None else abs(best - second)
      table.add([(domain.name, domain.name), (region.name, region.name),
                 (region.low, flops(region.low)), (region.high, flops(region.high)),
                 (len(region.rows), str(len(region.rows))),
                 (winner.strategy, winner.strategy), (winner.shape_name, winner.shape_name),
                 (best, f'{num(best)} {domain.summary_title}'),
                 (runner.strategy if runner else None, runner.strategy if runner else '–'),
                 (second, num(second)), (margin, num(margin))])
  table.notes.append(
      'regions: per domain, the shapes with a downstream summary sorted by train FLOPs/example '
      'and cut into three groups of near-equal size (small, medium, large; fewer when there are '
      'fewer shapes); the winner is the strategy of the shape with the best summary in the '
      'region, the runner-up the best shape of any other strategy (canonical shapes compete as '
      f'strategy `{CANONICAL}`).')
  return table


def _baselines_table(groups) -> Table:
  table = Table('baselines', 'models against their baselines',
                ['domain', 'model', 'baseline', 'metric', 'pairs', 'tasks', 'model mean',
                 'baseline mean', 'difference', 'model better in'])
  for g in groups:
    difference = g.model_mean - g.baseline_mean
    table.add([(g.domain, g.domain), (g.step, g.step), (g.label, g.label),
               (g.metric, g.metric), (len(g.pairs), str(len(g.pairs))),
               (' '.join(g.tasks), ', '.join(g.tasks)), (g.model_mean, num(g.model_mean)),
               (g.baseline_mean, num(g.baseline_mean)),
               (difference, num(difference, signed=True)),
               (g.wins, f'{g.wins} of {len(g.pairs)}')])
  table.notes.append(
      'pairs: shape x task pairs with both numbers (a baseline record is matched with the '
      '`baseline_of` step\'s record of the same shape, task and seed; a record with a '
      '`baseline_metric` carries both); means are over those pairs, each pair first averaged '
      'over seeds.')
  return table


def _not_finished(data: Journal) -> list[Block]:
  if not data.not_ok:
    return [Paragraph('Every unit in the journal finished (status ok).')]
  table = Table('not_finished', 'units whose latest record is not ok',
                ['unit', 'domain', 'stage', 'task', 'status', 'steps', 'error'])
  for record in data.not_ok:
    error = ' '.join(str(record.get('error') or '').split())
    if len(error) > 240:
      error = error[:237] + '...'
    unit = str(record.get('unit') or record.get('run_id'))
    table.add([(unit, unit), (record.get('domain'), str(record.get('domain'))),
               (record.get('stage'), str(record.get('stage'))),
               (record.get('task'), str(record.get('task'))),
               (record.get('status'), str(record.get('status'))),
               (record.get('steps'), str(record.get('steps', '–'))),
               (error, error or ('non-finite loss' if record.get('status') == 'diverged'
                                 else '–'))])
  table.notes.append('a rerun of the same command retries them; their numbers are missing from '
                     'the tables above.')
  return [table]


def _versions_table(data: Journal) -> Table:
  found: dict[str, dict] = {}
  for record in data.records:
    versions = record.get('versions') or {}
    key = json.dumps(versions, sort_keys=True)
    entry = found.setdefault(key, {'versions': versions, 'domains': set(), 'n': 0})
    entry['domains'].add(str(record.get('domain')))
    entry['n'] += 1
  names = sorted({k for e in found.values() for k in e['versions']})
  table = Table('versions', 'package versions and devices, as the records carry them',
                names + ['domains', 'records'])
  for key in sorted(found):
    entry = found[key]
    table.add([(entry['versions'].get(n), str(entry['versions'].get(n, '–'))) for n in names]
              + [(' '.join(sorted(entry['domains'])), ', '.join(sorted(entry['domains']))),
                 (entry['n'], str(entry['n']))])
  return table


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """The command's flags (defined only when run as a program: suite.run imports `write`)."""
  flags.DEFINE_string('workdir', None, 'The run\'s work directory, holding results.jsonl.',
                      flag_values=flag_values)
  flags.DEFINE_enum('equal_cost', 'params', list(EQUAL_COST_AXES),
                    'The cost axis on which strategies meet canonical shapes of equal cost.',
                    flag_values=flag_values)
  flags.mark_flag_as_required('workdir', flag_values=flag_values)


def main(argv: Sequence[str], flag_values: flags.FlagValues = flags.FLAGS) -> None:
  del argv  # flagcheck.run rejects positional arguments
  workdir = flag_values.workdir
  if not os.path.isdir(workdir):
    raise flagcheck.FlagError(f'--workdir={workdir} is not a directory; give the --workdir of '
                              'a `python -m suite.run`.')
  try:
    if not journal.read(workdir):
      raise flagcheck.FlagError(f'{journal.path(workdir)} has no records; run `python -m '
                                f'suite.run --workdir={workdir}` first to write them.')
    paths = write(workdir, flag_values.equal_cost)
  except journal.JournalError as error:
    raise flagcheck.FlagError(str(error)) from None
  print(json.dumps(paths, indent=1))
  print(f'report: {paths["markdown"]} and {paths["html"]}', file=sys.stderr)


if __name__ == '__main__':
  define_flags()
  flagcheck.run(main)
