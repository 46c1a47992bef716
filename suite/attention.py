"""Fused attention through `jax.nn.dot_product_attention`, for text/ and vision/ alike.

Both network families call `fused_attention` when built with attention_impl='cudnn' (cuDNN's
flash-attention kernel on NVIDIA GPUs); tests call it with implementation='xla', which takes
the same arguments on any backend, to hold it to the networks' own attention. The layout is the
networks' own: q [batch, q_len, heads, d_kv], k and v [batch, kv_len, heads, d_kv] (jax's BTNH).

What the kernel takes, and why it is passed this way:
- bias: [1, heads, q_len, kv_len], in the compute dtype. cuDNN computes the bias gradient
  (T5's relative position bias is trained) only for a bias whose batch dimension is 1, so the
  bias is never broadcast over the batch; in training with a bias, cuDNN needs even q_len and
  kv_len (T5's 512/114 are).
- padding: as key lengths (`key_value_seq_lengths`), so that no [batch, 1, 1, kv_len] mask is
  folded into the bias. Keys must be valid as a prefix (right padding, as seqio and our
  synthetic batches pad); a row with no valid key attends to its first key (length 1) instead of
  dividing by zero: such rows are padding, weighted 0 by the losses.
- is_causal: cuDNN skips the masked half of the product instead of masking it.
- dtype: cuDNN takes bfloat16 or float16 (suite.network_options.CUDNN_DTYPES); the softmax runs
  in float32 inside the kernel.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def fused_attention(q: jax.Array, k: jax.Array, v: jax.Array, *, scale: float,
                    bias: jax.Array | None = None, kv_valid: jax.Array | None = None,
                    is_causal: bool = False, implementation: str = 'cudnn') -> jax.Array:
  """softmax(scale * q k^T + bias, masked) v as one `jax.nn.dot_product_attention` call.

  q [b, t, h, d], k and v [b, s, h, d]; bias None or [1, h, t, s] (broadcast over the batch);
  kv_valid None or a [b, s] boolean prefix mask of the valid keys; is_causal masks keys after
  the query's position. Returns [b, t, h, d] in q's dtype. implementation: 'cudnn' (NVIDIA
  GPUs, bfloat16/float16) or 'xla' (any backend and dtype: the same arguments, for tests).
  """
  if bias is not None:
    if bias.ndim != 4 or bias.shape[0] != 1:
      raise ValueError(f'bias of shape {bias.shape}: expected [1, heads, q_len, kv_len], '
                       'broadcast over the batch (cuDNN trains only such a bias).')
    bias = bias.astype(q.dtype)
  lengths = None
  if kv_valid is not None:
    lengths = jnp.maximum(jnp.sum(kv_valid, axis=-1, dtype=jnp.int32), 1)
  return jax.nn.dot_product_attention(q, k, v, bias=bias, scale=scale, is_causal=is_causal,
                                      key_value_seq_lengths=lengths,
                                      implementation=implementation)
