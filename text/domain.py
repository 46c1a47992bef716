"""The text domain's glue for suite/ entry points (see suite/domains.py for the contract)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from suite import costs
from suite.shapes import Shape
from text import t5


@dataclasses.dataclass(frozen=True)
class Lengths:
  """Tokens per example: encoder inputs and decoder targets."""

  input_length: int = costs.DEFAULT_INPUT_LENGTH
  target_length: int = costs.DEFAULT_TARGET_LENGTH

  def __post_init__(self):
    for name in ('input_length', 'target_length'):
      if getattr(self, name) <= 0:
        raise ValueError(f'{name}={getattr(self, name)}: must be a positive token count.')


def lengths(input_length: int = costs.DEFAULT_INPUT_LENGTH,
            target_length: int = costs.DEFAULT_TARGET_LENGTH, **_) -> Lengths:
  return Lengths(input_length, target_length)


def train_model(shape: Shape, *, dtype: Any, attention_impl: str | None = None,
                dropout_rate: float = 0.0, remat_policy: str = 'none',
                scan_layers: bool = False) -> t5.T5Model:
  return t5.build(shape, dtype, dropout_rate=dropout_rate, attention_impl=attention_impl,
                  remat_policy=remat_policy, scan_layers=scan_layers)


def synthetic_batch(shape: Shape, batch_size: int, lengths: Lengths,
                    seed: int = 0) -> dict[str, np.ndarray]:
  """Random non-pad tokens in the seqio EncDecFeatureConverter layout (no padding)."""
  rng = np.random.default_rng(seed)
  inputs = rng.integers(2, shape.vocab_size, (batch_size, lengths.input_length), np.int32)
  targets = rng.integers(2, shape.vocab_size, (batch_size, lengths.target_length), np.int32)
  decoder_inputs = np.concatenate([np.zeros_like(targets[:, :1]), targets[:, :-1]], axis=1)
  return {'encoder_input_tokens': inputs, 'decoder_input_tokens': decoder_inputs,
          'decoder_target_tokens': targets,
          'decoder_loss_weights': np.ones_like(targets, dtype=np.float32)}


def train_flops_per_example(shape: Shape, lengths: Lengths) -> int:
  return costs.train_flops_per_example(shape, lengths.input_length, lengths.target_length)


def items_per_example(shape: Shape, lengths: Lengths) -> tuple[str, int]:
  """Throughput unit: tokens, counting encoder inputs and decoder targets."""
  return 'tokens', lengths.input_length + lengths.target_length


def reference_train_step(shape: Shape, batch: dict[str, np.ndarray], steps: int, warmup: int,
                         keep_host_memory: bool = False, repeats: int = 1) -> dict:
  """The comparison point for `suite.bench --compare`: transformers' PyTorch T5 + AdamW, timed
  in a fresh process with glibc's default allocator or (keep_host_memory) suite.host_memory's.
  """
  from text import torch_baseline
  return torch_baseline.time_in_fresh_process(shape, batch, steps, warmup, keep_host_memory,
                                              repeats)
