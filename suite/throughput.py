"""One train-step speed measurement of a Shape on synthetic batches: the path behind the
`suite.bench` command and `suite.run`'s bench units (no flags here, so both can import it).

The step is the real jitted train step (forward, backward, optimizer update) on a device mesh;
compile time is reported separately; `warmup` steps run before the clock starts; the timed
steps are dispatched back to back and the clock stops when the last result is ready. Model
FLOPs come from suite.costs, and MFU divides the achieved model FLOP/s by the device's dense
bf16 peak (suite.devices; CPUs report none).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from typing import Any

import jax
from absl import logging
from jax.sharding import Mesh

from suite import costs, devices, host_memory, optim, partition, shapes, trainer
from suite.domain import Domain, ModelOptions, Workload
from suite.domain import optimizer as domain_optimizer


def _xla_flops(compiled) -> float | None:
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  return float(analysis['flops']) if analysis and 'flops' in analysis else None


def _build(domain: Domain, shape: shapes.Shape, options: ModelOptions, optimizer_name: str,
           microbatches: int, mesh: Mesh | None) -> tuple[trainer.Trainer, Any]:
  """The domain's model and optimizer preset in a Trainer on `mesh` (None: every device on
  'data'), and a fresh state, computed: an initialisation still running (jax dispatches it
  asynchronously) would share the cores with the compile that follows and inflate compile_s in
  proportion to the parameters (1.6x for base-nl36 against base on CPU)."""
  model = domain.build_model(shape, options)
  tx, _ = optim.make_optimizer(domain_optimizer(domain, optimizer_name))
  runner = trainer.Trainer(model, tx, mesh if mesh is not None else partition.make_mesh(),
                           rules=domain.logical_axis_rules, microbatches=microbatches)
  return runner, jax.block_until_ready(runner.init(seed=0))


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
            repeats: int, mesh: Mesh) -> dict:
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
      'dtype': options.dtype, 'attention': options.attention, 'scan': options.scan,
      'remat': options.remat, 'optimizer': optimizer_name,
      'device': info.kind, 'devices': info.count, 'mesh': partition.mesh_text(mesh),
      'host_memory': host_memory.describe(),
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


def measure(domain: Domain, shape: shapes.Shape, *, label: str, batch_size: int, steps: int,
            warmup: int, repeats: int, options: ModelOptions, optimizer_name: str | None = None,
            microbatches: int = 1, compare: bool = False,
            workload: Mapping[str, int] | None = None, mesh: Mesh | None = None) -> dict:
  """One measurement of `shape` (a Shape of `domain`), as the JSON item `suite.bench` prints.

  The one path behind the command and `suite.run`'s bench units. label: the item's `name`.
  optimizer_name: one of the domain's presets (None: its default). workload: sizes by the
  domain's workload option names (missing: its defaults). mesh: the devices and their layout
  (None: every device on 'data'); the item names it as `mesh`.
  """
  workload = dict(workload or {})
  shape = domain.at_workload(shape, **workload)
  sized = domain.workload(shape, **workload)
  optimizer_name = optimizer_name or next(iter(domain.optimizers))
  runner, state = _build(domain, shape, options, optimizer_name, microbatches, mesh)
  host_batch = domain.synthetic_batch(shape, sized, batch_size, seed=0)
  batch = partition.shard_batch(host_batch, runner.mesh)
  logging.info('%s: compiling the train step (batch %d, %s, attention=%s)', label, batch_size,
               options.dtype, options.attention)
  compiled, compile_s = _compile(runner, state, batch)
  # XLA's cost analysis counts a loop's body once, not once per iteration: with layers under
  # nn.scan or microbatches under lax.scan its figure is not the step's, so it is left out.
  loops = options.scan or microbatches > 1
  xla_flops = None if loops else _xla_flops(compiled)
  windows, metrics = _time(compiled, state, batch, steps, warmup, repeats)
  record = _record(domain.name, label, shape, sized, options, optimizer_name, batch_size,
                   compile_s, windows, metrics, xla_flops, loops, steps, warmup, repeats,
                   runner.mesh)
  if compare:
    _compare(domain, shape, sized, host_batch, record, steps, warmup, repeats)
  return record
