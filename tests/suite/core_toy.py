"""A tiny Flax classifier implementing the training-core model protocol, and its data.

Parameters carry logical axis names ('embed', 'mlp', 'classes') and the hidden activation a
('batch', 'mlp') constraint, so a ('data', 'model') mesh really shards it. Data: Gaussian
features labelled by a fixed random linear teacher; batch i is a pure function of (seed, i).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax


class MLP(nn.Module):
  hidden: int
  classes: int
  dropout: float

  @nn.compact
  def __call__(self, x, train: bool):
    init = nn.initializers.lecun_normal()
    h = nn.Dense(self.hidden, kernel_init=nn.with_logical_partitioning(init, ('embed', 'mlp')),
                 bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ('mlp',)))(x)
    h = nn.with_logical_constraint(nn.relu(h), ('batch', 'mlp'))
    h = nn.Dropout(self.dropout, deterministic=not train)(h)
    return nn.Dense(
        self.classes, kernel_init=nn.with_logical_partitioning(init, ('mlp', 'classes')),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ('classes',)))(h)


class ToyModel:
  """init / loss / example_metrics / predict as the training core expects them."""

  loss_weight_key = None  # the loss is a mean over examples

  def __init__(self, features: int = 8, hidden: int = 32, classes: int = 4,
               dropout: float = 0.0):
    self.features = features
    self.net = MLP(hidden=hidden, classes=classes, dropout=dropout)

  def init(self, rng):
    return self.net.init({'params': rng}, jnp.zeros((1, self.features)), train=False)['params']

  def loss(self, params, batch, rng):
    logits = self.net.apply({'params': params}, batch['x'], train=True, rngs={'dropout': rng})
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch['y'])
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch['y'])
    return jnp.mean(losses), {'accuracy': accuracy}

  def example_metrics(self, params, batch):
    logits = self.net.apply({'params': params}, batch['x'], train=False)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch['y'])
    return {'loss_sum': losses, 'correct': jnp.argmax(logits, -1) == batch['y'],
            'count': jnp.ones_like(losses)}

  def predict(self, params, batch, top: int = 1):
    """The `top` most likely classes of each example, most likely first."""
    logits = self.net.apply({'params': params}, batch['x'], train=False)
    return jnp.argsort(-logits, axis=-1)[:, :top]


def summarize(sums):
  return {'loss': sums['loss_sum'] / sums['count'], 'accuracy': sums['correct'] / sums['count']}


def make_batch(index: int, batch_size: int = 16, features: int = 8, classes: int = 4,
               seed: int = 0) -> dict[str, np.ndarray]:
  teacher = np.random.default_rng(seed).normal(size=(features, classes))
  x = np.random.default_rng((seed, index)).normal(size=(batch_size, features)).astype(np.float32)
  return {'x': x, 'y': np.argmax(x @ teacher, -1).astype(np.int32)}


def batches(start: int = 0, batch_size: int = 16, seed: int = 0):
  """The infinite stream from batch `start` on (a `train_data` factory)."""
  index = start
  while True:
    yield make_batch(index, batch_size, seed=seed)
    index += 1


def param_leaves(state) -> list[np.ndarray]:
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.device_get(state.params))]
