"""The vision domain (ViT classifiers) behind the `suite.domain.Domain` contract: `DOMAIN`.

- model: `vision.vit.build` (ViTModel: loss, per-example top-1 sums, logits or features);
- workload: one `image_size` x `image_size` RGB image per example, the size the shape was built
  for (a ViT's position embeddings fix it; `at_workload` gives the shape at another size);
  throughput counts images, 1 per example;
- optimizers: `adamw` (the default: constant 1e-3, weight decay 1e-4, as the reference
  comparison trains), `big_vision_adafactor` (big_vision's large-ViT recipe) and `sgd`
  (big_vision's transfer recipe);
- logical axis rules: `LOGICAL_AXIS_RULES` (the network's names: batch, length, embed, mlp,
  heads, kv, classes, layers);
- stages (`vision.train`): `upstream` (supervised training), `evaluate` (top-1 of given params),
  `fewshot` (linear probes on frozen features, big_vision's protocol) and `finetune` (a new
  head for the task's classes on the upstream body). upstream and evaluate size the head to
  the task (`num_classes`); fewshot and finetune take the shape the params were trained with.
  They import TensorFlow's data pipelines when they run; importing this module does not.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from suite import costs, optim, partition, shapes
from suite.domain import (
  ModelOptions,
  StageConfig,
  StageResult,
  Workload,
  WorkloadOption,
  check_sizes,
)
from suite.shapes import Shape
from vision import vit
from vision.model import ViTModel

UPSTREAM, EVALUATE, FEWSHOT, FINETUNE = 'upstream', 'evaluate', 'fewshot', 'finetune'
# Logical axis -> mesh axes, first match wins (flax skips a rule whose mesh axis an earlier
# dimension of the same array took). Activations ('batch', 'length', 'embed') take fsdp for
# the batch first, so their `embed` stays whole; parameters, which have no batch dimension,
# shard `embed` over fsdp (ZeRO-3, as big_vision's fsdp does) and the wide ones over model.
LOGICAL_AXIS_RULES: partition.Rules = (
    ('batch', partition.BATCH_AXES),
    ('mlp', partition.MODEL),
    ('heads', partition.MODEL),
    ('embed', partition.FSDP),
    ('classes', None),
    ('kv', None),
    ('length', None),
    ('layers', None),
)
DEFAULT_IMAGE_SIZE = 224  # the named shapes' (big_vision's ImageNet) resolution
WORKLOAD_OPTIONS = (
    WorkloadOption('image_size', DEFAULT_IMAGE_SIZE,
                   "Vision: image side in pixels (default: the shape's own)."),
)
STAGE_OPTIONS = {
    UPSTREAM: ('label_smoothing', 'mixup_alpha', 'fewshot_tasks'),
    EVALUATE: ('split',),
    FEWSHOT: ('shots', 'seeds', 'pixel_baseline'),
    FINETUNE: ('label_smoothing', 'mixup_alpha', 'upstream_num_classes'),
}


def adamw_constant() -> optim.OptimizerConfig:
  """AdamW at a constant 1e-3 with weight decay 1e-4, no warm-up, no clipping: the update the
  reference comparison (transformers' ViT with torch.optim.AdamW) runs."""
  return optim.OptimizerConfig(name='adamw', schedule='constant', learning_rate=1e-3,
                               warmup_steps=0, weight_decay=1e-4)


def big_vision_adafactor() -> optim.OptimizerConfig:
  """big_vision's Adafactor variant at its ViT-g recipe (lr 8e-4, 10k warm-up, reciprocal-sqrt
  decay, cooldown), for a 100k-step run."""
  return optim.vit_big_vision_adafactor(8e-4, total_steps=100_000, warmup_steps=10_000)


def sgd_transfer() -> optim.OptimizerConfig:
  """big_vision's transfer recipe (SGD, momentum 0.9, cosine) for a 10k-step finetune."""
  return optim.vit_finetune_sgd(0.01, total_steps=10_000, warmup_steps=500)


def synthetic_batch(shape: Shape, batch_size: int, image_size: int,
                    seed: int = 0) -> dict[str, np.ndarray]:
  """Uniform pixels in [-1, 1] (float32 NHWC, tasks.images' range) and random int32 labels."""
  rng = np.random.default_rng(seed)
  pixels = rng.uniform(-1.0, 1.0, (batch_size, image_size, image_size, 3)).astype(np.float32)
  labels = rng.integers(0, shape.num_classes, (batch_size,), np.int32)
  return {'image': pixels, 'label': labels}


def _check_options(stage: str, config: StageConfig) -> None:
  unknown = sorted(set(config.options) - set(STAGE_OPTIONS[stage]))
  if unknown:
    raise ValueError(f'vision stage {stage!r} has no options {unknown}; valid: '
                     f'{", ".join(STAGE_OPTIONS[stage])}.')


def _check_shape_workload(shape: Shape, config: StageConfig) -> None:
  size = config.workload.get('image_size', shape.image_size)
  check_sizes(DOMAIN, {'image_size': size})
  if size != shape.image_size:
    raise ValueError(f'workload image_size={size} but the shape was built for '
                     f'{shape.image_size}-pixel images; use DOMAIN.at_workload(shape, '
                     f'image_size={size}) as the shape.')


def _result(result: Any) -> StageResult:
  """A vision.train TrainResult as the contract's StageResult (flat, namespaced metrics)."""
  metrics = dict(result.metrics)
  metrics.update({f'train/{k}': v for k, v in result.train_metrics.items()})
  return StageResult(stage=result.stage, task=result.task, status=result.status,
                     metrics=metrics, steps=result.steps, wall_s=result.wall_s,
                     params=result.params)


def _params(model: ViTModel, init_params: Any, config: StageConfig) -> Any:
  """A param tree, or the latest checkpoint's params of a workdir."""
  from suite import loop, trainer
  if isinstance(init_params, str | os.PathLike):
    steps = trainer.eval_steps(model, config.mesh, DOMAIN.logical_axis_rules)
    return loop.pretrained_params(init_params, steps, step=config.init_step)
  return init_params


def upstream(shape: Shape, options: ModelOptions, config: StageConfig,
             workdir: str | os.PathLike) -> StageResult:
  """Supervised training on the task (`vision.train.upstream`), the head sized to its classes;
  metrics: top-1 on its eval split (`accuracy`, `loss`, ...), `train/...`, and with
  `fewshot_tasks` (a list of task names) their probes `fewshot/<task>/<k>shot` at each eval.
  Options: label_smoothing (0), mixup_alpha (0: off), fewshot_tasks (()). Optimizer default:
  AdamW, lr 1e-3, 10% warm-up, cosine, weight decay 1e-4, clipping 1."""
  from vision import train
  _check_options(UPSTREAM, config)
  shape = train.match_task(shape, config.task)
  _check_shape_workload(shape, config)
  model = DOMAIN.build_model(shape, options)
  evaluators = ()
  if config.options.get('fewshot_tasks'):
    evaluators = (train.FewshotEvaluator(tuple(config.options['fewshot_tasks']),
                                         shape.image_size),)
  result = train.upstream(
      model, config.task, steps=config.steps, batch_size=config.batch_size, workdir=workdir,
      optimizer=config.optimizer, seed=config.seed,
      label_smoothing=config.options.get('label_smoothing', 0.0),
      mixup_alpha=config.options.get('mixup_alpha', 0.0),
      eval_batch_size=config.eval_batch_size, max_eval_examples=config.max_eval_examples,
      evaluators=evaluators, init_params=config.init_params, mesh=config.mesh, **config.loop)
  return _result(result)


def evaluate(shape: Shape, options: ModelOptions, config: StageConfig,
             workdir: str | os.PathLike) -> StageResult:
  """Top-1 of `config.init_params` (a tree or a workdir with checkpoints) on the task, its
  head sized to the task's classes; exact over the split (ragged last batch padded with
  zero-weight rows). Options: split (the task's eval split)."""
  from vision import train
  del workdir  # nothing to write
  _check_options(EVALUATE, config)
  if config.init_params is None or config.steps:
    raise ValueError("the vision 'evaluate' stage scores given params without training: set "
                     'StageConfig.init_params (a param tree or a workdir) and steps=0, got '
                     f'init_params={"set" if config.init_params is not None else None}, '
                     f'steps={config.steps}.')
  shape = train.match_task(shape, config.task)
  _check_shape_workload(shape, config)
  model = DOMAIN.build_model(shape, options)
  params = _params(model, config.init_params, config)
  result = train.evaluate(model, params, config.task, split=config.options.get('split'),
                          batch_size=config.eval_batch_size or config.batch_size,
                          max_examples=config.max_eval_examples, mesh=config.mesh)
  return _result(result)


def fewshot(shape: Shape, options: ModelOptions, config: StageConfig,
            workdir: str | os.PathLike) -> StageResult:
  """Linear probes on the frozen features of `config.init_params` (of `shape`, the model as
  trained), for `config.task` (one name or several, comma-separated): `fewshot/<task>/<k>shot`.
  Options: shots ((1, 5, 10, 25)), seeds ((0,): draws averaged), pixel_baseline (False: also
  `fewshot_pixels/...`, the probes on raw pixels)."""
  from vision import train
  del workdir
  _check_options(FEWSHOT, config)
  if config.init_params is None:
    raise ValueError("the vision 'fewshot' stage probes given params: set "
                     'StageConfig.init_params to a param tree or a workdir with checkpoints.')
  _check_shape_workload(shape, config)
  model = DOMAIN.build_model(shape, options)
  params = _params(model, config.init_params, config)
  kwargs = {k: config.options[k] for k in ('shots', 'seeds') if k in config.options}
  result = train.fewshot(model, params, config.task.split(','),
                         batch_size=config.eval_batch_size or config.batch_size,
                         pixel_baseline=bool(config.options.get('pixel_baseline', False)),
                         mesh=config.mesh, **kwargs)
  return _result(result)


def finetune(shape: Shape, options: ModelOptions, config: StageConfig,
             workdir: str | os.PathLike) -> StageResult:
  """Transfer (`vision.train.finetune`): `shape` is the upstream model's, `init_params` its
  params (a tree, or the upstream workdir: then the shape's num_classes is the upstream head's
  unless upstream_num_classes says otherwise); a new zero head for the task's classes is
  trained with the body. Metrics: the task's top-1. Options: label_smoothing, mixup_alpha,
  upstream_num_classes. Optimizer default: SGD momentum 0.9, lr 0.01, cosine."""
  from vision import train
  _check_options(FINETUNE, config)
  if config.init_params is None:
    raise ValueError("the vision 'finetune' stage starts from upstream params: set "
                     'StageConfig.init_params to a param tree or the upstream workdir.')
  _check_shape_workload(shape, config)
  result = train.finetune(
      DOMAIN.build_model(shape, options), config.task, upstream=config.init_params,
      upstream_num_classes=config.options.get('upstream_num_classes', shape.num_classes),
      steps=config.steps, batch_size=config.batch_size, workdir=workdir,
      optimizer=config.optimizer, seed=config.seed,
      label_smoothing=config.options.get('label_smoothing', 0.0),
      mixup_alpha=config.options.get('mixup_alpha', 0.0),
      eval_batch_size=config.eval_batch_size, max_eval_examples=config.max_eval_examples,
      mesh=config.mesh, **config.loop)
  return _result(result)


class VisionDomain:
  """ViT image classifiers (big_vision's named shapes): see the module docstring."""

  name = shapes.VISION
  workload_options = WORKLOAD_OPTIONS
  optimizers: Mapping[str, Any] = {'adamw': adamw_constant,
                                   'big_vision_adafactor': big_vision_adafactor,
                                   'sgd': sgd_transfer}
  logical_axis_rules = LOGICAL_AXIS_RULES
  stages: Mapping[str, Any] = {UPSTREAM: upstream, EVALUATE: evaluate, FEWSHOT: fewshot,
                               FINETUNE: finetune}

  def build_model(self, shape: Shape, options: ModelOptions) -> ViTModel:
    if shape.domain != self.name:
      raise ValueError(f'a {shape.domain} shape cannot build a vision model; parse the name '
                       "with domain='vision' (a ViT name such as 'S/16').")
    options = options.resolved(shape)  # 'auto' dtype, attention and scan for this device
    return vit.build(shape, getattr(jnp, options.dtype), dropout_rate=options.dropout_rate,
                     attention_impl=options.attention, remat_policy=options.remat,
                     scan_layers=options.scan)

  def at_workload(self, shape: Shape, **sizes: int) -> Shape:
    """`shape` built for these sizes: its image_size replaced (the patch size must tile it)."""
    size = check_sizes(self, {'image_size': sizes.get('image_size', shape.image_size),
                              **{k: v for k, v in sizes.items() if k != 'image_size'}})
    return shape.replace(image_size=size['image_size'])

  def for_task(self, shape: Shape, task: str) -> Shape:
    """`shape` with num_classes set to `task`'s class count (the head it trains)."""
    from vision import train
    return train.match_task(shape, task)

  def workload(self, shape: Shape, **sizes: int) -> Workload:
    """One image of the shape's size per example (`image_size`, if given, must equal it: see
    `at_workload`); throughput counts images."""
    sizes = check_sizes(self, {'image_size': shape.image_size, **sizes})
    if sizes['image_size'] != shape.image_size:
      raise ValueError(f'image_size={sizes["image_size"]} but the shape was built for '
                       f'{shape.image_size}-pixel images (its position embeddings fix it); '
                       f'use DOMAIN.at_workload(shape, image_size={sizes["image_size"]}).')
    return Workload(sizes=sizes, unit='images', items_per_example=1,
                    train_flops_per_example=costs.train_flops_per_example(shape))

  def synthetic_batch(self, shape: Shape, workload: Workload, batch_size: int,
                      seed: int = 0) -> dict[str, np.ndarray]:
    return synthetic_batch(shape, batch_size, workload.sizes['image_size'], seed)

  def reference_train_step(self, shape: Shape, batch: dict[str, np.ndarray], *, steps: int,
                           warmup: int, repeats: int, keep_host_memory: bool) -> dict:
    """transformers' PyTorch ViTForImageClassification + torch.optim.AdamW on the same batch,
    timed in a fresh process (vision.torch_baseline)."""
    from vision import torch_baseline
    return torch_baseline.time_in_fresh_process(shape, batch, steps, warmup, keep_host_memory,
                                                repeats)

  def checkpoint_shape(self, path: str, step: int | None = None,
                       task: str | None = None) -> Shape:
    """Not supported yet: the runner's `init_from` (released checkpoints) is text only."""
    raise ValueError(f'{path}: starting vision units from a released checkpoint is not '
                     'supported yet (vision.vit.from_hf reads HF ViT directories, but no vision '
                     'stage takes one); give init_from for the text domain only.')


DOMAIN = VisionDomain()
