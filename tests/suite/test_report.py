"""suite.report on hand-made journals: tables, Pareto flags, Kendall tau, regions, baselines,
determinism, and a self-contained HTML page. The expected numbers are worked out by hand in the
comments below from the journal that `_journal` writes.
"""

import csv
import html.parser
import json
import random
import subprocess
import sys

import pytest
from absl import flags
from scipy import stats

from suite import flagcheck, journal, report, report_analysis, report_data, report_plots

PNG = b'\x89PNG\r\n\x1a\n'


def _rec(domain, strategy, scale, shape_name, step, role, task, metrics, *, status='ok',
         headline=None, seed=0, params=None, flops=None, **extra):
  record = {
      'run_id': f'{domain}/{strategy}/{scale}/{shape_name}/{step}/{task}/{seed}',
      'unit': f'{domain}/{strategy}/x{scale}/{step}/{task}', 'domain': domain,
      'strategy': strategy, 'scale': scale, 'shape_name': shape_name,
      'shape': {'num_encoder_layers': 4 if 'dn' in shape_name else 2,
                'num_decoder_layers': 0, 'd_model': 64 if 'dn' in shape_name else 128},
      'params': params, 'train_flops_per_example': flops, 'workload': {'length': 8},
      'stage': 'bench' if role == 'cost' else step, 'step': step, 'role': role, 'task': task,
      'metrics': metrics, 'steps': 10, 'seed': seed, 'wall_s': 1.0, 'status': status,
      'versions': {'jax': '0.0', 'device': 'cpu'}, 'config': {}, 'init': None}
  if headline:
    record['headline'] = headline
  record.update(extra)
  return record


LOSS = {'metric': 'loss', 'higher_is_better': False, 'label': 'validation loss, last step'}
ACC = {'metric': 'accuracy', 'higher_is_better': True,
       'label': 'validation accuracy (%), best checkpoint'}
TOP1 = {'metric': 'top1', 'higher_is_better': True, 'label': 'validation top-1 (%)'}
PROBE = {'metric': 'probe', 'higher_is_better': True, 'label': 'few-shot probe accuracy (%)'}

# shape: (strategy, scale, params, FLOPs/example, steps/s or None, upstream, {task: downstream})
TEXT = {
  'small': ('canonical', 1.0, 60e6, 3e9, 10.0, 2.0, {'alpha': 70, 'beta': 60}),
  'base': ('canonical', 2.0, 220e6, 1.1e10, 4.0, 1.5, {'alpha': 80, 'beta': 70}),
  'dn1': ('deep_narrow', 1.0, 62e6, 3.2e9, 8.0, 2.1, {'alpha': 74, 'beta': 62}),
  'dn2': ('deep_narrow', 2.0, 200e6, 1.0e10, None, 1.6, {'alpha': 82, 'beta': 74}),
  'wf1': ('width_first', 1.0, 58e6, 2.8e9, 12.0, 1.9, {'alpha': 66}),  # beta failed
}
VISION = {
  'vs': ('canonical', 1.0, 20e6, 4e9, 20.0, 40, {'pets': 30}),
  'vb': ('canonical', 4.0, 86e6, 1.7e10, 6.0, 50, {'pets': 40}),
  'vdn1': ('deep_narrow', 1.0, 22e6, 4.5e9, 15.0, 45, {'pets': 28}),
  'vdn4': ('deep_narrow', 4.0, 80e6, 1.6e10, 5.0, 48, {'pets': 42}),
}
SCRATCH = {('small', 'alpha'): 50, ('small', 'beta'): 40, ('dn1', 'alpha'): 55}


