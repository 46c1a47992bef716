"""suite.gemm_rates: XLA's and torch's float32 matmul rates in the three forms of a train step;
sizes parsed or refused with the expected form."""

import json
import subprocess
import sys

import pytest

from suite import gemm_rates


def test_parse_size():
  assert gemm_rates.parse_size('2080x384x1536') == (2080, 384, 1536)
  assert gemm_rates.parse_size(' 8X4X2 ') == (8, 4, 2)
  for bad in ('8x8', '8x0x2', '8x-1x2', 'axbxc', ''):
    with pytest.raises(ValueError, match='MxKxN'):
      gemm_rates.parse_size(bad)


def test_measure_times_every_form_of_every_size():
  records = gemm_rates.measure(['64x32x48', '16x8x8'], steps=2, warmup=1, repeats=1)
  assert [(r['size'], r['form']) for r in records] == [
      (size, form) for size in ('64x32x48', '16x8x8') for form in gemm_rates.FORMS]
  for r in records:
    assert r['xla_gflops'] > 0 and r['torch_gflops'] > 0
    assert r['xla_over_torch'] == pytest.approx(r['xla_gflops'] / r['torch_gflops'])
    assert r['torch_threads'] >= 1 and 'median of 1 windows of 2 products' in r['method']
  with pytest.raises(ValueError, match='no matmul sizes'):
    gemm_rates.measure([])
  with pytest.raises(ValueError, match='steps >= 1'):
    gemm_rates.measure(['8x8x8'], steps=0)


def test_forms_compute_the_products_they_name():
  import numpy as np
  import torch
  rng = np.random.default_rng(0)
  x, w, g = (rng.standard_normal(s, np.float32) for s in ((6, 4), (4, 5), (6, 5)))
  operands = {'forward': (x, w), 'input_gradient': (g, w), 'weight_gradient': (x, g)}
  expected = {'forward': x @ w, 'input_gradient': g @ w.T, 'weight_gradient': x.T @ g}
  for form in gemm_rates.FORMS:
    a, b = operands[form]
    xla_out = gemm_rates._xla_product(form, a, b)(a, b)
    np.testing.assert_allclose(np.asarray(xla_out), expected[form], rtol=1e-5, atol=1e-5)
    torch_out = gemm_rates._torch_product(form)(torch.from_numpy(a), torch.from_numpy(b))
    np.testing.assert_allclose(torch_out.numpy(), expected[form], rtol=1e-5, atol=1e-5)
    shapes = [t.shape for t in gemm_rates._operands(form, 6, 4, 5, rng)]
    assert shapes == [a.shape, b.shape]


def _command(*flags):
  return subprocess.run([sys.executable, '-m', 'suite.gemm_rates', *flags],
                        capture_output=True, text=True, timeout=300)


def test_command_prints_json_lines_and_refuses_bad_sizes():
  done = _command('--sizes=32x16x8', '--steps=1', '--warmup=0', '--repeats=1')
  assert done.returncode == 0, done.stderr
  lines = [json.loads(line) for line in done.stdout.splitlines()]
  assert [line['form'] for line in lines] == list(gemm_rates.FORMS)
  bad = _command('--sizes=32x16')
  assert bad.returncode == 1
  assert '--sizes' in bad.stderr and '32x16' in bad.stderr and 'MxKxN' in bad.stderr
