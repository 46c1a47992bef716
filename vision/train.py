"""Vision training end to end on the shared core: upstream, top-1 evaluation, few-shot, finetuning.

Every stage runs the core: `suite.loop.fit` trains (workdir, resume, metrics.jsonl,
checkpoints), `suite.evaluation` evaluates (fixed-size eval batches padded with zero-weight
rows, so a ragged last batch counts exactly; predict jitted on the trainer's mesh and
parameter shardings). Data are `tasks.images` pipelines (`{'image': float32 NHWC in [-1, 1],
'label': int32}`): TFDS tasks, the embedded digits and the embedded glyphs.

  shape = match_task(shapes.parse('Ti/16').replace(image_size=32, patch_size=4), UPSTREAM)
  up = upstream(shape, 'embedded_glyphs_v1', steps=600, batch_size=64, workdir='/tmp/up')
  shots = fewshot(shape, up.params, 'embedded_glyphs_fewshot_v1')   # linear probes
  tuned = finetune(shape, 'embedded_glyphs_fewshot_v1', upstream=up.params, steps=200,
                   batch_size=64, workdir='/tmp/ft')                 # new head, body from up
  tuned.record()                                                     # for the results journal

Upstream defaults to AdamW with warm-up and cosine decay (`suite.optim.vit_adamw`);
big_vision's Adafactor variant is `suite.optim.vit_big_vision_adafactor`. Finetuning defaults to
big_vision's transfer recipe (SGD, momentum 0.9, cosine). Mixup (`mixup_alpha`) mixes each
image with its neighbour in the batch, on device, one Beta(alpha, alpha) ratio per batch.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf
from jax.sharding import Mesh

from suite import distributed, loop, trainer
from suite import evaluation as core_eval
from suite.domain import TrainResult
from suite.optim import OptimizerConfig, vit_adamw, vit_finetune_sgd
from suite.shapes import VISION, Shape, ShapeError
from tasks import image_preprocess, images
from vision import vit
from vision.domain import LOGICAL_AXIS_RULES
from vision.model import ViTModel, cross_entropy, summarize_example_sums

UPSTREAM, EVALUATE, FEWSHOT, FINETUNE = 'upstream', 'evaluate', 'fewshot', 'finetune'
STAGES = (UPSTREAM, EVALUATE, FEWSHOT, FINETUNE)
DEFAULT_EVAL_BATCH = 256


def get_task(name: str) -> images.ImageTask:
  """The registered image task `name`; unknown names list the closest registered ones."""
  from tasks import registry
  return registry.get_image(name)


def match_task(shape: Shape, task: str) -> Shape:
  """`shape` with num_classes set to the task's class count (the head it trains)."""
  return shape.replace(num_classes=get_task(task).num_classes)


def _check_classes(shape: Shape, task: images.ImageTask) -> None:
  if shape.domain != VISION:
    raise ShapeError(f'vision training takes a vision shape, got domain={shape.domain!r}')
  if shape.num_classes != task.num_classes:
    raise ShapeError(
        f'shape num_classes={shape.num_classes} but task {task.name!r} has '
        f'{task.num_classes} classes; use vision.train.match_task(shape, {task.name!r})')


def _model(model_or_shape: ViTModel | Shape, dtype: Any, dropout_rate: float,
           label_smoothing: float) -> ViTModel:
  if isinstance(model_or_shape, ViTModel):
    return model_or_shape
  if not isinstance(model_or_shape, Shape):
    raise TypeError(f'expected a vision Shape or a ViTModel, got {type(model_or_shape).__name__}')
  return vit.build(model_or_shape, dtype, dropout_rate=dropout_rate,
                   label_smoothing=label_smoothing)


def _per_process(batch_size: int) -> int:
  processes = jax.process_count()
  if batch_size < 1 or batch_size % processes:
    raise ValueError(f'batch_size={batch_size} must be a positive multiple of the number of '
                     f'processes ({processes})')
  return batch_size // processes


# Data.


