r"""The benchmark: `python -m suite.run` expands a config into units and runs them, resumably.

  python -m suite.run                              # the embedded default, offline
  python -m suite.run --quick                      # its small variant
  python -m suite.run --domain=text --strategies=deep_narrow,width_first --workdir=/tmp/w
  python -m suite.run --config=paper --config.seeds=[0,1] --dry_run
  python -m suite.run --config=released --config.checkpoints=/ckpt/a,/ckpt/b@65536 \
      --config.vocab=/ckpt/sentencepiece.model   # released checkpoints, no pre-training

A config (`suite/configs/`, or a .py file with `get_config()`) names domains, strategies,
scales, shapes, recipes, tasks, steps and seeds; `--config.FIELD=VALUE` overrides a field.
The plan (`suite.units`) is a list of units (shape x recipe step x task x seed), each run
through the domain contract (`suite.execute`) in dependency order, and journaled in
`W/results.jsonl` (`suite.journal`): a rerun skips units with an `ok` record (`--rerun` forces
them), an interrupted unit resumes from its checkpoint under `W/checkpoints/<run_id>/`.
A config's optional `vocab`, `data_dir` and `tfds_data_dir` fields configure the tasks
package before planning (`configure_data`).
At the end the report is written (`suite.report.write`) and its paths printed on stdout as
JSON. Progress goes to stderr, the log to `W/logs/`, run-level TensorBoard scalars to
`W/tensorboard/`.

Multi-host (`suite.distributed`): every process runs the same command; `--distributed` and
`--coordinator_address`/`--num_processes`/`--process_id` join them (or JAX detects the cluster).
All processes train each unit together and take part in its checkpoints, so W must be one
directory they all see; process 0 alone writes the journal, the log, TensorBoard files and the
report, and prints progress and the result JSON (the others print only warnings and errors).
`--workers` applies to one process only: on several, the units run in plan order.

Exit status: 0 when every unit finished ok; else the number of units that did not (failed,
diverged, or skipped because their init unit did not finish), at most 100 (so that it never
reads as a signal); 1 with a one-line `error:` for bad flags or config values, before any work.
"""

from __future__ import annotations

import os

# Before jax and TensorFlow load (they read it then): their C++ warnings, e.g. about partly read
# cached eval datasets, are noise on a benchmark's stderr. A value set by the user wins.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import json  # noqa: E402
import logging as py_logging  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time
from collections.abc import Callable, Sequence
from typing import Any

from absl import flags, logging
from ml_collections import config_flags

from suite import (
  configs,
  distributed,
  domains,
  execute,
  flagcheck,
  journal,
  schedule,
  shapes,
  units,
)
from suite.domain import OK, ModelOptions
from suite.progress import Progress

FLAGS = flags.FLAGS
MAX_EXIT = 100
# The command's flags (absl FlagHolders), defined by `define_flags` when the command runs, so
# that importing this module (tests, other tools) defines none and clashes with no other
# command's flags.
_CONFIG = _DOMAIN = _STRATEGIES = _WORKDIR = _QUICK = _DRY_RUN = _RERUN = _WORKERS = None
_SESSION = _WORKER_INDEX = None
_MESH = None


