r"""The fused attention call (`suite.attention.fused_attention`) against a float32 reference, on
this machine's first device, for each way the networks call it:

  python -m suite.attention_parity            # cuDNN on an NVIDIA GPU, XLA elsewhere
  python -m suite.attention_parity --tiny     # small sizes (CPU)

| case | queries x keys | what |
|---|---|---|
| bias_padding | 512 x 512 | relative position bias, keys padded (an encoder's self-attention) |
| bias_causal | 114 x 114 | bias, causal (a decoder's self-attention) |
| padding | 114 x 512 | keys padded, no bias (cross-attention) |
| scaled | 197 x 197 | 1/sqrt(d) scale, no bias or mask (a ViT's self-attention) |

Batch 4, 12 heads of 64, bfloat16 inputs; the reference computes softmax(scale q k^T + bias,
masked) v in float32 from the same bfloat16 values. For the output and the gradients of q, k, v
and the bias (under one random cotangent) it prints |fused - reference| / |reference|, and `ok`
when every one is under --tolerance: a kernel that drops the bias gradient, the mask or the
causal half shows up as an error near 1. One JSON object on stdout; exit status 0 when ok.
suite.gpu_check runs it before timing anything, and times with XLA's attention if it fails.
"""

from __future__ import annotations

import dataclasses
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from suite import flagcheck
from suite.attention import fused_attention
from suite.network_options import cudnn_attention_problem


@dataclasses.dataclass(frozen=True)
class Case:
  """One way of calling the fused attention: lengths and what the call carries."""

  queries: int
  keys: int
  bias: bool = False
  padding: bool = False
  causal: bool = False
  scale: float = 1.0


CASES = {
    'bias_padding': Case(512, 512, bias=True, padding=True),
    'bias_causal': Case(114, 114, bias=True, causal=True),
    'padding': Case(114, 512, padding=True),
    'scaled': Case(197, 197, scale=64 ** -0.5),
}
BATCH, HEADS, HEAD_DIM = 4, 12, 64
TINY_BATCH, TINY_HEADS, TINY_HEAD_DIM, TINY_DIVISOR = 2, 2, 8, 16  # --tiny: lengths / 16

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags, defined when it runs (so that importing this module defines none)."""
  flags.DEFINE_enum('implementation', None, ['cudnn', 'xla'],
                    "jax.nn.dot_product_attention's implementation (default: cudnn where it runs, "
                    'else xla).')
  flags.DEFINE_bool('tiny', False, 'Batch 2, 2 heads of 8, lengths / 16: seconds on a CPU.')
  flags.DEFINE_float('tolerance', 2e-2, 'Largest relative error that passes (bfloat16 inputs).')


def _inputs(case: Case, batch: int, heads: int, head_dim: int, seed: int = 0) -> dict:
  keys = jax.random.split(jax.random.key(seed), 6)
  q = jax.random.normal(keys[0], (batch, case.queries, heads, head_dim), jnp.bfloat16)
  k = jax.random.normal(keys[1], (batch, case.keys, heads, head_dim), jnp.bfloat16)
  v = jax.random.normal(keys[2], (batch, case.keys, heads, head_dim), jnp.bfloat16)
  bias = (jax.random.normal(keys[3], (1, heads, case.queries, case.keys), jnp.bfloat16)
          if case.bias else None)
  valid = None
  if case.padding:  # right padding: the first row full, the others between half and all keys
    lengths = jax.random.randint(keys[4], (batch,), case.keys // 2, case.keys + 1)
    valid = jnp.arange(case.keys)[None, :] < lengths.at[0].set(case.keys)[:, None]
  cotangent = jax.random.normal(keys[5], q.shape, jnp.float32)
  return {'q': q, 'k': k, 'v': v, 'bias': bias, 'valid': valid, 'cotangent': cotangent}


def reference(q, k, v, bias, valid, causal: bool, scale: float) -> jax.Array:
  """softmax(scale q k^T + bias, masked) v, all in float32; [b, t, h, d] in, out."""
  q, k, v = (x.astype(jnp.float32) for x in (q, k, v))
  logits = jnp.einsum('bthd,bshd->bhts', q, k, precision=jax.lax.Precision.HIGHEST) * scale
  if bias is not None:
    logits = logits + bias.astype(jnp.float32)
  mask = jnp.ones(logits.shape[-2:], bool)
  if causal:
    mask = jnp.tril(mask)
  mask = mask[None, None]
  if valid is not None:
    mask = mask & valid[:, None, None, :]
  logits = jnp.where(mask, logits, -1e30)
  weights = jax.nn.softmax(logits, axis=-1)
  return jnp.einsum('bhts,bshd->bthd', weights, v, precision=jax.lax.Precision.HIGHEST)


def _relative(x, ref) -> float:
  x, ref = np.asarray(x, np.float64), np.asarray(ref, np.float64)
  return float(np.linalg.norm(x - ref) / max(np.linalg.norm(ref), 1e-30))


def compare(case: Case, implementation: str, batch: int = BATCH, heads: int = HEADS,
            head_dim: int = HEAD_DIM) -> dict[str, float]:
  """Relative errors of the fused call's output and gradients against `reference`."""
  data = _inputs(case, batch, heads, head_dim)
  names = ['q', 'k', 'v'] + (['bias'] if case.bias else [])
  args = [data[n] for n in names]

  def fused(*a):
    kwargs = dict(zip(names, a, strict=True))
    return fused_attention(kwargs['q'], kwargs['k'], kwargs['v'], scale=case.scale,
                           bias=kwargs.get('bias'), kv_valid=data['valid'],
                           is_causal=case.causal, implementation=implementation)

  def exact(*a):
    kwargs = dict(zip(names, a, strict=True))
    return reference(kwargs['q'], kwargs['k'], kwargs['v'], kwargs.get('bias'), data['valid'],
                     case.causal, case.scale)

  def out_and_grads(fn):
    out, vjp = jax.vjp(fn, *args)
    return out, vjp(data['cotangent'].astype(out.dtype))

  got, got_grads = jax.jit(lambda: out_and_grads(fused))()
  want, want_grads = jax.jit(lambda: out_and_grads(exact))()
  errors = {'out': _relative(got, want)}
  for name, g, w in zip(names, got_grads, want_grads, strict=True):
    errors[f'd{name}'] = _relative(g, w)
  return errors


