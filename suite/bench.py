r"""Train-step throughput of named shapes on synthetic batches, with the method stated.

  python -m suite.bench --domain=text --shapes=base,small-nl16 --batch=64 --steps=20

Prints a JSON list (one item per shape) to stdout; progress goes to stderr. Method: the step is
the real jitted train step (forward, backward, optimizer update) on a device mesh; compile time
is reported separately; `--warmup` steps run before the clock starts; the timed steps are
dispatched back to back and the clock stops when the last result is ready. Model FLOPs come from
suite.costs (matmul FLOPs, forward + backward = 3x forward; the cross-check against XLA's cost
analysis of the compiled step is printed beside them), and MFU divides the achieved model
FLOP/s by the device's dense bf16 peak (suite.devices; CPUs report none).
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import jax
from absl import app, flags, logging

from suite import costs, devices, domains, host_memory, optim, partition, shapes, trainer

FLAGS = flags.FLAGS
flags.DEFINE_string('domain', 'text', 'text | vision.')
flags.DEFINE_list('shapes', ['small'], 'Shape names, e.g. base,small-nl16 or S/16.')
flags.DEFINE_integer('batch', 16, 'Global batch size (examples per step).')
flags.DEFINE_integer('steps', 10, 'Timed steps, after the warm-up.')
flags.DEFINE_integer('warmup', 2, 'Untimed steps after compilation.')
flags.DEFINE_integer('repeats', 3, 'Timed windows of --steps each; the median window counts.')
flags.DEFINE_integer('input_length', 512, 'Text: encoder input tokens per example.')
flags.DEFINE_integer('target_length', 114, 'Text: decoder target tokens per example.')
flags.DEFINE_enum('dtype', 'auto', ['auto', 'float32', 'bfloat16'],
                  'Compute dtype (parameters stay float32). auto: bfloat16 on accelerators, '
                  'float32 on CPU.')
flags.DEFINE_enum('attention', 'auto', ['auto', 'xla', 'cudnn'],
                  "Attention kernel. auto: 'cudnn' on NVIDIA GPUs in bfloat16, 'xla' elsewhere.")
flags.DEFINE_string('remat', 'none', 'Rematerialisation policy of the network.')
flags.DEFINE_bool('scan', False, 'Scan over layers (faster compiles for deep shapes).')
flags.DEFINE_enum('optimizer', 'adafactor', ['adafactor', 'adamw'], 'Optimizer of the step.')
flags.DEFINE_integer('microbatches', 1, 'Gradient-accumulation microbatches per step.')
flags.DEFINE_bool('keep_host_memory', True,
                  'Keep freed host memory in the process (glibc), so that CPU steps do not '
                  'page-fault their buffers anew; applies to the reference run as well. See '
                  'suite/host_memory.py.')
flags.DEFINE_enum('compare', 'none', ['none', 'reference'],
                  "reference: also time the domain's reference implementation (text: "
                  "transformers' PyTorch T5 with AdamW) on the same batch, side by side.")


def _resolve_dtype(name: str, platform: str) -> str:
  if name != 'auto':
    return name
  return 'float32' if platform == 'cpu' else 'bfloat16'


def _resolve_attention(name: str, platform: str, dtype: str) -> str | None:
  """auto: cuDNN's fused attention on GPUs in bfloat16 (it has no float32 kernel), else XLA."""
  if name != 'auto':
    return name
  return 'cudnn' if platform == 'gpu' and dtype == 'bfloat16' else None


def _xla_flops(compiled) -> float | None:
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  return float(analysis['flops']) if analysis and 'flops' in analysis else None


