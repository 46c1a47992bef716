"""Scores a predictions file with a task's own postprocessor and metrics.

  python -m tasks.evaluate --task=glue_cola_v1 --predictions=preds.jsonl [--split=validation]

The file has one JSON object per line, `{"idx": 0, "prediction": "acceptable"}`, where `idx`
is the example's position in the split (see `tasks.benchmark`) and `prediction` the model's
decoded text. Every example needs exactly one prediction; anything else is an error that names
the line. Prints `{"task", "split", "num_examples", "metrics"}` as JSON (an undefined metric,
e.g. a correlation against constant predictions, is null).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from absl import flags

from suite import flagcheck

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  """The CLI flags; defined only when run as a program, so importing never clashes with the
  runner's own --data_dir/--tfds_data_dir."""
  fv = {'flag_values': flag_values}
  flags.DEFINE_string('task', None, 'Registered task name, e.g. glue_cola_v1.', required=True,
                      **fv)
  flags.DEFINE_string('predictions', None, 'JSONL file of {"idx": int, "prediction": str}.',
                      required=True, **fv)
  flags.DEFINE_string('split', 'validation', 'Split the predictions are for.', **fv)
  flags.DEFINE_string('data_dir', None, 'Original GLUE/SuperGLUE/SQuAD files (else TFDS).', **fv)
  flags.DEFINE_string('tfds_data_dir', None, 'TFDS data dir (default: TFDS\'s own).', **fv)


class PredictionsError(ValueError):
  """A predictions file that does not match the split one-to-one."""


def parse_predictions(lines: Iterable[str], num_examples: int, path: str = '<predictions>'
                      ) -> list[str]:
  """Predictions in idx order from JSONL lines; raises PredictionsError naming the bad line."""
  by_idx: dict[int, tuple[str, int]] = {}
  for line_no, line in enumerate(lines, start=1):
    if not line.strip():
      continue
    where = f'{path}:{line_no}'
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      raise PredictionsError(f'{where}: not valid JSON ({e.msg}): {line.strip()[:80]!r}') from e
    if not isinstance(record, dict) or 'idx' not in record or 'prediction' not in record:
      raise PredictionsError(f'{where}: expected {{"idx": int, "prediction": str}}, got '
                             f'{line.strip()[:80]!r}')
    idx, prediction = record['idx'], record['prediction']
    if isinstance(idx, bool) or not isinstance(idx, int):
      raise PredictionsError(f'{where}: idx must be an integer, got {idx!r}')
    if not isinstance(prediction, str):
      raise PredictionsError(f'{where}: prediction must be a string, got {prediction!r}')
    if not 0 <= idx < num_examples:
      raise PredictionsError(f'{where}: idx {idx} is not in the split (valid: 0..'
                             f'{num_examples - 1})')
    if idx in by_idx:
      raise PredictionsError(f'{where}: duplicate idx {idx} (first on line {by_idx[idx][1]})')
    by_idx[idx] = (prediction, line_no)
  missing = [i for i in range(num_examples) if i not in by_idx]
  if missing:
    shown = ', '.join(map(str, missing[:10])) + (', ...' if len(missing) > 10 else '')
    raise PredictionsError(f'{path}: no prediction for {len(missing)} of {num_examples} '
                           f'examples (idx {shown})')
  return [by_idx[i][0] for i in range(num_examples)]


def _json_safe(metrics: Mapping[str, float]) -> dict[str, Any]:
  return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}


def _seqio_examples(task: str, split: str) -> list[dict[str, Any]]:
  """Examples of any other seqio task in its dataset order (idx = position)."""
  import seqio
  import tensorflow_datasets as tfds

  seqio_task = seqio.get_mixture_or_task(task)
  if not seqio_task.predict_metric_fns:
    raise ValueError(f'task {task!r} has no prediction metrics to score with')
  dataset = seqio_task.get_dataset(
    sequence_length=None, split=split, shuffle=False, use_cached=False)
  return list(tfds.as_numpy(dataset))


def _seqio_score(task: str, split_examples: list[dict[str, Any]], predictions: list[str]
                 ) -> dict[str, float]:
  """Scores with a seqio task's own postprocess_fn and prediction metric_fns."""
  import seqio

  seqio_task = seqio.get_mixture_or_task(task)
  post = seqio_task.postprocess_fn or (lambda text, example=None, is_target=False: text)
  targets = [post(ex['targets_pretokenized'].decode('utf-8'), example=ex, is_target=True)
             for ex in split_examples]
  values = [post(p, example=ex, is_target=False)
            for p, ex in zip(predictions, split_examples, strict=True)]
  result: dict[str, float] = {}
  for metric_fn in seqio_task.predict_metric_fns:
    result.update(metric_fn(targets, values))
  return result


def evaluate(task: str, predictions_path: str, split: str = 'validation') -> dict[str, Any]:
  """Scores the file at `predictions_path` for `task`'s `split`; returns the printed record.

  Benchmark tasks are scored through `tasks.benchmark.score`; any other registered seqio task
  through its own postprocess_fn and metric_fns, with idx = position in its dataset order.
  """
  from tasks import benchmark

  if task in benchmark.SPECS:
    split_examples = benchmark.examples(task, split)
  else:
    split_examples = _seqio_examples(task, split)
  with open(predictions_path, encoding='utf-8') as f:
    predictions = parse_predictions(f, len(split_examples), predictions_path)
  if task in benchmark.SPECS:
    metrics = benchmark.score(task, split, predictions, split_examples)
  else:
    metrics = _seqio_score(task, split_examples, predictions)
  return {'task': task, 'split': split, 'num_examples': len(split_examples),
          'metrics': _json_safe(metrics)}


def _resolve(name: str) -> str:
  """The task name, checked against the registry (closest names on a miss)."""
  import seqio

  from tasks import registry

  found = registry.get_text(name)
  if isinstance(found, seqio.Mixture):
    raise ValueError(f'{name!r} is a mixture; evaluate scores one task, e.g. '
                     f'{", ".join(sorted(t.name for t in found.tasks)[:3])}')
  return name


def main(argv: list[str]) -> None:
  del argv  # flagcheck.run rejects positional arguments
  from tasks import sources

  sources.configure(data_dir=FLAGS.data_dir, tfds_data_dir=FLAGS.tfds_data_dir)
  try:
    task = _resolve(FLAGS.task)
    result = evaluate(task, FLAGS.predictions, FLAGS.split)
  except (KeyError, ValueError, FileNotFoundError) as e:
    message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    print(f'error: {message}', file=sys.stderr)
    sys.exit(1)
  print(json.dumps(result, indent=2))


if __name__ == '__main__':
  define_flags()
  flagcheck.run(main)
