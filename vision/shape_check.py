r"""Do ViT shapes differ on the embedded glyphs? Two shapes at equal parameters, on the shared core.

  python -m vision.shape_check --output=results/vision_shape_check.json

From one small base ViT (32-pixel glyphs in 4x4 patches), `suite.strategies` solves a
deeper-narrower shape (`deep_narrow`) and a wider-shallower one (`width_first`) at the same
parameter budget (`--budget_factor` x the base's). Each is trained from scratch on the upstream
glyphs (`tasks.glyphs`, 24 classes) with `vision.train.upstream` (the shared loop, AdamW with
warm-up and cosine decay), scored top-1 on the upstream test split, and probed few-shot on the
12 held-out glyph classes (`vision.fewshot`: big_vision's closed-form least-squares probes on
frozen features, through the core's predict path), beside the same probes on raw pixels.
The defaults take about 10-15 CPU minutes on 2 cores. Prints one JSON object (also written to
--output) with, per shape, its fields, parameters, FLOPs, wall and CPU seconds and metrics,
and three checks: top-1 well above chance (at least `ABOVE_CHANCE` x), the learned probe above
the pixel probe at every shot count, and the two shapes' numbers different.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time

from absl import flags, logging

from suite import costs, flagcheck, optim, shapes, strategies
from tasks import glyphs, images
from vision import train

FLAGS = flags.FLAGS
UPSTREAM, FEWSHOT = glyphs.UPSTREAM, glyphs.FEWSHOT
# The report's keys, and each run's besides the shape's fields (tests/test_results.py reads them).
REPORT_KEYS = ('flags', 'base', 'budget_params', 'chance', 'pixel_baseline', 'shapes', 'checks',
               'total_wall_s', 'total_cpu_s')
RUN_KEYS = ('strategy', 'name', 'params', 'train_flops_per_example', 'status', 'steps',
            'upstream_top1', 'upstream_test_examples', 'final_train_loss', 'fewshot',
            'train_cpu_s', 'wall_s', 'cpu_s')
FLAG_NAMES = ('base_layers', 'base_d_model', 'budget_factor', 'strategies', 'steps',
              'batch_size', 'learning_rate', 'max_eval_examples', 'shots', 'seeds', 'seed')
HEAD_DIM = 32
ABOVE_CHANCE = 3.0  # "well above chance": at least this multiple of 1 / classes


def define_flags() -> None:
  """The command's flags (defined when it runs, so that importing the module for its report
  keys and checks defines none)."""
  flags.DEFINE_string('output', None, 'Also write the JSON here (e.g. '
                      'results/vision_shape_check.json).')
  flags.DEFINE_string('workdir', None, 'Where the runs go (default: a temporary directory). '
                      'A rerun in the same workdir resumes finished runs from their checkpoints.')
  flags.DEFINE_integer('base_layers', 4, 'Encoder layers of the base shape.', lower_bound=1,
                       upper_bound=64)
  flags.DEFINE_integer('base_d_model', 64, 'Width of the base shape (d_ff = 4x, heads of 32).',
                       lower_bound=32, upper_bound=1024)
  flags.DEFINE_float('budget_factor', 2.0, 'Parameter budget of both shapes, as a multiple of '
                     "the base's parameters.")
  flagcheck.require('budget_factor', lambda f: 1.0 <= f <= 64.0, 'a number in [1, 64]')
  flags.DEFINE_list('strategies', ['deep_narrow', 'width_first'],
                    'Strategies solved at the budget (suite.strategies names).')
  flags.DEFINE_integer('steps', 500, 'Upstream training steps per shape.', lower_bound=1,
                       upper_bound=1_000_000)
  flags.DEFINE_integer('batch_size', 64, 'Upstream batch size.', lower_bound=1, upper_bound=65536)
  flags.DEFINE_float('learning_rate', 2e-3, 'Peak AdamW learning rate (10% warm-up, cosine).')
  flagcheck.require('learning_rate', lambda rate: 0 < rate < math.inf, 'a number > 0')
  flags.DEFINE_integer('max_eval_examples', 2400, 'Upstream test images scored (None: all 4800).',
                       lower_bound=1)
  flags.DEFINE_list('shots', ['1', '5', '10', '25'], 'Few-shot probe sizes (examples per class).')
  flagcheck.require('shots', lambda v: all(1 <= int(s) <= 100 for s in v),
                    'comma-separated integers in [1, 100], e.g. 1,5,10,25')
  flags.DEFINE_integer('seeds', 2, 'Few-shot draws averaged per shot count.', lower_bound=1,
                       upper_bound=10)
  flags.DEFINE_integer('seed', 0, 'Seed of initialisation and data order.', lower_bound=0)


def base_shape(layers: int, d_model: int) -> shapes.Shape:
  """A small ViT for 32-pixel glyphs: 4x4 patches (64 + a class token), d_ff = 4 d_model."""
  if d_model % HEAD_DIM:
    raise flagcheck.FlagError(f'--base_d_model={d_model} must be a multiple of {HEAD_DIM} '
                              '(heads of 32); e.g. --base_d_model=96')
  return train.match_task(shapes.parse('Ti/16').replace(
      image_size=glyphs.IMAGE_SIZE, patch_size=4, num_encoder_layers=layers, d_model=d_model,
      d_ff=4 * d_model, num_heads=d_model // HEAD_DIM, d_kv=HEAD_DIM), UPSTREAM)


def run_shape(strategy: str, shape: shapes.Shape, workdir: str, shots: tuple[int, ...],
              seeds: tuple[int, ...]) -> dict:
  """Upstream training, top-1 and few-shot probes of one shape, with its costs and times."""
  wall, cpu = time.perf_counter(), time.process_time()
  steps = FLAGS.steps
  optimizer = optim.vit_adamw(FLAGS.learning_rate, total_steps=steps,
                              warmup_steps=max(1, steps // 10))
  result = train.upstream(shape, UPSTREAM, steps=steps, batch_size=FLAGS.batch_size,
                          workdir=os.path.join(workdir, strategy), optimizer=optimizer,
                          seed=FLAGS.seed, max_eval_examples=FLAGS.max_eval_examples,
                          eval_batch_size=256, log_every=max(1, steps // 10),
                          checkpoint_every=None, tensorboard=False)
  train_cpu = time.process_time() - cpu
  probes = train.fewshot(shape, result.params, FEWSHOT, shots=shots, seeds=seeds)
  return {
      'strategy': strategy, 'name': shapes.display_name(shape), **shape.fields(),
      'params': costs.params(shape), 'train_flops_per_example': costs.train_flops_per_example(
          shape), 'status': result.status, 'steps': result.steps,
      'upstream_top1': result.metrics.get('accuracy'),
      'upstream_test_examples': result.metrics.get('num_examples'),
      'final_train_loss': result.train_metrics.get('loss'),
      'fewshot': dict(probes.metrics), 'train_cpu_s': round(train_cpu, 1),
      'wall_s': round(time.perf_counter() - wall, 1),
      'cpu_s': round(time.process_time() - cpu, 1),
  }


def checks(report: dict) -> dict:
  """The three claims, each true or false, from the report's numbers."""
  chance = report['chance']['upstream']
  runs = report['shapes']
  pixels = report['pixel_baseline']
  beats_pixels = all(
      value > pixels[key.replace('fewshot/', 'fewshot_pixels/')]
      for run in runs for key, value in run['fewshot'].items())
  numbers = [(run['upstream_top1'], tuple(sorted(run['fewshot'].items()))) for run in runs]
  return {
      'well_above_chance': all(run['upstream_top1'] >= ABOVE_CHANCE * chance for run in runs),
      'probe_beats_pixels': beats_pixels,
      'shapes_differ': len(set(numbers)) == len(numbers),
  }


