"""The reference point for text speed: Hugging Face transformers' PyTorch T5 with AdamW.

Used by `suite.bench --compare=reference` to time the same shape, batch and lengths side by side
with ours on the same machine. Each timing runs in a fresh Python process
(suite.reference_timing), so that torch gets the machine to itself and the host allocator
setting is the one asked for: glibc's defaults, as transformers users run it, or the setting of
suite.host_memory that our own step runs with. Needs the `hf` extra (transformers, torch).
"""

from __future__ import annotations

import numpy as np

from suite import reference_timing
from suite.shapes import Shape
from text import t5


def time_in_fresh_process(shape: Shape, batch: dict[str, np.ndarray], steps: int, warmup: int,
                          keep_host_memory: bool, repeats: int = 1) -> dict:
  """`time_train_steps` in a new (spawned) process; keep_host_memory as suite.host_memory."""
  return reference_timing.run_in_fresh_process(
      time_train_steps, shape, batch, steps, warmup, keep_host_memory=keep_host_memory,
      repeats=repeats)


def time_train_steps(shape: Shape, batch: dict[str, np.ndarray], steps: int, warmup: int,
                     learning_rate: float = 1e-4, repeats: int = 1) -> dict:
  """Seconds per AdamW train step of T5ForConditionalGeneration on `batch` (float32, CPU/GPU):
  the median over `repeats` windows of `steps` steps, after `warmup` steps, as suite.bench.

  Dropout is off and the learning rate is suite.bench's AdamW one; the loss is transformers'
  own (labels = targets).
  """
  import transformers

  config = transformers.T5Config(**t5.config_from_shape(shape, dropout_rate=0.0))
  inputs = {
      'input_ids': batch['encoder_input_tokens'].astype(np.int64),
      'decoder_input_ids': batch['decoder_input_tokens'].astype(np.int64),
      'labels': batch['decoder_target_tokens'].astype(np.int64),
  }
  return reference_timing.time_hf_train_steps(
      lambda: transformers.T5ForConditionalGeneration(config), inputs, steps, warmup,
      learning_rate=learning_rate, repeats=repeats)
