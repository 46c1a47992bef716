"""The training-memory estimate against XLA's memory analysis of the real compiled train step.

Imported by tests/suite/test_memory_xla.py for one device, and run as a script in a process
with 8 CPU devices (`XLA_FLAGS=--xla_force_host_platform_device_count=8`): it measures every
case on `MESH` and prints one JSON object, {case name: measurement}.

What is compared: XLA's bytes per device for the step, `argument + output - alias + temp`
(`compiled.memory_analysis()`): the arguments (parameters, optimizer state, batch) live
throughout, the outputs that do not reuse a donated argument's buffer (metrics) are added,
the donated state's outputs (`alias`) are counted once, and `temp` is XLA's packed heap of
everything else (activations, gradients, working buffers, and its packing's fragmentation).
XLA CPU's `peak_memory_in_bytes` reports about the arguments only, so it is not used.
The executable is compiled at LLVM optimisation level 0: the memory analysis comes from XLA's
buffer assignment, which that level does not change, and compiling takes half the time.
"""

from __future__ import annotations

import json
import math
import sys

import jax
import numpy as np

from suite import costs, domains, optim, partition, shapes, trainer
from suite.domain import ModelOptions

MESH = 'data:2,fsdp:2,model:2'
BATCH = 16
# Shapes where activations are most of the memory (so the check is about them), with
# dimensions that every mesh axis divides (heads and the vocabulary over model, d_model over
# fsdp), small enough to compile in seconds.
SHAPES = {
    'text': (shapes.parse('tiny-nl2-dm128-ff512-nh4').replace(d_kv=32, vocab_size=256),
             {'input_length': 64, 'target_length': 16}),
    'vision': (shapes.parse('Ti/16').replace(
        image_size=32, patch_size=4, num_encoder_layers=2, d_model=128, d_ff=512, num_heads=4,
        d_kv=32, num_classes=10), {}),
}
# Without remat, layers unrolled (XLA CPU runs rematerialised layers only under scan: for
# unrolled layers it schedules every recomputation ahead of the backward pass); with full
# remat, layers under nn.scan.
OPTIONS = {'none': ModelOptions(dtype='float32', attention='xla', scan=False, remat='none'),
           'full': ModelOptions(dtype='float32', attention='xla', scan=True, remat='full')}
CASES = tuple(f'{domain}/{remat}' for domain in SHAPES for remat in OPTIONS)


def _bytes_per_device(tree) -> int:
  """Bytes one device holds of an abstract tree whose leaves carry shardings."""
  return sum(math.prod(x.sharding.shard_shape(x.shape)) * np.dtype(x.dtype).itemsize
             for x in jax.tree.leaves(tree))


def measure(case: str, mesh_text: str | None = None) -> dict:
  """Compiles `case`'s train step on `mesh_text` (None: every device on data) and returns the
  estimate's and XLA's bytes per device, with the parameters and optimizer state as the
  trainer shards them."""
  domain_name, remat = case.split('/')
  domain = domains.get(domain_name)
  shape, workload = SHAPES[domain_name]
  options = OPTIONS[remat]
  config = next(iter(domain.optimizers.values()))()
  tx, _ = optim.make_optimizer(config)
  mesh = partition.make_mesh(mesh_text)
  runner = trainer.Trainer(domain.build_model(shape, options), tx, mesh,
                           rules=domain.logical_axis_rules)
  host = domain.synthetic_batch(shape, domain.workload(shape, **workload), BATCH, seed=0)
  batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=partition.batch_sharding(mesh))
           for k, v in host.items()}
  lowered = runner.lower_train_step(runner.abstract_state, batch)
  analysis = lowered.compile({'xla_backend_optimization_level': 0}).memory_analysis()
  xla = (analysis.argument_size_in_bytes + analysis.output_size_in_bytes
         - analysis.alias_size_in_bytes + analysis.temp_size_in_bytes)
  estimate = costs.train_memory(
      shape, BATCH, config.name, activation_dtype=options.dtype, remat=options.remat,
      scan=options.scan, attention=options.attention, mesh=dict(mesh.shape),
      rules=domain.logical_axis_rules, **workload)
  return {'xla_bytes': int(xla), 'temp_bytes': int(analysis.temp_size_in_bytes),
          'estimate': estimate.as_dict(), 'ratio': estimate.total_bytes / xla,
          'params_bytes': _bytes_per_device(runner.abstract_state.params),
          'optimizer_bytes': _bytes_per_device(runner.abstract_state.opt_state),
          'param_leaves': len(jax.tree.leaves(runner.abstract_state.params)),
          'mesh': dict(mesh.shape)}


if __name__ == '__main__':
  print(json.dumps({case: measure(case, MESH) for case in (sys.argv[1:] or CASES)}))
