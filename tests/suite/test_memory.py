"""The training-memory model's parts against what they model, without compiling anything:
logical axes against the networks' own parameter trees, the sharding arithmetic against flax's
rules, the optimizer state against optax's for every preset of every domain, and the
activation tables against the residuals JAX saves for one layer. The whole estimate against
XLA's memory analysis is tests/suite/test_memory_xla.py."""

import collections
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax._src.ad_checkpoint import saved_residuals  # what print_saved_residuals lists

from suite import costs, domains, memory, optim, partition, shapes, trainer
from suite import domain as domain_module
from suite.domain import ModelOptions
from suite.network_options import REMAT_POLICIES
from text import network as text_network
from vision import network as vision_network

SHAPES = {
    'T5 v1.0': shapes.parse('tiny-nl2-dm64-ff96-nh2').replace(d_kv=16, vocab_size=48),
    'T5.1.1': shapes.parse('t5.1.1-small-nl2-dm64-ff96-nh2').replace(d_kv=16, vocab_size=48),
    'ViT cls': shapes.parse('Ti/16').replace(image_size=16, patch_size=4, num_encoder_layers=2,
                                             d_model=64, d_ff=96, num_heads=2, d_kv=16),
    'ViT map': shapes.parse('Ti/16').replace(image_size=16, patch_size=4, num_encoder_layers=2,
                                             d_model=64, d_ff=96, num_heads=2, d_kv=16,
                                             pooling='map', posemb='sincos2d'),
}
MESHES = ({'data': 2, 'fsdp': 2, 'model': 2}, {'data': 1, 'fsdp': 4, 'model': 2},
          {'data': 8, 'fsdp': 1, 'model': 1}, {'data': 1, 'fsdp': 3, 'model': 5})


def _boxed_params(shape):
  model = domains.get(shape.domain).build_model(shape, ModelOptions(scan=False))
  return jax.eval_shape(model.init, jax.random.PRNGKey(0))


