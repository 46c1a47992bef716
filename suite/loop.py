"""`fit`: the training loop shared by every domain (pre-training and finetuning alike).

It creates or resumes the sharded state, feeds batches to the jitted step, logs mean metrics,
calls its evaluators (suite.evaluation) on the eval schedule, checkpoints and stops on
divergence. A run killed after a checkpoint and started again with the same arguments
continues exactly where it was: the state (params, optimizer, RNG, step) comes from the
checkpoint and the data from `train_data(batches_consumed)` (or the iterable, fast-forwarded),
so the loss curve is the one an uninterrupted run draws.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np
import optax
from absl import logging
from jax.sharding import Mesh

from suite import partition
from suite.checkpoint import Checkpointer
from suite.evaluation import EvalData, EvalSteps, Evaluator, SumsEvaluator, evaluate_all
from suite.metrics_log import MetricsLogger
from suite.optim import OptimizerConfig, make_optimizer
from suite.trainer import Model, Trainer, TrainState

Batch = dict[str, Any]
# A factory called with the number of batches already consumed, or a plain iterable.
TrainData = Callable[[int], Iterable[Batch]] | Iterable[Batch]

CHECKPOINT_DIR = 'checkpoints'
OK, DIVERGED = 'ok', 'diverged'


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  """How long to train and how often to log, evaluate and checkpoint (in steps).

  eval_every/checkpoint_every None: only at the end. The last step is always logged,
  evaluated (when there are evaluators) and checkpointed.
  """

  num_steps: int
  log_every: int = 100
  eval_every: int | None = None
  checkpoint_every: int | None = 1000
  keep_checkpoints: int = 3
  seed: int = 0
  microbatches: int = 1
  tensorboard: bool = True
  async_checkpoints: bool = True

  def __post_init__(self):
    for name in ('num_steps', 'log_every', 'keep_checkpoints', 'microbatches'):
      if getattr(self, name) < 1:
        raise ValueError(f'{name} must be >= 1, got {getattr(self, name)}')
    for name in ('eval_every', 'checkpoint_every'):
      value = getattr(self, name)
      if value is not None and value < 1:
        raise ValueError(f'{name} must be >= 1 or None (only at the end), got {value}')


@dataclasses.dataclass(frozen=True)
class FitResult:
  """How a run ended. `step` is the last finished step (the diverging one if diverged).
  `trainer` holds the jitted steps, and `trainer.eval_steps` predict on the run's mesh."""

  status: str
  step: int
  state: TrainState
  train_metrics: dict[str, float]
  eval_metrics: dict[str, float]
  resumed_from: int | None
  wall_s: float
  trainer: Trainer | None = dataclasses.field(default=None, repr=False, compare=False)


def _batches(train_data: TrainData, start: int) -> Iterator[Batch]:
  if callable(train_data):
    return iter(train_data(start))
  if start:
    logging.info('fast-forwarding the train data by %d batches', start)
  return itertools.islice(iter(train_data), start, None)


def _every(step: int, interval: int | None, last: int) -> bool:
  return step == last or (interval is not None and step % interval == 0)


def _mean(window: Sequence[Mapping[str, np.ndarray]]) -> dict[str, float]:
  return {k: float(np.mean([float(m[k]) for m in window])) for k in window[0]}


def pretrained_params(workdir: str | os.PathLike, trainer: Trainer | EvalSteps,
                      step: int | None = None) -> Any:
  """The params of an earlier run's checkpoint (latest, or `step`), on the shardings of
  `trainer` (a Trainer, or the EvalSteps of a model being evaluated)."""
  directory = os.path.join(workdir, CHECKPOINT_DIR)
  if not os.path.isdir(directory):
    raise FileNotFoundError(f'no checkpoints under {directory}: init_params must be the '
                            'workdir of a run that saved at least one checkpoint')
  target = (trainer.abstract_params if isinstance(trainer, EvalSteps)
            else trainer.abstract_state.params)
  with Checkpointer(directory) as checkpointer:
    return checkpointer.restore_params(target, step=step)