def define_flags() -> None:
  """Defines the command's flags (once)."""
  global _CONFIG, _DOMAIN, _STRATEGIES, _WORKDIR, _QUICK, _DRY_RUN, _RERUN, _WORKERS
  global _SESSION, _WORKER_INDEX
  if _CONFIG is not None:
    return
  _CONFIG = config_flags.DEFINE_config_file(
      'config', configs.path(configs.DEFAULT),
      f'The experiment: a shipped config ({", ".join(configs.names())}) or a .py file with '
      'get_config(); fields are overridable with --config.FIELD=VALUE.', lock_config=False)
  _DOMAIN = flags.DEFINE_string('domain', 'all',
                                f'all, or one of {", ".join(domains.DOMAIN_MODULES)}.')
  _STRATEGIES = flags.DEFINE_list('strategies', [], 'Strategies to run (default: the config\'s); '
                                  'the canonical shapes are always added.')
  _WORKDIR = flags.DEFINE_string('workdir', './shapebench_run', 'Where the journal, checkpoints, '
                                 'logs and the report go.')
  _QUICK = flags.DEFINE_bool('quick', False, "The config's small variant (get_config('quick')).")
  _DRY_RUN = flags.DEFINE_bool('dry_run', False, 'Print the plan (units, params, FLOPs, '
                               'estimated time) and exit.')
  _RERUN = flags.DEFINE_bool('rerun', False, 'Run units again even when the journal has an ok '
                             'record for them (their checkpoints are started afresh).')
  _WORKERS = flags.DEFINE_integer(
      'workers', -1, 'Worker processes that train the plan, after every shape\'s speed was '
      'measured here, one bench at a time with nothing else running. The plan is cut into '
      'independent chains (a shape\'s pretrain, finetune and evaluate units), which the workers '
      'take longest first (small models leave cores idle, and compilation is single-threaded). '
      '-1: one per CPU core on a CPU backend, else 1; 0 or 1: everything in this process, in '
      'plan order (always so on several hosts).', lower_bound=-1)
  _SESSION = flags.DEFINE_string('worker_session', None, 'Internal: this process is a worker '
                                 'of a parent suite.run; the folder holding its claims.')
  _WORKER_INDEX = flags.DEFINE_integer('worker_index', 0, 'Internal: the worker\'s number.')
  global _MESH
  _MESH = flags.DEFINE_string(
      'mesh', None, 'Device mesh of every unit, axes data, fsdp and model, e.g. '
      'data:2,fsdp:2,model:2 (axes not named are 1; one axis may be -1, the rest); the batch '
      'is split over data x fsdp, parameters over fsdp and model. Default: the config\'s '
      '`mesh` field, else every device on data. Journal records name it (`mesh`); it does not '
      'enter the run_id, so an interrupted unit resumes on another mesh.')
  distributed.define_flags()


def resolve_argv(argv: Sequence[str]) -> list[str]:
  """argv with a shipped config name turned into its file, and `--quick` into the config
  file's `:quick` argument (so that `--config.*` overrides apply on top of the variant)."""
  argv = list(argv)
  quick = any(a in ('--quick', '--quick=true', '--quick=True', '--quick=1') for a in argv)
  found = False
  for i, arg in enumerate(argv):
    if arg.startswith('--config='):
      found = True
      value = arg.split('=', 1)[1]
      if not value.endswith('.py') and ':' not in value and os.sep not in value:
        try:
          value = configs.path(value)
        except ValueError as error:
          raise flagcheck.FlagError(f'--config={value}: {error}') from None
      argv[i] = f'--config={value}' + (':quick' if quick and ':' not in value else '')
  if quick and not found:
    argv.insert(1, f'--config={configs.path(configs.DEFAULT)}:quick')
  return argv


# The open lock file of this run's workdir (held until the process exits; see _lock_workdir).
_HELD_LOCKS: list = []
LOCK_FILE = '.suite_run.lock'


def _lock_workdir(path: str) -> None:
  """Claims `path` for this run: a second suite.run on the same workdir (which would train the
  same units twice and interleave their journal records) is refused with the holder's pid.

  An exclusive flock on `path/.suite_run.lock`, released by the kernel when the process ends
  however it ends (no stale lock after a crash or SIGKILL). Taken by the run's lead process
  only; its workers run under it.
  """
  import fcntl
  lock_path = os.path.join(path, LOCK_FILE)
  handle = open(lock_path, 'a+')  # noqa: SIM115  (held open for the life of the process)
  try:
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    handle.seek(0)
    holder = handle.read().strip() or 'another process'
    handle.close()
    raise flagcheck.FlagError(
        f'--workdir={path} is in use by another suite.run ({holder}); wait for it to finish '
        '(a later run there resumes from its journal), or give another --workdir.') from None
  handle.seek(0)
  handle.truncate()
  handle.write(f'pid {os.getpid()} on {socket.gethostname()}, started '
               f'{time.strftime("%Y-%m-%d %H:%M:%S")}')
  handle.flush()
  _HELD_LOCKS.append(handle)


