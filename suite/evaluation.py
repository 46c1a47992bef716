"""Evaluation in the training core: evaluators, fixed-size weighted eval batches, sharded predict.

- **Weighted sums.** A model's `example_metrics(params, batch)` gives one value per example
  (`{name: [batch]}`: a loss summed over the example's tokens, 1 if it is classified right, 1
  to count it). `EvalSteps.sums` adds them over an evaluation set in one jitted step, sharded
  like training, each row weighted by the batch's `ROW_WEIGHT` (1 for an example, 0 for a
  padding row). Eval batches have one fixed size, the last (ragged) one padded with zero-weight
  rows (`pad_batch`), so the step compiles once and the sums equal an unpadded computation's on
  any number of devices and hosts. Host totals are float64.
- **Predict.** `EvalSteps.predict(params, batch, **options)` runs `model.predict` (greedy
  decoding, logits, features) jitted against the same mesh and parameter shardings as training
  and returns this process's rows on the host, padding rows dropped.
- **Evaluators.** An `Evaluator` turns params into named metrics through an `EvalSteps`;
  `suite.loop.fit` calls its evaluators on the eval schedule (`LoopConfig.eval_every` and the
  last step). `SumsEvaluator` is the teacher-forced kind: weighted sums, then a summary
  (sums -> means). A domain adds its own (text: decode and score; vision: few-shot probes).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from suite import partition

ROW_WEIGHT = 'row_weight'

Batch = dict[str, Any]
# A factory giving a fresh pass over the eval set, or a re-iterable collection.
EvalData = Callable[[], Iterable[Batch]] | Iterable[Batch]


class EvalModel(Protocol):
  """What evaluation needs from a domain's model (suite.trainer.Model adds the loss)."""

  def init(self, rng: jax.Array) -> Any: ...

  def example_metrics(self, params: Any, batch: dict[str, Any]) -> dict[str, jax.Array]:
    """Per-example values `{name: [batch, ...]}` whose weighted sums over an evaluation set
    are the metrics' sums (the core weights and adds them; padding rows count for nothing)."""
    ...

  def predict(self, params: Any, batch: dict[str, Any], **options: Any) -> Any:
    """A pytree of arrays with the batch's leading dimension (decoded tokens, logits,
    features). `options` are static Python values (a decode length, say)."""
    ...


class Evaluator(Protocol):
  """Metrics of params, computed with the jitted, sharded steps of the model being trained."""

  def evaluate(self, steps: EvalSteps, params: Any) -> dict[str, float]: ...


def num_rows(batch: Mapping[str, Any]) -> int:
  """The leading dimension that every leaf of `batch` shares."""
  sizes = {np.shape(x)[0] if np.ndim(x) else None for x in jax.tree_util.tree_leaves(batch)}
  if len(sizes) != 1 or None in sizes:
    raise ValueError(f'every batch leaf needs the same leading batch dimension, got sizes '
                     f'{sorted(map(str, sizes))}')
  return sizes.pop()


def pad_batch(batch: Mapping[str, Any], size: int) -> dict[str, np.ndarray]:
  """`batch` grown to `size` rows with all-zero rows, with its per-row weight `ROW_WEIGHT`.

  The weight is 1 for the batch's rows (or the weight it already holds) and 0 for the padding.
  """
  rows = num_rows(batch)
  if rows > size:
    raise ValueError(f'a batch of {rows} rows does not fit the fixed eval batch size {size}; '
                     'pass batches of at most that many rows')
  out = {k: np.asarray(v) for k, v in batch.items()}
  out[ROW_WEIGHT] = np.asarray(out.get(ROW_WEIGHT, np.ones((rows,), np.float32)), np.float32)
  if rows == size:
    return out
  return {k: np.concatenate([v, np.zeros((size - rows,) + v.shape[1:], v.dtype)])
          for k, v in out.items()}


