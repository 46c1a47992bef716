"""Evaluating a T5 on seqio tasks: teacher-forced upstream metrics and decoded task metrics.

Two kinds of numbers, as in T5 and the paper, both computed by the core's evaluation steps
(suite.evaluation.EvalSteps: fixed-size batches with per-row weights, jitted on the training
mesh and parameter shardings):
- upstream (teacher-forced) metrics on a split: loss, token accuracy, negative log-perplexity
  (the paper's pre-training quality measure), from the weighted sums of
  `T5Model.example_metrics`;
- downstream task metrics (`DecodeEvaluator`, an Evaluator): greedy decoding with the key/value
  cache through the core's predict, detokenized, then the task's own `postprocess_fn` and
  `predict_metric_fns` (seqio's contract, so the benchmark, extra and embedded tasks are all
  scored as their registries define).
A mixture is evaluated task by task; its metric names are prefixed with `<task>/`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np
import seqio

from suite import distributed, trainer
from suite.evaluation import EvalSteps, pad_batch, process_rows
from text.domain import LOGICAL_AXIS_RULES
from text.model import T5Model, finalize_metrics
from text.network import T5Network

Batch = dict[str, np.ndarray]
# Fixes the random preprocessing of evaluation data (e.g. span corruption's noise), so every
# evaluation of a split sees the same examples.
EVAL_SEED = 0
BATCH_FEATURES = ('encoder_input_tokens', 'decoder_input_tokens', 'decoder_target_tokens',
                  'decoder_loss_weights')


def tf_cpu_only() -> None:
  """Keeps TensorFlow (the input pipeline) off accelerators, which belong to JAX."""
  import tensorflow as tf
  try:
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:  # TensorFlow's devices are initialised already; nothing to change.
    pass


def resolve(task: str | seqio.Task | seqio.Mixture) -> seqio.Task | seqio.Mixture:
  """The registered task or mixture (closest names in the error when unknown)."""
  if not isinstance(task, str):
    return task
  from tasks import registry
  return registry.get_text(task)


def sub_tasks(task: str | seqio.Task | seqio.Mixture,
              split: str | None = None) -> list[seqio.Task]:
  """The tasks a name stands for: itself, or a mixture's tasks (those having `split`)."""
  provider = resolve(task)
  tasks = provider.tasks if isinstance(provider, seqio.Mixture) else [provider]
  if split is not None:
    tasks = [t for t in tasks if split in t.splits]
    if not tasks:
      raise ValueError(f'{provider.name} has no {split!r} split; splits: '
                       f'{", ".join(provider.splits)}')
  return tasks


def eval_batches(task: str | seqio.Task | seqio.Mixture, lengths: Mapping[str, int],
                 batch_size: int, split: str = 'validation',
                 max_examples: int | None = None) -> Callable[[], Iterator[Batch]]:
  """A factory of one pass over `split` as padded model batches (all sub-tasks, in order).

  Every global batch has `batch_size` rows, the last padded with zero rows, and a per-row
  weight (`suite.evaluation.ROW_WEIGHT`: 1 for an example, 0 for padding), so the eval step
  compiles once and counts exactly; each process yields its own slice of rows, and all
  processes the same number of batches. `max_examples` caps the examples from each sub-task.
  """
  tasks = sub_tasks(task, split)
  converter = seqio.EncDecFeatureConverter(pack=False)
  processes = jax.process_count()
  if batch_size < 1 or batch_size % processes:
    raise ValueError(f'eval batch_size={batch_size} must be a positive multiple of the number '
                     f'of processes ({processes})')

  def one_pass() -> Iterator[Batch]:
    tf_cpu_only()
    for sub in tasks:
      ds = seqio.get_dataset(sub, dict(lengths), converter, dataset_split=split, shuffle=False,
                             num_epochs=1, seed=EVAL_SEED, verbose=False)
      if max_examples is not None:
        ds = ds.take(max_examples)
      for batch in ds.batch(batch_size).as_numpy_iterator():
        yield process_rows(pad_batch({k: batch[k] for k in BATCH_FEATURES}, batch_size))

  return one_pass


