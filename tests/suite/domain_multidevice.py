"""Run as a script on a 4-device CPU platform: the domains' eval sums and predict on 4 devices.

`python tests/suite/domain_multidevice.py DOMAIN PARAMS.pkl` prints one JSON object: on the
mesh data:4, the weighted sums over the domain's tiny case's eval set in batches of 4 with a
ragged last one (each padded to a multiple of the 4 data shards), and the predictions of 5
rows, with the params of the pickle file (host arrays).
tests/suite/test_domain_contract.py launches it with
XLA_FLAGS=--xla_force_host_platform_device_count=4 and compares them with one device's.
"""

import json
import os
import pickle
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from suite import partition, trainer  # noqa: E402
from tests.suite import domain_cases  # noqa: E402


def main():
  assert len(jax.devices()) == 4, jax.devices()
  name, params_file = sys.argv[1:]
  domain, shape, workload = domain_cases.case(name)
  model = domain_cases.model(domain, shape)
  data = domain_cases.eval_set(domain, shape, workload)
  with open(params_file, 'rb') as f:
    params = pickle.load(f)
  steps = trainer.eval_steps(model, partition.make_mesh(), domain.logical_axis_rules)
  predictions = steps.predict(params, domain_cases.split(data, 5)[0])  # 5 rows, padded to 8
  print(json.dumps({
      'sums': steps.sums(params, domain_cases.split(data, domain_cases.EVAL_BATCH)),
      'rows_multiple': steps.rows_multiple,
      'predictions': [np.asarray(x).tolist() for x in jax.tree.leaves(predictions)]}))


if __name__ == '__main__':
  main()
