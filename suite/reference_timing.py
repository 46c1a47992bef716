"""Timing a reference implementation's train step in a fresh process: the generic half of
`suite.bench --compare=reference`.

Each domain names its reference (text: transformers' PyTorch T5, vision: its PyTorch ViT) and
turns our batch into that model's inputs; this module runs the timing the same way for all of
them. The timing runs in a new Python process, so that torch gets the machine to itself (no JAX
threads, no JAX buffers) and the host allocator setting is the one asked for: glibc's defaults,
as transformers users run it, or suite.host_memory's, the setting our own step runs with.
torch and transformers are imported inside the functions that use them (the `hf` extra), and no
domain package is imported here.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np


def run_in_fresh_process(fn: Callable[..., dict], *args: Any, keep_host_memory: bool,
                         **kwargs: Any) -> dict:
  """fn(*args, **kwargs) in a new (spawned) process, with `host_memory` added to its result.

  `fn` must be a module-level function (it is pickled by name); keep_host_memory applies
  suite.host_memory's allocator setting in the child before `fn` runs.
  """
  context = multiprocessing.get_context('spawn')
  # An executor, not a Pool: if the child dies (out of memory, a crash), this raises
  # BrokenProcessPool instead of waiting forever.
  with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as executor:
    return executor.submit(_run_in_child, fn, keep_host_memory, args, kwargs).result()


def _run_in_child(fn, keep_host_memory, args, kwargs):
  from suite import host_memory
  if keep_host_memory:
    host_memory.keep_freed_memory()
  result = fn(*args, **kwargs)
  result['host_memory'] = host_memory.describe()
  return result


def time_hf_train_steps(build_model: Callable[[], Any], inputs: Mapping[str, np.ndarray],
                        steps: int, warmup: int, learning_rate: float = 1e-4,
                        repeats: int = 1, weight_decay: float = 0.01) -> dict:
  """Seconds per AdamW train step of a transformers model on `inputs` (CPU, or CUDA when
  available): the median over `repeats` windows of `steps` steps after `warmup` steps, as
  suite.bench measures ours.

  `build_model()` returns the torch module (called after `torch.manual_seed(0)`); `inputs` are
  its keyword arguments as numpy arrays, labels included, so that the loss is the model's own.
  weight_decay is torch.optim.AdamW's (its default 0.01 unless given).
  Returns implementation, step_s, step_s_windows, final_loss and threads (torch's).
  """
  if steps < 1 or warmup < 0 or repeats < 1:
    raise ValueError(f'steps={steps}, warmup={warmup}, repeats={repeats}: need steps >= 1, '
                     'warmup >= 0 and repeats >= 1.')
  import torch
  import transformers

  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  torch.manual_seed(0)
  model = build_model().to(device).train()
  optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
  tensors = {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in inputs.items()}

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
