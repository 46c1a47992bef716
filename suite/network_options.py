"""Options every network family shares: attention kernels, rematerialisation policies.

One definition for text/ and vision/ (which may not import each other) and for the checks of
`suite.domain.ModelOptions` and `suite.bench`.
"""

from __future__ import annotations

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