def _check_workdir(path: str) -> None:
  try:
    os.makedirs(path, exist_ok=True)
    probe = os.path.join(path, f'.write_test-{socket.gethostname()}-{os.getpid()}')
    with open(probe, 'w') as f:
      f.write('')
    os.remove(probe)
  except OSError as error:
    raise flagcheck.FlagError(f'--workdir={path} is not writable ({error.strerror}); give a '
                              'directory you can write to.') from None


DATA_FIELDS = ('vocab', 'data_dir', 'tfds_data_dir')


def configure_data(config: Any) -> None:
  """Applies the config's optional data fields (DESIGN.md's --vocab, --data_dir,
  --tfds_data_dir) to the tasks package before planning, as shapes are sized to the tasks'
  vocabularies: `vocab` (a SentencePiece model; None: the embedded one), `data_dir` (the
  original distribution files), `tfds_data_dir`. A config without them changes nothing."""
  if not any(name in config for name in DATA_FIELDS):
    return
  from tasks import sources, vocab
  try:
    vocab.configure(config.get('vocab') or None)
  except FileNotFoundError as error:
    raise flagcheck.FlagError(f'config.vocab: {error}') from None
  for name in ('data_dir', 'tfds_data_dir'):
    path = config.get(name)
    if path and not os.path.isdir(path):
      raise flagcheck.FlagError(f'config.{name}={path}: not a directory; give the folder that '
                                'holds the datasets, or leave it unset (TFDS\'s default).')
  sources.configure(data_dir=config.get('data_dir'), tfds_data_dir=config.get('tfds_data_dir'))


def plan_from_flags(config: Any) -> list[units.Unit]:
  """The plan the flags select; bad selections are FlagErrors."""
  names = list(config.domains.keys())
  if _DOMAIN.value == 'all':
    selected = names
  elif _DOMAIN.value in names:
    selected = [_DOMAIN.value]
  else:
    raise flagcheck.FlagError(f'--domain={_DOMAIN.value}: valid are all, {", ".join(names)} '
                              f'(closest: {shapes.closest(_DOMAIN.value, ["all", *names])}).')
  try:
    return units.build(config, selected, _STRATEGIES.value or None)
  except shapes.ShapeError as error:
    message = str(error)
    if message.startswith('unknown strategy'):
      message = f'--strategies: {message}'
    raise flagcheck.FlagError(message) from None
  except (units.PlanError, domains.DomainError, ValueError) as error:
    raise flagcheck.FlagError(str(error)) from None


# Fixed seconds per unit besides its training steps (pipelines, compilation, checkpoints,
# evaluation), by kind; rough figures of a 2-core CPU, stated in ESTIMATE_METHOD.
FIXED_S = {'train': 10.0, 'bench': 5.0, 'score': 2.0}


def estimate_s(unit: units.Unit, rate_tflops: float, measured: dict[str, float]) -> float:
  """Seconds a unit should take: its training steps at the measured steps/s of its shape's
  bench unit when the journal has one, else its training FLOPs at `rate_tflops`; plus a fixed
  time by kind (FIXED_S: training, bench, scoring-only units)."""
  steps = unit.spec.get('steps') or 0
  kind = 'bench' if unit.stage == units.BENCH else 'train' if steps else 'score'
  if unit.stage != units.BENCH and steps and unit.shape in measured:
    bench_batch = measured[unit.shape][1]
    scale = (unit.spec.get('batch_size') or bench_batch) / bench_batch
    return FIXED_S[kind] + steps * scale / measured[unit.shape][0]
  return FIXED_S[kind] + unit.train_flops() / (rate_tflops * 1e12)