def train_batches(task: str, batch_size: int, image_size: int, seed: int,
                  split: str | None = None,
                  mesh: Mesh | None = None) -> Callable[[int], Iterator[dict]]:
  """`factory(batches_consumed)`: the seeded, shuffled, repeated (augmented) stream from that
  batch on. It depends only on (task, batch_size, image_size, seed, process), so skipping the
  consumed batches resumes it exactly. On several processes each reads its own part of the
  split (`suite.distributed.input_shard` on `mesh`), seeded by its index, in batches of its
  rows of the global `batch_size`."""
  image_task = get_task(task)
  shard = distributed.input_shard(batch_size, mesh)
  process_seed = seed * 1_000 + shard.index

  def factory(start: int) -> Iterator[dict]:
    ds = images.train_dataset(image_task, shard.batch_size, image_size, seed=process_seed,
                              split=split, shard=(shard.index, shard.count))
    return ds.skip(start).as_numpy_iterator()

  return factory


def eval_batches(task: str, batch_size: int, image_size: int, split: str | None = None,
                 max_examples: int | None = None) -> Callable[[], Iterator[dict]]:
  """`factory()`: one ordered pass over the eval split as this process's rows of fixed-size
  global batches; the ragged last batch is padded with zero-weight rows (`ROW_WEIGHT`)."""
  image_task = get_task(task)
  _per_process(batch_size)

  def factory() -> Iterator[dict]:
    for batch in _eval_views(image_task, split, image_size, max_examples, batch_size):
      yield core_eval.process_rows(core_eval.pad_batch(batch, batch_size))

  return factory


def _eval_views(task: images.ImageTask, split: str | None, image_size: int,
                max_examples: int | None, batch_size: int) -> Iterator[dict]:
  """Ordered numpy batches of eval views (resized, [-1, 1]) of the first examples of a split."""
  ds = images.raw_dataset(task, split or task.eval_split)
  if max_examples is not None:
    ds = ds.take(max_examples)
  ds = ds.map(lambda ex: {'image': image_preprocess.eval_image(ex['image'], image_size),
                          'label': tf.cast(ex['label'], tf.int32)})
  return ds.batch(batch_size).prefetch(2).as_numpy_iterator()


# Mixup.


@dataclasses.dataclass(frozen=True)
class Mixup:
  """A ViTModel whose training loss sees mixup: each image mixed with its neighbour in the
  (micro)batch, ratio ~ Beta(alpha, alpha) per batch; the loss mixes the two labels' losses
  in the same ratio (cross-entropy is linear in the target). Evaluation is the model's."""

  model: ViTModel
  alpha: float

  def __post_init__(self):
    if self.alpha <= 0:
      raise ValueError(f'mixup alpha={self.alpha}: must be > 0 (no mixup: do not wrap)')

  @property
  def shape(self) -> Shape:
    return self.model.shape

  @property
  def loss_weight_key(self) -> str | None:
    return self.model.loss_weight_key

  def init(self, rng: jax.Array) -> Any:
    return self.model.init(rng)

  def example_metrics(self, params: Any, batch: Mapping[str, jax.Array]) -> dict:
    return self.model.example_metrics(params, batch)

  def predict(self, params: Any, batch: Mapping[str, jax.Array], **options: Any) -> jax.Array:
    return self.model.predict(params, batch, **options)

  def loss(self, params: Any, batch: Mapping[str, jax.Array],
           rng: jax.Array) -> tuple[jax.Array, dict]:
    mix_key, dropout_key = jax.random.split(rng)
    ratio = jax.random.beta(mix_key, self.alpha, self.alpha)
    images_ = batch['image']
    mixed = ratio * images_ + (1.0 - ratio) * jnp.roll(images_, 1, axis=0)
    logits = self.model._logits(params, mixed.astype(images_.dtype), dropout_key)
    labels = batch['label']
    loss_a, nll_a, correct_a = cross_entropy(logits, labels, self.model.label_smoothing)
    loss_b, _, _ = cross_entropy(logits, jnp.roll(labels, 1, axis=0),
                                 self.model.label_smoothing)
    weights = jnp.asarray(batch.get('weight', jnp.ones(labels.shape)), jnp.float32)
    count = jnp.sum(weights)
    denominator = jnp.where(count > 0, count, 1.0)
    total = jnp.sum((ratio * loss_a + (1.0 - ratio) * loss_b) * weights) / denominator
    return total, {'loss': total, 'cross_entropy': jnp.sum(nll_a * weights) / denominator,
                   'accuracy': jnp.sum(correct_a * weights) / denominator,
                   'num_examples': count}


