r"""Calibrates the embedded glyphs: raw-pixel probes against a small ViT trained on them.

  python -m vision.glyphs_calibration --output=results/glyphs_calibration.json

The glyph tasks (`tasks.glyphs`) are meant to tell ViT shapes apart in a few CPU minutes, which
needs three things at once: raw pixels must be weak features, a small ViT must learn the
upstream classes well above chance without reaching 100%, and its features must transfer to
the 12 held-out classes better than pixels do. This measures each, offline, on a CPU:

- the generation time of every split (wall and CPU seconds, one process);
- chance, and big_vision's linear probes (`vision.fewshot`) on raw pixels and on mean RGB (the
  colour check: it must stay near chance) — on the upstream task with all 24,000 training
  images, and few-shot (1, 5, 10, 25 shots per class, mean over `--seeds` draws);
- a small ViT (`small_vit_shape`: 4 layers of width 64 on 4x4 patches) trained from scratch on
  the upstream glyphs on the shared core (`vision.train.upstream`, AdamW with warm-up and
  cosine decay): its upstream test top-1 and the same few-shot probes on its features.

Prints one JSON object (also written to --output; keys `REPORT_KEYS`), accuracies in percent,
ending with `checks`: each calibration claim (the thresholds above `checks`) true or false.
Measured on the project's 2-core CPU (results/glyphs_calibration.json; 6 minutes of wall time,
of which the ViT's 1,000 steps of batch 64 took 4.5, or 3.6 CPU minutes):

  features (probe)          upstream top-1   few-shot 1 / 5 / 10 / 25 shots   (chance 4.2 / 8.3)
  raw pixels                 6.4 (all train)   8.3 / 10.0 / 10.4 / 11.1
  mean RGB                   4.5 (all train)   7.9 /  8.0 /  8.9 /  9.0
  small ViT                 31.1 (its head)   27.0 / 36.0 / 37.8 / 39.2
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time

import numpy as np
from absl import flags

from suite import flagcheck, optim, shapes
from tasks import glyphs, images
from vision import fewshot, train

REPORT_KEYS = ('flags', 'generation', 'sizes', 'chance', 'raw_pixels', 'mean_rgb', 'vit',
               'fewshot_gain_over_raw_pixels', 'checks')
PROBE_KEYS = ('upstream_probe_all_train', 'fewshot')
VIT_KEYS = ('shape', 'name', 'status', 'steps', 'batch_size', 'learning_rate', 'train_wall_s',
            'train_cpu_s', 'final_train_loss', 'upstream_test_top1', 'upstream_test_examples',
            'fewshot')
FLAG_NAMES = ('steps', 'batch_size', 'learning_rate', 'seeds')
# What the glyphs are calibrated to give (tasks.glyphs), checked on every report:
ABOVE_CHANCE = 3.0  # the ViT's upstream top-1 is at least this multiple of chance,
BELOW_PERFECT = 90.0  # and at most this (%);
PIXELS_WEAK = 2.0  # raw-pixel probes stay below this multiple of chance,
COLOUR_WEAK = 1.5  # mean-RGB probes below this one;
GAIN_AT_10_SHOTS = 10.0  # the ViT's 10-shot probe beats pixels' by at least this (points).


def small_vit_shape() -> shapes.Shape:
  """A 4-layer ViT of width 64 (2 heads of 32, MLP 256) on 4x4 patches of the 32-pixel glyphs,
  with a head for the 24 upstream classes."""
  return train.match_task(shapes.parse('Ti/16').replace(
    image_size=glyphs.IMAGE_SIZE, patch_size=4, num_encoder_layers=4, d_model=64, d_ff=256,
    num_heads=2, d_kv=32), glyphs.UPSTREAM)


def generation_seconds() -> dict[str, dict[str, float]]:
  """Wall and CPU seconds to render each split once (no cache)."""
  out = {}
  for task, splits in glyphs.SPLIT_SIZES.items():
    for split in splits:
      wall, cpu = time.perf_counter(), time.process_time()
      glyphs.generate(task, split)
      out[f'{task}/{split}'] = {'wall_s': round(time.perf_counter() - wall, 2),
                                'cpu_s': round(time.process_time() - cpu, 2)}
  return out


def split_numpy(task: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """A whole split through the task's eval pipeline: float32 images in [-1, 1] and labels."""
  batches = images.eval_dataset(images.get(task), 1024, split=split).as_numpy_iterator()
  x, y = zip(*((b['image'], b['label']) for b in batches), strict=True)
  return np.concatenate(x), np.concatenate(y)


def mean_rgb(x: np.ndarray) -> np.ndarray:
  """Each image's mean colour [N, 3]: the features of the colour check."""
  return x.mean(axis=(1, 2))


def _percent(scores: dict[str, float]) -> dict[str, float]:
  """{'<prefix>/<task>/<k>shot': fraction} -> {'<k>shot': percent}."""
  return {key.rsplit('/', 1)[1]: round(100 * value, 2) for key, value in scores.items()}


def probes(featurize: fewshot.FeatureFn, seeds: tuple[int, ...],
           upstream: tuple[tuple[np.ndarray, np.ndarray], ...]) -> dict:
  """The upstream probe on every training image and the few-shot probes of one feature map."""
  (x, y), (x_test, y_test) = upstream
  top1 = fewshot.probe_accuracy(featurize(x), y, featurize(x_test), y_test,
                                len(glyphs.UPSTREAM_GLYPHS))
  return {'upstream_probe_all_train': round(100 * top1, 2),
          'fewshot': _percent(fewshot.fewshot_eval(featurize, glyphs.FEWSHOT, seeds=seeds))}


