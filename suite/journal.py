"""The results journal: `W/results.jsonl`, append-only, one JSON object per finished unit.

A line is whole or absent: each record goes out in one unbuffered `os.write` on a file opened
with O_APPEND, then fsync. A crash mid-write can leave at most a cut last line; `read` reports
it (a warning naming the file and line) and ignores it, and `append` first cuts such a tail off
so that the next record starts on a line of its own. A malformed line elsewhere is an error
naming file:line: the journal is then damaged by something other than a crash.

Records carry `schema` (SCHEMA_VERSION); a journal written by an incompatible version is an
error before any work starts (`check_compatible`). DESIGN.md lists the fields; suite.run builds
them (`suite.domain.journal_record` plus the runner's unit fields) and suite.report reads them.
A multi-host run has one writer, process 0; every process reads.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

from absl import logging

from suite import distributed, jsonl

FILENAME = 'results.jsonl'
SCHEMA_VERSION = 1
REQUIRED = ('schema', 'run_id', 'domain', 'stage', 'task', 'status', 'metrics')


class JournalError(ValueError):
  """A journal that cannot be read or appended to as it is."""


def path(workdir: str | os.PathLike) -> str:
  return os.path.join(os.fspath(workdir), FILENAME)


def _finite(value: Any) -> Any:
  """`value` with non-finite floats as None (JSON has no NaN or infinity), recursively."""
  if isinstance(value, float):
    return value if math.isfinite(value) else None
  if isinstance(value, Mapping):
    return {str(k): _finite(v) for k, v in value.items()}
  if isinstance(value, list | tuple):
    return [_finite(v) for v in value]
  return value


def _parse(filename: str) -> tuple[list[dict[str, Any]], int | None]:
  """(records, byte offset of a cut last line or None). Any tail after the last newline is a
  cut write, even a whole object: the newline is part of the record."""
  try:
    lines, tail, offset = jsonl.read(filename)
  except jsonl.BadLine as bad:
    raise JournalError(f'{filename}:{bad.number}: not a journal record ({bad.error}); the '
                       'journal is damaged other than by a crash mid-write. Move the file away '
                       'to start afresh, or delete that line to keep the rest.') from None
  for number, record in lines:
    missing = [k for k in REQUIRED if k not in record]
    if missing:
      raise JournalError(f'{filename}:{number}: a record without {", ".join(missing)}; not a '
                         'shapebench results journal (or one from an incompatible version).')
  return [record for _, record in lines], (offset if tail.strip() else None)


def load(workdir: str | os.PathLike) -> tuple[list[dict[str, Any]], bool]:
  """(the records, oldest first, whether the last line was cut); [] when there is none. A cut
  last line is reported with a warning and ignored: its unit has no record, so it runs again."""
  filename = path(workdir)
  if not os.path.exists(filename):
    return [], False
  records, cut = _parse(filename)
  if cut is not None:
    logging.warning('%s: the last line was cut by an interrupted write; ignoring it (its unit '
                    'will run again).', filename)
  return records, cut is not None


def read(workdir: str | os.PathLike) -> list[dict[str, Any]]:
  """The journal's records (`load` without the cut flag)."""
  return load(workdir)[0]


def check_schema(records: list[dict[str, Any]], workdir: str | os.PathLike) -> None:
  """An error when a record has another schema version than this code writes."""
  versions = sorted({r.get('schema') for r in records}, key=str)
  if any(v != SCHEMA_VERSION for v in versions):
    raise JournalError(f'{path(workdir)} was written by an incompatible version of shapebench '
                       f'(journal schema {", ".join(map(str, versions))}; this version writes '
                       f'{SCHEMA_VERSION}). Use another --workdir, or move the journal away.')


def check_compatible(workdir: str | os.PathLike) -> list[dict[str, Any]]:
  """`read`, plus an error when a record has another schema version."""
  records = read(workdir)
  check_schema(records, workdir)
  return records


def append(workdir: str | os.PathLike, record: Mapping[str, Any]) -> dict[str, Any]:
  """Appends one record (with `schema` set) as one whole line; returns what was written.

  On several processes (multi-host) only process 0 writes; the others get the same record
  back (`suite.distributed.is_lead`).
  """
  missing = [k for k in REQUIRED if k != 'schema' and k not in record]
  if missing:
    raise JournalError(f'a journal record needs {", ".join(missing)}.')
  record = _finite({'schema': SCHEMA_VERSION, **record})
  if not distributed.is_lead():
    return record
  filename = path(workdir)
  os.makedirs(os.path.dirname(filename), exist_ok=True)
  if os.path.exists(filename):
    _, cut = _parse(filename)
    if cut is not None:
      logging.warning('%s: dropping a cut last line before appending.', filename)
      os.truncate(filename, cut)
  fd = os.open(filename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
  try:
    jsonl.append_line(fd, record)
    os.fsync(fd)
  finally:
    os.close(fd)
  return record


def latest_by_run(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
  """The last record of each run_id (an `ok` one, when the run has one)."""
  latest: dict[str, dict[str, Any]] = {}
  for record in records:
    previous = latest.get(record['run_id'])
    if previous is None or previous['status'] != 'ok' or record['status'] == 'ok':
      latest[record['run_id']] = dict(record)
  return latest


def finished(records: Iterable[Mapping[str, Any]]) -> set[str]:
  """The run_ids that have an `ok` record (a rerun skips them)."""
  return {r['run_id'] for r in records if r['status'] == 'ok'}
