r"""Train-step throughput of named shapes on synthetic batches, with the method stated.

  python -m suite.bench --domain=text --shapes=base,small-nl16 --batch=64 --steps=20

The domain (text, vision) is reached through the `suite.domain.Domain` contract alone: it
builds the model, states the workload (its sizes become flags here: text --input_length and
--target_length), makes the synthetic batches, names the optimizer presets and times the
reference implementation.

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
import time
from collections.abc import Mapping
from typing import Any

import jax
from absl import flags, logging

from suite import costs, devices, domains, flagcheck, host_memory, optim, partition, shapes, trainer
from suite.domain import Domain, ModelOptions, Workload, WorkloadOption
from suite.domain import optimizer as domain_optimizer
from suite.network_options import REMAT_POLICIES

FLAGS = flags.FLAGS
flags.DEFINE_string('domain', shapes.TEXT, ' | '.join(domains.DOMAIN_MODULES) + '.')
flags.DEFINE_list('shapes', ['small'], 'Shape names, e.g. base,small-nl16 or S/16.')
flags.DEFINE_integer('batch', 16, 'Global batch size (examples per step); a multiple of the '
                     'devices x --microbatches.', lower_bound=1)
flags.DEFINE_integer('steps', 10, 'Timed steps, after the warm-up.', lower_bound=1)
flags.DEFINE_integer('warmup', 2, 'Untimed steps after compilation.', lower_bound=0)
flags.DEFINE_integer('repeats', 3, 'Timed windows of --steps each; the median window counts.',
                     lower_bound=1)
flags.DEFINE_enum('dtype', 'auto', ['auto', 'float32', 'bfloat16'],
                  'Compute dtype (parameters stay float32). auto: bfloat16 on accelerators, '
                  'float32 on CPU.')
flags.DEFINE_enum('attention', 'auto', ['auto', 'xla', 'cudnn'],
                  "Attention kernel. auto: 'cudnn' on NVIDIA GPUs in bfloat16, 'xla' elsewhere.")
flags.DEFINE_enum('remat', 'none', list(REMAT_POLICIES), 'Rematerialisation policy of the network.')
flags.DEFINE_bool('scan', False, 'Scan over layers (faster compiles for deep shapes).')
flags.DEFINE_string('optimizer', None,
                    "The domain's optimizer preset (default: its first): " + '; '.join(
                        f'{d}: {", ".join(domains.get(d).optimizers)}'
                        for d in domains.available()) + '.')
flags.DEFINE_integer('microbatches', 1, 'Gradient-accumulation microbatches per step.',
                     lower_bound=1)
flags.DEFINE_bool('keep_host_memory', True,
                  'Keep freed host memory in the process (glibc), so that CPU steps do not '
                  'page-fault their buffers anew; applies to the reference run as well. See '
                  'suite/host_memory.py.')
flags.DEFINE_enum('compare', 'none', ['none', 'reference'],
                  "reference: also time the domain's reference implementation (Hugging Face "
                  "transformers' PyTorch model with AdamW) on the same batch, side by side.")


def _define_workload_flags() -> dict[str, WorkloadOption]:
  """One integer flag (>= 1) per workload size of the available domains."""
  defined: dict[str, WorkloadOption] = {}
  for name in domains.available():
    for option in domains.get(name).workload_options:
      if option.name in defined:
        if defined[option.name].default != option.default:
          raise ValueError(f'domains disagree on the default of --{option.name}: '
                           f'{defined[option.name].default} and {option.default}')
        continue
      flags.DEFINE_integer(option.name, option.default, option.help, lower_bound=1)
      defined[option.name] = option
  return defined


WORKLOAD_FLAGS = _define_workload_flags()


def _resolve_dtype(name: str, platform: str) -> str:
  if name != 'auto':
    return name
  return 'float32' if platform == 'cpu' else 'bfloat16'


def _resolve_attention(name: str, platform: str, dtype: str) -> str:
  """auto: cuDNN's fused attention on GPUs in bfloat16 (it has no float32 kernel), else XLA."""
  if name != 'auto':
    return name
  return 'cudnn' if platform == 'gpu' and dtype == 'bfloat16' else 'xla'


