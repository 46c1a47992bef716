"""The plan's progress on stderr (units done / total, elapsed, ETA) and as TensorBoard scalars.

One line per unit as it starts and as it ends (status, wall time, its headline metric); the
ETA scales the remaining units' estimates by how the finished ones compared with theirs.
Run-level scalars (units done, not ok, elapsed) go to `W/tensorboard/` through clu.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from suite.units import Unit


def _duration(seconds: float) -> str:
  seconds = max(0, int(round(seconds)))
  hours, rest = divmod(seconds, 3600)
  return (f'{hours}h' if hours else '') + f'{rest // 60:02d}m{rest % 60:02d}s'


class Progress:
  """Counts units and prints one stderr line per unit start and end."""

  def __init__(self, plan: Sequence[Unit], estimate: Callable[[Unit], float], workdir: str,
               stream: Any = None, tensorboard: bool = True, label: str = '',
               shared: Callable[[], set[str]] | None = None, workers: int = 1,
               started: float | None = None):
    """One of several worker processes passes `label` (shown in its lines), `shared` (the keys
    of the plan's units done by any process: its counts are the whole plan's), `workers` (the
    ETA divides the remaining estimate among them) and `started` (the session's time.time())."""
    self.total = len(plan)
    self.done = 0
    self.not_ok = 0
    self.stream = stream or sys.stderr
    self._estimates = {u.key: (0.0 if u.same_as else estimate(u)) for u in plan}
    self._remaining = sum(self._estimates.values())
    self._spent_estimate = 0.0
    self._spent = 0.0
    self._label = f'{label} ' if label else ''
    self._shared = shared
    self._own: set[str] = set()
    self._workers = max(1, workers)
    self._start = time.perf_counter() - (time.time() - started if started else 0.0)
    self._unit_start = self._start
    self._writer = None
    if tensorboard:
      from clu import metric_writers
      self._writer = metric_writers.SummaryWriter(os.path.join(workdir, 'tensorboard'))

  def _eta(self) -> float:
    ratio = self._spent / self._spent_estimate if self._spent_estimate > 0 else 1.0
    return self._remaining * ratio / self._workers

  def _line(self, text: str) -> None:
    if self._shared is not None:
      done = self._shared() | self._own
      self.done = sum(key in done for key in self._estimates)
      self._remaining = sum(v for key, v in self._estimates.items() if key not in done)
    elapsed = time.perf_counter() - self._start
    print(f'[{self._label}{self.done}/{self.total} | elapsed {_duration(elapsed)} | ETA '
          f'{_duration(self._eta())}] {text}', file=self.stream, flush=True)

  def _count(self, unit: Unit) -> None:
    self._own.add(unit.key)
    self.done += 1
    self._remaining -= self._estimates[unit.key]

  def skipped(self, unit: Unit) -> None:
    self._count(unit)
    self._line(f'{unit.key}: done earlier (journal), skipped')

  def start(self, unit: Unit) -> None:
    self._unit_start = time.perf_counter()
    copy = f' (copy of {unit.same_as})' if unit.same_as else ''
    self._line(f'{unit.key}: {unit.stage}{copy}')

  def finish(self, unit: Unit, record: dict) -> None:
    wall = time.perf_counter() - self._unit_start
    self._count(unit)
    if not unit.same_as:
      self._spent += wall
      self._spent_estimate += self._estimates[unit.key]
    self.not_ok += record['status'] != 'ok'
    headline = record.get('headline') or {}
    value = (record.get('metrics') or {}).get(headline.get('metric'))
    shown = f' {headline["metric"]}={value:.4g}' if isinstance(value, float) else ''
    error = f': {record["error"]}' if record.get('error') else ''
    self._line(f'{unit.key}: {record["status"]} in {wall:.1f}s{shown}{error}')
    if self._writer is not None:
      self._writer.write_scalars(self.done, {
          'units/done': float(self.done), 'units/not_ok': float(self.not_ok),
          'units/elapsed_s': time.perf_counter() - self._start})
      self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None
