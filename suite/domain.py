"""The domain contract: what suite/ needs from a model family (text, vision), as types.

suite/ reaches text/ and vision/ only through a `Domain`, found by name in the registry
(`suite.domains.get`). Each domain package implements the protocol once, in its `domain.py`, as
a module-level `DOMAIN`. What a domain provides:

- **model**: `build_model(shape, ModelOptions) -> suite.trainer.Model`, the trainable wrapper
  (init, loss, per-example eval metrics, predict) for a Shape of this domain;
- **workload**: `workload(shape, **sizes) -> Workload`: what one example is (text: input and
  target tokens; vision: image size), the unit throughput counts and the FLOPs per example.
  The sizes a command line may set are `workload_options` (name, default, help);
- **synthetic batches** for `suite.bench`, and a reference implementation to time against;
- **optimizers**: the named presets of `suite.bench --optimizer`, the first the default;
- **logical axis rules** for the partitioner;
- **stages**: `stages[name](shape, ModelOptions, StageConfig, workdir) -> StageResult` (text:
  pretrain, finetune, evaluate; vision: upstream, evaluate, fewshot, finetune), which the core
  turns into one journal record (`journal_record`);
- **released checkpoints**: `checkpoint_shape(path, step, task) -> Shape`, the shape of a
  local checkpoint folder as its own config states it; a stage given a `CheckpointRef` as
  `init_params` starts from its weights (suite.run's `init_from` rungs).

Nothing here imports a domain. tests/suite/test_domain_contract.py runs every registered domain
through this contract.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import jax
import numpy as np
from jax.sharding import Mesh

from suite import costs, devices, partition, shapes
from suite.network_options import REMAT_POLICIES, cudnn_attention_problem
from suite.optim import OptimizerConfig
from suite.shapes import Shape
from suite.trainer import Model

AUTO = 'auto'  # a ModelOptions value chosen for the device (and shape) by `resolved`
COMPUTE_DTYPES = ('float32', 'bfloat16')
ATTENTION_KERNELS = costs.ATTENTION_KERNELS  # defined jax-free for the planner
OK, DIVERGED, FAILED = 'ok', 'diverged', 'failed'
STATUSES = (OK, DIVERGED, FAILED)


@dataclasses.dataclass(frozen=True)
class ModelOptions:
  """How to build a model, independent of its domain.

  dtype: compute dtype, 'float32' or 'bfloat16' (parameters stay float32). attention: the
  attention kernel, 'xla' or 'cudnn' (cuDNN's fused kernel: NVIDIA GPUs, bfloat16). scan:
  `nn.scan` over layers, True or False (one compiled layer body per stack, so compile time
  stays flat in depth). remat: the network's rematerialisation policy ('none', 'full', 'dots',
  'dots_no_batch'). dropout_rate: in [0, 1). dtype, attention and scan may be 'auto' (the
  default for attention and scan), which `resolved` turns into the device's choice; the domains'
  `build_model` and the commands resolve, so a model never sees 'auto'.
  """

  dtype: str = 'float32'
  attention: str = AUTO
  scan: bool | str = AUTO
  remat: str = 'none'
  dropout_rate: float = 0.0

  def __post_init__(self):
    if self.dtype not in (AUTO, *COMPUTE_DTYPES):
      raise ValueError(f'dtype={self.dtype!r}: valid compute dtypes are {AUTO}, '
                       f'{", ".join(COMPUTE_DTYPES)} (parameters stay float32).')
    if self.attention not in (AUTO, *ATTENTION_KERNELS):
      raise ValueError(f'attention={self.attention!r}: valid kernels are {AUTO}, '
                       f'{", ".join(ATTENTION_KERNELS)}.')
    if self.attention == 'cudnn' and self.dtype == 'float32':
      raise ValueError("attention='cudnn' computes in bfloat16, not float32: use "
                       "dtype='bfloat16' (or 'auto' on a GPU), or attention='xla' or 'auto'.")
    if self.scan not in (AUTO, True, False):
      raise ValueError(f'scan={self.scan!r}: valid are {AUTO}, True, False.')
    if self.remat not in REMAT_POLICIES:
      raise ValueError(f'remat={self.remat!r}: valid policies are {", ".join(REMAT_POLICIES)}.')
    if not 0.0 <= self.dropout_rate < 1.0:
      raise ValueError(f'dropout_rate={self.dropout_rate}: must be in [0, 1).')

  def resolved(self, shape: Shape | None = None, device: Any = None) -> ModelOptions:
    """These options with each 'auto' replaced by the choice for `device` (default: jax's first
    device) and, when given, `shape`:

    - dtype: bfloat16 on accelerators, float32 on CPUs;
    - attention: 'cudnn' where cuDNN's fused kernel runs (an NVIDIA GPU of compute capability
      8.0 or later, bfloat16, the shape's d_kv a multiple of 8 up to 256 on Hopper, 128 before:
      `suite.network_options.cudnn_attention_problem`), else 'xla';
    - scan: on for accelerators (GPU, TPU), where a deep shape's unrolled step takes minutes to
      compile; off on CPUs, where the benchmark's models are shallow and compile in seconds,
      the unrolled step lets suite.bench check the cost model against XLA's FLOP count (which
      counts a scanned layer once), and our CPU figures, tests and checkpoints were made so.

    Explicit values stay; an explicit 'cudnn' where the kernel cannot run is a ValueError
    saying why. Idempotent: resolved options resolve to themselves.
    """
    device = device if device is not None else jax.devices()[0]
    accelerator = device.platform != 'cpu'
    dtype = self.dtype
    if dtype == AUTO:
      dtype = 'bfloat16' if accelerator else 'float32'
    problem = cudnn_attention_problem(device, dtype, None if shape is None else shape.d_kv)
    attention = self.attention
    if attention == AUTO:
      attention = 'xla' if problem else 'cudnn'
    elif attention == 'cudnn' and problem:
      raise ValueError(f"attention='cudnn' cannot run here: {problem}. Use attention='auto' "
                       "(cuDNN where it runs, XLA elsewhere) or 'xla'.")
    scan = accelerator if self.scan == AUTO else bool(self.scan)
    return dataclasses.replace(self, dtype=dtype, attention=attention, scan=scan)


@dataclasses.dataclass(frozen=True)
class WorkloadOption:
  """One size of a domain's workload that a command line may set (a positive integer)."""

  name: str
  default: int
  help: str


