"""Parallel workers for `suite.run`: the plan cut into independent chains, claimed one at a time.

A chain is a set of units linked by `init` (a unit starts from another's checkpoint) or
`same_as` (a unit copies another's record): one shape's pretraining, finetuning and evaluation
units, with every copy of them. Chains share nothing, so worker processes can run them in any
order and at the same time. Each worker walks the chains longest first (by the units' estimated
seconds) and runs the first one no other worker has claimed; a claim is a file created with
O_EXCL in the session's claims folder, so exactly one worker gets each chain, whatever the
timing. Longest first, taken as workers come free, keeps the finishing times close (LPT
scheduling); `makespan` is that schedule's length from the estimates, for `--dry_run`.

The session folder holds `session.json` (when the session started, how many journal records
existed then, how many workers) so that every worker's progress line counts the whole plan.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import json
import os
import tempfile
import time
from collections.abc import Mapping, Sequence

from suite.units import Unit

SESSION_FILE = 'session.json'


@dataclasses.dataclass(frozen=True)
class Chain:
  """Units that must run in one process, in plan order; `seconds` their estimated total."""

  id: str
  units: tuple[Unit, ...]
  seconds: float


def chains(plan: Sequence[Unit], seconds: Mapping[str, float]) -> list[Chain]:
  """`plan`'s units grouped by `init` and `same_as` links (a unit whose init or source is not
  in `plan` stands alone), each group in plan order; longest first (ties: plan order)."""
  parent = {u.key: u.key for u in plan}

  def root(key: str) -> str:
    while parent[key] != key:
      parent[key] = parent[parent[key]]
      key = parent[key]
    return key

  for u in plan:
    for other in (u.init, u.same_as):
      if other in parent:
        parent[root(u.key)] = root(other)
  groups: dict[str, list[Unit]] = {}
  for u in plan:
    groups.setdefault(root(u.key), []).append(u)
  out = []
  for members in groups.values():
    digest = hashlib.sha256('\n'.join(u.run_id for u in members).encode()).hexdigest()[:16]
    out.append(Chain(digest, tuple(members), sum(seconds.get(u.key, 0.0) for u in members)))
  return sorted(out, key=lambda c: -c.seconds)  # stable: ties keep plan order


def makespan(durations: Sequence[float], workers: int) -> float:
  """Wall time of running `durations` longest first, each on the first worker to come free."""
  if workers < 1:
    raise ValueError(f'workers={workers}: need at least 1.')
  free = [0.0] * workers
  for d in sorted(durations, reverse=True):
    heapq.heappush(free, heapq.heappop(free) + d)
  return max(free, default=0.0)


class Session:
  """A run's claims folder: which chains are taken, and the facts every worker shares."""

  def __init__(self, directory: str):
    self.directory = directory

  @classmethod
  def create(cls, parent: str, journal_records: int, workers: int,
             started: float | None = None) -> Session:
    """A fresh folder under `parent` (one per run of the command, so claims of an earlier,
    killed run never block this one); `started`: the run's time.time() (default: now)."""
    os.makedirs(parent, exist_ok=True)
    directory = tempfile.mkdtemp(prefix=time.strftime('%Y%m%d-%H%M%S-'), dir=parent)
    with open(os.path.join(directory, SESSION_FILE), 'w') as f:
      json.dump({'started': started or time.time(), 'journal_records': journal_records,
                 'workers': workers}, f)
    return cls(directory)

  def facts(self) -> dict:
    with open(os.path.join(self.directory, SESSION_FILE)) as f:
      return json.load(f)

  def claim(self, chain: Chain) -> bool:
    """True for exactly one caller per chain and session."""
    try:
      fd = os.open(os.path.join(self.directory, chain.id), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
      return False
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    return True