def process_rows(batch: Mapping[str, Any]) -> dict[str, Any]:
  """This process's contiguous share of a global batch (the whole batch on one host)."""
  processes, index = jax.process_count(), jax.process_index()
  rows = num_rows(batch)
  if rows % processes:
    raise ValueError(f'a global eval batch of {rows} rows does not split over {processes} '
                     f'processes; use a batch size that is a multiple of {processes}')
  share = rows // processes
  return {k: v[index * share:(index + 1) * share] for k, v in batch.items()}


def local_rows(x: jax.Array) -> np.ndarray:
  """The rows of a batch-sharded array that this process holds, in order, as numpy."""
  if not isinstance(x, jax.Array) or x.is_fully_addressable:
    return np.asarray(x)
  shards: dict[int, Any] = {}
  for shard in x.addressable_shards:  # replicas over the model axis hold the same rows
    shards.setdefault(shard.index[0].start or 0, shard.data)
  return np.concatenate([np.asarray(shards[start]) for start in sorted(shards)])


def accumulate_sums(totals: dict[str, float], values: Mapping[str, Any]) -> None:
  """Adds each metric's host values (summed, in float64) into `totals`, in place."""
  for name, value in values.items():
    totals[name] = totals.get(name, 0.0) + float(np.sum(np.asarray(value, np.float64)))


def check_structure(params: Any, expected: Any) -> None:
  """Raises if `params` and the model's `expected` param tree differ, naming the paths."""
  if jax.tree_util.tree_structure(params) != jax.tree_util.tree_structure(expected):
    got = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)}
    want = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(expected)}
    raise ValueError(
        f'params do not match the model: missing {sorted(want - got)[:5]}, '
        f'unexpected {sorted(got - want)[:5]}')