ESTIMATE_METHOD = ('estimated time: training steps at the steps/s measured by the shape\'s '
                   'bench unit in this workdir when there is one, else training FLOPs '
                   '(steps x batch x suite.costs train FLOPs/example) at the config\'s '
                   'estimate_tflops_per_s; plus a fixed 10 s per training unit, 5 s per bench '
                   'and 2 s per scoring unit (pipelines, compilation, evaluation); with N workers, '
                   'the benches one after another, then the chains of units longest first, each '
                   'on the first worker to come free')


def plan_seconds(plan: list[units.Unit], seconds: dict[str, float], workers: int = 1) -> float:
  """The plan's wall time from per-unit estimates: their sum in one process; with several
  workers, the benches' sum plus the schedule of the other units' chains (`suite.schedule`)."""
  if workers <= 1:
    return sum(seconds.values())
  benches = sum(seconds[u.key] for u in plan if u.stage == units.BENCH)
  work = [u for u in plan if u.stage != units.BENCH]
  return benches + schedule.makespan([c.seconds for c in schedule.chains(work, seconds)],
                                     workers)


def _measured(records: list[dict], plan: list[units.Unit]) -> dict:
  """shape -> (steps/s, batch) of the journal's ok bench records of this plan."""
  by_run = {u.run_id: u for u in plan}
  out = {}
  for r in records:
    unit = by_run.get(r['run_id'])
    if unit is not None and unit.stage == units.BENCH and r['status'] == OK:
      out[unit.shape] = (r['metrics']['steps_per_s'], unit.spec.get('batch_size', 16))
  return out


def dry_run(plan: list[units.Unit], config: Any, records: list[dict],
            workers: int = 1) -> None:
  done = journal.finished(records)
  rate = float(config.get('estimate_tflops_per_s', 0.02))
  measured = _measured(records, plan)
  items, per_unit = [], {}
  for u in plan:
    seconds = 0.0 if u.same_as or u.run_id in done else estimate_s(u, rate, measured)
    per_unit[u.key] = seconds
    items.append({'unit': u.key, 'run_id': u.run_id, 'stage': u.stage, 'role': u.role,
                  'shape': shapes.display_name(u.shape), 'params': u.params,
                  'train_flops_per_example': u.workload.train_flops_per_example,
                  'train_flops': u.train_flops(), 'estimated_s': round(seconds, 1),
                  'init': u.init, 'same_as': u.same_as, 'done': u.run_id in done,
                  'checkpoint': str(u.checkpoint) if u.checkpoint else None,
                  'strategy': u.strategy, 'scale': u.scale})
  total = plan_seconds(plan, per_unit, workers)
  print(json.dumps({'config': config.get('name'), 'units': items,
                    'total_estimated_s': round(total, 1), 'workers': workers,
                    'method': ESTIMATE_METHOD}, indent=1))
  for item in items:
    print(f'{item["unit"]:60s} {item["params"]:>12,} params {item["train_flops"]:10.3g} FLOPs '
          f'{item["estimated_s"]:8.1f} s' + (' (copy)' if item['same_as'] else '')
          + (' (done)' if item['done'] else ''), file=sys.stderr)
  print(f'{len(plan)} units, estimated {total / 60:.1f} min with {workers} worker(s); '
        f'{ESTIMATE_METHOD}', file=sys.stderr)


class _ProgressOnly(py_logging.Filter):
  """On stderr: warnings and errors, and the training loop's progress lines (the rest of the
  log, e.g. checkpointing chatter, goes to the log file only)."""

  def filter(self, record: py_logging.LogRecord) -> bool:
    return record.levelno >= py_logging.WARNING or record.module == 'metrics_log'


class _ProblemsOnly(py_logging.Filter):
  """On stderr of a process other than process 0 (multi-host): warnings and errors only."""

  def filter(self, record: py_logging.LogRecord) -> bool:
    return record.levelno >= py_logging.WARNING


