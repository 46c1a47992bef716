"""The train state and the jitted, sharded train step, for any model and any mesh.

A model (the `Model` protocol; a domain builds one from a Shape) has
  init(rng) -> params                        (leaves may be `nn.LogicallyPartitioned` boxes)
  loss(params, batch, rng) -> (loss, {name: scalar})    training mode, dropout from rng
  example_metrics(params, batch) -> {name: [batch]}     per-example values the core sums
  predict(params, batch, **options) -> arrays [batch, ...]   decoding, logits, features
  loss_weight_key: str | None
Params handed to them are unboxed arrays. Batches are dicts of arrays with a leading batch
dimension (this process's share of the global batch). Evaluation (weighted sums over padded
batches, predict under the mesh) is `suite.evaluation.EvalSteps`, which a Trainer holds as
`eval_steps`, bound to the trainer's mesh and parameter shardings.

A model whose loss is a mean over a number of items that varies between batches (a text
model's non-padding target tokens) names the metric holding that count in `loss_weight_key`;
a model whose loss is a mean over examples sets it to None.

State is created directly with its final sharding (nothing is materialised twice), and one
jitted step per configuration updates it in place (the state is donated). Gradient
accumulation runs microbatches through `lax.scan` and equals one step on the whole batch: the
loss, the gradients and the metrics are the microbatches' means weighted by their
`loss_weight_key` count (which itself is summed), or plain means when the model has none (its
loss is a mean over equal-sized microbatches).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any, Protocol

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from suite import partition
from suite.evaluation import EvalModel, EvalSteps, check_structure


class Model(EvalModel, Protocol):
  """What the training core needs from a domain's model wrapper (text, vision)."""

  # The metric of `loss` holding the count its loss averages over (None: examples, equal in
  # every microbatch); gradient accumulation weights microbatches by it.
  loss_weight_key: str | None

  def loss(self, params: Any, batch: dict[str, Any],
           rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]: ...


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


def abstract_params(model: EvalModel, mesh: Mesh,
                    rules: partition.Rules = partition.RULES) -> Any:
  """The model's unboxed params as ShapeDtypeStructs carrying their shardings on `mesh`."""
  key = jax.ShapeDtypeStruct((2,), jnp.uint32)
  with jax.set_mesh(mesh), nn.logical_axis_rules(tuple(rules)):
    boxed = jax.eval_shape(model.init, key)
  shardings = partition.logical_shardings(boxed, mesh, rules)
  return jax.tree_util.tree_map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), unbox(boxed), shardings)


def eval_steps(model: EvalModel, mesh: Mesh | None = None,
               rules: partition.Rules = partition.RULES) -> EvalSteps:
  """Evaluation steps for a model without a Trainer (scoring given params): the shardings are
  those a Trainer on the same mesh and rules gives its params."""
  mesh = mesh if mesh is not None else partition.make_mesh()
  return EvalSteps(model, mesh, rules, abstract_params(model, mesh, rules))


class Trainer:
  """Sharded state creation, train step and evaluation for one model, optimizer and mesh."""

  def __init__(self, model: Model, optimizer: optax.GradientTransformation,
               mesh: Mesh | None = None,
               rules: partition.Rules = partition.RULES,
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

    params = abstract_params(model, self.mesh, self.rules)
    self.param_shardings = jax.tree_util.tree_map(lambda x: x.sharding, params)
    with self.context():
      abstract = jax.eval_shape(self._init_from_params, params,
                                jax.ShapeDtypeStruct((2,), jnp.uint32))
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
    # Evaluation and predict, bound to this mesh and these parameter shardings.
    self.eval_steps = EvalSteps(model, self.mesh, self.rules, self.abstract_state.params)

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
    check_structure(params, expected)

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
    """[B, ...] -> [M, B/M, ...], strided so every batch slice feeds every microbatch."""
    m = self.microbatches
    x = jnp.swapaxes(x.reshape((x.shape[0] // m, m) + x.shape[1:]), 0, 1)
    return jax.lax.with_sharding_constraint(
        x, NamedSharding(self.mesh, PartitionSpec(None, partition.BATCH_AXES)))

  def _accumulate(self, grad_fn, params: Any, batch: Any, step_key: jax.Array):
    """(loss, metrics, grads) of the whole batch from its microbatches, in one `lax.scan`.

    Each microbatch's loss, metrics and gradients are weighted by its count under
    `model.loss_weight_key` (1 without one) and the sums divided by the total count: for a
    loss that is a mean over its batch's items this is exactly the whole batch's mean, however
    the items (non-padding tokens) fall between microbatches. The count itself is summed.
    """
    key = self.model.loss_weight_key
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

  # Evaluation (suite.evaluation.EvalSteps on this trainer's mesh and param shardings).

  def evaluate(self, params: Any, batches: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Weighted sums of `model.example_metrics` over `batches` (padded to one fixed size with
    zero-weight rows), accumulated in float64 on the host."""
    return self.eval_steps.sums(params, batches)

  def predict(self, params: Any, batch: dict[str, Any], **options: Any) -> Any:
    """`model.predict` on this process's rows of `batch`, jitted on the mesh; numpy out."""
    return self.eval_steps.predict(params, batch, **options)