@dataclasses.dataclass(frozen=True)
class Workload:
  """What one example of a domain is, for costs and throughput.

  sizes: the resolved workload options (text: input_length, target_length; vision:
  image_size), reported beside every measurement. unit: what throughput counts ('tokens',
  'images'), `items_per_example` of them per example. train_flops_per_example: suite.costs'
  forward + backward matmul FLOPs of one example at these sizes.
  """

  sizes: Mapping[str, int]
  unit: str
  items_per_example: int
  train_flops_per_example: int


@dataclasses.dataclass(frozen=True)
class StageConfig:
  """What one stage runs: the same fields for every domain; `options` holds a stage's own.

  task: the task or mixture (registry name). steps: training steps (0 for evaluate-only
  stages). batch_size: global examples per step. workload: sizes by `workload_options` name
  (missing ones take the domain's or the stage's defaults). optimizer: None for the stage's
  default preset. init_params: a param tree, or the workdir of an earlier stage whose latest
  checkpoint holds them (None: from scratch), or a `CheckpointRef` to a released checkpoint
  (its own step). init_step: with a workdir as init_params, the checkpoint step to read
  (None: the latest). eval_batch_size: None for batch_size.
  max_eval_examples: cap per evaluated (sub-)task. loop: `suite.loop.LoopConfig` fields other
  than num_steps and seed (log_every, eval_every, checkpoint_every, microbatches, ...).
  mesh: None for all devices. options: what the stage's docstring lists.
  """

  task: str
  steps: int = 0
  batch_size: int = 32
  seed: int = 0
  workload: Mapping[str, int] = dataclasses.field(default_factory=dict)
  optimizer: OptimizerConfig | None = None
  init_params: Any = dataclasses.field(default=None, repr=False, compare=False)
  init_step: int | None = None
  eval_batch_size: int | None = None
  max_eval_examples: int | None = None
  loop: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  mesh: Mesh | None = dataclasses.field(default=None, repr=False, compare=False)
  options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.steps < 0:
      raise ValueError(f'steps={self.steps}: must be >= 0 (0 for evaluate-only stages).')
    if self.init_step is not None and self.init_step < 0:
      raise ValueError(f'init_step={self.init_step}: must be a checkpoint step >= 0 or None '
                       '(the latest).')
    for name in ('batch_size', 'eval_batch_size', 'max_eval_examples'):
      value = getattr(self, name)
      if value is not None and value < 1:
        raise ValueError(f'{name}={value}: must be >= 1.')
    for name in ('num_steps', 'seed'):
      if name in self.loop:
        raise ValueError(f'loop option {name!r} is a StageConfig field; set '
                         f'{"steps" if name == "num_steps" else name} instead.')