def _xla_flops(compiled) -> float | None:
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  return float(analysis['flops']) if analysis and 'flops' in analysis else None


def _build(domain: Domain, shape: shapes.Shape, options: ModelOptions, optimizer_name: str,
           microbatches: int) -> tuple[trainer.Trainer, Any]:
  """The domain's model and optimizer preset in a Trainer on all devices, and a fresh state."""
  model = domain.build_model(shape, options)
  tx, _ = optim.make_optimizer(domain_optimizer(domain, optimizer_name))
  runner = trainer.Trainer(model, tx, partition.make_mesh(), rules=domain.logical_axis_rules,
                           microbatches=microbatches)
  return runner, runner.init(seed=0)


def _compile(runner: trainer.Trainer, state: Any, batch: Any) -> tuple[Any, float]:
  """The train step compiled ahead of time for these arguments, and the seconds it took."""
  start = time.perf_counter()
  compiled = runner.lower_train_step(state, batch).compile()
  return compiled, time.perf_counter() - start


def _time(compiled: Any, state: Any, batch: Any, steps: int, warmup: int,
          repeats: int) -> tuple[list[float], dict]:
  """(seconds per step of each timed window, the last step's metrics): `warmup` untimed steps,
  then `repeats` windows of `steps` steps dispatched back to back."""
  def run(n: int):
    nonlocal state
    metrics = None
    for _ in range(n):
      state, metrics = compiled(state, batch)
    return jax.block_until_ready(metrics)

  run(warmup)
  windows = []
  metrics = None
  for _ in range(repeats):
    start = time.perf_counter()
    metrics = run(steps)
    windows.append((time.perf_counter() - start) / steps)
  return windows, partition.to_host(metrics)


