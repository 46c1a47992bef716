"""suite.devices: dense bf16 peaks by jax device kind, never guessed, and MFU against them."""

import pytest

from suite import devices


@pytest.mark.parametrize('kind, expected', [
    ('NVIDIA H100 80GB HBM3', 989.4),  # SXM5
    ('NVIDIA H100 PCIe', 756.0),
    ('NVIDIA H100 NVL', 835.5),  # not the SXM part's 989.4
    ('NVIDIA H200', 989.4),
    ('NVIDIA GH200 480GB', 989.4),
    ('NVIDIA L4', 121.0),
    ('NVIDIA L40', 181.05),  # not L4's 121
    ('NVIDIA L40S', 362.05),
    ('NVIDIA A100-SXM4-80GB', 312.0),
    ('NVIDIA A100-PCIE-40GB', 312.0),
    ('NVIDIA A100 80GB PCIe', 312.0),
    ('TPU v3', 61.5),  # one jax device per TensorCore, two per 123-TFLOP/s chip
    ('TPU v4', 275.0),
    ('TPU v5 lite', 197.0),
    ('TPU v5', 459.0),
    ('TPU v6 lite', 918.0),
])
def test_known_kinds_get_their_dense_bf16_peak(kind, expected):
  assert devices.peak_tflops(kind) == expected


@pytest.mark.parametrize('kind', [
    'cpu',
    'NVIDIA GeForce RTX 4090',  # a GPU not in the table
    'NVIDIA H800',
    'Tesla V100-SXM2-16GB',  # no bf16 Tensor Cores
    'NVIDIA H100 80GB HBM3 MIG 1g.10gb',  # a slice of the chip, not the chip
    'TPU v4 lite',  # not v4's 275
    'TPU7x',
])
def test_kinds_not_in_the_table_have_no_peak(kind):
  assert devices.peak_tflops(kind) is None


@pytest.mark.parametrize('kind', ['nvidia h100 pcie', 'NVIDIA  H100   PCIE', 'NVIDIA_H100-PCIe'])
def test_matching_ignores_case_and_separators(kind):
  assert devices.peak_tflops(kind) == 756.0


@pytest.mark.parametrize('name', sorted(devices.DENSE_BF16_TFLOPS))
def test_every_table_entry_is_reachable_and_positive(name):
  assert devices.model_name(name) == name
  assert devices.peak_tflops(name) == devices.DENSE_BF16_TFLOPS[name] > 0


def test_peak_and_mfu_scale_with_the_device_count():
  info = devices.DeviceInfo(platform='gpu', kind='NVIDIA H100 80GB HBM3', count=8,
                            peak_tflops_per_device=devices.peak_tflops('NVIDIA H100 80GB HBM3'))
  assert info.peak_tflops == pytest.approx(8 * 989.4)
  assert devices.mfu(0.4 * 8 * 989.4, info.peak_tflops) == pytest.approx(0.4)
  assert devices.mfu(100.0, None) is None


def test_this_hosts_cpu_reports_no_peak():
  info = devices.current()
  if info.platform != 'cpu':
    pytest.skip(f'runs on a {info.platform} host')
  assert info.peak_tflops_per_device is None and info.peak_tflops is None
  assert info.count >= 1
