"""Text training end to end: span-corruption pre-training and finetuning of a T5 on seqio data.

Both stages run the shared loop (`suite.loop.fit`) on batches from `seqio.get_dataset` with
`EncDecFeatureConverter` (no packing: the network has no segment-aware attention, so packed
examples would attend to each other). The train stream is a fixed function of the seed, and
the loop asks for it from the number of batches already consumed, so a run killed after a
checkpoint and started again in the same workdir draws the same loss curve.

  result = pretrain(shape, 'embedded_pretrain_v1', steps=300, batch_size=32, input_length=128,
                    workdir='/tmp/pt')            # upstream metrics: loss, neg_log_perplexity
  tuned = finetune(shape, 'embedded_sst_v1', steps=200, batch_size=32, workdir='/tmp/ft',
                   init_params=result.params)     # the task's metrics, e.g. accuracy
  tuned.record()                                  # plain dict for the results journal

Shapes must cover the configured vocabulary (`match_vocabulary` sets vocab_size to it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax.numpy as jnp
import seqio
from jax.sharding import Mesh

from suite import costs, distributed, loop
from suite.domain import TrainResult
from suite.optim import OptimizerConfig, t5_finetune, t5_pretrain
from suite.shapes import Shape
from tasks import span_corruption
from text import evaluation, t5
from text.domain import FINETUNE, LOGICAL_AXIS_RULES, PREDICTIONS_DIR, PRETRAIN, Lengths
from text.model import T5Model, finalize_metrics

PRETRAIN_TASK = 'embedded_pretrain_v1'


def vocabulary_size(task: str = PRETRAIN_TASK) -> int:
  """Size of the vocabulary `task` tokenizes with (the configured one for registered tasks)."""
  return evaluation.sub_tasks(task)[0].output_features['targets'].vocabulary.vocab_size


def match_vocabulary(shape: Shape, task: str = PRETRAIN_TASK) -> Shape:
  """`shape` with vocab_size set to the task's vocabulary size (e.g. 1079 for the embedded)."""
  return shape.replace(vocab_size=vocabulary_size(task))


def _check_vocabulary(shape: Shape, task: str) -> None:
  needed = vocabulary_size(task)
  if shape.vocab_size < needed:
    raise ValueError(
        f'shape vocab_size={shape.vocab_size} is smaller than the vocabulary of {task!r} '
        f'({needed} ids); use text.train.match_vocabulary(shape) or shape.replace('
        f'vocab_size={needed})')


def _model(model_or_shape: T5Model | Shape, dtype: Any, dropout_rate: float) -> T5Model:
  if isinstance(model_or_shape, T5Model):
    return model_or_shape
  if not isinstance(model_or_shape, Shape):
    raise TypeError(f'expected a text Shape or a T5Model, got {type(model_or_shape).__name__}')
  return t5.build(model_or_shape, dtype, dropout_rate=dropout_rate)


def train_batches(task: str, lengths: Lengths, batch_size: int, seed: int,
                  split: str = 'train',
                  mesh: Mesh | None = None) -> Callable[[int], Iterator[dict]]:
  """`factory(batches_consumed)`: the shuffled, repeated stream of `split`, from that batch on.

  The stream depends only on (task, lengths, batch_size, seed, process), so skipping the
  consumed batches resumes it exactly. On several processes each reads its own shard of the
  data (seqio's ShardInfo, `suite.distributed.input_shard` on `mesh`) in batches of its rows
  of the global `batch_size`.
  """
  shard = distributed.input_shard(batch_size, mesh)
  shard_info = seqio.ShardInfo(shard.index, shard.count) if shard.count > 1 else None
  task_lengths = {'inputs': lengths.input_length, 'targets': lengths.target_length}

  def factory(start: int) -> Iterator[dict]:
    evaluation.tf_cpu_only()
    ds = seqio.get_dataset(task, task_lengths, seqio.EncDecFeatureConverter(pack=False),
                           dataset_split=split, shuffle=True, num_epochs=None, seed=seed,
                           shard_info=shard_info, batch_size=shard.batch_size, verbose=False)
    return ds.skip(start).prefetch(2).as_numpy_iterator()

  return factory


def _fit(model: T5Model, task: str, lengths: Lengths, optimizer: OptimizerConfig, *,
         steps: int, batch_size: int, workdir: str | os.PathLike, seed: int,
         eval_batch_size: int | None, max_eval_examples: int | None,
         loop_options: Mapping[str, Any], init_params: Any, mesh: Mesh | None,
         eval_split: str = 'validation') -> loop.FitResult:
  _check_vocabulary(model.shape, task)
  config = loop.LoopConfig(num_steps=steps, seed=seed, **loop_options)
  task_lengths = {'inputs': lengths.input_length, 'targets': lengths.target_length}
  eval_data = evaluation.eval_batches(task, task_lengths, eval_batch_size or batch_size,
                                      split=eval_split, max_examples=max_eval_examples)
  return loop.fit(model, optimizer, train_batches(task, lengths, batch_size, seed, mesh=mesh),
                  config, workdir, eval_data=eval_data, summarize_eval=finalize_metrics,
                  init_params=init_params, mesh=mesh, rules=LOGICAL_AXIS_RULES)


