"""Run as a script: T5 training on each mesh named in argv (`suite.partition` mesh text).

Prints one JSON object: per mesh and shape, the losses, gradient norms, final params and the
layout of the embedding table. tests/text/test_sharding.py launches it on a 1-device CPU
platform (mesh `data:1`) and, with XLA_FLAGS=--xla_force_host_platform_device_count=8, on the
meshes `data:8` and `data:2,fsdp:2,model:2`, and compares them.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from suite import optim, partition, shapes  # noqa: E402
from suite.trainer import Trainer  # noqa: E402
from text import domain, t5  # noqa: E402

STEPS = 3
# Tied (v1.0 scaling of the logits) and untied gated-GELU: 2 heads and a vocabulary of 64, so
# heads, FFN and vocabulary all split over a 2-way model axis, d_model over a 2-way fsdp one.
SHAPES = {
    'tied': shapes.Shape(num_encoder_layers=2, num_decoder_layers=1, d_model=16, d_ff=32,
                         num_heads=2, d_kv=8, vocab_size=64, activation='relu',
                         tie_embeddings=True),
    'untied': shapes.Shape(num_encoder_layers=1, num_decoder_layers=2, d_model=16, d_ff=32,
                           num_heads=2, d_kv=8, vocab_size=64, activation='gated-gelu',
                           tie_embeddings=False),
}


def train(shape, mesh):
  model = t5.build(shape, dropout_rate=0.1,  # same dropout masks on every mesh
                   z_loss=1e-4, label_smoothing=0.1)
  config = optim.OptimizerConfig(name='adamw', schedule='constant', learning_rate=1e-2,
                                 warmup_steps=0)
  tx, _ = optim.make_optimizer(config)
  trainer = Trainer(model, tx, mesh=mesh, rules=domain.LOGICAL_AXIS_RULES)
  state = trainer.init(seed=0)
  lengths = domain.lengths(input_length=12, target_length=6)
  batch = domain.synthetic_batch(shape, 8, lengths, seed=0)
  losses, norms = [], []
  for _ in range(STEPS):
    state, metrics = trainer.train_step(state, batch)
    metrics = partition.to_host(metrics)
    losses.append(float(metrics['loss']))
    norms.append(float(metrics['grad_norm']))
  table = state.params['token_embedder']
  return {
      'losses': losses,
      'grad_norms': norms,
      'params': [np.asarray(x).ravel().tolist() for x in jax.tree_util.tree_leaves(
          jax.device_get(state.params))],
      'embedder_spec': [str(a) for a in table.sharding.spec],
      'embedder_shard_shape': list(table.addressable_shards[0].data.shape),
  }


def main():
  out = {}
  for text in sys.argv[1:]:
    mesh = partition.make_mesh(text)
    out[text] = {name: train(shape, mesh) for name, shape in SHAPES.items()}
    out[text]['mesh'] = dict(mesh.shape)
  print(json.dumps(out))


if __name__ == '__main__':
  main()