def _records():
  records = []
  for name, (strategy, scale, params, flops, speed, up, down) in TEXT.items():
    common = dict(params=params, flops=flops)
    if speed is not None:
      records.append(_rec('text', strategy, scale, name, 'bench', 'cost', 'bench',
                          {'steps_per_s': speed, 'mfu': None}, **common))
    records.append(_rec('text', strategy, scale, name, 'pretrain', 'upstream', 'corpus',
                        {'loss': up}, headline=LOSS, **common))
    for task, value in down.items():
      records.append(_rec('text', strategy, scale, name, 'evaluate', 'downstream', task,
                          {'accuracy': value, 'last/accuracy': value - 1}, headline=ACC,
                          **common))
    for (shape, task), value in SCRATCH.items():
      if shape == name:
        records.append(_rec('text', strategy, scale, name, 'evaluate_scratch', 'baseline', task,
                            {'accuracy': value}, **common, headline={
                                **ACC, 'baseline_of': 'evaluate',
                                'baseline_label': 'no pretraining'}))  # as suite.run writes
  records.append(_rec('text', 'width_first', 1.0, 'wf1', 'evaluate', 'downstream', 'beta', {},
                      status='failed', error='RuntimeError: out of memory\n  at step 3'))
  records.append(_rec('text', 'deep_narrow', 4.0, 'dn4', 'pretrain', 'upstream', 'corpus',
                      {'loss': None}, status='diverged'))
  for name, (strategy, scale, params, flops, speed, up, down) in VISION.items():
    common = dict(params=params, flops=flops)
    records.append(_rec('vision', strategy, scale, name, 'bench', 'cost', 'bench',
                        {'steps_per_s': speed}, **common))
    records.append(_rec('vision', strategy, scale, name, 'upstream', 'upstream', 'shapes',
                        {'top1': up}, headline=TOP1, **common))
    for task, value in down.items():
      records.append(_rec('vision', strategy, scale, name, 'fewshot', 'downstream', task,
                          {'probe': value, 'raw_probe': 10.0}, **common, headline={
                              **PROBE, 'baseline_metric': 'raw_probe',
                              'baseline_label': 'raw pixels'}))
  return records


def _write_journal(workdir, records, cut=True):
  workdir.mkdir(parents=True, exist_ok=True)
  for record in records:
    journal.append(workdir, record)
  if cut:  # a crash mid-write: this unit's record is ignored
    with open(journal.path(workdir), 'a') as f:
      f.write(json.dumps(_rec('text', 'canonical', 1.0, 'small', 'evaluate', 'downstream',
                              'alpha', {'accuracy': 0.0}, headline=ACC))[:60])


