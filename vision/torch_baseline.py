"""The reference point for vision speed: Hugging Face transformers' PyTorch ViT with AdamW.

Used by `suite.bench --domain=vision --compare=reference` to time the same shape and batch side
by side with ours on the same machine, in a fresh Python process (suite.reference_timing) with
glibc's default allocator or suite.host_memory's setting. The model is a
`ViTForImageClassification` built locally from a ViTConfig of the Shape (random weights, never
downloaded): hidden_size = d_model, heads and head_dim = d_kv, intermediate = d_ff, layers,
patch, image size and classes, with our ViT's numerics (tanh GELU, LayerNorm epsilon 1e-6) and
dropout off, and torch.optim.AdamW at the vision domain's AdamW settings (learning rate 1e-3,
weight decay 1e-4). Our images are NHWC float32; torch gets them as NCHW, with integer labels and
transformers' own cross-entropy loss. Needs the `hf` extra (transformers, torch).

What HF's ViT cannot express is an error rather than a different model: pooling other than
the class token (HF has no global-average or MAP head), and an attention width heads x d_kv
other than d_model with a transformers that ignores `head_dim` (4.x; 5.x reads it). A shape with
fixed sin-cos positions is timed with HF's learned position table (the same additions; the
optimizer also updates the table's grid x d_model entries).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from suite import costs, reference_timing
from suite.shapes import VISION, Shape

CHANNELS = 3
# AdamW as vision.domain's default optimizer (adamw_constant) runs it: our side of the comparison.
LEARNING_RATE = 1e-3
WEIGHT_DECAY = 1e-4


def hf_config(shape: Shape) -> dict:
  """The ViTConfig keyword arguments for `shape`; ValueError for what HF's ViT cannot express."""
  if shape.domain != VISION:
    raise ValueError(f'{shape.domain} shape given to the ViT reference; it times vision shapes '
                     '(suite.bench --domain=vision).')
  if shape.pooling != 'cls':
    raise ValueError(
        f"pooling={shape.pooling!r}: transformers' ViTForImageClassification pools with the "
        "class token only; time a pooling='cls' shape (dataclasses.replace(shape, "
        "pooling='cls')) for the reference.")
  from vision import checkpoints  # imports JAX: only where the config is made, not in the child
  return checkpoints.config_from_shape(shape, layer_norm_epsilon=1e-6, gelu_approximate=True,
                                       dropout_rate=0.0)


def build_reference(shape: Shape, config: dict | None = None) -> Any:
  """ViTForImageClassification of `shape` (from `config`, default `hf_config(shape)`).

  Raises ValueError when the model's parameter count is not the shape's (suite.costs, with a
  learned position table): the installed transformers built another attention width.
  """
  import transformers

  config = hf_config(shape) if config is None else config
  model = transformers.ViTForImageClassification(transformers.ViTConfig(**config))
  built = sum(p.numel() for p in model.parameters())
  expected = costs.params(dataclasses.replace(shape, posemb='learn'))
  if built != expected:
    width = shape.num_heads * shape.d_kv
    raise ValueError(
        f'transformers {transformers.__version__} built a ViT of {built:,} parameters for a '
        f'shape of {expected:,}: it cannot express attention width num_heads x d_kv = '
        f'{shape.num_heads} x {shape.d_kv} = {width} with d_model={shape.d_model} (ViT reads '
        '`head_dim` from transformers 5.0 on). Upgrade transformers, or time a shape with '
        f'num_heads x d_kv = d_model.')
  return model


def check_batch(shape: Shape, batch: dict[str, np.ndarray]) -> None:
  """ValueError unless batch is {'image': float [B, S, S, 3] with S = image_size, 'label': [B]}."""
  missing = [k for k in ('image', 'label') if k not in batch]
  if missing:
    raise ValueError(f'batch lacks {missing}; a ViT batch is image [B, H, W, 3] float and '
                     'label [B] int (tasks.images layout).')
  images, labels = np.asarray(batch['image']), np.asarray(batch['label'])
  size = shape.image_size
  if images.ndim != 4 or images.shape[1:] != (size, size, CHANNELS):
    raise ValueError(f'batch image has shape {images.shape}; expected [batch, {size}, {size}, '
                     f'{CHANNELS}] (NHWC at the shape\'s image_size).')
  if labels.shape != images.shape[:1] or labels.dtype.kind not in 'iu':
    raise ValueError(f'batch label has shape {labels.shape} and dtype {labels.dtype}; expected '
                     f'[{images.shape[0]}] integers, one per image.')
  if labels.size and (labels.min() < 0 or labels.max() >= shape.num_classes):
    raise ValueError(f'batch labels span [{labels.min()}, {labels.max()}], outside '
                     f'[0, {shape.num_classes}) for num_classes={shape.num_classes}.')


def time_in_fresh_process(shape: Shape, batch: dict[str, np.ndarray], steps: int, warmup: int,
                          keep_host_memory: bool, repeats: int = 1) -> dict:
  """`time_train_steps` in a new (spawned) process; keep_host_memory as suite.host_memory.

  The shape and batch are checked here, before the process starts.
  """
  config = hf_config(shape)
  check_batch(shape, batch)
  return reference_timing.run_in_fresh_process(
      _time_config, shape, config, batch, steps, warmup, keep_host_memory=keep_host_memory,
      repeats=repeats)


def time_train_steps(shape: Shape, batch: dict[str, np.ndarray], steps: int, warmup: int,
                     learning_rate: float = LEARNING_RATE, repeats: int = 1,
                     weight_decay: float = WEIGHT_DECAY) -> dict:
  """Seconds per AdamW train step of ViTForImageClassification on `batch` (float32, CPU/GPU):
  the median over `repeats` windows of `steps` steps, after `warmup` steps, as suite.bench.

  Dropout is off; learning rate and weight decay are those of the vision domain's AdamW; the
  loss is transformers' own cross-entropy on the labels.
  """
  config = hf_config(shape)
  check_batch(shape, batch)
  return _time_config(shape, config, batch, steps, warmup, learning_rate, repeats, weight_decay)


def torch_inputs(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The model's keyword arguments: pixel_values NCHW float32 (from our NHWC), labels int64."""
  return {'pixel_values': np.transpose(np.asarray(batch['image'], np.float32), (0, 3, 1, 2)),
          'labels': np.asarray(batch['label']).astype(np.int64)}


def _time_config(shape, config, batch, steps, warmup, learning_rate=LEARNING_RATE, repeats=1,
                 weight_decay=WEIGHT_DECAY):
  return reference_timing.time_hf_train_steps(
      lambda: build_reference(shape, config), torch_inputs(batch), steps, warmup,
      learning_rate=learning_rate, repeats=repeats, weight_decay=weight_decay)
