"""Append-only JSON-lines files whose last line a crash may cut: the one reader and writer of
the training loop's metrics files (`suite.metrics_log`) and the results journal
(`suite.journal`).

A record is written as one whole line in one unbuffered `os.write` (more only if the OS
writes part of it), so a kill can only leave the file's last line without its newline.
`read` splits a file into its whole lines (each parsed) and that tail (the bytes after the last
newline); what a caller makes of a tail is its own rule.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any


class BadLine(ValueError):
  """A whole line (newline-terminated) that is not a JSON object."""

  def __init__(self, number: int, error: str):
    super().__init__(f'line {number}: {error}')
    self.number = number
    self.error = error


def read(path: str | os.PathLike) -> tuple[list[tuple[int, dict[str, Any]]], bytes, int]:
  """([(line number, record)] of the whole non-blank lines, the tail after the last newline
  (b'' when the file ends with one), the tail's byte offset). A whole line that is not a JSON
  object raises BadLine."""
  with open(path, 'rb') as f:
    data = f.read()
  lines = data.split(b'\n')
  tail = lines.pop()
  records = []
  for number, line in enumerate(lines, start=1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
      raise BadLine(number, f'not valid JSON ({error})') from None
    if not isinstance(record, dict):
      raise BadLine(number, 'not a JSON object')
    records.append((number, record))
  return records, tail, len(data) - len(tail)


def append_line(fd: int, record: Mapping[str, Any]) -> None:
  """Appends `record` as one line to the file open as `fd` (O_APPEND) in one write."""
  data = (json.dumps(record) + '\n').encode()
  written = os.write(fd, data)
  while written < len(data):
    written += os.write(fd, data[written:])