@pytest.mark.parametrize('name', sorted(SHAPES))
def test_tensor_axes_are_the_networks(name):
  """Every parameter tensor has the shape and logical axis names the network gives it."""
  shape = SHAPES[name]
  boxes = jax.tree.leaves(_boxed_params(shape),
                          is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
  network = collections.Counter((tuple(b.value.shape), tuple(b.names)) for b in boxes)
  ours = collections.Counter()
  for t in costs.parameter_tensors(shape):
    ours[(t.shape, t.axes)] += t.count
  assert ours == network


@pytest.mark.parametrize('domain', shapes.DOMAINS)
def test_mesh_axes_follow_flax(domain):
  """The pure resolver assigns mesh axes as flax's logical_to_mesh_axes does, for every
  parameter and activation axis tuple of the domain under its own rules."""
  rules = domains.get(domain).logical_axis_rules
  shape = next(s for s in SHAPES.values() if s.domain == domain)
  costs_of = costs.family(shape)
  acts = costs_of.activations(shape, costs_of.tensors(shape),
                              *costs_of.lengths(costs.DEFAULT_INPUT_LENGTH, 8))
  records = [*acts.other, *acts.logits]
  for layer in acts.layers:
    records += [*layer.inputs, *layer.residuals, *layer.projections, *layer.batched]
  axes = {t.axes for t in costs_of.tensors(shape)} | {('batch', *a.axes) for a in records}
  for names in sorted(axes, key=str):
    flax_spec = nn.logical_to_mesh_axes(names, rules)
    expected = [() if s is None else (s,) if isinstance(s, str) else tuple(s)
                for s in flax_spec]
    assert memory.mesh_axes(names, rules) == expected, names


def test_shard_shape_replicates_what_the_mesh_does_not_divide():
  rules = domains.get(shapes.TEXT).logical_axis_rules
  mesh = {'data': 2, 'fsdp': 2, 'model': 2}
  assert memory.shard_shape((1079, 64), ('vocab', 'embed'), mesh, rules) == (1079, 32)
  assert memory.shard_shape((64, 6, 16), ('embed', 'heads', 'kv'), mesh, rules) == (32, 3, 16)
  assert memory.shard_shape((64, 5, 16), ('embed', 'heads', 'kv'), mesh, rules) == (32, 5, 16)
  assert memory.batch_shards(12, mesh, rules) == 4
  with pytest.raises(ValueError, match='batch_size=6 .* multiple of 4'):
    costs.train_memory(shapes.parse('small'), 6, mesh=mesh, rules=rules)


@pytest.mark.parametrize('mesh', MESHES, ids=str)
@pytest.mark.parametrize('name', sorted(SHAPES))
def test_parameter_shares_are_the_partitioners(name, mesh):
  """Per-device parameter bytes equal the shards the partitioner's own rules give
  (`jax.sharding.NamedSharding.shard_shape` on an abstract mesh of that size)."""
  shape = SHAPES[name]
  domain = domains.get(shape.domain)
  abstract = jax.sharding.AbstractMesh(tuple(mesh.values()), tuple(mesh))
  boxed = _boxed_params(shape)
  shardings = partition.logical_shardings(boxed, abstract, domain.logical_axis_rules)
  held = sum(4 * math.prod(s.shard_shape(x.shape)) for x, s in
             zip(jax.tree.leaves(trainer.unbox(boxed)), jax.tree.leaves(shardings),
                 strict=True))
  estimate = costs.train_memory(shape, 8 * 15, 'adamw', mesh=mesh,
                                rules=domain.logical_axis_rules, target_length=8)
  assert estimate.params_bytes == held
  assert estimate.optimizer_bytes == 2 * held


def _presets():
  for domain_name in shapes.DOMAINS:
    for preset in domains.get(domain_name).optimizers.values():
      yield domain_name, preset


@pytest.mark.parametrize('domain_name,preset', list(_presets()),
                         ids=lambda p: getattr(p, '__name__', p))
def test_optimizer_state_is_optaxs(domain_name, preset):
  """Every optimizer preset of every domain: the estimate's optimizer bytes are the real
  optax state's bytes (dtype included), up to optax's counters and placeholders."""
  shape = next(s for s in SHAPES.values() if s.domain == domain_name)
  config = preset()
  assert config.name in costs.OPTIMIZERS
  params = trainer.unbox(_boxed_params(shape))
  tx, _ = optim.make_optimizer(config)
  state = jax.eval_shape(tx.init, params)
  real = sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(state))
  estimate = costs.train_memory(shape, 1, config.name, target_length=8).optimizer_bytes
  assert 0 <= real - estimate <= 8 * len(jax.tree.leaves(params)) + 64, (real, estimate)


def test_registries_agree():
  """The estimate's names for optimizers, remat policies and attention kernels are the
  training core's (suite.costs imports no jax, so it cannot import them)."""
  assert set(costs.OPTIMIZERS) == set(optim.OPTIMIZERS)
  assert set(costs.REMAT_POLICIES) == set(REMAT_POLICIES)
  assert set(costs.ATTENTION_KERNELS) == set(domain_module.ATTENTION_KERNELS)


# --- Activation tables against JAX's saved residuals of one layer ---------------------------

D, FF, HEADS, KV = 256, 1024, 4, 64
LAYERS = {
    'T5 encoder (relu)': ('text', 'relu', False),
    'T5 decoder (relu)': ('text', 'relu', True),
    'T5.1.1 encoder (gated)': ('text', 'gated-gelu', False),
    'ViT block': ('vision', 'gelu', False),
}
INPUTS, TARGETS, TOKENS = 64, 32, 17


def _layer_step(kind: str, batch: int, dtype, policy: str):
  """(shape, f, args) of one layer's summed output, whose residuals JAX saves for its gradient
  (args abstract: nothing runs)."""
  domain, activation, decoder = LAYERS[kind]
  x_len = TOKENS if domain == 'vision' else TARGETS if decoder else INPUTS
  if domain == 'vision':
    shape = shapes.parse('Ti/16').replace(d_model=D, d_ff=FF, num_heads=HEADS, d_kv=KV,
                                          image_size=64)  # 16 patches and a class token
    layer = vision_network.Block(shape, dtype=dtype)

    def extra(_):
      return ()
  else:
    shape = shapes.Shape(2, 2, D, FF, HEADS, KV, activation=activation)
    layer = text_network.Layer(shape, cross_attention=decoder, dtype=dtype)

    def extra(encoded):  # the encoder's output is differentiable, as in the network
      bias = jnp.ones((1, HEADS, x_len, x_len), dtype)
      valid = jnp.ones((batch, INPUTS), bool)
      return (bias, None, encoded, valid, 0) if decoder else (bias, valid, None, None, 0)

  def f(params, x, encoded):
    return jnp.sum(layer.apply(params, x, *extra(encoded))[0].astype(jnp.float32))

  x = jax.ShapeDtypeStruct((batch, x_len, D), dtype)
  encoded = jax.ShapeDtypeStruct((batch, INPUTS, D), dtype)
  params = jax.eval_shape(lambda key, x, e: layer.init(key, x, *extra(e)),
                          jax.ShapeDtypeStruct((2,), jnp.uint32), x, encoded)
  if policy != 'none':
    f = jax.checkpoint(f, policy=REMAT_POLICIES[policy])
  return shape, f, (params, x, encoded)


