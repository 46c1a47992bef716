"""The reference point for text speed: Hugging Face transformers' PyTorch T5 with AdamW.

Used by `suite.bench --compare=reference` to time the same shape, batch and lengths side by side
with ours on the same machine. Each timing runs in a fresh Python process, so that torch gets
the machine to itself (no JAX threads, no JAX buffers) and the host allocator setting is the
one asked for: glibc's defaults, as transformers users run it, or the setting of
suite.host_memory that our own step runs with. Needs the `hf` extra (transformers, torch).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import statistics
import time

import numpy as np

from suite.shapes import Shape
from text import t5


def time_in_fresh_process(shape: Shape, batch: dict[str, np.ndarray], steps: int, warmup: int,
                          keep_host_memory: bool, repeats: int = 1) -> dict:
  """`time_train_steps` in a new (spawned) process; keep_host_memory as suite.host_memory."""
  context = multiprocessing.get_context('spawn')
  # An executor, not a Pool: if the child dies (out of memory, a crash), this raises
  # BrokenProcessPool instead of waiting forever.
  with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as executor:
    return executor.submit(_time_in_child, shape, batch, steps, warmup, keep_host_memory,
                           repeats).result()


def _time_in_child(shape, batch, steps, warmup, keep_host_memory, repeats):
  from suite import host_memory
  if keep_host_memory:
    host_memory.keep_freed_memory()
  result = time_train_steps(shape, batch, steps, warmup, repeats=repeats)
  result['host_memory'] = host_memory.describe()
  return result


def time_train_steps(shape: Shape, batch: dict[str, np.ndarray], steps: int, warmup: int,
                     learning_rate: float = 1e-4, repeats: int = 1) -> dict:
  """Seconds per AdamW train step of T5ForConditionalGeneration on `batch` (float32, CPU/GPU):
  the median over `repeats` windows of `steps` steps, after `warmup` steps, as suite.bench.

  Dropout is off and the learning rate is suite.bench's AdamW one; the loss is transformers'
  own (labels = targets).
  """
  import torch
  import transformers

  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  config = transformers.T5Config(**t5.config_from_shape(shape, dropout_rate=0.0))
  torch.manual_seed(0)
  model = transformers.T5ForConditionalGeneration(config).to(device).train()
  optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
  tensors = {
      'input_ids': torch.from_numpy(batch['encoder_input_tokens'].astype(np.int64)),
      'decoder_input_ids': torch.from_numpy(batch['decoder_input_tokens'].astype(np.int64)),
      'labels': torch.from_numpy(batch['decoder_target_tokens'].astype(np.int64)),
  }
  tensors = {k: v.to(device) for k, v in tensors.items()}

  def step() -> float:
    optimizer.zero_grad(set_to_none=True)
    loss = model(**tensors).loss
    loss.backward()
    optimizer.step()
    return float(loss.detach())

  for _ in range(warmup):
    step()
  if device == 'cuda':
    torch.cuda.synchronize()
  windows, losses = [], []
  for _ in range(repeats):
    start = time.perf_counter()
    losses = [step() for _ in range(steps)]  # float(loss) waits for each step to finish
    windows.append((time.perf_counter() - start) / steps)
  return {'implementation': f'transformers {transformers.__version__} / torch '
                            f'{torch.__version__} eager, AdamW, {device}',
          'step_s': statistics.median(windows), 'step_s_windows': windows,
          'final_loss': losses[-1], 'threads': torch.get_num_threads()}
