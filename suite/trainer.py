"""The train state and the jitted, sharded train and eval steps, for any model and any mesh.

A model is any object with
  init(rng) -> params                       (leaves may be `nn.LogicallyPartitioned` boxes)
  loss(params, batch, rng) -> (loss, {name: scalar})   training mode, dropout from rng
  eval_metrics(params, batch) -> {name: array}          sums that add up across batches
Params handed to `loss` and `eval_metrics` are unboxed arrays. Batches are dicts of arrays with
a leading batch dimension (this process's share of the global batch).

A model whose loss is a mean over a number of items that varies between batches (T5: the
target tokens that are not padding) names the metric holding that count in `loss_weight_key`.

State is created directly with its final sharding (nothing is materialised twice), and one
jitted step per configuration updates it in place (the state is donated). Gradient
accumulation runs microbatches through `lax.scan` and equals one step on the whole batch: the
loss, the gradients and the metrics are the microbatches' means weighted by their
`loss_weight_key` count (which itself is summed), or plain means when the model has none (its
loss is a mean over equal-sized microbatches).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from suite import partition


class Model(Protocol):
  """What the training core needs from a domain's model wrapper (text, vision)."""

  def init(self, rng: jax.Array) -> Any: ...

  def loss(self, params: Any, batch: dict[str, Any],
           rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]: ...

  def eval_metrics(self, params: Any, batch: dict[str, Any]) -> dict[str, jax.Array]: ...

  # Optional: `loss_weight_key: str | None`, the metric holding the count the loss averages.


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs besides the data position. `rng` is a raw uint32 key."""

  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array


def unbox(tree: Any) -> Any:
  """Strips logical-partitioning boxes without adding sharding constraints."""
  return jax.tree_util.tree_map(
      lambda x: x.unbox(apply_constraint=False) if isinstance(x, nn.meta.AxisMetadata) else x,
      tree, is_leaf=lambda x: isinstance(x, nn.meta.AxisMetadata))


def _as_float(tree: Any) -> Any:
  """Integer and boolean leaves (arrays or shape structs) as float32; float leaves unchanged."""
  def cast(x):
    if jnp.issubdtype(x.dtype, jnp.floating):
      return x
    if isinstance(x, jax.ShapeDtypeStruct):
      return jax.ShapeDtypeStruct(x.shape, jnp.float32)
    return x.astype(jnp.float32)
  return jax.tree_util.tree_map(cast, tree)


def _tree_add(a: Any, b: Any) -> Any:
  return jax.tree_util.tree_map(jnp.add, a, b)


class Trainer:
  """Sharded state creation, train step and evaluation for one model, optimizer and mesh."""

  def __init__(self, model: Model, optimizer: optax.GradientTransformation,
               mesh: Mesh | None = None,
               rules: Sequence[tuple[str, str | None]] = partition.RULES,
               microbatches: int = 1):
    if microbatches < 1:
      raise ValueError(f'microbatches must be >= 1, got {microbatches}')
    self.model = model
    self.optimizer = optimizer
    self.mesh = mesh if mesh is not None else partition.make_mesh()
    self.rules = tuple(rules)
    self.microbatches = microbatches
    self._replicated = partition.replicated(self.mesh)
    self._batch_sharding = partition.batch_sharding(self.mesh)

    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    with self.context():
      boxed = jax.eval_shape(model.init, key)
      self.param_shardings = partition.logical_shardings(boxed, self.mesh, self.rules)
      abstract = jax.eval_shape(self._init_from_params, unbox(boxed), key)
    self.state_shardings = TrainState(
        step=self._replicated,
        params=self.param_shardings,
        opt_state=partition.follow_params(
            abstract.opt_state, abstract.params, self.param_shardings, self.mesh),
        rng=self._replicated)
    self.abstract_state = jax.tree_util.tree_map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
        abstract, self.state_shardings)

    self._init = jax.jit(self._init_from_seed, out_shardings=self.state_shardings)
    self._init_opt_state = jax.jit(
        optimizer.init, in_shardings=(self.param_shardings,),
        out_shardings=self.state_shardings.opt_state)
    self._train_step = jax.jit(
        self._step, in_shardings=(self.state_shardings, self._batch_sharding),
        out_shardings=(self.state_shardings, self._replicated), donate_argnums=(0,))
    self._eval_step = jax.jit(
        model.eval_metrics, in_shardings=(self.param_shardings, self._batch_sharding),
        out_shardings=self._replicated)

  def context(self) -> contextlib.ExitStack:
    """The mesh and logical-axis rules that the model's sharding annotations resolve against."""
    stack = contextlib.ExitStack()
    stack.enter_context(jax.set_mesh(self.mesh))
    stack.enter_context(nn.logical_axis_rules(self.rules))
    return stack

  # State creation.

  def _init_from_params(self, params: Any, key: jax.Array) -> TrainState:
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=self.optimizer.init(params), rng=key)

  def _init_from_seed(self, key: jax.Array) -> TrainState:
    init_key, train_key = jax.random.split(key)
    return self._init_from_params(unbox(self.model.init(init_key)), train_key)

  def init(self, seed: int = 0) -> TrainState:
    """A fresh state (step 0, params from `model.init`), created sharded."""
    with self.context():
      return self._init(jax.random.PRNGKey(seed))

  def init_from_params(self, params: Any, seed: int = 0) -> TrainState:
    """A step-0 state around given params (finetuning from pretrained weights).

    `params` has the structure and shapes of the model's unboxed params. Arrays already on
    the param shardings are copied on device (the train step donates its state, and the
    caller keeps its params); host values (numpy) are placed onto the shardings, each process
    supplying the whole value.
    """
    expected = self.abstract_state.params
    if jax.tree_util.tree_structure(params) != jax.tree_util.tree_structure(expected):
      got = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)}
      want = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(expected)}
      raise ValueError(
          f'params do not match the model: missing {sorted(want - got)[:5]}, '
          f'unexpected {sorted(got - want)[:5]}')

    def place(path, x, target):
      if np.shape(x) != target.shape:
        raise ValueError(f'param {jax.tree_util.keystr(path)} has shape {np.shape(x)}, the '
                         f'model wants {target.shape}')
      if (isinstance(x, jax.Array) and x.sharding == target.sharding
          and x.dtype == target.dtype):
        return x.copy()
      x = np.asarray(jax.device_get(x), dtype=target.dtype)
      return jax.make_array_from_callback(x.shape, target.sharding, lambda idx: x[idx])
    params = jax.tree_util.tree_map_with_path(place, params, expected)
    with self.context():
      opt_state = self._init_opt_state(params)
    rng = jax.device_put(jax.random.split(jax.random.PRNGKey(seed))[1], self._replicated)
    step = jax.device_put(jnp.zeros((), jnp.int32), self._replicated)
    return TrainState(step=step, params=params, opt_state=opt_state, rng=rng)

  # Training.

  def _microbatch(self, x: jax.Array) -> jax.Array:
    """[B, ...] -> [M, B/M, ...], strided so every data shard feeds every microbatch."""
    m = self.microbatches
    x = jnp.swapaxes(x.reshape((x.shape[0] // m, m) + x.shape[1:]), 0, 1)
    return jax.lax.with_sharding_constraint(
        x, NamedSharding(self.mesh, PartitionSpec(None, partition.DATA)))

  def _accumulate(self, grad_fn, params: Any, batch: Any, step_key: jax.Array):
    """(loss, metrics, grads) of the whole batch from its microbatches, in one `lax.scan`.

    Each microbatch's loss, metrics and gradients are weighted by its count under
    `model.loss_weight_key` (1 without one) and the sums divided by the total count: for a
    loss that is a mean over its batch's items this is exactly the whole batch's mean, however
    the items (non-padding tokens) fall between microbatches. The count itself is summed.
    """
    key = getattr(self.model, 'loss_weight_key', None)
    micro = jax.tree_util.tree_map(self._microbatch, batch)

    def body(carry, xs):
      index, mb = xs
      (loss, metrics), grads = grad_fn(params, mb, jax.random.fold_in(step_key, index))
      metrics = _as_float(metrics)  # counts in int32 would truncate when weighted
      weight = jnp.asarray(1.0 if key is None else metrics[key], jnp.float32)
      weighted = jax.tree_util.tree_map(lambda x: x * weight.astype(x.dtype),
                                        (loss, metrics, grads))
      return _tree_add(carry, (*weighted, weight)), None

    first = jax.tree_util.tree_map(lambda x: x[0], micro)
    (loss_s, metrics_s), grads_s = jax.eval_shape(grad_fn, params, first, step_key)
    metrics_s = _as_float(metrics_s)
    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype),
                                   (loss_s, metrics_s, grads_s))
    zeros = (zeros[0], zeros[1], jax.tree_util.tree_map(
        jax.lax.with_sharding_constraint, zeros[2], self.param_shardings),
             jnp.zeros((), jnp.float32))
    (loss, metrics, grads, total), _ = jax.lax.scan(
        body, zeros, (jnp.arange(self.microbatches), micro))
    # A batch with no items at all (total 0) has zero loss and gradients, as a single step has.
    scale = jnp.where(total > 0, 1.0 / jnp.where(total > 0, total, 1.0), 0.0)
    loss, metrics, grads = jax.tree_util.tree_map(lambda x: x * scale.astype(x.dtype),
                                                  (loss, metrics, grads))
    if key is not None:
      metrics = {**metrics, key: total.astype(metrics[key].dtype)}
    return loss, metrics, grads

  def _step(self, state: TrainState, batch: Any) -> tuple[TrainState, dict[str, jax.Array]]:
    step_key = jax.random.fold_in(state.rng, state.step)
    grad_fn = jax.value_and_grad(self.model.loss, has_aux=True)
    if self.microbatches == 1:
      (loss, metrics), grads = grad_fn(state.params, batch, step_key)
    else:
      loss, metrics, grads = self._accumulate(grad_fn, state.params, batch, step_key)
    updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    out = {**metrics, 'loss': loss, 'grad_norm': optax.tree.norm(grads)}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), out

  def train_step(self, state: TrainState,
                 batch: dict[str, Any]) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step on `batch` (this process's share). `state` is donated: use the
    returned one. Metrics are replicated device scalars (fetch them lazily)."""
    partition.check_batch(batch, self.mesh, self.microbatches)
    with self.context():
      return self._train_step(state, partition.shard_batch(batch, self.mesh))

  def lower_train_step(self, state: Any, batch: dict[str, Any]) -> jax.stages.Lowered:
    """The train step lowered for these arguments, for cost analysis or ahead-of-time
    compiling (`.compile()`, then call it like `train_step` on sharded batches). `state` and
    `batch` may be abstract (`abstract_state`, ShapeDtypeStructs)."""
    with self.context():
      return self._train_step.lower(state, partition.shard_batch(batch, self.mesh))

  # Evaluation.

  def eval_batch(self, params: Any, batch: dict[str, Any]) -> dict[str, jax.Array]:
    """`model.eval_metrics` on one batch, sharded; replicated device values."""
    partition.check_batch(batch, self.mesh)
    with self.context():
      return self._eval_step(params, partition.shard_batch(batch, self.mesh))

  def evaluate(self, params: Any, batches: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Sums of `model.eval_metrics` over all `batches`, accumulated in float64 on the host."""
    totals: dict[str, float] = {}
    pending = None
    for batch in batches:
      result = self.eval_batch(params, batch)
      if pending is not None:  # fetch one batch behind, so the device stays busy
        accumulate_sums(totals, partition.to_host(pending))
      pending = result
    if pending is not None:
      accumulate_sums(totals, partition.to_host(pending))
    return totals


def accumulate_sums(totals: dict[str, float], values: dict[str, Any]) -> None:
  """Adds each metric's host values (summed, in float64) into `totals`, in place."""
  for name, value in values.items():
    totals[name] = totals.get(name, 0.0) + float(np.sum(np.asarray(value, np.float64)))
