"""The cost model's training FLOPs agree with XLA's cost analysis of the real T5 train step."""

import jax
import pytest

from suite import costs, optim, partition, shapes, trainer
from suite.domain import ModelOptions
from text import domain

# A deep-narrow and a wide shape, with a small vocabulary so that the layers, not the output
# head, carry the FLOPs (the head is counted too, and checked by the same comparison).
SHAPES = {
    'deep_narrow': shapes.parse('tiny-nl12-dm128-ff512-nh2').replace(vocab_size=512),
    'wide': shapes.parse('tiny-nl2-dm512-ff2000-nh8').replace(vocab_size=512),
    'untied_gated': shapes.parse('t5.1.1-small-nl2-dm256-ff1000').replace(vocab_size=512),
}


@pytest.mark.parametrize('name', sorted(SHAPES))
def test_train_step_flops_match_xla(name):
  shape = SHAPES[name]
  lengths = domain.Lengths(input_length=64, target_length=16)
  batch_size = 8
  model = domain.DOMAIN.build_model(shape, ModelOptions(dtype='float32'))
  tx, _ = optim.make_optimizer(optim.t5_pretrain())
  runner = trainer.Trainer(model, tx, partition.make_mesh())
  state = runner.abstract_state
  batch = domain.synthetic_batch(shape, batch_size, lengths)
  batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=partition.batch_sharding(
      runner.mesh)) for k, v in batch.items()}
  compiled = runner.lower_train_step(state, batch).compile()
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0]
  xla = float(analysis['flops'])
  ours = costs.train_flops_per_example(shape, lengths.input_length, lengths.target_length)
  ratio = xla / (ours * batch_size)
  assert abs(ratio - 1) < 0.02, f'{name}: XLA counts {ratio:.4f}x the cost model'