def _base(model: ViTModel | Mixup) -> ViTModel:
  return model.model if isinstance(model, Mixup) else model


# Few-shot probes on frozen features, through the core's predict path.


def feature_fn(steps: core_eval.EvalSteps, params: Any) -> Callable[[np.ndarray], np.ndarray]:
  """images [N, S, S, 3] -> pooled features [N, d_model] (float32), by `model.predict` jitted
  on the steps' mesh and parameter shardings (params placed on them once)."""
  params = steps.place(params)
  return lambda pixels: steps.predict(params, {'image': pixels}, output='features')


@dataclasses.dataclass(frozen=True)
class FewshotEvaluator:
  """An `suite.evaluation.Evaluator`: big_vision's few-shot linear probes (`vision.fewshot`)
  on frozen features, for the loop's eval schedule or the `fewshot` stage.

  Metrics: `fewshot/<task>/<k>shot` (top-1 of the probe on the task's eval split, mean over
  `seeds` of the draw from its few-shot pool) for each task and k in `shots`.
  """

  tasks: Sequence[str]
  image_size: int
  shots: Sequence[int] = images.FEWSHOT_SHOTS
  seeds: Sequence[int] = (0,)
  batch_size: int = DEFAULT_EVAL_BATCH

  def evaluate(self, steps: core_eval.EvalSteps, params: Any) -> dict[str, float]:
    from vision import fewshot as probes
    features = feature_fn(steps, params)
    metrics = {}
    for task in self.tasks:
      metrics.update(probes.fewshot_eval(features, get_task(task), self.shots, self.seeds,
                                         image_size=self.image_size,
                                         batch_size=self.batch_size))
    return metrics

  def pixel_baseline(self) -> dict[str, float]:
    """The same probes on raw pixels: `fewshot_pixels/<task>/<k>shot`."""
    from vision import fewshot as probes
    metrics = {}
    for task in self.tasks:
      metrics.update(probes.pixel_baseline(get_task(task), self.shots, self.seeds,
                                           image_size=self.image_size))
    return metrics


# Stages.


def _fit(model: ViTModel | Mixup, task: str, optimizer: OptimizerConfig, *, steps: int,
         batch_size: int, workdir: str | os.PathLike, seed: int, eval_batch_size: int | None,
         max_eval_examples: int | None, loop_options: Mapping[str, Any], init_params: Any,
         mesh: Mesh | None, evaluators: Sequence[core_eval.Evaluator] = ()) -> loop.FitResult:
  image_task = get_task(task)
  shape = model.shape
  _check_classes(shape, image_task)
  config = loop.LoopConfig(num_steps=steps, seed=seed, **loop_options)
  eval_data = eval_batches(task, eval_batch_size or batch_size, shape.image_size,
                           max_examples=max_eval_examples)
  return loop.fit(model, optimizer,
                  train_batches(task, batch_size, shape.image_size, seed, mesh=mesh), config,
                  workdir, eval_data=eval_data, summarize_eval=summarize_example_sums,
                  evaluators=evaluators, init_params=init_params, mesh=mesh,
                  rules=LOGICAL_AXIS_RULES)


def _training_model(model_or_shape, dtype, dropout_rate, label_smoothing, mixup_alpha):
  model = _model(model_or_shape, dtype, dropout_rate, label_smoothing)
  return Mixup(model, mixup_alpha) if mixup_alpha else model