def fit(
    model: Model,
    optimizer: OptimizerConfig | optax.GradientTransformation,
    train_data: TrainData,
    config: LoopConfig,
    workdir: str | os.PathLike,
    *,
    eval_data: EvalData | None = None,
    summarize_eval: Callable[[dict[str, float]], dict[str, float]] | None = None,
    evaluators: Sequence[Evaluator] = (),
    init_params: Any = None,
    mesh: Mesh | None = None,
    rules: partition.Rules = partition.RULES,
    learning_rate_fn: optax.Schedule | None = None,
) -> FitResult:
  """Trains `model` for `config.num_steps` steps in `workdir`, resuming if it holds a checkpoint.

  optimizer: an `OptimizerConfig` (its schedule is logged as `learning_rate`) or any optax
  transformation. train_data: `factory(batches_consumed) -> iterable` or an iterable (skipped
  ahead on resume). evaluators: `suite.evaluation.Evaluator`s, called on the eval schedule with
  the trainer's `eval_steps`; their metrics are logged as `eval/<name>`. eval_data (a shorthand
  for a first `SumsEvaluator(eval_data, summarize_eval)`): `factory() -> iterable` or a
  re-iterable of batches; the weighted sums of the model's `example_metrics` go through
  `summarize_eval` (e.g. sums -> accuracy) before logging. init_params: start
  from these params (finetuning) instead of `model.init` when there is no checkpoint yet; a
  param tree, or the workdir of an earlier run (its latest checkpoint's params).
  Writes `metrics.jsonl`, `tensorboard/` and `checkpoints/` under `workdir`.
  """
  start_time = time.perf_counter()
  if isinstance(optimizer, OptimizerConfig):
    tx, schedule = make_optimizer(optimizer)
    learning_rate_fn = learning_rate_fn or schedule
  else:
    tx = optimizer
  workdir = os.fspath(workdir)
  evaluators = list(evaluators)
  if eval_data is not None:
    evaluators.insert(0, SumsEvaluator(eval_data, summarize_eval or dict))
  trainer = Trainer(model, tx, mesh=mesh, rules=rules, microbatches=config.microbatches)
  with contextlib.ExitStack() as cleanup:
    checkpointer = cleanup.enter_context(Checkpointer(
        os.path.join(workdir, CHECKPOINT_DIR), keep=config.keep_checkpoints,
        asynchronous=config.async_checkpoints))
    state, consumed, window, resumed_from = _start(trainer, checkpointer, config.seed,
                                                   init_params)
    start = int(partition.to_host(state.step))
    logger = cleanup.enter_context(MetricsLogger(
        workdir, config.num_steps, start_step=start, tensorboard=config.tensorboard))
    status, step, state, train_metrics, eval_metrics = _train(
        trainer, state, consumed, window, start, train_data, config, checkpointer, logger,
        evaluators, learning_rate_fn)
  return FitResult(status=status, step=step, state=state, train_metrics=train_metrics,
                   eval_metrics=eval_metrics, resumed_from=resumed_from,
                   wall_s=time.perf_counter() - start_time, trainer=trainer)


def _start(trainer: Trainer, checkpointer: Checkpointer, seed: int,
           init_params: Any) -> tuple[TrainState, int, list, int | None]:
  """(state, batches consumed, unlogged metrics window, checkpoint step resumed from or None)."""
  resumed_from = checkpointer.latest_step()
  if resumed_from is not None:
    state, record = checkpointer.restore(trainer.abstract_state)
    consumed = int(record['batches_consumed'])
    logging.info('resumed from step %d (%d batches consumed)', resumed_from, consumed)
    return state, consumed, record.get('log_window', []), resumed_from
  if init_params is None:
    return trainer.init(seed), 0, [], None
  if isinstance(init_params, str | os.PathLike):
    init_params = pretrained_params(init_params, trainer)
  return trainer.init_from_params(init_params, seed), 0, [], None


def _train(trainer, state, consumed, window, start, train_data, config, checkpointer, logger,
           evaluators, learning_rate_fn):
  """The step loop of `fit`; returns (status, step, state, train metrics, eval metrics).

  `window`: the metrics of the steps since the last log line, as floats (restored from the
  checkpoint on resume, so the next log line averages the same steps as an uninterrupted run).
  """
  status, step = OK, start
  train_metrics: dict[str, float] = {}
  eval_metrics: dict[str, float] = {}
  pending: list[tuple[int, Any]] = []  # device metrics not fetched yet
  window = list(window)
  examples_per_step = 0
  batches = _batches(train_data, consumed)
  for step in range(start + 1, config.num_steps + 1):
    try:
      batch = next(batches)
    except StopIteration:
      raise ValueError(
          f'train data ran out after {consumed} batches, before step {step} of '
          f'{config.num_steps}; repeat the dataset or lower num_steps') from None
    examples_per_step = partition.check_batch(batch, trainer.mesh, config.microbatches)
    state, metrics = trainer.train_step(state, batch)
    consumed += 1
    if step == start + 1:  # leave compilation out of the speed figures
      jax.block_until_ready(metrics)
      logger.reset_timer(step)
    pending.append((step, metrics))
    log = _every(step, config.log_every, config.num_steps)
    save = _every(step, config.checkpoint_every, config.num_steps)
    run_eval = bool(evaluators) and _every(step, config.eval_every, config.num_steps)
    if not (log or save or run_eval):
      continue
    # Fetch before saving: a diverged state is never checkpointed.
    fetched = [(s, partition.to_host(m)) for s, m in pending]
    pending = []
    bad = next((s for s, m in fetched if not math.isfinite(float(m['loss']))), None)
    if bad is not None:
      status, step = DIVERGED, bad
      loss = float(dict(fetched)[bad]['loss'])
      logging.error('loss is %s at step %d: stopping (status %r)', loss, bad, DIVERGED)
      logger.write_status(bad, DIVERGED, loss=str(loss))
      break
    window.extend({k: float(v) for k, v in m.items()} for _, m in fetched)
    if log:
      train_metrics = _mean(window)
      if learning_rate_fn is not None:
        train_metrics['learning_rate'] = float(learning_rate_fn(step - 1))
      logger.write_train(step, train_metrics, examples_per_step)
      window = []
    if save:
      # A copy: orbax writes the record on a background thread, after `window` grows again.
      checkpointer.save(step, state, {'batches_consumed': consumed,
                                      'log_window': [dict(m) for m in window]})
    if run_eval:
      eval_metrics = evaluate_all(trainer.eval_steps, state.params, evaluators)
      logger.write_eval(step, eval_metrics)
      logger.reset_timer(step)
  else:
    if start < config.num_steps:
      logger.write_status(step, OK)
    elif evaluators:  # finished earlier: report its evaluation, log nothing new
      eval_metrics = evaluate_all(trainer.eval_steps, state.params, evaluators)
  return status, step, state, train_metrics, eval_metrics