def run(implementation: str, tiny: bool, tolerance: float) -> dict:
  """Every case compared; the JSON object the command prints."""
  device = jax.devices()[0]
  cases = {}
  for name, case in CASES.items():
    sizes = {}
    if tiny:
      case = dataclasses.replace(case, queries=max(2, case.queries // TINY_DIVISOR),
                                 keys=max(2, case.keys // TINY_DIVISOR))
      sizes = {'batch': TINY_BATCH, 'heads': TINY_HEADS, 'head_dim': TINY_HEAD_DIM}
    errors = compare(case, implementation, **sizes)
    cases[name] = {**dataclasses.asdict(case), 'errors': errors,
                   'ok': all(e < tolerance for e in errors.values())}
  return {'kind': 'attention_parity', 'implementation': implementation,
          'device': f'{device.platform} ({device.device_kind})', 'tolerance': tolerance,
          'ok': all(c['ok'] for c in cases.values()), 'cases': cases}


def main(argv):
  del argv  # flagcheck.run rejects positional arguments
  implementation = FLAGS.implementation
  if implementation is None:
    problem = cudnn_attention_problem(jax.devices()[0], jnp.bfloat16, HEAD_DIM)
    implementation = 'xla' if problem else 'cudnn'
  result = run(implementation, FLAGS.tiny, FLAGS.tolerance)
  print(json.dumps(result), flush=True)
  for name, case in result['cases'].items():
    worst = max(case['errors'], key=case['errors'].get)
    print(f'{name}: {"ok" if case["ok"] else "FAILED"} (largest error {worst} '
          f'{case["errors"][worst]:.2e})', file=sys.stderr)
  return 0 if result['ok'] else 1


if __name__ == '__main__':
  define_flags()
  flagcheck.run(main)