def _saved_bytes(f, args) -> int:
  return sum(math.prod(aval.shape) * aval.dtype.itemsize
             for aval, where in saved_residuals(f, *args)
             if not where.startswith(('from the argument', 'from a literal', 'from a constant')))


@pytest.mark.parametrize('policy', REMAT_POLICIES)
@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
@pytest.mark.parametrize('kind', sorted(LAYERS))
def test_layer_tables_match_jax_residuals(kind, dtype, policy):
  """Per example (batch 2 minus batch 1), the table's residuals of a layer under scan equal
  JAX's saved residuals: exactly what each remat policy keeps; within 15% without remat (the
  tables leave out per-token statistics, a ReLU's mask, and the cross-attention's reshaped
  encoder outputs, which scan hoists out of the loop). Per layer (batch-independent), the
  weight copies the matmuls read."""
  shape, f1, args1 = _layer_step(kind, 1, getattr(jnp, dtype), policy)
  _, f2, args2 = _layer_step(kind, 2, getattr(jnp, dtype), policy)
  one, two = _saved_bytes(f1, args1), _saved_bytes(f2, args2)
  jax_example, jax_layer = two - one, 2 * one - two
  family = costs.family(shape)
  acts = family.activations(shape, family.tensors(shape),
                            *family.lengths(INPUTS, TARGETS))
  layer = acts.layers[1] if LAYERS[kind][2] else acts.layers[0]
  compute = memory.DTYPE_BYTES[dtype]
  if policy == 'none':
    ours = memory.activation_bytes(layer.residuals, 1, compute, {}, (), scan=True)
    assert ours == pytest.approx(jax_example, rel=0.15)
    weights = memory.weight_copy_bytes(layer, compute, {}, (), matrices_only=compute == 4)
    assert weights == pytest.approx(jax_layer, rel=0.01)
  else:
    kept = [a for a in layer.kept(policy) if a not in layer.inputs]
    assert memory.activation_bytes(kept, 1, compute, {}, ()) == jax_example
    assert jax_layer == 0


def test_estimate_options_move_it_the_right_way():
  base = shapes.parse('base')
  rules = domains.get(shapes.TEXT).logical_axis_rules
  plain = costs.train_memory(base, 32)
  assert costs.train_memory(base, 32, remat='full', scan=True).total_bytes < (
      costs.train_memory(base, 32, remat='dots_no_batch', scan=True).total_bytes) < (
      costs.train_memory(base, 32, remat='dots', scan=True).total_bytes) < plain.total_bytes
  fused = costs.train_memory(base, 32, attention='cudnn')
  assert fused.activations_bytes < plain.activations_bytes
  sharded = costs.train_memory(base, 32, mesh={'data': 2, 'fsdp': 2, 'model': 2}, rules=rules)
  assert sharded.devices == 8 and sharded.mesh == {'data': 2, 'fsdp': 2, 'model': 2}
  assert plain.params_bytes / 4.5 < sharded.params_bytes < plain.params_bytes / 3.5
  assert sharded.activations_bytes < plain.activations_bytes / 4
  with pytest.raises(ValueError, match="logical-axis rules"):
    costs.train_memory(base, 32, mesh={'data': 2, 'fsdp': 2, 'model': 2})
  with pytest.raises(ValueError, match='remat=.*valid policies'):
    costs.train_memory(base, 32, remat='some')
  with pytest.raises(ValueError, match='attention=.*valid kernels'):
    costs.train_memory(base, 32, attention='flash')