def _record(domain_name: str, label: str, shape: shapes.Shape, workload: Workload,
            options: ModelOptions,
            optimizer_name: str, batch_size: int, compile_s: float, windows: list[float],
            metrics: dict, xla_flops: float | None, loops: bool, steps: int, warmup: int,
            repeats: int) -> dict:
  """The JSON item of one measurement: the plan's fields first, then the measurement."""
  info = devices.current()
  step_s = statistics.median(windows)
  flops_example = workload.train_flops_per_example
  model_tflops = flops_example * batch_size / step_s / 1e12
  peak = info.peak_tflops
  mfu_clause = 'no MFU: no dense peak known for this device'
  if peak:
    mfu_clause = (f'MFU against dense bf16 peak {info.count} x {info.peak_tflops_per_device} = '
                  f'{round(peak, 2)} TFLOP/s')
  return {
      'name': label, 'domain': domain_name, **shape.fields(),
      'params': costs.params(shape), **workload.sizes, 'batch': batch_size,
      'dtype': options.dtype, 'attention': options.attention, 'optimizer': optimizer_name,
      'device': info.kind, 'devices': info.count, 'host_memory': host_memory.describe(),
      'compile_s': round(compile_s, 3),
      'step_s': step_s, 'step_s_windows': windows, 'steps_per_s': 1.0 / step_s,
      f'{workload.unit}_per_s': workload.items_per_example * batch_size / step_s,
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


def _compare(domain: Domain, shape: shapes.Shape, workload: Workload, host_batch: dict,
             record: dict, steps: int, warmup: int, repeats: int) -> None:
  """Adds the reference implementation's timings to `record`: as its users run it (the
  allocator's defaults) and, when ours kept freed host memory, under that same setting too;
  both in fresh processes."""
  runs = [('reference', 'speedup_vs_reference', False)]
  if host_memory.applied():
    runs.append(('reference_same_host_memory', 'speedup_vs_reference_same_host_memory', True))
  batch_size = record['batch']
  for key, speedup_key, keep in runs:
    logging.info('%s: timing the reference implementation (%s)', record['name'], key)
    reference = domain.reference_train_step(shape, host_batch, steps=steps, warmup=warmup,
                                            repeats=repeats, keep_host_memory=keep)
    reference[f'{workload.unit}_per_s'] = (workload.items_per_example * batch_size
                                           / reference['step_s'])
    record[key] = reference
    record[speedup_key] = reference['step_s'] / record['step_s']


def bench_shape(domain_name: str, name: str, *, batch_size: int, steps: int, warmup: int,
                repeats: int, options: ModelOptions, optimizer_name: str | None,
                microbatches: int, compare: bool, workload: Mapping[str, int]) -> dict:
  """One shape's measurement, as the JSON item `suite.bench` prints.

  optimizer_name: one of the domain's presets (None: its default). workload: sizes by the
  domain's workload option names (missing: its defaults).
  """
  domain = domains.get(domain_name)
  shape = domain.at_workload(shapes.parse(name, domain_name), **workload)
  sized = domain.workload(shape, **workload)
  optimizer_name = optimizer_name or next(iter(domain.optimizers))
  runner, state = _build(domain, shape, options, optimizer_name, microbatches)
  host_batch = domain.synthetic_batch(shape, sized, batch_size, seed=0)
  batch = partition.shard_batch(host_batch, runner.mesh)
  logging.info('%s: compiling the train step (batch %d, %s, attention=%s)', name, batch_size,
               options.dtype, options.attention)
  compiled, compile_s = _compile(runner, state, batch)
  # XLA's cost analysis counts a loop's body once, not once per iteration: with layers under
  # nn.scan or microbatches under lax.scan its figure is not the step's, so it is left out.
  loops = options.scan or microbatches > 1
  xla_flops = None if loops else _xla_flops(compiled)
  windows, metrics = _time(compiled, state, batch, steps, warmup, repeats)
  record = _record(domain_name, shapes.canonical(name, domain_name), shape, sized, options,
                   optimizer_name, batch_size, compile_s, windows, metrics, xla_flops, loops,
                   steps, warmup, repeats)
  if compare:
    _compare(domain, shape, sized, host_batch, record, steps, warmup, repeats)
  return record


def main(argv):
  del argv  # flagcheck.run rejects positional arguments
  if FLAGS.keep_host_memory:  # before jax.devices() starts the CPU client's threads
    host_memory.keep_freed_memory()
  platform = jax.devices()[0].platform
  try:
    for name in FLAGS.shapes:
      shapes.parse(name, FLAGS.domain)
    domain = domains.get(FLAGS.domain)
    domain_optimizer(domain, FLAGS.optimizer)
  except (shapes.ShapeError, domains.DomainError) as error:
    raise flagcheck.FlagError(str(error)) from None
  except ValueError as error:
    raise flagcheck.FlagError(f'--optimizer={FLAGS.optimizer}: {error}') from None
  flagcheck.check_batch('batch', FLAGS.batch, FLAGS.microbatches)
  dtype = _resolve_dtype(FLAGS.dtype, platform)
  attention = _resolve_attention(FLAGS.attention, platform, dtype)
  if attention == 'cudnn' and (platform != 'gpu' or dtype != 'bfloat16'):
    raise flagcheck.FlagError(
        f'--attention=cudnn needs an NVIDIA GPU and --dtype=bfloat16 (here: {platform}, '
        f'{dtype}); use --attention=xla or --attention=auto.')
  options = ModelOptions(dtype=dtype, attention=attention, scan=FLAGS.scan, remat=FLAGS.remat)
  workload = {o.name: FLAGS[o.name].value for o in domain.workload_options}
  results = []
  for name in FLAGS.shapes:
    results.append(bench_shape(
        FLAGS.domain, name, batch_size=FLAGS.batch, steps=FLAGS.steps, warmup=FLAGS.warmup,
        repeats=FLAGS.repeats, options=options, optimizer_name=FLAGS.optimizer,
        microbatches=FLAGS.microbatches, compare=FLAGS.compare == 'reference',
        workload=workload))
    logging.info('%s', json.dumps(results[-1]))
  print(json.dumps(results, indent=1))


if __name__ == '__main__':
  flagcheck.run(main)