def main(argv):
  del argv
  shots = tuple(int(s) for s in FLAGS.shots)
  seeds = tuple(range(FLAGS.seeds))
  for name in FLAGS.strategies:
    try:
      strategies.get(name)
    except shapes.ShapeError as error:
      raise flagcheck.FlagError(f'--strategies: {error}') from None
  base = base_shape(FLAGS.base_layers, FLAGS.base_d_model)
  budget = FLAGS.budget_factor * costs.params(base)
  solved = {name: strategies.solve(name, base, budget, 'params') for name in FLAGS.strategies}
  start_wall, start_cpu = time.perf_counter(), time.process_time()
  workdir = FLAGS.workdir or tempfile.mkdtemp(prefix='vision_shape_check_')
  runs = []
  for name, shape in solved.items():
    logging.info('%s: %s (%d params)', name, shapes.display_name(shape), costs.params(shape))
    runs.append(run_shape(name, shape, workdir, shots, seeds))
  pixel_probe = train.FewshotEvaluator((FEWSHOT,), base.image_size, shots, seeds)
  report = {
      'flags': {f: FLAGS[f].value for f in FLAG_NAMES},
      'base': {'name': shapes.display_name(base), **base.fields(),
               'params': costs.params(base)},
      'budget_params': int(budget),
      'chance': {'upstream': 1 / images.get(UPSTREAM).num_classes,
                 'fewshot': 1 / images.get(FEWSHOT).num_classes},
      'pixel_baseline': pixel_probe.pixel_baseline(),
      'shapes': runs,
  }
  report['checks'] = checks(report)
  report['total_wall_s'] = round(time.perf_counter() - start_wall, 1)
  report['total_cpu_s'] = round(time.process_time() - start_cpu, 1)
  text = json.dumps(report, indent=1)
  print(text)
  if FLAGS.output:
    with open(FLAGS.output, 'w') as f:
      f.write(text + '\n')
  failed = [name for name, ok in report['checks'].items() if not ok]
  if failed:
    print(f'checks failed: {", ".join(failed)}', file=sys.stderr)


if __name__ == '__main__':
  define_flags()
  flagcheck.run(main)
