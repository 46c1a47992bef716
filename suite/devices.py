"""Accelerator facts for MFU: dense bf16 peak FLOP/s by device kind, read off jax devices.

Peaks are the vendors' dense (no sparsity) bf16 matrix figures per chip. MFU = achieved model
FLOP/s (from suite.costs, not from the compiler) / (peak x devices). CPUs have no entry: their
MFU is reported as None rather than guessed.
"""

from __future__ import annotations

import dataclasses

import jax

# (substring of jax's device_kind, lower-cased) -> dense bf16 TFLOP/s per chip. Order matters:
# the first match wins, so more specific names come first.
DENSE_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ('h100 pcie', 756.0),
    ('h100', 989.4),
    ('h200', 989.4),
    ('gh200', 989.4),
    ('b200', 2250.0),
    ('a100', 312.0),
    ('l40s', 362.1),
    ('l4', 121.0),
    ('a10g', 70.0),
    ('v100', 125.0),
    ('tpu v3', 123.0),
    ('tpu v4', 275.0),
    ('tpu v5 lite', 197.0),
    ('tpu v5e', 197.0),
    ('tpu v5p', 459.0),
    ('tpu v5', 459.0),
    ('tpu v6 lite', 918.0),
    ('tpu v6e', 918.0),
)


@dataclasses.dataclass(frozen=True)
class DeviceInfo:
  platform: str
  kind: str
  count: int
  peak_tflops_per_device: float | None  # dense bf16; None when unknown (CPUs)

  @property
  def peak_tflops(self) -> float | None:
    return None if self.peak_tflops_per_device is None else self.peak_tflops_per_device * self.count


def peak_tflops(kind: str) -> float | None:
  """Dense bf16 TFLOP/s of one chip of `kind` (jax's device_kind), None if not in the table."""
  lowered = kind.lower()
  for needle, tflops in DENSE_BF16_TFLOPS:
    if needle in lowered:
      return tflops
  return None


def current() -> DeviceInfo:
  devices = jax.devices()
  kind = devices[0].device_kind
  platform = devices[0].platform
  peak = None if platform == 'cpu' else peak_tflops(kind)
  return DeviceInfo(platform=platform, kind=kind, count=len(devices),
                    peak_tflops_per_device=peak)
