"""The text domain (T5 encoder-decoders) behind the `suite.domain.Domain` contract: `DOMAIN`.

- model: `text.t5.build` (T5Model: loss, teacher-forced per-example sums, greedy decoding);
- workload: `input_length` encoder tokens and `target_length` decoder tokens per example
  (T5 pre-training's 512 and 114 by default); throughput counts tokens (both);
- optimizers: `adafactor` (T5 pre-training's, the default) and `adamw` (constant 1e-4);
- logical axis rules: `LOGICAL_AXIS_RULES` (the network's names: batch, length, embed, mlp,
  heads, kv, vocab, relpos_buckets, layers);
- stages: `pretrain` (span corruption, `text.train.pretrain`), `finetune`
  (`text.train.finetune`: training, then greedy decoding scored with the task's metrics) and
  `evaluate` (given params: decoded task metrics, or teacher-forced ones for tasks without
  prediction metrics). They import seqio when they run; importing this module does not.
  Each takes a `CheckpointRef` as init_params: a released checkpoint (`text.released`: a
  google/t5-efficient-* HF directory or a Mesh TensorFlow folder at a step), whose shape
  `checkpoint_shape` reads from the folder's own config.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from suite import costs, optim, partition, shapes, trainer
from suite.domain import (
  OK,
  CheckpointRef,
  ModelOptions,
  StageConfig,
  StageResult,
  Workload,
  WorkloadOption,
  check_sizes,
)
from suite.shapes import Shape
from text import t5
from text.model import T5Model

PRETRAIN, FINETUNE, EVALUATE = 'pretrain', 'finetune', 'evaluate'
# Logical axis -> mesh axes, first match wins (flax skips a rule whose mesh axis an earlier
# dimension of the same array took). Activations ('batch', 'length', 'embed') take fsdp for
# the batch first, so their `embed` stays whole; parameters, which have no batch dimension,
# shard `embed` over fsdp (ZeRO-3, as t5x does) and the wide dimensions over model.
LOGICAL_AXIS_RULES: partition.Rules = (
    ('batch', partition.BATCH_AXES),
    ('vocab', partition.MODEL),
    ('mlp', partition.MODEL),
    ('heads', partition.MODEL),
    ('joined_kv', partition.MODEL),
    ('embed', partition.FSDP),
    ('kv', None),
    ('length', None),
    ('relpos_buckets', None),
    ('layers', None),
)
PREDICTIONS_DIR = 'predictions'
WORKLOAD_OPTIONS = (
    WorkloadOption('input_length', costs.DEFAULT_INPUT_LENGTH,
                   'Text: encoder input tokens per example.'),
    WorkloadOption('target_length', costs.DEFAULT_TARGET_LENGTH,
                   'Text: decoder target tokens per example.'),
)


@dataclasses.dataclass(frozen=True)
class Lengths:
  """Tokens per example: encoder inputs and decoder targets."""

  input_length: int = costs.DEFAULT_INPUT_LENGTH
  target_length: int = costs.DEFAULT_TARGET_LENGTH

  def __post_init__(self):
    for name in ('input_length', 'target_length'):
      if getattr(self, name) <= 0:
        raise ValueError(f'{name}={getattr(self, name)}: must be a positive token count.')


def lengths(input_length: int = costs.DEFAULT_INPUT_LENGTH,
            target_length: int = costs.DEFAULT_TARGET_LENGTH, **_) -> Lengths:
  return Lengths(input_length, target_length)


def synthetic_batch(shape: Shape, batch_size: int, lengths: Lengths,
                    seed: int = 0) -> dict[str, np.ndarray]:
  """Random non-pad tokens in the seqio EncDecFeatureConverter layout (no padding)."""
  rng = np.random.default_rng(seed)
  inputs = rng.integers(2, shape.vocab_size, (batch_size, lengths.input_length), np.int32)
  targets = rng.integers(2, shape.vocab_size, (batch_size, lengths.target_length), np.int32)
  decoder_inputs = np.concatenate([np.zeros_like(targets[:, :1]), targets[:, :-1]], axis=1)
  return {'encoder_input_tokens': inputs, 'decoder_input_tokens': decoder_inputs,
          'decoder_target_tokens': targets,
          'decoder_loss_weights': np.ones_like(targets, dtype=np.float32)}


def adamw_constant() -> optim.OptimizerConfig:
  """AdamW at a constant 1e-4, no warm-up (what the reference comparison trains with)."""
  return optim.OptimizerConfig(name='adamw', schedule='constant', learning_rate=1e-4,
                               warmup_steps=0)


def _stage_options(stage: str, config: StageConfig, valid: tuple[str, ...]) -> None:
  unknown = sorted(set(config.options) - set(valid))
  if unknown:
    raise ValueError(f'text stage {stage!r} has no options {unknown}; valid: '
                     f'{", ".join(valid) or "none"}.')


def _sizes(config: StageConfig) -> dict[str, int]:
  check_sizes(DOMAIN, config.workload)  # names and values; the stage supplies defaults
  return dict(config.workload)


def _init_params(config: StageConfig, options: ModelOptions) -> Any:
  """config.init_params, with a released checkpoint (`CheckpointRef`) loaded as params."""
  if isinstance(config.init_params, CheckpointRef):
    from text import released
    return released.params(config.init_params, scan_layers=options.resolved().scan)
  return config.init_params


def _result(result: Any) -> StageResult:
  """A text.train TrainResult as the contract's StageResult (flat, namespaced metrics)."""
  metrics = dict(result.metrics)
  if result.stage == FINETUNE:
    metrics.update({f'upstream/{k}': v for k, v in result.upstream.items()})
  metrics.update({f'train/{k}': v for k, v in result.train_metrics.items()})
  return StageResult(stage=result.stage, task=result.task, status=result.status,
                     metrics=metrics, steps=result.steps, wall_s=result.wall_s,
                     params=result.params)