@dataclasses.dataclass(frozen=True)
class CheckpointRef:
  """A released checkpoint to start a stage from (`StageConfig.init_params`): a local folder
  that the domain reads (`Domain.checkpoint_shape`), at `step` (None: the latest, or the only
  one). Written `PATH` or `PATH@STEP`."""

  path: str
  step: int | None = None

  def __post_init__(self):
    if self.step is not None and self.step < 0:
      raise ValueError(f'{self}: the step must be >= 0.')

  def __str__(self) -> str:
    return self.path if self.step is None else f'{self.path}@{self.step}'

  @classmethod
  def parse(cls, text: str) -> CheckpointRef:
    """`PATH` or `PATH@STEP` (STEP digits; any other `@` stays part of the path)."""
    path, at, step = text.strip().rpartition('@')
    if at and step.isdigit() and path:
      return cls(os.path.abspath(os.path.expanduser(path)), int(step))
    return cls(os.path.abspath(os.path.expanduser(text.strip())))


@dataclasses.dataclass(frozen=True)
class StageResult:
  """How one stage ended: the domain's half of a journal record (`journal_record`).

  metrics: flat `{name: value}`, the stage's headline metrics first (text finetune: the task's
  metrics; namespaced extras such as `upstream/loss`, `train/loss`). steps: the last finished
  training step (0 when the stage does not train). params: the resulting params (to chain
  stages; never journaled).
  """

  stage: str
  task: str
  status: str
  metrics: Mapping[str, float]
  steps: int
  wall_s: float
  error: str | None = None
  params: Any = dataclasses.field(default=None, repr=False, compare=False)

  def __post_init__(self):
    if self.status not in STATUSES:
      raise ValueError(f'status={self.status!r}: valid are {", ".join(STATUSES)}.')
    if (self.status == FAILED) != (self.error is not None):
      raise ValueError('a failed stage names its error, and only a failed one.')


@dataclasses.dataclass(frozen=True)
class TrainResult:
  """What a domain's training or evaluation function returns (text.train, vision.train),
  before its domain turns it into a StageResult.

  `metrics` is the headline (text: teacher-forced validation after pre-training, the task's
  own metrics after finetuning; vision: top-1, or probe accuracies after few-shot);
  `upstream` the domain's upstream measure of the resulting params (text: teacher-forced
  validation; vision: top-1 on the trained task, empty after few-shot); `resumed_from` the
  checkpoint step a resumed run started from.
  """

  stage: str
  task: str
  status: str
  steps: int
  wall_s: float
  metrics: dict[str, float]
  upstream: dict[str, float]
  train_metrics: dict[str, float]
  resumed_from: int | None
  params: Any = dataclasses.field(repr=False, compare=False)

  def record(self) -> dict[str, Any]:
    """Plain JSON-able values for the results journal (params left out)."""
    return {'stage': self.stage, 'task': self.task, 'status': self.status, 'steps': self.steps,
            'wall_s': self.wall_s, 'metrics': dict(self.metrics),
            'upstream': dict(self.upstream), 'train_metrics': dict(self.train_metrics)}


class Stage(Protocol):
  """Runs one stage of a domain's recipe in `workdir` (resuming from its checkpoint)."""

  def __call__(self, shape: Shape, options: ModelOptions, config: StageConfig,
               workdir: str | os.PathLike) -> StageResult: ...


class Domain(Protocol):
  """What suite/ needs from a model family; implemented once by text/ and once by vision/."""

  name: str  # the registry key, equal to the Shape.domain of its shapes
  workload_options: Sequence[WorkloadOption]
  optimizers: Mapping[str, Callable[[], OptimizerConfig]]  # first: the default
  logical_axis_rules: partition.Rules
  stages: Mapping[str, Stage]

  def build_model(self, shape: Shape, options: ModelOptions) -> Model:
    """The trainable model of `shape` (a shape of this domain)."""
    ...

  def at_workload(self, shape: Shape, **sizes: int) -> Shape:
    """`shape` as built for these workload sizes: the same shape when the sizes do not change
    the architecture (text lengths), a new one when they do (a ViT's image size fixes its
    position embeddings)."""
    ...

  def for_task(self, shape: Shape, task: str) -> Shape:
    """`shape` sized to what `task` needs of it (text: the task's vocabulary; vision: its
    classes), the architecture otherwise as it is. Unknown tasks raise an error naming the
    closest registered ones."""
    ...

  def workload(self, shape: Shape, **sizes: int) -> Workload:
    """The workload at these sizes (names from `workload_options`; missing ones default)."""
    ...

  def synthetic_batch(self, shape: Shape, workload: Workload, batch_size: int,
                      seed: int = 0) -> dict[str, np.ndarray]:
    """A random batch of `batch_size` examples, as the model's `loss` takes it."""
    ...

  def reference_train_step(self, shape: Shape, batch: dict[str, np.ndarray], *, steps: int,
                           warmup: int, repeats: int, keep_host_memory: bool) -> dict:
    """Times a widely used implementation's train step on `batch` (for `suite.bench
    --compare=reference`): `{'implementation', 'step_s', 'step_s_windows', ...}`."""
    ...

  def checkpoint_shape(self, path: str, step: int | None = None,
                       task: str | None = None) -> Shape:
    """The Shape of the released checkpoint in local folder `path` (at `step`; None: its
    latest), read from the checkpoint's own config, so that a `CheckpointRef` to it can be
    `StageConfig.init_params`. With `task`, also checks that the checkpoint runs the task as
    it is (text: the task's vocabulary is the one it was trained with). A folder that is not
    such a checkpoint, or a misfit, raises ValueError (or OSError) in one line naming the
    path and what is expected."""
    ...