def train_vit(steps: int, batch_size: int, learning_rate: float, seeds: tuple[int, ...],
              workdir: str) -> dict:
  """The small ViT trained on the upstream glyphs; its top-1 and few-shot probes."""
  shape = small_vit_shape()
  wall, cpu = time.perf_counter(), time.process_time()
  optimizer = optim.vit_adamw(learning_rate, total_steps=steps, warmup_steps=max(1, steps // 10))
  result = train.upstream(shape, glyphs.UPSTREAM, steps=steps, batch_size=batch_size,
                          workdir=workdir, optimizer=optimizer, eval_batch_size=256,
                          log_every=max(1, steps // 10), checkpoint_every=None,
                          tensorboard=False)
  train_wall, train_cpu = time.perf_counter() - wall, time.process_time() - cpu
  probed = train.fewshot(shape, result.params, glyphs.FEWSHOT, seeds=seeds)
  return {'shape': shape.fields(), 'name': shapes.display_name(shape), 'status': result.status,
          'steps': result.steps, 'batch_size': batch_size, 'learning_rate': learning_rate,
          'train_wall_s': round(train_wall, 1), 'train_cpu_s': round(train_cpu, 1),
          'final_train_loss': round(result.train_metrics.get('loss', math.nan), 4),
          'upstream_test_top1': round(100 * result.metrics['accuracy'], 2),
          'upstream_test_examples': int(result.metrics['num_examples']),
          'fewshot': _percent(probed.metrics)}


def checks(report: dict) -> dict[str, bool]:
  """The calibration's claims, each true or false, from a report's own numbers."""
  chance = report['chance']
  top1 = report['vit']['upstream_test_top1']

  def below(probe: dict, factor: float) -> bool:
    return (probe['upstream_probe_all_train'] < factor * chance['upstream']
            and all(v < factor * chance['fewshot'] for v in probe['fewshot'].values()))

  gains = report['fewshot_gain_over_raw_pixels']
  return {
    'vit_well_above_chance': top1 >= ABOVE_CHANCE * chance['upstream'],
    'vit_far_from_perfect': top1 <= BELOW_PERFECT,
    'raw_pixels_weak': below(report['raw_pixels'], PIXELS_WEAK),
    'colour_near_chance': below(report['mean_rgb'], COLOUR_WEAK),
    'vit_probe_beats_pixels': (gains['10shot'] >= GAIN_AT_10_SHOTS
                               and all(g > 0 for g in gains.values())),
  }


def calibrate(steps: int, batch_size: int, learning_rate: float, seeds: int,
              workdir: str) -> dict:
  """Everything the module docstring lists, as one dict with the keys REPORT_KEYS."""
  seed_list = tuple(range(seeds))
  result: dict = {
    'flags': {'steps': steps, 'batch_size': batch_size, 'learning_rate': learning_rate,
              'seeds': seeds},
    'generation': generation_seconds(), 'sizes': glyphs.SPLIT_SIZES,
    'chance': {'upstream': round(100 / len(glyphs.UPSTREAM_GLYPHS), 2),
               'fewshot': round(100 / len(glyphs.FEWSHOT_GLYPHS), 2)}}
  upstream = split_numpy(glyphs.UPSTREAM, 'train'), split_numpy(glyphs.UPSTREAM, 'test')
  for name, featurize in (('raw_pixels', fewshot.pixel_features), ('mean_rgb', mean_rgb)):
    result[name] = probes(featurize, seed_list, upstream)
    print(f'{name}: {result[name]}', file=sys.stderr, flush=True)
  del upstream
  result['vit'] = train_vit(steps, batch_size, learning_rate, seed_list, workdir)
  print(f'vit: {result["vit"]}', file=sys.stderr, flush=True)
  result['fewshot_gain_over_raw_pixels'] = {
    k: round(result['vit']['fewshot'][k] - result['raw_pixels']['fewshot'][k], 2)
    for k in result['vit']['fewshot']}
  result['checks'] = checks(result)
  return result


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """The CLI flags; defined only when run as a program, so importing never collides."""
  fv = dict(flag_values=flag_values)
  flags.DEFINE_integer('steps', 1000, 'Upstream training steps of the small ViT.',
                       lower_bound=1, **fv)
  flags.DEFINE_integer('batch_size', 64, 'Upstream batch size.', lower_bound=1, **fv)
  flags.DEFINE_float('learning_rate', 2e-3, 'Peak AdamW learning rate (10% warm-up, cosine).',
                     **fv)
  flagcheck.require('learning_rate', lambda rate: 0 < rate < math.inf, 'a number > 0', **fv)
  flags.DEFINE_integer('seeds', 3, 'Few-shot draws averaged per shot count.', lower_bound=1,
                       upper_bound=10, **fv)
  flags.DEFINE_string('workdir', None, 'Where the ViT run goes (default: a temporary '
                      'directory).', **fv)
  flags.DEFINE_string('output', None, 'Also write the JSON here.', **fv)


def main(argv: list[str]) -> None:
  del argv  # flagcheck.run rejects positional arguments
  f = flags.FLAGS
  flagcheck.check_batch('batch_size', f.batch_size)
  with tempfile.TemporaryDirectory() as scratch:
    result = calibrate(f.steps, f.batch_size, f.learning_rate, f.seeds, f.workdir or scratch)
  text = json.dumps(result, indent=1)
  print(text)
  if f.output:
    with open(f.output, 'w') as out:
      out.write(text + '\n')


if __name__ == '__main__':
  define_flags()
  flagcheck.run(main)