def pretrain(shape: Shape, options: ModelOptions, config: StageConfig,
             workdir: str | os.PathLike) -> StageResult:
  """Span-corruption pre-training (`text.train.pretrain`); metrics: teacher-forced validation.

  target_length defaults to what span corruption makes of input_length; the optimizer to
  T5's Adafactor (rsqrt schedule). No stage options.
  """
  from text import train
  _stage_options(PRETRAIN, config, ())
  sizes = _sizes(config)
  result = train.pretrain(
      DOMAIN.build_model(shape, options), config.task, steps=config.steps,
      batch_size=config.batch_size, workdir=workdir,
      input_length=sizes.get('input_length', costs.DEFAULT_INPUT_LENGTH),
      target_length=sizes.get('target_length'), optimizer=config.optimizer, seed=config.seed,
      eval_batch_size=config.eval_batch_size, max_eval_examples=config.max_eval_examples,
      init_params=_init_params(config, options), mesh=config.mesh, **config.loop)
  return _result(result)


def finetune(shape: Shape, options: ModelOptions, config: StageConfig,
             workdir: str | os.PathLike) -> StageResult:
  """Finetuning (`text.train.finetune`), then the split decoded and scored with the task's
  metrics (`upstream/...`: teacher-forced). Options: `eval_split` ('validation'),
  `max_decode_len` (None: the longest target), `decode` (True; False skips the decoding, for
  callers that score the checkpoints with `evaluate`). Optimizer default: Adafactor at 1e-3."""
  from text import train
  _stage_options(FINETUNE, config, ('eval_split', 'max_decode_len', 'decode'))
  sizes = check_sizes(DOMAIN, config.workload)
  result = train.finetune(
      DOMAIN.build_model(shape, options), config.task, steps=config.steps,
      batch_size=config.batch_size, workdir=workdir,
      init_params=_init_params(config, options),
      input_length=sizes['input_length'], target_length=sizes['target_length'],
      optimizer=config.optimizer, seed=config.seed, eval_batch_size=config.eval_batch_size,
      max_eval_examples=config.max_eval_examples, mesh=config.mesh, **config.options,
      **config.loop)
  return _result(result)