@pytest.fixture(scope='module')
def written(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('report')
  _write_journal(workdir, _records())
  paths = report.write(workdir)
  return workdir, paths


def _csv(paths, slug):
  with open(paths[f'csv:{slug}']) as f:
    return list(csv.DictReader(f))


def _float(text):
  return float(text) if text else None


def test_domain_table_values_and_pareto_flags(written):
  _, paths = written
  rows = {r['shape']: r for r in _csv(paths, 'text_shapes')}
  assert list(rows) == ['small', 'base', 'dn1', 'dn2', 'wf1']  # canonical first
  assert _float(rows['dn1']['params']) == 62e6
  assert _float(rows['dn1']['train FLOPs/ex']) == 3.2e9
  assert _float(rows['dn1']['steps/s']) == 8.0
  assert rows['dn2']['steps/s'] == ''  # no bench record
  assert _float(rows['dn1']['upstream: corpus']) == 2.1
  assert _float(rows['dn1']['downstream: beta']) == 62
  # avg = mean of alpha and beta; wf1 lacks beta (failed), so it has none.
  assert {n: _float(r['avg']) for n, r in rows.items()} == {
      'small': 65, 'base': 75, 'dn1': 68, 'dn2': 78, 'wf1': None}
  # params and FLOPs order the four summarised shapes alike: small < dn1 < dn2 < base, and
  # dn2 (200M, 78) dominates base (220M, 75). On speed, dn2 has no number; base is the only
  # one reaching 75, so it is efficient there.
  for axis in ('params', 'flops'):
    assert {n: r[f'Pareto: {axis}'] for n, r in rows.items()} == {
        'small': 'true', 'base': 'false', 'dn1': 'true', 'dn2': 'true', 'wf1': ''}
  assert {n: r['Pareto: speed'] for n, r in rows.items()} == {
      'small': 'true', 'base': 'true', 'dn1': 'true', 'dn2': '', 'wf1': ''}


def test_pareto_on_a_hand_case():
  points = [(1, 1), (2, 3), (2, 2), (3, 3), (4, 5), (None, 9), (1, 1)]
  # (2, 2) is beaten by (2, 3); (3, 3) by (2, 3); a duplicate does not dominate its twin.
  assert report_analysis.pareto_efficient(points) == [True, True, False, False, True, None, True]


def test_kendall_tau_by_hand_and_against_scipy(written):
  # text: upstream loss oriented to -loss (small -2.0, base -1.5, dn1 -2.1, dn2 -1.6) against
  # avg (65, 75, 68, 78): discordant pairs small-dn1 and base-dn2, 4 concordant: tau = 2/6.
  _, paths = written
  taus = {r['domain']: r for r in _csv(paths, 'kendall')}
  for domain in ('text', 'vision'):
    assert _float(taus[domain]['tau']) == pytest.approx(1 / 3)
    assert (taus[domain]['n shapes'], taus[domain]['discordant pairs']) == ('4', '2')
  x, y = [1, 2, 2, 3, 5, 4], [2, 1, 3, 3, 6, 6]
  tau = report_analysis.kendall_tau(x, y)
  assert tau.tau == pytest.approx(stats.kendalltau(x, y).statistic)
  # discordant: (1, 2) vs (2, 1); tied: x 2=2, y 3=3, y 6=6; the other 11 pairs agree.
  assert (tau.concordant, tau.discordant, tau.tied) == (11, 1, 3)
  assert report_analysis.kendall_tau([1, 1], [1, 2]).tau is None


def test_equal_cost_table_pairs_the_nearest_canonical(written):
  _, paths = written
  rows = {(r['strategy'], r['scale']): r for r in _csv(paths, 'equal_cost')}
  assert sorted(rows) == [('deep_narrow', '1.0'), ('deep_narrow', '2.0'), ('deep_narrow', '4.0')]
  one = rows[('deep_narrow', '1.0')]
  assert one['text: shape vs canonical'] == 'dn1 vs small'
  assert _float(one['text: params ratio']) == pytest.approx(62 / 60)
  assert _float(one['text: Δ summary']) == pytest.approx(3)
  assert _float(one['text: summary ratio']) == pytest.approx(68 / 65)
  assert one['vision: shape vs canonical'] == 'vdn1 vs vs'
  assert _float(one['vision: Δ summary']) == pytest.approx(-2)
  assert rows[('deep_narrow', '2.0')]['text: shape vs canonical'] == 'dn2 vs base'
  assert rows[('deep_narrow', '2.0')]['vision: shape vs canonical'] == ''
  assert _float(rows[('deep_narrow', '4.0')]['vision: Δ summary']) == pytest.approx(2)


def test_winner_per_region(written):
  # text FLOPs order: small 3e9, dn1 3.2e9 | dn2 1e10 | base 1.1e10 (4 shapes: 2, 1, 1).
  _, paths = written
  text = [r for r in _csv(paths, 'regions') if r['domain'] == 'text']
  assert [(r['region'], r['winner'], r['winning shape'], r['runner-up strategy'])
          for r in text] == [('small', 'deep_narrow', 'dn1', 'canonical'),
                             ('medium', 'deep_narrow', 'dn2', ''),
                             ('large', 'canonical', 'base', '')]
  assert _float(text[0]['margin']) == pytest.approx(3)


def test_baselines_table_and_sentences(written):
  workdir, paths = written
  groups = {r['domain']: r for r in _csv(paths, 'baselines')}
  # text: (70 vs 50), (60 vs 40), (74 vs 55): means 68 and 48.33.
  assert _float(groups['text']['model mean']) == pytest.approx(68)
  assert _float(groups['text']['baseline mean']) == pytest.approx(145 / 3)
  assert groups['text']['model better in'] == '3'
  assert _float(groups['vision']['model mean']) == pytest.approx(35)
  assert groups['vision']['baseline'] == 'raw pixels'
  text = (workdir / 'report.md').read_text()
  assert 'Pretraining beats no pretraining on average: 68.00 vs 48.33' in text
  assert '`fewshot` beats raw pixels on average: 35.00 vs 10.00' in text


def test_baselines_name_every_metric_their_tasks_headline():
  """Tasks scored by different metrics (SST accuracy, SQuAD exact match) in one comparison: the
  group names both, not the first task's alone."""
  records = []
  for task, metric, model, base in (('sst', 'accuracy', 80.0, 60.0), ('squad', 'em', 40.0, 30.0)):
    headline = {'metric': metric, 'higher_is_better': True}
    records.append(_rec('text', 'canonical', 1, 'a', 'evaluate', 'downstream', task,
                        {metric: model}, headline=headline))
    records.append(_rec('text', 'canonical', 1, 'a', 'evaluate_scratch', 'baseline', task,
                        {metric: base}, headline={**headline, 'baseline_of': 'evaluate',
                                                  'baseline_label': 'no pretraining'}))
  (group,) = report_analysis.baselines(records)
  assert group.metric == 'accuracy, em' and group.tasks == ['squad', 'sst']
  assert (group.model_mean, group.baseline_mean, group.wins) == (60.0, 45.0, 2)


def test_markdown_states_what_numbers_are_and_lists_unfinished_units(written):
  workdir, _ = written
  text = (workdir / 'report.md').read_text()
  assert 'validation accuracy (%), best checkpoint (metric `accuracy`, higher is better)' in text
  assert 'validation loss, last step (metric `loss`, lower is better)' in text
  assert 'no bench record (steps/s and Pareto: speed blank): dn2.' in text
  assert 'RuntimeError: out of memory at step 3' in text
  assert 'text/deep_narrow/x4.0/pretrain/corpus' in text and 'diverged' in text
  assert 'last line was cut' in text
  assert 'seeds: 0' in text and 'on cpu' in text
  # The findings say what the data says: deep_narrow beats canonical in text, not in vision.
  verdict = 'At equal params, deep_narrow is {} the canonical shapes: better at {} of 2'
  assert verdict.format('better than', 2) in text
  assert verdict.format('mixed against', 1) in text


def test_report_md_is_deterministic_and_independent_of_line_order(written, tmp_path):
  workdir, paths = written
  first = (workdir / 'report.md').read_bytes()
  report.write(workdir)
  assert (workdir / 'report.md').read_bytes() == first
  records = _records()
  random.Random(0).shuffle(records)
  _write_journal(tmp_path, records)
  report.write(tmp_path)
  assert (tmp_path / 'report.md').read_bytes() == first


class _Page(html.parser.HTMLParser):
  def __init__(self):
    super().__init__()
    self.tables, self.images, self.links = [], [], []

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    if tag == 'table':
      self.tables.append(attrs.get('id'))
    if tag == 'img':
      self.images.append(attrs.get('src', ''))
    for name in ('src', 'href'):
      if name in attrs and tag != 'img':
        self.links.append((tag, attrs[name]))
    if tag in ('link', 'script', 'iframe', 'object', 'embed'):
      self.links.append((tag, attrs))


def test_html_is_self_contained_with_every_table_and_plot(written):
  import base64
  workdir, paths = written
  page = _Page()
  page.feed((workdir / 'report.html').read_text())
  blocks, plots = report.build(report_data.load(workdir))
  tables = [b.slug for b in blocks if isinstance(b, report.Table)]
  assert page.tables == tables
  assert {'text_shapes', 'vision_shapes', 'equal_cost', 'kendall', 'regions', 'baselines',
          'not_finished', 'versions'} <= set(tables)
  assert sorted(plots) == sorted(k[len('png:'):] for k in paths if k.startswith('png:'))
  assert len(plots) == 6  # three per domain
  assert len(page.images) == len(plots)
  for src in page.images:
    assert src.startswith('data:image/png;base64,')
    assert base64.b64decode(src.split(',', 1)[1]).startswith(PNG)
  assert page.links == []
  assert 'http://' not in (workdir / 'report.html').read_text()
  for kind, path in paths.items():
    if kind.startswith('png:'):
      with open(path, 'rb') as f:
        assert f.read(8) == PNG


def test_report_imports_no_task_registry_or_tensorflow():
  heavy = ('tasks.benchmark', 'seqio', 'tensorflow')
  code = f'import sys, suite.report; print(sorted(m for m in {heavy} if m in sys.modules))'
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == '[]'


def test_benchmark_columns_when_its_tasks_ran(tmp_path):
  averages = report_data.benchmark_averages()
  metrics = {}
  for columns in averages.COLUMNS.values():
    for parts in columns.values():
      for task, metric in parts:
        metrics.setdefault(task, {})[metric] = 60.0 + len(task) % 7
  metrics.setdefault(averages.SQUAD[0], {})[averages.SQUAD[1]] = 80.0
  records = []
  for name, shift in (('small', 0.0), ('dn1', 2.0)):
    strategy = 'canonical' if name == 'small' else 'deep_narrow'
    for task, values in metrics.items():
      first = next(iter(values))
      records.append(_rec('text', strategy, 1.0, name, 'evaluate', 'downstream', task,
                          {k: v + shift for k, v in values.items()},
                          headline={**ACC, 'metric': first}, params=60e6, flops=3e9))
  _write_journal(tmp_path, records, cut=False)
  paths = report.write(tmp_path)
  rows = {r['shape']: r for r in _csv(paths, 'text_shapes')}
  expected = averages.averages(metrics)
  assert _float(rows['small']['AVG']) == pytest.approx(expected['avg'])
  assert _float(rows['small']['GLUE']) == pytest.approx(expected['glue_average'])
  assert _float(rows['dn1']['SQuAD']) == pytest.approx(82.0)
  assert 'avg' not in rows['small']


def test_command_line_errors_are_one_line(tmp_path):
  flag_values = flags.FlagValues()
  report.define_flags(flag_values)
  flagcheck.parse(['report', f'--workdir={tmp_path}'], flag_values)
  with pytest.raises(flagcheck.FlagError, match=r'results.jsonl has no records; run `python -m '
                     r'suite.run --workdir='):
    report.main([], flag_values)
  (tmp_path / journal.FILENAME).write_text('not json\n{}\n')
  with pytest.raises(flagcheck.FlagError, match=r'results.jsonl:1: not a journal record'):
    report.main([], flag_values)
  with pytest.raises(flagcheck.FlagError, match='--workdir'):
    flagcheck.parse(['report'], _fresh())


def _fresh():
  flag_values = flags.FlagValues()
  report.define_flags(flag_values)
  return flag_values


def test_plot_labels_sit_apart_inside_the_axes_once_per_marker():
  """Four shapes crowded at one corner (one reached by two strategies) and one alone: every
  label is drawn once, inside the axes, overlapping no other label."""
  fig = report_plots._figure(5.0, 4.0)
  ax = fig.subplots()
  points = [(1.0, 59.0), (1.15, 59.0), (1.3, 59.2), (1.45, 58.8), (0.2, 41.0)]
  ax.scatter([p[0] for p in points], [p[1] for p in points])
  ax.set_xlim(0, 1.6)
  labels = [(x, y, f'text:el{i}-dl{i}-dm96-ff384-nh3-kv32-relu-v1079')
            for i, (x, y) in enumerate(points)]
  report_plots._place_labels(fig, ax, labels + labels[:1])
  renderer = fig.canvas.get_renderer()
  boxes = [t.get_window_extent(renderer) for t in ax.texts]
  assert sorted(t.get_text() for t in ax.texts) == sorted(label[2] for label in labels)
  frame = ax.get_window_extent(renderer)
  for i, box in enumerate(boxes):
    assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
    assert not any(box.overlaps(other) for other in boxes[i + 1:]), ax.texts[i].get_text()