def _log_to_file(workdir: str) -> str | None:
  """Sends the whole log to W/logs/run-<time>.log; stderr keeps progress and problems. On
  several processes, process 0 does so; the others write no log file (None) and keep only
  problems on stderr."""
  if not distributed.is_lead():
    logging.get_absl_handler().addFilter(_ProblemsOnly())
    return None
  directory = os.path.join(workdir, 'logs')
  os.makedirs(directory, exist_ok=True)
  worker = f'-w{_WORKER_INDEX.value}' if _SESSION.value else ''
  path = os.path.join(directory, time.strftime('run-%Y%m%d-%H%M%S') + f'{worker}.log')
  handler = py_logging.FileHandler(path)
  handler.setFormatter(py_logging.Formatter('%(asctime)s %(levelname)s %(module)s] %(message)s'))
  py_logging.getLogger().addHandler(handler)
  logging.get_absl_handler().addFilter(_ProgressOnly())
  return path


def _compilation_cache(workdir: str) -> None:
  """XLA's persistent compilation cache in W/compilation_cache (unless one is configured):
  units that compile the same program (a shape's evaluation at each checkpoint, a resumed
  unit) compile it once."""
  import jax
  if not jax.config.jax_compilation_cache_dir:
    jax.config.update('jax_compilation_cache_dir', os.path.join(workdir, 'compilation_cache'))
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)


def _source(unit: units.Unit) -> str:
  return unit.same_as or unit.key


def execute_plan(plan: list[units.Unit], workdir: str, options: ModelOptions, records: list,
                 rerun: bool | Callable[[units.Unit], bool], progress: Progress,
                 mesh: Any = None) -> int:
  """Runs the plan on `mesh` (a jax Mesh; None: every device on 'data'); returns the number
  of units that did not finish ok. rerun: whether units with an ok record run again (a bool,
  or a predicate of the unit)."""
  import shutil
  again = rerun if callable(rerun) else (lambda unit: rerun)
  by_key = {u.key: u for u in plan}
  latest = journal.latest_by_run(records)
  status: dict[str, dict] = {}
  not_ok = 0
  for unit in plan:
    previous = latest.get(unit.run_id)
    if previous and previous['status'] == OK and not again(unit):
      status[unit.key] = previous
      progress.skipped(unit)
      continue
    progress.start(unit)
    init = by_key.get(unit.init) if unit.init else None
    init_record = status.get(init.key) if init else None
    if unit.same_as:
      source = status[unit.same_as]
      record = execute.copied(unit, source)
    elif init is not None and (init_record is None or init_record['status'] != OK):
      why = init_record['status'] if init_record else 'not run'
      record = execute.failed(unit, f'not run: its init unit {init.key} did not finish ok '
                                    f'({why})')
    else:
      if again(unit):
        if distributed.is_lead():
          shutil.rmtree(execute.unit_dir(workdir, unit), ignore_errors=True)
        distributed.barrier(f'suite.run: {unit.key} starts afresh')
      init_dir = (execute.unit_dir(workdir, by_key[_source(init)]) if init
                  else unit.checkpoint)  # a released checkpoint (CheckpointRef) or None
      record = execute.run(unit, workdir, options, init_dir, mesh)
    record = journal.append(workdir, record)
    status[unit.key] = record
    not_ok += record['status'] != OK
    progress.finish(unit, record)
  return not_ok


def _worker_argv(session: schedule.Session, index: int) -> list[str]:
  """This command line for one worker of `session` (the parent has measured the benches)."""
  drop = ('--workers', '--worker_session', '--worker_index')
  kept = [a for a in sys.argv[1:] if a.split('=', 1)[0] not in drop]
  return [sys.executable, '-m', 'suite.run', *kept, f'--worker_session={session.directory}',
          f'--worker_index={index}', '--workers=1']


