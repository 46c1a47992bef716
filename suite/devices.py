"""Accelerator facts for MFU: dense bf16 peak FLOP/s by device kind, read off jax devices.

Peaks are the vendors' dense (no sparsity) bf16 matrix figures, per jax device. MFU = achieved
model FLOP/s (from suite.costs, not from the compiler) / (peak x devices). A kind not in the
table (CPUs, MIG slices, chips without a published dense bf16 figure) has no peak: its MFU is
reported as None rather than guessed.
"""

from __future__ import annotations

import dataclasses
import re

import jax

# model name (see `model_name`: jax's device_kind, lower-cased, without vendor, memory size and
# SXM tokens) -> dense bf16 TFLOP/s per jax device. Names match whole, never as substrings, so
# 'l4' cannot claim an 'NVIDIA L40' and 'h100' cannot claim an 'NVIDIA H100 NVL'. The NVIDIA
# figures are the datasheets' bf16 Tensor Core figures, whose "with sparsity" values are twice
# these.
DENSE_BF16_TFLOPS: dict[str, float] = {
    'h100': 989.4,  # SXM5 ('NVIDIA H100 80GB HBM3'): 1979 with sparsity
    'h100 pcie': 756.0,  # 1513 with sparsity
    'h100 nvl': 835.5,  # 1671 with sparsity, per GPU of the NVL pair
    'h200': 989.4,  # the H100 SXM chip with more memory
    'h200 nvl': 835.5,  # 1671 with sparsity
    'gh200': 989.4,
    'b200': 2250.0,
    'a100': 312.0,  # SXM4; the PCIe cards have the same figure
    'a100 pcie': 312.0,
    'l40s': 362.05,  # 733 with sparsity
    'l40': 181.05,  # 362.1 with sparsity
    'l4': 121.0,  # 242 with sparsity
    'a10g': 70.0,
    # TPU kinds as jax reports them. v2/v3 chips show each of their two TensorCores as one jax
    # device, so a device has half the chip's figure (v3: 123 per chip); v4 and v5p chips are one
    # (megacore) device each. No V100 entry: it has no bf16 Tensor Cores (125 is its fp16 peak).
    'tpu v3': 123.0 / 2,
    'tpu v4': 275.0,
    'tpu v5 lite': 197.0,
    'tpu v5e': 197.0,
    'tpu v5': 459.0,
    'tpu v5p': 459.0,
    'tpu v6 lite': 918.0,
    'tpu v6e': 918.0,
}

# Tokens of a device kind that do not change the chip's peak: the vendor, the memory size and
# type, and the SXM form (the one the bare names above stand for).
_NEUTRAL_TOKEN = re.compile(r'nvidia|tesla|\d+gb|hbm\w*|sxm\d*')


@dataclasses.dataclass(frozen=True)
class DeviceInfo:
  platform: str
  kind: str
  count: int
  peak_tflops_per_device: float | None  # dense bf16; None when unknown (CPUs)

  @property
  def peak_tflops(self) -> float | None:
    return None if self.peak_tflops_per_device is None else self.peak_tflops_per_device * self.count


def model_name(kind: str) -> str:
  """`kind` (jax's device_kind) as a DENSE_BF16_TFLOPS key: 'NVIDIA A100-SXM4-80GB' is 'a100'."""
  tokens = re.split(r'[\s_-]+', kind.lower())
  return ' '.join(token for token in tokens if token and not _NEUTRAL_TOKEN.fullmatch(token))


def peak_tflops(kind: str) -> float | None:
  """Dense bf16 TFLOP/s of one jax device of `kind` (its device_kind), None if not in the table."""
  return DENSE_BF16_TFLOPS.get(model_name(kind))


def mfu(model_tflops_per_s: float, peak: float | None) -> float | None:
  """Model FLOP utilisation: achieved model TFLOP/s over `peak` (all devices); None without one."""
  return model_tflops_per_s / peak if peak else None


def current() -> DeviceInfo:
  devices = jax.devices()
  kind = devices[0].device_kind
  platform = devices[0].platform
  peak = None if platform == 'cpu' else peak_tflops(kind)
  return DeviceInfo(platform=platform, kind=kind, count=len(devices),
                    peak_tflops_per_device=peak)
