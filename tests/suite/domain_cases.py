"""Small cases for the domain contract test: per registered domain, a tiny Shape and workload.

A domain missing here fails the contract test (every registered domain must have a case);
a domain whose module does not exist yet is skipped there, with the reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from suite import domains, shapes
from suite.domain import Domain, ModelOptions, Workload

# Fields replacing those of the domain's first named size: a model that compiles in seconds,
# with attention width (heads x d_kv) different from d_model.
TINY_SHAPES: dict[str, dict[str, Any]] = {
    shapes.TEXT: dict(num_encoder_layers=2, num_decoder_layers=1, d_model=32, d_ff=64,
                      num_heads=2, d_kv=8, vocab_size=128),
    shapes.VISION: dict(num_encoder_layers=2, d_model=32, d_ff=64, num_heads=2, d_kv=8,
                        image_size=32, patch_size=8, num_classes=7),
}
# Workload sizes for the tiny cases (missing: the domain's defaults).
TINY_SIZES: dict[str, dict[str, int]] = {
    shapes.TEXT: {'input_length': 12, 'target_length': 6},
    shapes.VISION: {},
}
EVAL_EXAMPLES = 11  # eval batches of 4: 4 + 4 + 3, a ragged last batch
EVAL_BATCH = 4


def case(name: str) -> tuple[Domain, shapes.Shape, Workload]:
  """(domain, tiny shape, workload) of the registered domain `name`."""
  domain = domains.get(name)
  base = shapes.parse(shapes.names(name)[0], name)
  shape = base.replace(**TINY_SHAPES[name])
  return domain, shape, domain.workload(shape, **TINY_SIZES[name])


def model(domain: Domain, shape: shapes.Shape):
  return domain.build_model(shape, ModelOptions(dtype='float32'))


def eval_set(domain: Domain, shape: shapes.Shape, workload: Workload) -> dict[str, np.ndarray]:
  """`EVAL_EXAMPLES` synthetic examples, as one batch."""
  return domain.synthetic_batch(shape, workload, EVAL_EXAMPLES, seed=1)


def split(batch: dict[str, np.ndarray], size: int) -> list[dict[str, np.ndarray]]:
  rows = len(next(iter(batch.values())))
  return [{k: v[i:i + size] for k, v in batch.items()} for i in range(0, rows, size)]