def _die_with_parent() -> None:
  """In a worker (before exec): killed when its parent dies, so that a killed run leaves no
  orphan writing to the journal while it is rerun (Linux; elsewhere a no-op)."""
  import ctypes
  import signal
  try:
    ctypes.CDLL('libc.so.6', use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
  except OSError:
    pass


def auto_workers(plan: list[units.Unit]) -> int:
  """--workers=-1: one per CPU core this process may use on a CPU backend (at most one per
  chain of the plan), else 1 (processes would share one accelerator's memory)."""
  import jax
  if jax.default_backend() != 'cpu':
    return 1
  cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
  work = [u for u in plan if u.stage != units.BENCH]
  return max(1, min(cores or 1, len(schedule.chains(work, {}))))


def run_workers(workdir: str, workers: int, started: float | None = None) -> None:
  """`workers` worker processes, all at once, sharing one claims session; returns when all
  have ended (their records are in the journal, whatever their exit status)."""
  import subprocess
  session = schedule.Session.create(os.path.join(workdir, 'sessions'),
                                    len(journal.read(workdir)), workers, started)
  logging.info('training in %d worker processes (claims in %s)', workers, session.directory)
  print(f'training in {workers} worker processes (logs in {os.path.join(workdir, "logs")})',
        file=sys.stderr, flush=True)
  procs = [subprocess.Popen(_worker_argv(session, i + 1), preexec_fn=_die_with_parent,
                            stdout=subprocess.DEVNULL) for i in range(workers)]
  for proc in procs:
    proc.wait()


def work_chains(plan: list[units.Unit], workdir: str, options: ModelOptions,
                rerun: Callable[[units.Unit], bool], estimate: Callable[[units.Unit], float],
                session: schedule.Session, index: int, mesh: Any = None) -> None:
  """A worker's loop: the plan's chains (benches aside) longest first, each run here when this
  worker is the first to claim it."""
  work = [u for u in plan if u.stage != units.BENCH]
  seconds = {u.key: 0.0 if u.same_as else estimate(u) for u in work}
  facts = session.facts()
  key_of = {u.run_id: u.key for u in work}

  seen = {'size': -1, 'keys': set()}  # the journal is append-only: reparse when it grows

  def done_anywhere() -> set[str]:
    path = journal.path(workdir)
    size = os.path.getsize(path) if os.path.exists(path) else 0
    if size != seen['size']:
      records = journal.read(workdir)
      before, since = records[:facts['journal_records']], records[facts['journal_records']:]
      ids = journal.finished(before) | {r['run_id'] for r in since}
      seen.update(size=size, keys={key_of[i] for i in ids if i in key_of})
    return seen['keys']

  progress = Progress(work, estimate, workdir, label=f'w{index}', shared=done_anywhere,
                      workers=facts['workers'], started=facts['started'], tensorboard=False)
  try:
    for chain in schedule.chains(work, seconds):
      if session.claim(chain):
        execute_plan(list(chain.units), workdir, options, journal.read(workdir), rerun,
                     progress, mesh)
  finally:
    progress.close()


def count_not_ok(plan: list[units.Unit], workdir: str) -> int:
  """The plan's units whose latest journal record is not ok (or that have none)."""
  latest = journal.latest_by_run(journal.read(workdir))
  return sum(latest.get(u.run_id, {}).get('status') != OK for u in plan)


def _write_report(workdir: str) -> dict:
  """`suite.report.write`'s paths; a report that fails leaves the journal as it is."""
  from suite import report
  try:
    paths = report.write(workdir)
  except Exception as error:  # noqa: BLE001 - the run's results are in the journal regardless
    logging.exception('writing the report failed')
    return {'error': f'the report failed: {type(error).__name__}: {error}'}
  return {k: os.fspath(v) for k, v in dict(paths).items()}


def main(argv):
  del argv
  joined = distributed.initialize_from_flags()  # before anything starts JAX's backends
  lead = distributed.is_lead()  # process 0 writes the journal, the log and the report
  config = _CONFIG.value
  workdir = os.path.abspath(_WORKDIR.value)
  if _RERUN.value and _DRY_RUN.value:
    raise flagcheck.FlagError('--rerun and --dry_run conflict: a dry run runs nothing; drop '
                              'one of them.')
  mesh = (flagcheck.check_mesh('mesh', _MESH.value) if _MESH.value is not None
          else flagcheck.check_mesh('config.mesh', config.get('mesh')))
  configure_data(config)
  plan = plan_from_flags(config)
  if not _DRY_RUN.value:
    _check_workdir(workdir)
  try:
    records = journal.check_compatible(workdir)
  except journal.JournalError as error:
    raise flagcheck.FlagError(str(error)) from None
  try:
    fields = dict(config.get('model') or {})  # None: the default ('auto' for scan)
    options = ModelOptions(**{k: v for k, v in fields.items() if v is not None})
    options.resolved()  # an explicit choice this device cannot run fails now ('auto' per unit)
  except (TypeError, ValueError) as error:
    raise flagcheck.FlagError(f'config.model: {error}') from None
  session = schedule.Session(_SESSION.value) if _SESSION.value else None
  workers = 1
  if session is None and not joined and distributed.process_count() == 1:
    workers = _WORKERS.value if _WORKERS.value >= 0 else auto_workers(plan)
  if _DRY_RUN.value:
    if lead:
      dry_run(plan, config, records, max(1, workers))
    return 0
  if session is None and lead:
    _lock_workdir(workdir)
  started = time.perf_counter()
  log_path = _log_to_file(workdir)
  _compilation_cache(workdir)
  logging.info('plan: %d units of config %s into %s', len(plan), config.get('name'), workdir)
  rate = float(config.get('estimate_tflops_per_s', 0.02))
  measured = _measured(records, plan)
  estimate = lambda u: estimate_s(u, rate, measured)  # noqa: E731
  if session is not None:  # a worker: the parent measured the benches; rerun or not, keep them
    work_chains(plan, workdir, options, lambda u: _RERUN.value and u.stage != units.BENCH,
                estimate, session, _WORKER_INDEX.value, mesh)
    return min(count_not_ok(plan, workdir), MAX_EXIT)
  progress = Progress(plan, estimate, workdir, stream=None if lead else open(os.devnull, 'w'),
                      tensorboard=lead, workers=workers)  # the ETA shares the rest among them
  try:
    if workers > 1:  # the speed measurements first, alone on the machine
      execute_plan([u for u in plan if u.stage == units.BENCH], workdir, options, records,
                   _RERUN.value, progress, mesh)
    else:
      execute_plan(plan, workdir, options, records, _RERUN.value, progress, mesh)
  finally:
    progress.close()
  if workers > 1:
    run_workers(workdir, workers, time.time() - (time.perf_counter() - started))
  distributed.barrier('suite.run: plan done')  # process 0 has journaled every unit
  not_ok = count_not_ok(plan, workdir)
  if not lead:
    return min(not_ok, MAX_EXIT)
  print(f'{len(plan)} units: {len(plan) - not_ok} ok, {not_ok} not ok, in '
        f'{time.perf_counter() - started:.0f} s', file=sys.stderr, flush=True)
  paths = _write_report(workdir)
  print(json.dumps({'workdir': workdir, 'journal': journal.path(workdir), 'log': log_path,
                    'units': len(plan), 'not_ok': not_ok, 'report': paths}, indent=1))
  return min(not_ok, MAX_EXIT)


def run() -> None:
  """The console entry point: `main` with shipped config names and --quick resolved."""
  define_flags()
  try:
    sys.argv = resolve_argv(sys.argv)
  except flagcheck.FlagError as error:
    print(f'error: {" ".join(str(error).split())}', file=sys.stderr)
    sys.exit(1)
  flagcheck.run(main)  # absl exits with main's return value


if __name__ == '__main__':
  run()
