r"""Float32 matmul rates of XLA and of torch on this machine, in the three forms a train step uses.

  python -m suite.gemm_rates                       # the ViT S/8 step's matmuls (64 px, batch 32)
  python -m suite.gemm_rates --sizes=4096x4096x4096,2080x384x1536

A train step's speed on a CPU is mostly its matmuls' speed, so this is what bounds
`suite.bench --compare=reference` there: when XLA's GEMMs run slower than the ones torch calls,
the rest of our step has to make up the difference before ours can be the faster. Each size
`MxKxN` is a [M, K] x [K, N] product (M rows: batch x tokens; K x N: a weight matrix), timed as

- `forward`: x [M, K] @ w [K, N];
- `input_gradient`: g [M, N] @ w^T, the gradient reaching the layer's input;
- `weight_gradient`: x^T @ g, the weight's gradient (a contraction over the M rows);

jitted on JAX's CPU backend and eagerly in torch (threads: torch's default, one per core), on
the same random float32 matrices, each the median of `--repeats` windows of `--steps` products
after `--warmup`. Prints one JSON line per size and form on stdout: `xla_gflops`,
`torch_gflops`, `xla_over_torch`, `method`. Needs torch (the `hf` extra); no accelerator is
used, whatever JAX has.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np
from absl import flags

from suite import flagcheck

# The ViT S/8 step at 64 pixels, batch 32 (65 tokens: 2,080 rows) that suite.bench compares
# with transformers' ViT: the attention projections, and the MLP's two matrices.
DEFAULT_SIZES = ('2080x384x384', '2080x384x1536', '2080x1536x384')
FORMS = ('forward', 'input_gradient', 'weight_gradient')

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags, defined when it runs (suite.bench, which tests import beside this
  module, has flags of the same names)."""
  flags.DEFINE_list('sizes', list(DEFAULT_SIZES),
                    'Matmul sizes MxKxN: [M, K] x [K, N] (M rows, a K x N weight matrix).')
  flags.DEFINE_integer('steps', 10, 'Timed products per window.', lower_bound=1)
  flags.DEFINE_integer('warmup', 3, 'Untimed products first (after compilation).',
                       lower_bound=0)
  flags.DEFINE_integer('repeats', 3, 'Timed windows; the median counts.', lower_bound=1)
  flagcheck.require('sizes', _sizes_ok, f'comma-separated MxKxN sizes, e.g. {DEFAULT_SIZES[1]}')


def parse_size(text: str) -> tuple[int, int, int]:
  """'2080x384x1536' -> (2080, 384, 1536); ValueError naming the bad size otherwise."""
  parts = text.strip().lower().split('x')
  if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
    raise ValueError(f'matmul size {text!r}: expected MxKxN with three positive integers, '
                     f'e.g. {DEFAULT_SIZES[1]} ([M, K] x [K, N]).')
  m, k, n = (int(p) for p in parts)
  return m, k, n


def _median_seconds(product: Callable, operands: tuple, steps: int, warmup: int,
                    repeats: int) -> float:
  """Seconds per `product(*operands)`, waited for (JAX dispatches asynchronously)."""
  def run(n):
    result = None
    for _ in range(n):
      result = product(*operands)
    if hasattr(result, 'block_until_ready'):
      result.block_until_ready()

  run(warmup)
  windows = []
  for _ in range(repeats):
    start = time.perf_counter()
    run(steps)
    windows.append((time.perf_counter() - start) / steps)
  return statistics.median(windows)


# The operands of each form, as they sit in memory in a train step: x [M, K] (activations),
# w [K, N] (the weight), g [M, N] (the output's gradient).
_OPERAND_SHAPES = {'forward': ('mk', 'kn'), 'input_gradient': ('mn', 'kn'),
                   'weight_gradient': ('mk', 'mn')}


def _operands(form: str, m: int, k: int, n: int, rng: np.random.Generator):
  """The two float32 operands of `form` (random normal)."""
  sizes = {'m': m, 'k': k, 'n': n}
  return tuple(rng.standard_normal(tuple(sizes[d] for d in dims), np.float32)
               for dims in _OPERAND_SHAPES[form])


def _xla_product(form: str, a, b):
  """`form`'s product compiled ahead of time for operands a, b (so no timing window, warm-up
  or not, includes compilation)."""
  import jax
  product = {'forward': lambda a, b: a @ b,
             'input_gradient': lambda a, b: a @ b.T,
             'weight_gradient': lambda a, b: a.T @ b}[form]
  return jax.jit(product).lower(a, b).compile()


def _torch_product(form: str):
  return {'forward': lambda a, b: a @ b,
          'input_gradient': lambda a, b: a @ b.t(),
          'weight_gradient': lambda a, b: a.t() @ b}[form]


def measure(sizes: Sequence[str], steps: int = 10, warmup: int = 3,
            repeats: int = 3) -> list[dict]:
  """One record per size and form (see the module docstring). ValueError for a bad size or
  count; ImportError naming the extra when torch is missing."""
  parsed = [parse_size(s) for s in sizes]
  if not parsed:
    raise ValueError('no matmul sizes given; e.g. --sizes=' + ','.join(DEFAULT_SIZES))
  if steps < 1 or warmup < 0 or repeats < 1:
    raise ValueError(f'steps={steps}, warmup={warmup}, repeats={repeats}: need steps >= 1, '
                     'warmup >= 0, repeats >= 1.')
  try:
    import torch
  except ImportError as e:
    raise ImportError('suite.gemm_rates times torch next to XLA: install the hf extra '
                      "(pip install -e '.[hf]').") from e
  import jax

  cpu = jax.devices('cpu')[0]
  rng = np.random.default_rng(0)
  records = []
  for m, k, n in parsed:
    flops = 2 * m * k * n
    for form in FORMS:
      a, b = _operands(form, m, k, n, rng)
      operands = jax.device_put((a, b), cpu)
      xla_s = _median_seconds(_xla_product(form, *operands), operands, steps, warmup, repeats)
      torch_s = _median_seconds(_torch_product(form), (torch.from_numpy(a), torch.from_numpy(b)),
                                steps, warmup, repeats)
      records.append({
          'size': f'{m}x{k}x{n}', 'form': form,
          'xla_gflops': flops / xla_s / 1e9, 'torch_gflops': flops / torch_s / 1e9,
          'xla_over_torch': torch_s / xla_s,
          'torch_threads': torch.get_num_threads(),
          'versions': {'jax': jax.__version__, 'torch': torch.__version__},
          'method': (f'float32, 2*M*K*N FLOPs; median of {repeats} windows of {steps} products '
                     f'after {warmup} warm-up products; XLA jitted on the CPU backend (compile '
                     'excluded), torch eager; the same matrices')})
  return records


def _sizes_ok(sizes: Sequence[str]) -> bool:
  return bool(sizes) and all(parse_size(s) for s in sizes)


def main(argv: Sequence[str]) -> None:
  del argv  # flagcheck.run rejects positional arguments
  try:
    records = measure(FLAGS.sizes, FLAGS.steps, FLAGS.warmup, FLAGS.repeats)
  except ImportError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)
  for record in records:
    print(json.dumps(record), flush=True)


if __name__ == '__main__':
  define_flags()
  flagcheck.run(main)
