"""The reference point for text speed: Hugging Face transformers' PyTorch T5 with AdamW.

Used by `suite.bench --compare=hf_torch` to time the same shape, batch and lengths side by side
with ours on the same machine. Needs the `hf` extra (transformers, torch).
"""

from __future__ import annotations

import time

import numpy as np

from suite.shapes import Shape
from text import t5


def time_train_steps(shape: Shape, batch: dict[str, np.ndarray], steps: int, warmup: int,
                     learning_rate: float = 1e-3) -> dict:
  """Seconds per AdamW train step of T5ForConditionalGeneration on `batch` (float32, CPU/GPU).

  Dropout is off, as in our bench; the loss is transformers' own (labels = targets).
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
  start = time.perf_counter()
  losses = [step() for _ in range(steps)]
  seconds = (time.perf_counter() - start) / steps
  return {'implementation': f'transformers {transformers.__version__} / torch '
                            f'{torch.__version__} eager, AdamW, {device}',
          'step_s': seconds, 'final_loss': losses[-1], 'threads': torch.get_num_threads()}