def upstream_metrics(model: T5Model, params: Any, task: str | seqio.Task | seqio.Mixture,
                     lengths: Mapping[str, int], *, batch_size: int = 32,
                     split: str = 'validation', max_examples: int | None = None,
                     eval_steps: EvalSteps | None = None) -> dict[str, float]:
  """Teacher-forced loss, token accuracy, neg_log_perplexity and perplexity on `split`.

  eval_steps: the core's evaluation steps to run on (a Trainer's `eval_steps`, bound to its
  mesh and parameter shardings); None: new ones for `model` on all devices.
  """
  steps = eval_steps or trainer.eval_steps(model, rules=LOGICAL_AXIS_RULES)
  totals = steps.sums(params, eval_batches(task, lengths, batch_size, split, max_examples)())
  if not totals:
    raise ValueError(f'{resolve(task).name}/{split} has no examples to evaluate')
  return finalize_metrics(totals)


def split_examples(task: seqio.Task, split: str,
                   max_examples: int | None = None) -> list[dict[str, Any]]:
  """The split's examples in their fixed order, with raw fields and tokenized inputs/targets."""
  tf_cpu_only()
  ds = task.get_dataset(sequence_length=None, split=split, shuffle=False, num_epochs=1,
                        use_cached=False, seed=EVAL_SEED)
  if max_examples is not None:
    ds = ds.take(max_examples)
  return list(ds.as_numpy_iterator())


def _trim(tokens: np.ndarray, length: int, eos_id: int) -> np.ndarray:
  """seqio's append_eos_after_trim: cut to `length` keeping a final EOS."""
  if len(tokens) <= length:
    return tokens
  return np.concatenate([tokens[:length - 1], [eos_id]]).astype(tokens.dtype)


def _round_up(n: int, multiple: int = 8) -> int:
  return -(-n // multiple) * multiple


def predict(model: T5Model, params: Any, examples: Sequence[Mapping[str, Any]],
            vocabulary: seqio.Vocabulary, *, batch_size: int, input_length: int | None,
            max_decode_len: int, eval_steps: EvalSteps | None = None) -> list[str]:
  """Greedy (cached) decodes of each example's `inputs` tokens, detokenized, in order.

  Inputs are padded to `input_length` when it is given (so every task of a run decodes with
  one program: one compile), else to the longest in `examples` rounded up to 8; relative
  positions make the padding length irrelevant.
  Batches of `batch_size` rows (the last padded with zero rows) go through the core's predict
  (`eval_steps`, or new ones for `model` on all local devices), in one process.
  """
  steps = eval_steps or trainer.eval_steps(model, rules=LOGICAL_AXIS_RULES)
  params = steps.place(params)
  eos = vocabulary.eos_id
  inputs = [np.asarray(ex['inputs'], np.int32) for ex in examples]
  if input_length is not None:
    inputs = [_trim(x, input_length, eos) for x in inputs]
  width = input_length if input_length is not None else _round_up(max(len(x) for x in inputs))
  predictions: list[str] = []
  for start in range(0, len(inputs), batch_size):
    chunk = inputs[start:start + batch_size]
    tokens = np.zeros((batch_size, width), np.int32)
    for row, x in enumerate(chunk):
      tokens[row, :len(x)] = x
    decoded = steps.predict(params, {'encoder_input_tokens': tokens},
                            max_decode_len=int(max_decode_len))
    predictions += [vocabulary.decode(row.tolist()) for row in decoded[:len(chunk)]]
  return predictions


def _text(value: Any) -> str:
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)


def score(task: seqio.Task, examples: Sequence[Mapping[str, Any]],
          predictions: Sequence[str]) -> dict[str, float]:
  """The task's predict metrics for decoded `predictions`, one per example, same order."""
  post = task.postprocess_fn or (lambda text, example=None, is_target=False: text)
  targets = [post(_text(ex['targets_pretokenized']), example=ex, is_target=True)
             for ex in examples]
  values = [post(p, example=ex, is_target=False)
            for p, ex in zip(predictions, examples, strict=True)]
  result: dict[str, float] = {}
  for metric_fn in task.predict_metric_fns:
    result.update({k: float(v) for k, v in metric_fn(targets, values).items()})
  return result


