"""Options every network family shares: attention kernels, rematerialisation policies, and
where cuDNN's fused attention can run.

One definition for text/ and vision/ (which may not import each other) and for the checks of
`suite.domain.ModelOptions` and `suite.bench`.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp

ATTENTION_IMPLS = (None, 'xla', 'cudnn')
CUDNN_DTYPES = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))  # cuDNN's fused attention
REMAT_POLICIES = {
    'none': None,
    'full': jax.checkpoint_policies.nothing_saveable,
    'dots': jax.checkpoint_policies.checkpoint_dots,
    'dots_no_batch': jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


def check(attention_impl: str | None, dtype: Any, remat_policy: str) -> None:
  """ValueError naming the bad option and the valid ones."""
  if attention_impl not in ATTENTION_IMPLS:
    raise ValueError(f'attention_impl={attention_impl!r}: valid are {ATTENTION_IMPLS}.')
  if attention_impl == 'cudnn' and jnp.dtype(dtype) not in CUDNN_DTYPES:
    raise ValueError(f"attention_impl='cudnn' computes in bfloat16 or float16, not "
                     f"{jnp.dtype(dtype).name}: use dtype=jnp.bfloat16, or "
                     "attention_impl='xla' for float32.")
  if remat_policy not in REMAT_POLICIES:
    raise ValueError(f'remat_policy={remat_policy!r}: valid are {", ".join(REMAT_POLICIES)}.')


def cuda_capability(device: Any) -> tuple[int, int] | None:
  """A CUDA GPU's compute capability ((9, 0) for H100 and H200); None for any other device
  (CPUs, TPUs, ROCm GPUs, whose `compute_capability` is not 'major.minor')."""
  if getattr(device, 'platform', None) != 'gpu':
    return None
  match = re.fullmatch(r'(\d+)\.(\d+)', str(getattr(device, 'compute_capability', '')))
  return (int(match[1]), int(match[2])) if match else None


def cudnn_attention_problem(device: Any, dtype: Any, head_dim: int | None = None) -> str | None:
  """Why cuDNN's fused attention (`suite.attention`) cannot run on `device` for this compute
  dtype and head dimension, as a phrase; None when it can.

  Its flash-attention kernel needs an NVIDIA GPU of compute capability 8.0 (Ampere) or later,
  bfloat16 or float16 inputs, and a head dimension that is a multiple of 8, at most 256 on
  Hopper (9.0) and later and 128 before (jax.nn.dot_product_attention's own checks).
  """
  capability = cuda_capability(device)
  kind = f'{getattr(device, "platform", "?")} ({getattr(device, "device_kind", "?")})'
  if capability is None:
    return f'it needs an NVIDIA GPU, and this device is {kind}'
  if capability < (8, 0):
    return (f'it needs compute capability 8.0 (Ampere) or later, and {kind} has '
            f'{capability[0]}.{capability[1]}')
  if jnp.dtype(dtype) not in CUDNN_DTYPES:
    return f'it computes in bfloat16 or float16, not {jnp.dtype(dtype).name}'
  limit = 256 if capability >= (9, 0) else 128
  if head_dim is not None and (head_dim % 8 or head_dim > limit):
    return (f'it takes head dimensions that are multiples of 8 up to {limit} on {kind}, and '
            f'this shape has d_kv={head_dim}')
  return None
