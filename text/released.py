"""Released T5 checkpoints as starting points: local `google/t5-efficient-*` Hugging Face
directories and the paper's Mesh TensorFlow model folders (`bi_v1_*`).

The text domain's `checkpoint_shape` and its stages' `CheckpointRef` init_params come here:
`shape(path, step)` reads the shape from the folder's own config (HF `config.json`, or
`operative_config.gin` plus the checkpoint's variable shapes) without loading weights;
`params(ref, scan_layers)` loads the weights (`text.t5.from_hf` / `from_mesh_tf`).
`check_vocabulary(shape, task, path)` rejects a task whose vocabulary is not the one the
checkpoint was trained with (e.g. the embedded vocabulary given a 32128-id T5 checkpoint: the
config's `vocab` must name T5's SentencePiece model).
"""

from __future__ import annotations

import os
from typing import Any

from suite.domain import CheckpointRef
from suite.hf_checkpoint import (
  CONFIG_FILE,
  SAFETENSORS_FILE,
  SAFETENSORS_INDEX_FILE,
  TORCH_FILE,
  CheckpointError,
  read_config,
)
from suite.shapes import Shape
from text.gin_config import OPERATIVE_CONFIG

# Mesh TensorFlow pads the vocabulary to a multiple of this (Unitransformer.vocab_divisor);
# the released models have 32128 rows for T5's 32000 pieces + 100 sentinels.
VOCAB_DIVISOR = 128
HF, MESH_TF = 'hf', 'mesh_tf'
EXPECTED = (f'a local Hugging Face T5 directory ({CONFIG_FILE} plus {SAFETENSORS_FILE}, '
            f'{SAFETENSORS_INDEX_FILE} or {TORCH_FILE}, e.g. a google/t5-efficient-* snapshot) '
            f'or a Mesh TensorFlow model folder ({OPERATIVE_CONFIG} plus model.ckpt-STEP.index '
            'and .data-* files, e.g. a bi_v1_* folder), written PATH or PATH@STEP')
T5_VOCABULARY = 'gs://t5-data/vocabs/cc_all.32000/sentencepiece.model'


def kind(path: str) -> str:
  """'hf' or 'mesh_tf' by the folder's config file; CheckpointError (one line) otherwise."""
  if not os.path.isdir(path):
    raise CheckpointError(f'{path}: not a directory; expected {EXPECTED}.')
  if os.path.isfile(os.path.join(path, CONFIG_FILE)):
    return HF
  if os.path.isfile(os.path.join(path, OPERATIVE_CONFIG)):
    return MESH_TF
  raise CheckpointError(f'{path}: neither {CONFIG_FILE} nor {OPERATIVE_CONFIG} in it, so not a '
                        f'released checkpoint; expected {EXPECTED}.')


def shape(path: str, step: int | None = None) -> Shape:
  """The checkpoint's Shape (no weights read). A Hugging Face directory holds one step only."""
  from text import mesh_tf, t5
  if kind(path) == MESH_TF:
    return mesh_tf.checkpoint_shape(path, step)
  if step is not None:
    raise CheckpointError(f'{path}@{step}: a Hugging Face directory holds one step; drop '
                          '@STEP, or give the Mesh TensorFlow folder for intermediate steps.')
  if not any(os.path.isfile(os.path.join(path, name))
             for name in (SAFETENSORS_FILE, SAFETENSORS_INDEX_FILE, TORCH_FILE)):
    raise CheckpointError(f'{path}: has {CONFIG_FILE} but no {SAFETENSORS_FILE}, '
                          f'{SAFETENSORS_INDEX_FILE} or {TORCH_FILE}; copy the weights too.')
  return t5.shape_from_config(read_config(path, 'T5'), os.path.join(path, CONFIG_FILE))[0]


def check_vocabulary(checkpoint: Shape, task: str, path: str) -> None:
  """The task's vocabulary must be the checkpoint's: as many ids, up to the padding to a
  multiple of 128 that T5 checkpoints carry (32100 -> 32128)."""
  from tasks import vocab
  from text import train
  needed = train.vocabulary_size(task)
  padded = -(-needed // VOCAB_DIVISOR) * VOCAB_DIVISOR
  if not needed <= checkpoint.vocab_size <= padded:
    configured = vocab.configured_path()
    using = (f'the vocabulary at {configured}' if configured
             else 'the embedded vocabulary (no vocab given)')
    raise CheckpointError(
        f'{path}: the checkpoint has {checkpoint.vocab_size} token ids but task {task!r} '
        f'tokenizes with {using}, {needed} ids; give the SentencePiece model the checkpoint '
        f'was trained with (the released models: T5\'s, {T5_VOCABULARY}, copied locally) '
        'as the config\'s vocab (suite.run --config.vocab=PATH).')


def params(ref: CheckpointRef, scan_layers: bool = False) -> Any:
  """The checkpoint's weights as our T5's params (float32; stacked when `scan_layers`)."""
  from text import mesh_tf, t5
  from text.network import scan_params
  if kind(ref.path) == MESH_TF:
    _, tree = mesh_tf.from_mesh_tf(ref.path, ref.step)
  else:
    shape(ref.path, ref.step)  # the one-step rule and the weights-present check
    _, tree = t5.from_hf(ref.path)
  return scan_params(tree) if scan_layers else tree