def bench_shape(domain_name: str, name: str, *, batch_size: int, steps: int, warmup: int,
                repeats: int, dtype: str, attention: str | None, remat: str, scan: bool,
                optimizer_name: str, microbatches: int, compare: bool,
                lengths_options: dict) -> dict:
  """One shape's measurement, as the JSON item `suite.bench` prints."""
  domain = domains.get(domain_name)
  shape = shapes.parse(name, domain_name)
  lengths = domain.lengths(**lengths_options)
  info = devices.current()
  model = domain.train_model(shape, dtype=getattr(jax.numpy, dtype), attention_impl=attention,
                             remat_policy=remat, scan_layers=scan)
  config = (optim.t5_pretrain() if optimizer_name == 'adafactor'
            else optim.OptimizerConfig(name='adamw', schedule='constant', learning_rate=1e-4,
                                       warmup_steps=0))
  tx, _ = optim.make_optimizer(config)
  runner = trainer.Trainer(model, tx, partition.make_mesh(), microbatches=microbatches)
  state = runner.init(seed=0)
  host_batch = domain.synthetic_batch(shape, batch_size, lengths, seed=0)
  batch = partition.shard_batch(host_batch, runner.mesh)

  logging.info('%s: compiling the train step (batch %d, %s, attention=%s)', name, batch_size,
               dtype, attention or 'xla')
  start = time.perf_counter()
  compiled = runner.lower_train_step(state, batch).compile()
  compile_s = time.perf_counter() - start
  # XLA's cost analysis counts a loop's body once, not once per iteration: with layers under
  # nn.scan or microbatches under lax.scan its figure is not the step's, so it is left out.
  loops = scan or microbatches > 1
  xla_flops = None if loops else _xla_flops(compiled)

  def run(n: int):
    nonlocal state
    metrics = None
    for _ in range(n):
      state, metrics = compiled(state, batch)
    return jax.block_until_ready(metrics)

  run(warmup)
  windows = []
  for _ in range(repeats):
    start = time.perf_counter()
    metrics = run(steps)
    windows.append((time.perf_counter() - start) / steps)
  step_s = statistics.median(windows)

  flops_example = domain.train_flops_per_example(shape, lengths)
  unit, items = domain.items_per_example(shape, lengths)
  model_tflops = flops_example * batch_size / step_s / 1e12
  peak = info.peak_tflops
  mfu_clause = 'no MFU: no dense peak known for this device'
  if peak:
    mfu_clause = (f'MFU against dense bf16 peak {info.count} x {info.peak_tflops_per_device} = '
                  f'{round(peak, 2)} TFLOP/s')
  result = {  # the plan's fields first, then the measurement
      'name': shapes.display_name(shape), 'domain': domain_name, **shape.fields(),
      'params': costs.params(shape), **lengths.__dict__, 'batch': batch_size,
      'dtype': dtype, 'attention': attention or 'xla', 'optimizer': optimizer_name,
      'device': info.kind, 'devices': info.count, 'host_memory': host_memory.describe(),
      'compile_s': round(compile_s, 3),
      'step_s': step_s, 'step_s_windows': windows, 'steps_per_s': 1.0 / step_s,
      f'{unit}_per_s': items * batch_size / step_s,
      'train_flops_per_example': flops_example,
      'model_tflops_per_s': model_tflops,
      'xla_flops_per_step': xla_flops,
      'xla_over_model_flops': (xla_flops * info.count / (flops_example * batch_size)
                               if xla_flops else None),
      'peak_tflops': peak, 'mfu': devices.mfu(model_tflops, peak),
      'final_loss': float(metrics['loss']),
      'method': '; '.join([
          f'median of {repeats} windows of {steps} steps after {warmup} warm-up steps',
          'compile excluded',
          'model FLOPs = suite.costs train_flops_per_example (matmul FLOPs, 3x forward) x batch',
          *(['no XLA FLOP cross-check: its cost analysis counts a loop body (--scan, '
             '--microbatches) once'] if loops else []),
          mfu_clause]),
  }
  if compare:
    # The reference as its users run it (the allocator's defaults), and, when ours kept freed
    # host memory, under that same setting too: both in fresh processes, side by side.
    runs = [('reference', 'speedup_vs_reference', False)]
    if host_memory.applied():
      runs.append(('reference_same_host_memory', 'speedup_vs_reference_same_host_memory', True))
    for key, speedup_key, keep in runs:
      logging.info('%s: timing the reference implementation (%s)', name, key)
      reference = domain.reference_train_step(shape, host_batch, steps, warmup,
                                              keep_host_memory=keep, repeats=repeats)
      reference[f'{unit}_per_s'] = items * batch_size / reference['step_s']
      result[key] = reference
      result[speedup_key] = reference['step_s'] / step_s
  return result


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]}')
  if FLAGS.keep_host_memory:  # before jax.devices() starts the CPU client's threads
    host_memory.keep_freed_memory()
  platform = jax.devices()[0].platform
  try:
    for name in FLAGS.shapes:
      shapes.parse(name, FLAGS.domain)
    domains.get(FLAGS.domain)
  except (shapes.ShapeError, domains.DomainError) as error:
    sys.exit(f'error: {error}')
  dtype = _resolve_dtype(FLAGS.dtype, platform)
  attention = _resolve_attention(FLAGS.attention, platform, dtype)
  if attention == 'cudnn' and (platform != 'gpu' or dtype != 'bfloat16'):
    sys.exit(f'error: --attention=cudnn needs an NVIDIA GPU and --dtype=bfloat16 (here: '
             f'{platform}, {dtype}); use --attention=xla or --attention=auto.')
  results = []
  for name in FLAGS.shapes:
    results.append(bench_shape(
        FLAGS.domain, name, batch_size=FLAGS.batch, steps=FLAGS.steps, warmup=FLAGS.warmup,
        repeats=FLAGS.repeats, dtype=dtype,
        attention=attention, remat=FLAGS.remat,
        scan=FLAGS.scan, optimizer_name=FLAGS.optimizer, microbatches=FLAGS.microbatches,
        compare=FLAGS.compare == 'reference',
        lengths_options={'input_length': FLAGS.input_length,
                         'target_length': FLAGS.target_length}))
    logging.info('%s', json.dumps(results[-1]))
  print(json.dumps(results, indent=1))


if __name__ == '__main__':
  app.run(main)
