r"""Train-step throughput of named shapes on synthetic batches, with the method stated.

  python -m suite.bench --domain=text --shapes=base,small-nl16 --batch=64 --steps=20

The domain (text, vision) is reached through the `suite.domain.Domain` contract alone: it
builds the model, states the workload (its sizes become flags here: text --input_length and
--target_length), makes the synthetic batches, names the optimizer presets and times the
reference implementation.

Prints a JSON list (one item per shape) to stdout; progress goes to stderr. Multi-host: every
process runs the same command (`--distributed`, `--coordinator_address`, ...: suite.distributed),
the mesh spans all their devices and process 0 prints. Method: the step is
the real jitted train step (forward, backward, optimizer update) on a device mesh; compile time
is reported separately; `--warmup` steps run before the clock starts; the timed steps are
dispatched back to back and the clock stops when the last result is ready. Model FLOPs come from
suite.costs (matmul FLOPs, forward + backward = 3x forward; the cross-check against XLA's cost
analysis of the compiled step is printed beside them), and MFU divides the achieved model
FLOP/s by the device's dense bf16 peak (suite.devices; CPUs report none).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from absl import flags, logging
from jax.sharding import Mesh

from suite import distributed, domains, flagcheck, host_memory, shapes
from suite.domain import AUTO, ModelOptions, WorkloadOption
from suite.domain import optimizer as domain_optimizer
from suite.network_options import REMAT_POLICIES
from suite.throughput import measure

FLAGS = flags.FLAGS
flags.DEFINE_string('domain', shapes.TEXT, ' | '.join(domains.DOMAIN_MODULES) + '.')
flags.DEFINE_list('shapes', ['small'], 'Shape names, e.g. base,small-nl16 or S/16.')
flags.DEFINE_integer('batch', 16, 'Global batch size (examples per step); a multiple of the '
                     "mesh's data x fsdp sizes x --microbatches.", lower_bound=1)
flags.DEFINE_integer('steps', 10, 'Timed steps, after the warm-up.', lower_bound=1)
flags.DEFINE_integer('warmup', 2, 'Untimed steps after compilation.', lower_bound=0)
flags.DEFINE_integer('repeats', 3, 'Timed windows of --steps each; the median window counts.',
                     lower_bound=1)
flags.DEFINE_enum('dtype', 'auto', ['auto', 'float32', 'bfloat16'],
                  'Compute dtype (parameters stay float32). auto: bfloat16 on accelerators, '
                  'float32 on CPU.')
flags.DEFINE_enum('attention', 'auto', ['auto', 'xla', 'cudnn'],
                  "Attention kernel. auto: 'cudnn' (cuDNN's fused attention) on NVIDIA GPUs in "
                  "bfloat16 where the shape's head dim suits it, 'xla' elsewhere.")
flags.DEFINE_enum('remat', 'none', list(REMAT_POLICIES), 'Rematerialisation policy of the network.')
flags.DEFINE_bool('scan', None, 'Scan over layers: compile time flat in depth. Default (auto): '
                  'on accelerators (GPU, TPU), off on CPU; --scan or --noscan to choose.')
flags.DEFINE_string('optimizer', None,
                    "The domain's optimizer preset (default: its first): " + '; '.join(
                        f'{d}: {", ".join(domains.get(d).optimizers)}'
                        for d in domains.available()) + '.')
flags.DEFINE_integer('microbatches', 1, 'Gradient-accumulation microbatches per step.',
                     lower_bound=1)
flags.DEFINE_string('mesh', None, 'Device mesh, axes data, fsdp and model, e.g. '
                    'data:2,fsdp:2,model:2 (axes not named are 1; one axis may be -1, the rest); '
                    'the batch is split over data x fsdp. Default: every device on data. Each '
                    "item names it as 'mesh'.")
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
distributed.define_flags()  # multi-host: --distributed, --coordinator_address, ...


def bench_shape(domain_name: str, name: str, *, batch_size: int, steps: int, warmup: int,
                repeats: int, options: ModelOptions, optimizer_name: str | None,
                microbatches: int, compare: bool, workload: Mapping[str, int],
                mesh: Mesh | None = None) -> dict:
  """`suite.throughput.measure` of the named shape (`name` parsed in the domain `domain_name`)
  on `mesh` (None: every device on data), with `options`' 'auto' values resolved for this
  device and shape (ModelOptions.resolved)."""
  shape = shapes.parse(name, domain_name)
  options = options.resolved(shape)
  logging.info('%s: dtype=%s attention=%s scan=%s remat=%s', name, options.dtype,
               options.attention, options.scan, options.remat)
  return measure(domains.get(domain_name), shape,
                 label=shapes.canonical(name, domain_name), batch_size=batch_size, steps=steps,
                 warmup=warmup, repeats=repeats, options=options, optimizer_name=optimizer_name,
                 microbatches=microbatches, compare=compare, workload=workload, mesh=mesh)


def main(argv):
  del argv  # flagcheck.run rejects positional arguments
  if FLAGS.keep_host_memory:  # before jax.devices() starts the CPU client's threads
    host_memory.keep_freed_memory()
  distributed.initialize_from_flags()  # multi-host: before anything starts JAX's backends
  try:
    for name in FLAGS.shapes:
      shapes.parse(name, FLAGS.domain)
    domain = domains.get(FLAGS.domain)
    domain_optimizer(domain, FLAGS.optimizer)
  except (shapes.ShapeError, domains.DomainError) as error:
    raise flagcheck.FlagError(str(error)) from None
  except ValueError as error:
    raise flagcheck.FlagError(f'--optimizer={FLAGS.optimizer}: {error}') from None
  mesh = flagcheck.check_mesh('mesh', FLAGS.mesh)
  flagcheck.check_batch('batch', FLAGS.batch, FLAGS.microbatches, mesh)
  try:  # 'auto' values are resolved per shape (bench_shape); explicit ones are checked here
    options = ModelOptions(dtype=FLAGS.dtype, attention=FLAGS.attention,
                           scan=AUTO if FLAGS.scan is None else FLAGS.scan, remat=FLAGS.remat)
    options.resolved()
  except ValueError as error:
    raise flagcheck.FlagError(f'--attention={FLAGS.attention} --dtype={FLAGS.dtype}: '
                              f'{error}') from None
  workload = {o.name: FLAGS[o.name].value for o in domain.workload_options}
  results = []
  for name in FLAGS.shapes:
    results.append(bench_shape(
        FLAGS.domain, name, batch_size=FLAGS.batch, steps=FLAGS.steps, warmup=FLAGS.warmup,
        repeats=FLAGS.repeats, options=options, optimizer_name=FLAGS.optimizer,
        microbatches=FLAGS.microbatches, compare=FLAGS.compare == 'reference',
        workload=workload, mesh=mesh))
    logging.info('%s', json.dumps(results[-1]))
  if distributed.is_lead():  # multi-host: every process measures, process 0 prints
    print(json.dumps(results, indent=1))


if __name__ == '__main__':
  flagcheck.run(main)