def upstream(model_or_shape: ViTModel | Shape, task: str, *, steps: int, batch_size: int,
             workdir: str | os.PathLike, optimizer: OptimizerConfig | None = None,
             seed: int = 0, dtype: Any = jnp.float32, dropout_rate: float = 0.0,
             label_smoothing: float = 0.0, mixup_alpha: float = 0.0,
             eval_batch_size: int | None = None, max_eval_examples: int | None = None,
             evaluators: Sequence[core_eval.Evaluator] = (), init_params: Any = None,
             mesh: Mesh | None = None, **loop_options: Any) -> TrainResult:
  """Supervised training on `task`'s train split; resumes from `workdir`'s checkpoint.

  optimizer defaults to AdamW, lr 1e-3, 10% warm-up, cosine decay, weight decay 1e-4, clipping
  1.0. evaluators (e.g. a FewshotEvaluator) run on the eval schedule beside top-1 on the eval
  split. loop_options go to `suite.loop.LoopConfig` (log_every, eval_every, microbatches, ...).
  Returns the eval split's loss, accuracy (top-1), cross_entropy and num_examples.
  """
  model = _training_model(model_or_shape, dtype, dropout_rate, label_smoothing, mixup_alpha)
  optimizer = optimizer or vit_adamw(1e-3, total_steps=steps, warmup_steps=max(1, steps // 10))
  fit = _fit(model, task, optimizer, steps=steps, batch_size=batch_size, workdir=workdir,
             seed=seed, eval_batch_size=eval_batch_size, max_eval_examples=max_eval_examples,
             loop_options=loop_options, init_params=init_params, mesh=mesh,
             evaluators=evaluators)
  return TrainResult(stage=UPSTREAM, task=task, status=fit.status, steps=fit.step,
                      wall_s=fit.wall_s, metrics=dict(fit.eval_metrics),
                      upstream=dict(fit.eval_metrics), train_metrics=dict(fit.train_metrics),
                      resumed_from=fit.resumed_from, params=fit.state.params)


def _eval_steps(model: ViTModel, mesh: Mesh | None,
                steps: core_eval.EvalSteps | None) -> core_eval.EvalSteps:
  return steps if steps is not None else trainer.eval_steps(model, mesh, LOGICAL_AXIS_RULES)


def evaluate(model_or_shape: ViTModel | Shape, params: Any, task: str, *,
             split: str | None = None, batch_size: int = DEFAULT_EVAL_BATCH,
             max_examples: int | None = None, dtype: Any = jnp.float32,
             mesh: Mesh | None = None,
             eval_steps: core_eval.EvalSteps | None = None) -> TrainResult:
  """Top-1 of `params` on a split (default: the task's eval split), exact over every example:
  fixed-size batches, the ragged last one padded with zero-weight rows."""
  start = time.perf_counter()
  model = _model(model_or_shape, dtype, 0.0, 0.0)
  _check_classes(model.shape, get_task(task))
  steps = _eval_steps(model, mesh, eval_steps)
  data = eval_batches(task, batch_size, model.shape.image_size, split, max_examples)
  metrics = core_eval.SumsEvaluator(data, summarize_example_sums).evaluate(steps, params)
  return TrainResult(stage=EVALUATE, task=task, status=loop.OK, steps=0,
                      wall_s=time.perf_counter() - start, metrics=metrics, upstream={},
                      train_metrics={}, resumed_from=None, params=params)


def fewshot(model_or_shape: ViTModel | Shape, params: Any, tasks: str | Sequence[str], *,
            shots: Sequence[int] = images.FEWSHOT_SHOTS, seeds: Sequence[int] = (0,),
            batch_size: int = DEFAULT_EVAL_BATCH,
            pixel_baseline: bool = False, dtype: Any = jnp.float32, mesh: Mesh | None = None,
            eval_steps: core_eval.EvalSteps | None = None) -> TrainResult:
  """Linear probes on frozen features (`FewshotEvaluator`): `fewshot/<task>/<k>shot` for each
  task and k in `shots` (mean over `seeds` of the draw); with pixel_baseline, also
  `fewshot_pixels/<task>/<k>shot`, the same probes on raw pixels."""
  start = time.perf_counter()
  tasks = [tasks] if isinstance(tasks, str) else list(tasks)
  model = _model(model_or_shape, dtype, 0.0, 0.0)
  evaluator = FewshotEvaluator(tuple(tasks), model.shape.image_size, tuple(shots),
                               tuple(seeds), batch_size)
  metrics = evaluator.evaluate(_eval_steps(model, mesh, eval_steps), params)
  if pixel_baseline:
    metrics.update(evaluator.pixel_baseline())
  return TrainResult(stage=FEWSHOT, task=','.join(tasks), status=loop.OK, steps=0,
                      wall_s=time.perf_counter() - start, metrics=metrics, upstream={},
                      train_metrics={}, resumed_from=None, params=params)


def transfer_params(upstream_params: Any, model: ViTModel, seed: int = 0) -> Any:
  """The upstream body with `model`'s freshly initialised (zero) head: every param but the
  head is copied, and must have the shape the target model wants."""
  fresh = trainer.unbox(model.init(jax.random.PRNGKey(seed)))
  upstream_params = jax.device_get(upstream_params)
  missing = sorted(set(fresh) - set(upstream_params) - {'head'})
  if missing:
    raise ValueError(f'upstream params lack {missing}: they are not from a ViT of this shape')

  def take(path, target, source):
    if np.shape(source) != np.shape(target):
      raise ValueError(f'upstream param {jax.tree_util.keystr(path)} has shape '
                       f'{np.shape(source)}, the target model wants {np.shape(target)}; '
                       'finetune a shape equal to the upstream one but for num_classes')
    return np.asarray(source)

  body = {k: v for k, v in fresh.items() if k != 'head'}
  copied = jax.tree_util.tree_map_with_path(
      take, body, {k: upstream_params[k] for k in body})
  return {**copied, 'head': jax.device_get(fresh['head'])}


def finetune(model_or_shape: ViTModel | Shape, task: str, *, upstream: Any, steps: int,
             batch_size: int, workdir: str | os.PathLike,
             upstream_num_classes: int | None = None,
             optimizer: OptimizerConfig | None = None, seed: int = 0,
             dtype: Any = jnp.float32, dropout_rate: float = 0.0, label_smoothing: float = 0.0,
             mixup_alpha: float = 0.0, eval_batch_size: int | None = None,
             max_eval_examples: int | None = None, mesh: Mesh | None = None,
             **loop_options: Any) -> TrainResult:
  """Transfer: a new (zero) head for `task`'s classes on the upstream body, trained on `task`.

  `upstream` is the upstream params (a tree) or the workdir of the upstream run (its latest
  checkpoint; then upstream_num_classes gives its head's size). The shape (or model) may carry
  any num_classes: the task's count replaces it. optimizer defaults to `vit_finetune_sgd`
  (lr 0.01, 10% warm-up, cosine). Returns the task's eval-split top-1.
  """
  start = time.perf_counter()
  base = _model(model_or_shape, dtype, dropout_rate, label_smoothing)
  shape = match_task(base.shape, task)
  model = ViTModel(dataclasses.replace(base.network, shape=shape), base.label_smoothing)
  if isinstance(upstream, str | os.PathLike):
    if upstream_num_classes is None:
      raise ValueError('upstream is a workdir: pass upstream_num_classes (the upstream '
                       "task's class count) so that its checkpoint's head can be read")
    up_model = ViTModel(dataclasses.replace(base.network,
                                            shape=shape.replace(num_classes=upstream_num_classes)))
    upstream = loop.pretrained_params(
        upstream, trainer.eval_steps(up_model, mesh, LOGICAL_AXIS_RULES))
  init_params = transfer_params(upstream, model, seed)
  optimizer = optimizer or vit_finetune_sgd(0.01, total_steps=steps,
                                            warmup_steps=max(1, steps // 10))
  training = Mixup(model, mixup_alpha) if mixup_alpha else model
  fit = _fit(training, task, optimizer, steps=steps, batch_size=batch_size, workdir=workdir,
             seed=seed, eval_batch_size=eval_batch_size, max_eval_examples=max_eval_examples,
             loop_options=loop_options, init_params=init_params, mesh=mesh)
  return TrainResult(stage=FINETUNE, task=task, status=fit.status, steps=fit.step,
                      wall_s=time.perf_counter() - start, metrics=dict(fit.eval_metrics),
                      upstream=dict(fit.eval_metrics), train_metrics=dict(fit.train_metrics),
                      resumed_from=fit.resumed_from, params=fit.state.params)
