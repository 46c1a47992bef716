"""suite.schedule: the plan cut into independent chains, claims, and the LPT schedule length."""

import json
import os
import subprocess
import sys

import pytest

from suite import schedule, units
from suite.configs import embedded

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope='module')
def plan():
  config = embedded.get_config()
  return units.build(config, list(config.domains.keys()), None)


def test_chains_partition_the_plan_and_keep_every_link_inside(plan):
  work = [u for u in plan if u.stage != units.BENCH]
  chains = schedule.chains(work, {u.key: 1.0 for u in work})
  members = [u.key for c in chains for u in c.units]
  assert sorted(members) == sorted(u.key for u in work)  # each unit in exactly one chain
  chain_of = {u.key: c.id for c in chains for u in c.units}
  for u in work:
    for other in (u.init, u.same_as):
      if other:
        assert chain_of[other] == chain_of[u.key], (u.key, other)
  for c in chains:  # plan order inside a chain: a unit comes after its init and its source
    position = {u.key: i for i, u in enumerate(c.units)}
    for u in c.units:
      for other in (u.init, u.same_as):
        if other:
          assert position[other] < position[u.key]
  # The embedded default: every distinct shape's chain, and the scratch baselines apart.
  assert len(chains) > len({u.domain for u in work})
  assert len({c.id for c in chains}) == len(chains)


def test_chains_come_longest_first(plan):
  work = [u for u in plan if u.stage != units.BENCH]
  seconds = {u.key: float(u.train_flops()) for u in work}
  chains = schedule.chains(work, seconds)
  totals = [c.seconds for c in chains]
  assert totals == sorted(totals, reverse=True)
  assert totals[0] == pytest.approx(sum(seconds[u.key] for u in chains[0].units))


def test_makespan_is_the_longest_first_schedule():
  assert schedule.makespan([50, 40, 25], 1) == 115
  assert schedule.makespan([25, 50, 40], 2) == 65
  assert schedule.makespan([50, 40, 25], 3) == 50
  assert schedule.makespan([], 2) == 0
  with pytest.raises(ValueError, match='workers=0'):
    schedule.makespan([1.0], 0)


CLAIM = """
import json, sys
from suite import schedule
session = schedule.Session(sys.argv[1])
ids = json.loads(sys.argv[2])
print(json.dumps([i for i in ids if session.claim(schedule.Chain(i, (), 0.0))]))
"""


def test_each_chain_is_claimed_by_exactly_one_process(tmp_path):
  session = schedule.Session.create(str(tmp_path), journal_records=3, workers=4)
  assert session.facts()['journal_records'] == 3 and session.facts()['workers'] == 4
  ids = [f'chain{i}' for i in range(200)]
  procs = [subprocess.Popen([sys.executable, '-c', CLAIM, session.directory, json.dumps(ids)],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(4)]
  claimed = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
  flat = [i for got in claimed for i in got]
  assert sorted(flat) == sorted(ids)  # every chain once, none twice
  again = schedule.Session.create(str(tmp_path), journal_records=0, workers=1)
  assert again.directory != session.directory and os.path.isdir(again.directory)
  assert again.claim(schedule.Chain('chain0', (), 0.0))  # a new session starts unclaimed