def evaluate(shape: Shape, options: ModelOptions, config: StageConfig,
             workdir: str | os.PathLike) -> StageResult:
  """Scores `config.init_params` (a param tree, or the workdir of a run with checkpoints) on
  the task: decoded and scored with its metrics when it has prediction metrics (predictions
  under `<workdir>/predictions/`; inputs trimmed to input_length when given), else the
  teacher-forced loss, accuracy and perplexity at the workload's lengths. Options: `split`
  ('validation'), `max_decode_len` (None: the longest target)."""
  from suite import loop
  from text import evaluation
  _stage_options(EVALUATE, config, ('split', 'max_decode_len'))
  if config.init_params is None:
    raise ValueError("the text 'evaluate' stage needs params: set StageConfig.init_params to "
                     'a param tree or the workdir of a run that saved checkpoints.')
  if config.steps:
    raise ValueError(f"the text 'evaluate' stage does not train: steps={config.steps}, "
                     'expected 0.')
  start = time.perf_counter()
  model = DOMAIN.build_model(shape, options)
  steps = trainer.eval_steps(model, config.mesh, DOMAIN.logical_axis_rules)
  params = _init_params(config, options)
  if isinstance(params, str | os.PathLike):
    params = loop.pretrained_params(params, steps, step=config.init_step)
  split = config.options.get('split', 'validation')
  batch_size = config.eval_batch_size or config.batch_size
  scorable = any(t.predict_metric_fns for t in evaluation.sub_tasks(config.task, split))
  if scorable:
    metrics = evaluation.evaluate_task(
        model, params, config.task, split=split, batch_size=batch_size,
        input_length=config.workload.get('input_length'),
        max_decode_len=config.options.get('max_decode_len'),
        max_examples=config.max_eval_examples,
        predictions_dir=os.path.join(os.fspath(workdir), PREDICTIONS_DIR), eval_steps=steps)
  else:
    sizes = check_sizes(DOMAIN, config.workload)
    metrics = evaluation.upstream_metrics(
        model, params, config.task,
        {'inputs': sizes['input_length'], 'targets': sizes['target_length']},
        batch_size=batch_size, split=split, max_examples=config.max_eval_examples,
        eval_steps=steps)
  return StageResult(stage=EVALUATE, task=config.task, status=OK, metrics=metrics, steps=0,
                     wall_s=time.perf_counter() - start, params=params)


class TextDomain:
  """T5 encoder-decoders (T5-Efficient and T5.1.1 shapes): see the module docstring."""

  name = shapes.TEXT
  workload_options = WORKLOAD_OPTIONS
  optimizers: Mapping[str, Any] = {'adafactor': optim.t5_pretrain, 'adamw': adamw_constant}
  logical_axis_rules = LOGICAL_AXIS_RULES
  stages: Mapping[str, Any] = {PRETRAIN: pretrain, FINETUNE: finetune, EVALUATE: evaluate}

  def build_model(self, shape: Shape, options: ModelOptions) -> T5Model:
    if shape.domain != self.name:
      raise ValueError(f'a {shape.domain} shape cannot build a text model; parse the name with '
                       "domain='text' (a T5 name such as 'small-nl16').")
    options = options.resolved(shape)  # 'auto' dtype, attention and scan for this device
    return t5.build(shape, getattr(jnp, options.dtype), dropout_rate=options.dropout_rate,
                    attention_impl=options.attention, remat_policy=options.remat,
                    scan_layers=options.scan)

  def at_workload(self, shape: Shape, **sizes: int) -> Shape:
    """Sequence lengths leave a T5's architecture as it is (relative positions)."""
    check_sizes(self, sizes)
    return shape

  def for_task(self, shape: Shape, task: str) -> Shape:
    """`shape` with vocab_size set to the vocabulary `task` tokenizes with."""
    from text import train
    return train.match_vocabulary(shape, task)

  def checkpoint_shape(self, path: str, step: int | None = None,
                       task: str | None = None) -> Shape:
    """The shape of a local google/t5-efficient-* HF directory or Mesh TensorFlow folder
    (`text.released`); with `task`, its vocabulary must be the task's."""
    from text import released
    shape = released.shape(path, step)
    if task is not None:
      released.check_vocabulary(shape, task, path)
    return shape

  def workload(self, shape: Shape, **sizes: int) -> Workload:
    """Throughput counts tokens: encoder inputs plus decoder targets."""
    sizes = check_sizes(self, sizes)
    inputs, targets = sizes['input_length'], sizes['target_length']
    return Workload(sizes=sizes, unit='tokens', items_per_example=inputs + targets,
                    train_flops_per_example=costs.train_flops_per_example(shape, inputs,
                                                                          targets))

  def synthetic_batch(self, shape: Shape, workload: Workload, batch_size: int,
                      seed: int = 0) -> dict[str, np.ndarray]:
    return synthetic_batch(shape, batch_size, Lengths(**workload.sizes), seed)

  def reference_train_step(self, shape: Shape, batch: dict[str, np.ndarray], *, steps: int,
                           warmup: int, repeats: int, keep_host_memory: bool) -> dict:
    """transformers' PyTorch T5 + AdamW, timed in a fresh process with glibc's default
    allocator or (keep_host_memory) suite.host_memory's."""
    from text import torch_baseline
    return torch_baseline.time_in_fresh_process(shape, batch, steps, warmup, keep_host_memory,
                                                repeats)


DOMAIN = TextDomain()