def pretrain(model_or_shape: T5Model | Shape, task: str = PRETRAIN_TASK, *, steps: int,
             batch_size: int, workdir: str | os.PathLike,
             input_length: int = costs.DEFAULT_INPUT_LENGTH,
             target_length: int | None = None, optimizer: OptimizerConfig | None = None,
             seed: int = 0, dtype: Any = jnp.float32, dropout_rate: float = 0.0,
             eval_batch_size: int | None = None, max_eval_examples: int | None = None,
             init_params: Any = None, mesh: Mesh | None = None,
             **loop_options: Any) -> TrainResult:
  """Span-corruption pre-training on a task or mixture; resumes from `workdir`'s checkpoint.

  target_length defaults to what span corruption makes of `input_length` (512 -> 114).
  optimizer defaults to T5's Adafactor with the rsqrt schedule (10k warm-up). loop_options
  go to `suite.loop.LoopConfig` (log_every, eval_every, checkpoint_every, microbatches, ...).
  A T5Model is used as given (dtype and dropout_rate then apply only to a Shape). Returns the
  teacher-forced validation metrics (loss, accuracy, neg_log_perplexity, perplexity).
  """
  if target_length is None:
    target_length = span_corruption.lengths_for_inputs(input_length).targets
  model = _model(model_or_shape, dtype, dropout_rate)
  fit = _fit(model, task, Lengths(input_length, target_length), optimizer or t5_pretrain(),
             steps=steps, batch_size=batch_size, workdir=workdir, seed=seed,
             eval_batch_size=eval_batch_size, max_eval_examples=max_eval_examples,
             loop_options=loop_options, init_params=init_params, mesh=mesh)
  return TrainResult(stage=PRETRAIN, task=task, status=fit.status, steps=fit.step,
                    wall_s=fit.wall_s, metrics=dict(fit.eval_metrics),
                    upstream=dict(fit.eval_metrics), train_metrics=dict(fit.train_metrics),
                    resumed_from=fit.resumed_from, params=fit.state.params)


def finetune(model_or_shape: T5Model | Shape, task: str, *, steps: int, batch_size: int,
             workdir: str | os.PathLike, init_params: Any = None,
             input_length: int = costs.DEFAULT_INPUT_LENGTH,
             target_length: int = costs.DEFAULT_TARGET_LENGTH,
             optimizer: OptimizerConfig | None = None,
             seed: int = 0, dtype: Any = jnp.float32, dropout_rate: float = 0.1,
             eval_split: str = 'validation', eval_batch_size: int | None = None,
             max_eval_examples: int | None = None, max_decode_len: int | None = None,
             decode: bool = True, mesh: Mesh | None = None,
             **loop_options: Any) -> TrainResult:
  """Finetunes on a task or mixture from `init_params` (None: from scratch), then decodes.

  optimizer defaults to T5 finetuning (Adafactor, constant 1e-3). After training, the
  `eval_split` is decoded greedily and scored with each task's metrics (`evaluate_task`);
  predictions go to `<workdir>/predictions/<task>.<split>.jsonl`. A diverged run returns
  no task metrics; so does `decode=False`, for a caller that scores the checkpoints itself
  (suite.run's evaluate units). loop_options go to `suite.loop.LoopConfig`.
  """
  start = time.perf_counter()
  model = _model(model_or_shape, dtype, dropout_rate)
  fit = _fit(model, task, Lengths(input_length, target_length), optimizer or t5_finetune(),
             steps=steps, batch_size=batch_size, workdir=workdir, seed=seed,
             eval_batch_size=eval_batch_size, max_eval_examples=max_eval_examples,
             loop_options=loop_options, init_params=init_params, mesh=mesh,
             eval_split=eval_split)
  metrics: dict[str, float] = {}
  if fit.status == loop.OK and decode:
    metrics = evaluation.evaluate_task(
        model, fit.state.params, task, split=eval_split,
        batch_size=eval_batch_size or batch_size, input_length=input_length,
        max_decode_len=max_decode_len, max_examples=max_eval_examples,
        predictions_dir=os.path.join(os.fspath(workdir), PREDICTIONS_DIR),
        eval_steps=fit.trainer.eval_steps)  # decodes on the run's mesh and param shardings
  return TrainResult(stage=FINETUNE, task=task, status=fit.status, steps=fit.step,
                    wall_s=time.perf_counter() - start, metrics=metrics,
                    upstream=dict(fit.eval_metrics), train_metrics=dict(fit.train_metrics),
                    resumed_from=fit.resumed_from,
                    params=fit.state.params)