MEMBERS = ('name', 'workload_options', 'optimizers', 'logical_axis_rules', 'stages',
           'build_model', 'at_workload', 'for_task', 'workload', 'synthetic_batch',
           'reference_train_step', 'checkpoint_shape')


def missing_members(domain: Any) -> list[str]:
  """The members of the `Domain` protocol that `domain` lacks (empty: it has them all)."""
  return [name for name in MEMBERS if not hasattr(domain, name)]


def check_sizes(domain: Domain, sizes: Mapping[str, int]) -> dict[str, int]:
  """`sizes` completed with the domain's defaults; unknown names and non-positive values are
  errors naming the valid options."""
  valid = {o.name: o.default for o in domain.workload_options}
  for name, value in sizes.items():
    if name not in valid:
      raise ValueError(
          f'{domain.name} workload has no size {name!r}; valid: '
          f'{", ".join(valid) or "none"}' + (f' (closest: {shapes.closest(name, valid)})'
                                              if valid else '') + '.')
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise ValueError(f'{domain.name} workload size {name}={value!r}: must be a positive '
                       'integer.')
  return {**valid, **sizes}


def default_optimizer(domain: Domain) -> str:
  """The name of the domain's default optimizer preset (the first in `optimizers`)."""
  return next(iter(domain.optimizers))


def optimizer(domain: Domain, name: str | None = None) -> OptimizerConfig:
  """The domain's optimizer preset called `name` (None: its default)."""
  name = default_optimizer(domain) if name is None else name
  if name not in domain.optimizers:
    raise ValueError(f'{domain.name} has no optimizer {name!r}; valid: '
                     f'{", ".join(domain.optimizers)} (closest: '
                     f'{shapes.closest(name, domain.optimizers)}).')
  return domain.optimizers[name]()


def stage(domain: Domain, name: str) -> Stage:
  """The domain's stage called `name`; unknown names list the domain's stages."""
  if name not in domain.stages:
    raise ValueError(f'{domain.name} has no stage {name!r}; valid: {", ".join(domain.stages)} '
                     f'(closest: {shapes.closest(name, domain.stages)}).')
  return domain.stages[name]


def run_id(domain: str, shape: Shape, task: str, stage_name: str, seed: int,
           strategy: str | None = None, scale: float | None = None,
           config: Mapping[str, Any] | None = None) -> str:
  """A stable hash of what identifies one unit of work (the journal's `run_id`)."""
  key = {'domain': domain, 'strategy': strategy, 'scale': scale, 'shape': shape.fields(),
         'task': task, 'stage': stage_name, 'seed': seed, 'config': dict(config or {})}
  text = json.dumps(key, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def versions() -> dict[str, str]:
  """Package versions and the device kind, for the journal."""
  import flax
  import jax
  import optax
  return {'python': platform.python_version(), 'jax': jax.__version__,
          'flax': flax.__version__, 'optax': optax.__version__, 'numpy': np.__version__,
          'device': devices.current().kind}


def journal_record(result: StageResult, *, domain: str, shape: Shape, workload: Workload,
                   seed: int, strategy: str | None = None, scale: float | None = None,
                   config: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """One results-journal record (DESIGN.md's fields) for a stage's result.

  config: the settings that tell runs apart besides the other arguments (steps, batch size,
  workload sizes, optimizer...), JSON-able; it enters the run_id.
  """
  record = {
      'run_id': run_id(domain, shape, result.task, result.stage, seed, strategy, scale,
                       config),
      'domain': domain, 'strategy': strategy, 'scale': scale,
      'shape_name': shapes.display_name(shape), 'shape': shape.fields(),
      'params': costs.params(shape),
      'train_flops_per_example': workload.train_flops_per_example,
      'workload': dict(workload.sizes), 'stage': result.stage, 'task': result.task,
      'metrics': {k: None if v is None else float(v) for k, v in result.metrics.items()},
      'steps': result.steps,
      'seed': seed, 'wall_s': result.wall_s, 'status': result.status,
      'versions': versions(),
  }
  if result.error is not None:
    record['error'] = result.error
  return record
