r"""Multi-host runs: one JAX distributed system over several processes, from flags or the cluster.

Every process (one per VM of a TPU pod slice; one per GPU, or per node, of a GPU cluster) runs
the same command. `initialize_from_flags` joins them into one system before JAX touches a
device; from then on `jax.devices()` lists every process's devices, meshes span them all and
the jitted steps run as one SPMD program. The processes differ in three places only:

- **data**: each reads its own slice of the input (`input_shard`: seqio's ShardInfo for text,
  a slice of the TFDS split or of the embedded arrays for images) and feeds its rows of the
  global batch (`suite.partition.process_rows`);
- **files**: process 0 alone (`is_lead`) writes the results journal, the report, the logs,
  `metrics.jsonl`, TensorBoard files and predictions, and prints progress; every process takes
  part in orbax's checkpoint saves and restores, so the workdir must be one directory that all
  processes see (NFS, a shared disk, a GCS bucket mounted with gcsfuse);
- **suite.run**: `--workers` worker processes are not used (the units run one after the
  other in the one distributed program).

`--distributed` says when to join:
- `auto` (default): when a coordinator flag (or `JAX_COORDINATOR_ADDRESS`) is given, or a
  launcher started several processes (`detect_launcher`: Slurm's srun with more than one task,
  Open MPI's mpirun with more than one rank, a TPU slice listing several workers in
  `TPU_WORKER_HOSTNAMES`); otherwise the command runs as one process, as before.
- `on`: always; what the flags leave unset comes from JAX's own detection (the Cloud TPU
  metadata of a pod slice, Slurm, Open MPI). Use it on a TPU pod slice.
- `off`: never.

A failure to join is one `DistributedError` (a `FlagError`: the commands print it as one
`error:` line and exit 1) saying what was tried and what to set; so is a join still waiting
after `--distributed_timeout` (stopped before XLA's own abort). On CPUs, cross-process
collectives go through gloo (`jax_cpu_collectives_implementation`), so a test can run two
processes on one machine over loopback; gloo's connection lines go to stderr, stdout stays
the commands' JSON. JAX is imported only where it is used, so that the journal (which asks
`is_lead`) stays light for readers such as suite.report.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import sys
import threading
from collections.abc import Mapping
from typing import Any

from absl import flags, logging

from suite.flagcheck import FlagError

AUTO, ON, OFF = 'auto', 'on', 'off'
MODES = (AUTO, ON, OFF)
DEFAULT_TIMEOUT_S = 300
# The coordinator address JAX reads when none is passed (jax.distributed.initialize).
COORDINATOR_ENV = 'JAX_COORDINATOR_ADDRESS'
_XLA_GRACE_S = 30  # XLA's own join deadline is this much later than ours


class DistributedError(FlagError):
  """Joining the distributed system failed; the message says what was tried and what to set."""


@dataclasses.dataclass(frozen=True)
class Settings:
  """How to join: `mode` (MODES) and what to pass to `jax.distributed.initialize` (None:
  JAX detects it from the cluster's environment)."""

  mode: str = AUTO
  coordinator_address: str | None = None
  num_processes: int | None = None
  process_id: int | None = None
  local_device_ids: tuple[int, ...] | None = None
  timeout_s: int = DEFAULT_TIMEOUT_S

  def __post_init__(self):
    if self.mode not in MODES:
      raise DistributedError(f'--distributed={self.mode}: valid are {", ".join(MODES)}.')
    address = self.coordinator_address
    if address is not None:
      host, sep, port = address.rpartition(':')
      if not sep or not host or not port.isdigit():
        raise DistributedError(
            f'--coordinator_address={address}: give host:port of process 0, e.g. '
            '10.0.0.1:12345 (every process passes the same one).')
    if self.num_processes is not None and self.num_processes < 1:
      raise DistributedError(f'--num_processes={self.num_processes}: give the number of '
                             'processes (>= 1), the same in every process.')
    if self.process_id is not None:
      top = self.num_processes
      if self.process_id < 0 or (top is not None and self.process_id >= top):
        valid = f'0 .. {top - 1}' if top is not None else 'an integer >= 0'
        raise DistributedError(f'--process_id={self.process_id}: valid are {valid} (one '
                               'distinct id per process, 0 on the coordinator).')
    if self.timeout_s < 1:
      raise DistributedError(f'--distributed_timeout={self.timeout_s}: give seconds >= 1.')

  @property
  def given(self) -> dict[str, Any]:
    """The `jax.distributed.initialize` arguments that are set."""
    values = {'coordinator_address': self.coordinator_address,
              'num_processes': self.num_processes, 'process_id': self.process_id,
              'local_device_ids': list(self.local_device_ids)
              if self.local_device_ids is not None else None}
    return {k: v for k, v in values.items() if v is not None}


# Flags (shared by suite.run and suite.bench).

def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines the multi-host flags in `flag_values` (once)."""
  if 'distributed' in flag_values:
    return
  flags.DEFINE_enum(
      'distributed', AUTO, list(MODES),
      'Join a JAX distributed system (multi-host). auto: when --coordinator_address or '
      '--num_processes is given, or a launcher started several processes (srun, mpirun, a '
      'multi-worker TPU slice); on: always, taking what is unset from the cluster (TPU pod '
      'slices, Slurm, Open MPI); off: never.', flag_values=flag_values)
  flags.DEFINE_string(
      'coordinator_address', None, 'host:port of process 0, the same in every process '
      f'(default: ${COORDINATOR_ENV}, or detected from the cluster).', flag_values=flag_values)
  flags.DEFINE_integer('num_processes', None, 'How many processes take part (default: '
                       'detected from the cluster).', lower_bound=1, flag_values=flag_values)
  flags.DEFINE_integer('process_id', None, "This process's index, 0 .. num_processes-1; 0 is "
                       'the coordinator (default: detected from the cluster).', lower_bound=0,
                       flag_values=flag_values)
  flags.DEFINE_list('local_device_ids', None, 'The local accelerators this process uses, e.g. '
                    '0,1 (default: all of them; one per process under srun/mpirun on GPUs).',
                    flag_values=flag_values)
  flags.DEFINE_integer('distributed_timeout', DEFAULT_TIMEOUT_S, 'Seconds to wait for every '
                       'process to join.', lower_bound=1, flag_values=flag_values)


def settings_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> Settings:
  """The parsed multi-host flags as Settings (DistributedError for bad values)."""
  ids = flag_values['local_device_ids'].value
  if ids is not None:
    try:
      ids = tuple(int(i) for i in ids)
    except ValueError:
      raise DistributedError(f'--local_device_ids={",".join(ids)}: give device indices, e.g. '
                             '0,1.') from None
  return Settings(mode=flag_values['distributed'].value,
                  coordinator_address=flag_values['coordinator_address'].value,
                  num_processes=flag_values['num_processes'].value,
                  process_id=flag_values['process_id'].value, local_device_ids=ids,
                  timeout_s=flag_values['distributed_timeout'].value)


# Joining.

def _count(environ: Mapping[str, str], name: str) -> int:
  try:
    return int(environ.get(name, '1'))
  except ValueError:
    return 1


def detect_launcher(environ: Mapping[str, str] | None = None) -> str | None:
  """The launcher that started this process as one of several, from its environment alone:
  'slurm' (inside an srun step of more than one task), 'openmpi' (mpirun with more than one
  rank), 'tpu' (`TPU_WORKER_HOSTNAMES` naming several workers); None otherwise. A Slurm batch
  script itself (no srun) is one process."""
  environ = os.environ if environ is None else environ
  if _count(environ, 'SLURM_STEP_NUM_TASKS') > 1:
    return 'slurm'
  if _count(environ, 'OMPI_COMM_WORLD_SIZE') > 1:
    return 'openmpi'
  if len([h for h in environ.get('TPU_WORKER_HOSTNAMES', '').split(',') if h.strip()]) > 1:
    return 'tpu'
  return None


def should_join(settings: Settings, environ: Mapping[str, str] | None = None) -> bool:
  """Whether `initialize` joins a distributed system (see the module docstring)."""
  environ = os.environ if environ is None else environ
  if settings.mode != AUTO:
    return settings.mode == ON
  return bool(settings.coordinator_address or settings.num_processes or
              environ.get(COORDINATOR_ENV) or detect_launcher(environ))


def _how_to_fix(settings: Settings, launcher: str | None) -> str:
  missing = [f'--{name}' for name in ('coordinator_address', 'num_processes', 'process_id')
             if name not in settings.given]
  hints = []
  if missing:
    hints.append(f'pass {", ".join(missing)} on every process (the same address and count, '
                 'a distinct id from 0)')
  hints.append('check that every process started, that host:port of process 0 is reachable '
               'from all hosts and its port free')
  if launcher is None and settings.mode == ON:
    hints.append('or run one process with --distributed=off')
  text = '; '.join(hints)
  return text[0].upper() + text[1:]


def _give_up(message: str) -> None:
  print(f'error: {message}', file=sys.stderr, flush=True)
  os._exit(1)  # the main thread is blocked inside XLA's join: no exception can reach it


def initialize(settings: Settings, environ: Mapping[str, str] | None = None) -> bool:
  """Joins the distributed system when `should_join` says so; True if it did (or had).

  Must run before anything initialises JAX's backends (`jax.devices()`, a computation).
  A join that fails raises DistributedError naming what was tried (the arguments given, the
  launcher detected) and what to set; one that is still waiting after `settings.timeout_s`
  (a process missing, the coordinator unreachable) ends the process with that error line on
  stderr and status 1, as a FlagError does in the commands.
  """
  environ = os.environ if environ is None else environ
  import jax
  if jax.distributed.is_initialized():
    return True
  if not should_join(settings, environ):
    return False
  launcher = detect_launcher(environ)
  if not jax.config.jax_cpu_collectives_implementation:
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')  # CPU cross-process
  given = settings.given
  tried = ', '.join(f'{k}={v}' for k, v in given.items()) or 'no arguments'
  tried += f' (launcher detected: {launcher})' if launcher else ' (no launcher detected)'
  failed = (f'could not join the JAX distributed system with {tried} and --distributed='
            f'{settings.mode}')
  logging.info('joining the JAX distributed system with %s (waiting up to %d s)', tried,
               settings.timeout_s)
  # XLA ends a process whose join times out with a fatal C++ log and an abort; stop first,
  # with one error line, while its own deadline is still ahead.
  watchdog = threading.Timer(settings.timeout_s, _give_up, args=(
      f'{failed}: not every process had joined after --distributed_timeout='
      f'{settings.timeout_s} s. {_how_to_fix(settings, launcher)}.',))
  watchdog.daemon = True
  watchdog.start()
  try:
    jax.distributed.initialize(**given,
                               initialization_timeout=settings.timeout_s + _XLA_GRACE_S)
  except Exception as error:  # noqa: BLE001 - jax raises ValueError, RuntimeError, XlaRuntimeError
    raise DistributedError(
        f'{failed}: {type(error).__name__}: {" ".join(str(error).split())[:400]}. '
        f'{_how_to_fix(settings, launcher)}.') from None
  finally:
    watchdog.cancel()
  logging.info('process %d of %d joined the distributed system (coordinator %s): %d local '
               'devices, %d in all', jax.process_index(), jax.process_count(),
               given.get('coordinator_address') or environ.get(COORDINATOR_ENV) or 'detected',
               jax.local_device_count(), jax.device_count())
  if jax.default_backend() == 'cpu':
    _native_stdout_to_stderr()
  return True


def _native_stdout_to_stderr() -> None:
  """Keeps stdout for the commands' JSON: gloo (the CPU collectives) prints a line from C++
  to the process's stdout for each new communicator. Points file descriptor 1 at stderr and
  Python's `sys.stdout` at a copy of the original stdout."""
  sys.stdout.flush()
  original = os.dup(1)
  os.dup2(2, 1)
  sys.stdout = os.fdopen(original, 'w', buffering=1)  # line-buffered, as on a terminal
  atexit.register(sys.stdout.flush)


def initialize_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> bool:
  """`initialize(settings_from_flags(flag_values))`: the commands' first call in `main`."""
  return initialize(settings_from_flags(flag_values))


# Who does what.

def is_lead() -> bool:
  """Whether this process writes the run's shared files (journal, report, logs, metrics):
  process 0 of several, or a process that runs alone. Cheap in a process that never imported
  JAX (it runs alone); otherwise it asks JAX, starting its backends if they have not started."""
  jax = sys.modules.get('jax')
  return jax is None or jax.process_index() == 0


def process_count() -> int:
  """How many processes take part in the run (1 in a process that never imported JAX)."""
  jax = sys.modules.get('jax')
  return 1 if jax is None else jax.process_count()


def barrier(name: str) -> None:
  """Waits until every process reaches the barrier `name` (nothing to wait for on one)."""
  if process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


@dataclasses.dataclass(frozen=True)
class InputShard:
  """The slice of the training data one process reads: shard `index` of `count` (processes
  that feed the same rows, a `model` axis across hosts, read the same shard), in batches of
  `batch_size` rows (its share of each global batch)."""

  index: int
  count: int
  batch_size: int


def input_shard(global_batch_size: int, mesh: Any = None) -> InputShard:
  """This process's InputShard of a global batch on `mesh` (default: every device on `data`,
  as a Trainer without a mesh uses), from the rows the partitioner gives it
  (`suite.partition.process_rows`). One process: InputShard(0, 1, global_batch_size)."""
  from suite import partition
  if global_batch_size < 1:
    raise ValueError(f'global batch size {global_batch_size}: must be >= 1')
  if process_count() == 1:
    return InputShard(0, 1, global_batch_size)
  rows = partition.process_rows(global_batch_size, mesh if mesh is not None
                                else partition.make_mesh())
  size = rows.stop - rows.start
  return InputShard(rows.start // size, global_batch_size // size, size)

