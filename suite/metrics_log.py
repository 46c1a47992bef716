"""Training metrics: a JSON-lines file and TensorBoard in the workdir, a progress line on stderr.

`<workdir>/metrics.jsonl` gets one JSON object per log step: `{"step": s, "train/<name>": v,
..., "steps_per_s": r, "examples_per_s": e}`, and per evaluation `{"step": s, "eval/<name>": v}`.
Tables are a pivot over this file, never a rerun. When a run resumes from a checkpoint at step
k, lines after step k (written by the interrupted run) are dropped first, so the file always
describes one uninterrupted curve. Only process 0 writes files and progress lines.

Each line goes to the file in one unbuffered append (`os.write`), so a process killed mid-write
leaves at most a cut final line: no newline, not valid JSON. Readers skip it and a resume drops
it, each with a warning that names the file and the bytes dropped; an invalid line anywhere
else is corruption, and reading stops with an error naming the file and the line.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

import jax
from absl import flags, logging

from suite import jsonl

METRICS_FILE = 'metrics.jsonl'
TENSORBOARD_DIR = 'tensorboard'


def _show(line: str) -> None:
  """A progress line: absl's log inside an absl app, else stderr (where absl would drop INFO)."""
  if flags.FLAGS.is_parsed():
    logging.info('%s', line)
  else:
    print(line, file=sys.stderr, flush=True)


class MetricsFileError(ValueError):
  """A metrics file with an invalid line that is not a cut final line (the file is corrupt)."""


def _load(path: str) -> tuple[list[dict[str, Any]], int]:
  """(records, length in bytes of a cut final line that was left out; 0 if none)."""
  try:
    lines, tail, _ = jsonl.read(path)
  except jsonl.BadLine as bad:
    raise MetricsFileError(
        f'{path}:{bad.number}: {bad.error}; only a cut final line (no newline) is expected '
        'after a crash: repair or delete this line, or the file, and rerun') from None
  records = [record for _, record in lines]
  if not tail.strip():
    return records, 0
  try:  # A whole record whose newline is missing is kept.
    record = json.loads(tail)
  except ValueError:
    return records, len(tail)
  return records + [record], 0


def read_metrics(workdir: str | os.PathLike, prefix: str | None = None) -> list[dict[str, Any]]:
  """The records of `<workdir>/metrics.jsonl`, optionally only those with a `prefix/` key.

  A cut final line (a write interrupted by a kill) is skipped with a warning; any other invalid
  line raises MetricsFileError naming the file and the line.
  """
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  records, cut = _load(path)
  if cut:
    logging.warning('%s: skipping a cut final line (%d bytes, no newline, not valid JSON): '
                    'its write was interrupted', path, cut)
  if prefix is not None:
    records = [r for r in records if any(k.startswith(prefix + '/') for k in r)]
  return records


def truncate_after(workdir: str | os.PathLike, step: int) -> None:
  """Drops the records with `step` greater than `step`, and a cut final line (with a warning
  naming the file and the bytes dropped), by an atomic rewrite."""
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return
  records, cut = _load(path)
  if cut:
    logging.warning('%s: dropping a cut final line (%d bytes, no newline, not valid JSON): the '
                    'run was killed while writing it; resuming without it', path, cut)
  kept = [r for r in records if r['step'] <= step]
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    f.writelines(json.dumps(r) + '\n' for r in kept)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def _format_duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return '?'
  seconds = int(seconds)
  h, rest = divmod(seconds, 3600)
  m, s = divmod(rest, 60)
  return f'{h}h{m:02d}m{s:02d}s' if h else f'{m}m{s:02d}s'


def _json_value(v: Any) -> float | None:
  v = float(v)
  return v if math.isfinite(v) else None  # JSON has no NaN/inf.


def _summary_writer(logdir: str):
  """A clu TensorBoard writer. Imported here: it loads TensorFlow, which must not take GPUs."""
  import tensorflow as tf
  from clu import metric_writers
  try:
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:  # TensorFlow's devices were initialised already by the caller.
    pass
  return metric_writers.SummaryWriter(logdir)


class MetricsLogger:
  """Writes train and eval metrics for one run; computes steps/s, examples/s and ETA."""

  def __init__(self, workdir: str | os.PathLike, total_steps: int, start_step: int = 0,
               tensorboard: bool = True):
    self.workdir = os.fspath(workdir)
    self.total_steps = total_steps
    self._is_writer = jax.process_index() == 0
    if self._is_writer:
      os.makedirs(self.workdir, exist_ok=True)
      truncate_after(self.workdir, start_step)
      self._fd = os.open(os.path.join(self.workdir, METRICS_FILE),
                         os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    else:
      self._fd = None
    # TensorBoard only; the progress line below replaces clu's LoggingWriter.
    self._writer = (_summary_writer(os.path.join(self.workdir, TENSORBOARD_DIR))
                    if tensorboard and self._is_writer else None)
    self._last_step = start_step
    self._last_time = time.perf_counter()

  def _append(self, record: Mapping[str, Any]) -> None:
    if self._fd is not None:
      jsonl.append_line(self._fd, record)

  def _write_scalars(self, step: int, record: Mapping[str, Any]) -> None:
    if self._writer is not None:
      self._writer.write_scalars(step, {k: v for k, v in record.items()
                                        if k != 'step' and isinstance(v, float)})
      self._writer.flush()

  def reset_timer(self, step: int) -> None:
    """Restarts the speed measurement at `step` (e.g. after compilation or an evaluation)."""
    self._last_step, self._last_time = step, time.perf_counter()

  def write_train(self, step: int, metrics: Mapping[str, Any], examples_per_step: int) -> None:
    """Logs the mean train metrics of the steps since the last call, with speed and ETA."""
    now = time.perf_counter()
    steps = step - self._last_step
    elapsed = now - self._last_time
    steps_per_s = steps / elapsed if steps > 0 and elapsed > 0 else float('nan')
    self._last_step, self._last_time = step, now
    scalars = {f'train/{k}': _json_value(v) for k, v in metrics.items()}
    record = {'step': int(step), **scalars, 'steps_per_s': _json_value(steps_per_s),
              'examples_per_s': _json_value(steps_per_s * examples_per_step)}
    self._append(record)
    self._write_scalars(step, record)
    eta = (self.total_steps - step) / steps_per_s if steps_per_s > 0 else float('nan')
    shown = ' '.join(f'{k}={float(v):.4g}' for k, v in metrics.items())
    steps_per_s = steps_per_s if math.isfinite(steps_per_s) else 0.0
    if self._is_writer:
      _show(f'step {step}/{self.total_steps} {shown} | {steps_per_s:.2f} steps/s '
            f'{steps_per_s * examples_per_step:.1f} examples/s | ETA {_format_duration(eta)}')

  def write_eval(self, step: int, metrics: Mapping[str, Any], prefix: str = 'eval') -> None:
    """Logs one evaluation's metrics as `<prefix>/<name>`."""
    record = {'step': int(step), **{f'{prefix}/{k}': _json_value(v) for k, v in metrics.items()}}
    self._append(record)
    self._write_scalars(step, record)
    if self._is_writer:
      _show(f'step {step} ' + ' '.join(f'{k}={v}' for k, v in record.items() if k != 'step'))

  def write_status(self, step: int, status: str, **details: Any) -> None:
    """Records how the run ended (`ok`, `diverged`, ...)."""
    self._append({'step': int(step), 'status': status, **details})

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None
    if self._fd is not None:
      os.close(self._fd)
      self._fd = None

  def __enter__(self) -> MetricsLogger:
    return self

  def __exit__(self, *exc) -> None:
    self.close()