def write_predictions(path: str | os.PathLike, examples: Sequence[Mapping[str, Any]],
                      predictions: Sequence[str]) -> None:
  """JSONL `{"idx", "prediction"}` per example, the format `python -m tasks.evaluate` scores."""
  os.makedirs(os.path.dirname(os.fspath(path)) or '.', exist_ok=True)
  tmp = f'{os.fspath(path)}.tmp'
  with open(tmp, 'w', encoding='utf-8') as f:
    for position, (ex, prediction) in enumerate(zip(examples, predictions, strict=True)):
      idx = int(ex['idx']) if 'idx' in ex else position
      f.write(json.dumps({'idx': idx, 'prediction': prediction}) + '\n')
  os.replace(tmp, path)


@dataclasses.dataclass(frozen=True)
class DecodeEvaluator:
  """Greedy decoding of `split`, scored with each task's postprocessor and metric fns: a
  `suite.evaluation.Evaluator` (decodes run through the core's predict, on its mesh).

  input_length: trims longer inputs as training did (None: no trimming). max_decode_len:
  decode steps (None: the longest tokenized target in the split plus EOS, as seqio's
  evaluator sizes it). A mixture gives `{'<task>/<metric>': value}` over its tasks having
  `split`; a task gives its metric names as they are. predictions_dir: also writes
  `<task>.<split>.jsonl` there. Decoding runs in one process (any number of local devices).
  """

  task: str | seqio.Task | seqio.Mixture
  split: str = 'validation'
  batch_size: int = 32
  input_length: int | None = None
  max_decode_len: int | None = None
  max_examples: int | None = None
  predictions_dir: str | os.PathLike | None = None

  def evaluate(self, steps: EvalSteps, params: Any) -> dict[str, float]:
    provider = resolve(self.task)
    tasks = sub_tasks(provider, self.split)
    scorable = [t for t in tasks if t.predict_metric_fns]
    if not scorable:
      raise ValueError(
          f'{provider.name} has no prediction metrics to decode for (metric_fns are empty); '
          'use upstream_metrics for teacher-forced loss and perplexity instead')
    prefix = isinstance(provider, seqio.Mixture)
    params = steps.place(params)
    result: dict[str, float] = {}
    for sub in scorable:
      examples = split_examples(sub, self.split, self.max_examples)
      if not examples:
        raise ValueError(f'{sub.name}/{self.split} has no examples to evaluate')
      vocabulary = sub.output_features['targets'].vocabulary
      decode_len = self.max_decode_len or max(len(ex['targets']) for ex in examples)
      predictions = predict(steps.model, params, examples, vocabulary,
                            batch_size=self.batch_size, input_length=self.input_length,
                            max_decode_len=decode_len, eval_steps=steps)
      if self.predictions_dir is not None and distributed.is_lead():  # one writer of many
        write_predictions(os.path.join(self.predictions_dir, f'{sub.name}.{self.split}.jsonl'),
                          examples, predictions)
      metrics = score(sub, examples, predictions)
      result.update({f'{sub.name}/{k}' if prefix else k: v for k, v in metrics.items()})
    return result


def evaluate_task(model: T5Model | T5Network, params: Any,
                  task: str | seqio.Task | seqio.Mixture, *, split: str = 'validation',
                  batch_size: int = 32, input_length: int | None = None,
                  max_decode_len: int | None = None, max_examples: int | None = None,
                  predictions_dir: str | os.PathLike | None = None,
                  eval_steps: EvalSteps | None = None) -> dict[str, float]:
  """Decodes `split` greedily and scores it with the task's postprocessor and metric fns.

  The options are `DecodeEvaluator`'s. eval_steps: the core's evaluation steps of `model`
  (a Trainer's `eval_steps`, bound to its mesh and parameter shardings); None: new ones on
  all local devices.
  """
  if isinstance(model, T5Network):
    model = T5Model(model)
  evaluator = DecodeEvaluator(task, split=split, batch_size=batch_size,
                              input_length=input_length, max_decode_len=max_decode_len,
                              max_examples=max_examples, predictions_dir=predictions_dir)
  steps = eval_steps or trainer.eval_steps(model, rules=LOGICAL_AXIS_RULES)
  return evaluator.evaluate(steps, params)