class EvalSteps:
  """The jitted, sharded evaluation steps of one model on one mesh: weighted sums and predict.

  `abstract_params` are the model's unboxed params as ShapeDtypeStructs carrying their
  shardings (a Trainer's `abstract_state.params`, or `suite.trainer.eval_steps(model)`).
  """

  def __init__(self, model: EvalModel, mesh: Mesh, rules: partition.Rules,
               abstract_params: Any):
    self.model = model
    self.mesh = mesh
    self.rules = tuple(rules)
    self.abstract_params = abstract_params
    self.param_shardings = jax.tree_util.tree_map(lambda x: x.sharding, abstract_params)
    self._batch_sharding = partition.batch_sharding(mesh)
    self._sums = jax.jit(self._weighted_sums,
                         in_shardings=(self.param_shardings, self._batch_sharding),
                         out_shardings=partition.replicated(mesh))
    self._predict: dict[tuple, Callable] = {}

  def context(self) -> contextlib.ExitStack:
    """The mesh and logical-axis rules that the model's sharding annotations resolve against."""
    stack = contextlib.ExitStack()
    stack.enter_context(jax.set_mesh(self.mesh))
    stack.enter_context(nn.logical_axis_rules(self.rules))
    return stack

  @property
  def rows_multiple(self) -> int:
    """Every batch this process passes is padded to a multiple of this many rows (the data
    and fsdp slices this process holds), so that it splits evenly over the mesh."""
    return max(1, partition.process_batch_shards(self.mesh))

  def _fixed_size(self, rows: int) -> int:
    return -(-rows // self.rows_multiple) * self.rows_multiple

  def place(self, params: Any) -> Any:
    """`params` on the parameter shardings; arrays already there are used as they are."""
    check_structure(params, self.abstract_params)

    def put(path, x, target):
      if np.shape(x) != target.shape:
        raise ValueError(f'param {jax.tree_util.keystr(path)} has shape {np.shape(x)}, the '
                         f'model wants {target.shape}')
      if isinstance(x, jax.Array) and x.sharding == target.sharding:
        return x
      return jax.device_put(x, target.sharding)
    return jax.tree_util.tree_map_with_path(put, params, self.abstract_params)

  def _weighted_sums(self, params: Any, batch: Batch) -> dict[str, jax.Array]:
    weight = batch[ROW_WEIGHT].astype(jnp.float32)
    features = {k: v for k, v in batch.items() if k != ROW_WEIGHT}
    sums = {}
    for name, value in self.model.example_metrics(params, features).items():
      value = jnp.asarray(value)
      if value.ndim == 0 or value.shape[0] != weight.shape[0]:
        raise ValueError(
            f'example_metrics[{name!r}] has shape {value.shape}: it must hold one value per '
            f'example (leading dimension {weight.shape[0]}); the core sums them with the '
            'per-row weights.')
      w = weight.reshape(weight.shape + (1,) * (value.ndim - 1))
      # where, not only a product: a padding row's value may be NaN (0 of 0 tokens, say).
      sums[name] = jnp.sum(jnp.where(w > 0, value.astype(jnp.float32) * w, 0.0))
    return sums

  def sums(self, params: Any, batches: Iterable[Batch]) -> dict[str, float]:
    """Weighted sums of `model.example_metrics` over `batches` (this process's rows each).

    Each batch is padded to the first batch's size (rounded up to `rows_multiple`) with
    zero-weight rows; a batch's own `ROW_WEIGHT`, if any, is kept. Every process must pass the
    same number of batches. Returns `{}` for no batches.
    """
    params = self.place(params)
    totals: dict[str, float] = {}
    size = None
    pending = None
    for batch in batches:
      if size is None:
        size = self._fixed_size(num_rows(batch))
      with self.context():
        result = self._sums(params, partition.shard_batch(pad_batch(batch, size), self.mesh))
      if pending is not None:  # fetch one batch behind, so the device stays busy
        accumulate_sums(totals, partition.to_host(pending))
      pending = result
    if pending is not None:
      accumulate_sums(totals, partition.to_host(pending))
    return totals

  def _predict_fn(self, options: tuple) -> Callable:
    if options not in self._predict:
      def predict(params, batch):
        features = {k: v for k, v in batch.items() if k != ROW_WEIGHT}
        return self.model.predict(params, features, **dict(options))
      self._predict[options] = jax.jit(
          predict, in_shardings=(self.param_shardings, self._batch_sharding),
          out_shardings=self._batch_sharding)
    return self._predict[options]

  def predict(self, params: Any, batch: Mapping[str, Any], **options: Any) -> Any:
    """`model.predict(params, batch, **options)` as numpy, one row per row of `batch`.

    `batch` is this process's rows; it is padded to a multiple of `rows_multiple` with
    zero rows, whose predictions are dropped. `options` must be hashable: each distinct set
    compiles once (as does each batch size: keep it fixed).
    """
    rows = num_rows(batch)
    padded = pad_batch(batch, self._fixed_size(rows))
    fn = self._predict_fn(tuple(sorted(options.items())))
    with self.context():
      out = fn(self.place(params), partition.shard_batch(padded, self.mesh))
    return jax.tree_util.tree_map(lambda x: local_rows(x)[:rows], out)


@dataclasses.dataclass(frozen=True)
class SumsEvaluator:
  """Teacher-forced metrics: `summarize(weighted sums of example_metrics over data)`.

  data: a factory of one pass over the eval set, or a re-iterable of batches (any fixed size,
  the last may be smaller). summarize: sums -> reported metrics (e.g. means).
  """

  data: EvalData
  summarize: Callable[[dict[str, float]], dict[str, float]] = dict

  def evaluate(self, steps: EvalSteps, params: Any) -> dict[str, float]:
    batches = self.data() if callable(self.data) else self.data
    return self.summarize(steps.sums(params, batches))


def evaluate_all(steps: EvalSteps, params: Any,
                 evaluators: Sequence[Evaluator]) -> dict[str, float]:
  """The metrics of every evaluator, in one flat dict; two evaluators may not share a name."""
  metrics: dict[str, float] = {}
  for evaluator in evaluators:
    result = evaluator.evaluate(steps, params)
    clash = sorted(set(result) & set(metrics))
    if clash:
      raise ValueError(f'evaluator {type(evaluator).__name__} reports {clash}, which an '
                       'earlier evaluator reports too; give its metrics distinct names')
    metrics.update(result)
  return metrics
