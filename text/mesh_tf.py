"""Mesh TensorFlow T5 checkpoints (the paper's own releases) -> our T5 network and params.

Tay et al. released their ~170 pre-trained models as Mesh TensorFlow / T5-library folders,
one per model (`bi_v1_{SIZE}_{OPS}_{DATE}`), each holding its `operative_config.gin` and
`model.ckpt-{step}` checkpoints at several steps. `from_mesh_tf(model_dir, step)` reads the
shape from the gin bindings and the weights of one step with TensorFlow's checkpoint reader,
and returns `(network, params)` like `text.t5.from_hf`. Nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator
from typing import Any

import jax.numpy as jnp
import numpy as np

from suite.hf_checkpoint import CheckpointError, unflatten
from suite.shapes import Shape
from text.gin_config import OPERATIVE_CONFIG, REQUIRED, GinConfig, Reference, read_gin
from text.network import T5Network, scan_params
from text.t5 import _param_shapes

_INDEX_FILE = re.compile(r'^model\.ckpt-(\d+)\.index$')
_STACKS = ('encoder', 'decoder')
# Mesh-TF's _relative_position_bucket has max_distance=128 and no gin binding for it.
MESH_TF_MAX_DISTANCE = 128
# Variables that are optimizer state, not model weights: Adafactor's slots (v, vc, vr, m),
# Adam's and momentum SGD's (mtf.optimize), and the step counter.
_OPTIMIZER_STATE = re.compile(r'(_slot_(v|vc|vr|m)|/adam_[mv]|_momentum_v)$|^global_step$')
_SLICE = re.compile(r'^(.*)_slice_(\d+)$')


# ---- operative config -> Shape ---------------------------------------------------------------

# Bindings our T5 needs at one value: (configurable, parameter, the value we run, Mesh-TF's
# default when unbound, what another value would mean). Checked in every scope they appear in.
_FIXED = (
    ('run', 'model_type', 'bitransformer', 'bitransformer', 'not an encoder-decoder'),
    ('Bitransformer', 'shared_embedding', True, True,
     'separate encoder and decoder embeddings'),
    ('Unitransformer', 'positional_embedding', False, True,
     'learned absolute position embeddings'),
    ('Unitransformer', 'sinusoid_positional_embedding', False, False,
     'sinusoidal position embeddings'),
    ('Unitransformer', 'ensemble', None, None, 'an ensemble of models'),
    ('VocabEmbedding', 'scale_variable_like_classifier_weights', False, False,
     'input embeddings multiplied by sqrt(d_model)'),
    ('unit_scaling_convention', 'value', False, False, 'unit-scaling einsums'),
    ('make_layer_stack', 'block_scope', True, True, 'flat layer_NNN variable names'),
    ('SelfAttention', 'relative_attention_type', 'bias_shared', None,
     "no relative position bias (None) or one per layer ('bias')"),
    ('EncDecAttention', 'relative_attention_type', None, None,
     'a relative position bias in cross-attention'),
    ('SelfAttention', 'num_memory_heads', 0, 0, 'multi-query attention'),
    ('SelfAttention', 'shared_kv', False, False, 'one projection for keys and values'),
    ('SelfAttention', 'combine_dims', True, True, '[d_model, heads, d_kv] projections'),
    ('SelfAttention', 'keep_query_heads_dims', False, False, 'per-head outputs'),
    ('SelfAttention', 'fold_scaling_into_initializer', True, True,
     'queries scaled by d_kv**-0.5 at run time'),
    ('SelfAttention', 'attention_func', None, None, 'a custom attention function'),
    ('DenseReluDense', 'use_bias', False, False, 'dense biases'),
)
_LAYERS = {'encoder': ['SelfAttention', 'DenseReluDense'],
           'decoder': ['SelfAttention', 'EncDecAttention', 'DenseReluDense']}
_SUBLAYERS = {'sublayers_initial': ['sublayer_dropout'],
              'sublayers_per_layer': ['sublayer_rms_norm', 'sublayer_call_layer',
                                      'sublayer_dropout', 'sublayer_residual'],
              'sublayers_final': ['sublayer_rms_norm', 'sublayer_dropout']}
_ACTIVATIONS = {('relu',): 'relu', ('gelu', 'linear'): 'gated-gelu'}


@dataclasses.dataclass(frozen=True)
class _Naming:
  """How the checkpoint names variables: stack prefixes and the layer-norm scopes."""
  encoder: str = 'encoder'
  decoder: str = 'decoder'
  layer_norm: str = 'layer_norm'
  final_norm: str = 'final_layer_norm'


@dataclasses.dataclass(frozen=True)
class _GinModel:
  fields: dict  # Shape fields except vocab_size
  layer_norm_epsilon: float
  dropout_rate: float
  naming: _Naming
  vocab_size: int | None  # bound in the gin (rounded up to vocab_divisor), else None
  vocab_divisor: int


def _same(value: Any, expected: Any) -> bool:
  if expected is None or isinstance(expected, bool):
    return value is expected
  return value == expected


def _one_value(gin: GinConfig, configurable: str, param: str, default: Any = REQUIRED) -> Any:
  """The value both stacks use; CheckpointError if encoder and decoder differ."""
  values = {scope: gin.get(configurable, param, scope, default) for scope in _STACKS}
  if values['encoder'] != values['decoder']:
    raise CheckpointError(
        f'{gin.path}: encoder/{configurable}.{param} = {values["encoder"]!r} but '
        f'decoder/{configurable}.{param} = {values["decoder"]!r}; our T5 uses one value for '
        'both stacks, so this model cannot be loaded.')
  return values['encoder']


def _check_fixed(gin: GinConfig) -> None:
  for configurable, param, expected, default, meaning in _FIXED:
    bound = gin.values(configurable, param)
    for scope, value in bound.items():
      if not _same(value, expected):
        name = f'{scope + "/" if scope else ""}{configurable}.{param}'
        raise CheckpointError(f'{gin.path}: {name} = {value!r} means {meaning}, which our T5 '
                              f'does not implement (it needs {expected!r}).')
    if not bound and not _same(default, expected):
      raise CheckpointError(
          f'{gin.path}: no binding for {configurable}.{param}; Mesh TensorFlow then uses '
          f'{default!r}, which means {meaning} and our T5 does not implement. An operative '
          f'config of a T5 binds it to {expected!r}.')


def _check_layers(gin: GinConfig) -> None:
  for scope, expected in _LAYERS.items():
    layers = gin.get('make_layer_stack', 'layers', scope, None)
    if layers is None:
      continue
    names = [x.short_name if isinstance(x, Reference) else repr(x) for x in layers]
    if names != expected:
      raise CheckpointError(f'{gin.path}: {scope}/make_layer_stack.layers = {names}; a T5 '
                            f'{scope} layer is exactly {expected}.')


def _norms(gin: GinConfig) -> tuple[float, str, str]:
  """(epsilon, per-layer norm scope, final norm scope), from LayerStack's legacy or new mode."""
  legacy = _one_value(gin, 'LayerStack', 'norm_epsilon', None)
  if legacy is not None:  # LayerStack(dropout_rate, norm_epsilon): T5's original checkpoints
    return float(legacy), 'layer_norm', 'final_layer_norm'
  for param, expected in _SUBLAYERS.items():
    for scope in _STACKS:
      sublayers = gin.get('LayerStack', param, scope, None)
      if sublayers is None:
        continue
      names = [x.short_name if isinstance(x, Reference) else repr(x) for x in sublayers]
      if names != expected:
        raise CheckpointError(f'{gin.path}: {scope}/LayerStack.{param} = {names}; our T5 is '
                              f'the pre-norm stack {expected}.')
  name = _one_value(gin, 'sublayer_rms_norm', 'name', 'rms_norm')
  return float(_one_value(gin, 'sublayer_rms_norm', 'epsilon', 1e-6)), name, name


def _activation(gin: GinConfig) -> str:
  value = _one_value(gin, 'DenseReluDense', 'activation', 'relu')
  key = tuple(value) if isinstance(value, (list, tuple)) else (value,)
  if key not in _ACTIVATIONS:
    raise CheckpointError(
        f'{gin.path}: DenseReluDense.activation = {value!r} is not supported; valid: '
        "'relu' (T5 v1.0) or ['gelu', 'linear'] (T5.1.1's gated GELU).")
  return _ACTIVATIONS[key]


def _vocab(gin: GinConfig) -> tuple[int | None, int]:
  """(vocab size bound in the gin rounded up to the divisor, or None; vocab_divisor)."""
  divisor = _one_value(gin, 'Unitransformer', 'vocab_divisor', 128) or 1
  sizes = {size for size in (
      gin.get('make_bitransformer', 'input_vocab_size', '', None),
      gin.get('make_bitransformer', 'output_vocab_size', '', None),
      gin.get('Unitransformer', 'input_vocab_size', 'encoder', None),
      gin.get('Unitransformer', 'input_vocab_size', 'decoder', None)) if size is not None}
  if len(sizes) > 1:
    raise CheckpointError(f'{gin.path}: input and output vocabulary sizes differ '
                          f'({sorted(sizes)}); our T5 shares one embedding.')
  if not sizes:
    return None, divisor
  return -(-sizes.pop() // divisor) * divisor, divisor


def _model_from_gin(gin: GinConfig) -> _GinModel:
  """Shape fields (all but the vocabulary when unbound), epsilon and variable naming."""
  _check_fixed(gin)
  _check_layers(gin)
  epsilon, layer_norm, final_norm = _norms(gin)
  tied = gin.get('Unitransformer', 'shared_embedding_and_softmax_weights', 'decoder')
  fields = dict(
      num_encoder_layers=gin.get('make_layer_stack', 'num_layers', 'encoder'),
      num_decoder_layers=gin.get('make_layer_stack', 'num_layers', 'decoder'),
      d_model=_one_value(gin, 'Unitransformer', 'd_model'),
      d_ff=_one_value(gin, 'DenseReluDense', 'hidden_size'),
      num_heads=_one_value(gin, 'SelfAttention', 'num_heads'),
      d_kv=_one_value(gin, 'SelfAttention', 'key_value_size'),
      activation=_activation(gin), tie_embeddings=tied,
      relative_buckets=_one_value(gin, 'SelfAttention', 'relative_attention_num_buckets', 32),
      relative_max_distance=MESH_TF_MAX_DISTANCE)
  naming = _Naming(encoder=gin.get('make_bitransformer', 'encoder_name', '', 'encoder'),
                   decoder=gin.get('make_bitransformer', 'decoder_name', '', 'decoder'),
                   layer_norm=layer_norm, final_norm=final_norm)
  vocab, divisor = _vocab(gin)
  dropout = float(_one_value(gin, 'DenseReluDense', 'dropout_rate', 0.0))
  return _GinModel(fields, epsilon, dropout, naming, vocab, divisor)


# ---- variable names and layouts --------------------------------------------------------------

def _variable_map(shape: Shape, naming: _Naming) -> Iterator[tuple[tuple[str, ...], str, str]]:
  """(our param path, Mesh-TF variable name, layout kind) for every tensor of the shape.

  Kinds: 'same' (identical layout); 'in_proj' ([d_model, heads*d_kv] -> [d_model, heads,
  d_kv]); 'out_proj' ([heads*d_kv, d_model] -> [heads, d_kv, d_model]).
  """
  yield ('token_embedder',), 'shared/embedding', 'same'
  if not shape.tie_embeddings:
    yield ('logits_dense',), f'{naming.decoder}/logits/kernel', 'same'
  ffn = ('wi_0', 'wi_1', 'wo') if shape.is_gated else ('wi', 'wo')
  for stack, depth in (('encoder', shape.num_encoder_layers),
                       ('decoder', shape.num_decoder_layers)):
    prefix = getattr(naming, stack)
    decoder = stack == 'decoder'
    yield ((stack, 'rel_embedding'),
           f'{prefix}/block_000/layer_000/SelfAttention/relative_attention_bias', 'same')
    yield (stack, 'final_layer_norm', 'scale'), f'{prefix}/{naming.final_norm}/scale', 'same'
    for i in range(depth):
      ours, block = (stack, f'layers_{i}'), f'{prefix}/block_{i:03d}'
      sublayers = [('self_attention' if decoder else 'attention',
                    'pre_self_attention_layer_norm' if decoder else 'pre_attention_layer_norm',
                    'SelfAttention')]
      if decoder:
        sublayers.append(('encoder_decoder_attention', 'pre_cross_attention_layer_norm',
                          'EncDecAttention'))
      for j, (attention, norm, theirs) in enumerate(sublayers):
        layer = f'{block}/layer_{j:03d}'
        for name, short in (('query', 'q'), ('key', 'k'), ('value', 'v'), ('out', 'o')):
          kind = 'out_proj' if name == 'out' else 'in_proj'
          yield (*ours, attention, name), f'{layer}/{theirs}/{short}', kind
        yield (*ours, norm, 'scale'), f'{layer}/{naming.layer_norm}/scale', 'same'
      layer = f'{block}/layer_{len(sublayers):03d}'
      for name in ffn:
        yield (*ours, 'mlp', name), f'{layer}/DenseReluDense/{name}/kernel', 'same'
      yield (*ours, 'pre_mlp_layer_norm', 'scale'), f'{layer}/{naming.layer_norm}/scale', 'same'


def _mesh_tf_shape(ours: tuple[int, ...], kind: str) -> tuple[int, ...]:
  if kind == 'in_proj':
    return (ours[0], ours[1] * ours[2])
  if kind == 'out_proj':
    return (ours[0] * ours[1], ours[2])
  return ours


# ---- checkpoints -----------------------------------------------------------------------------

def checkpoint_steps(model_dir: str) -> list[int]:
  """The steps with a `model.ckpt-{step}.index` file in model_dir, ascending."""
  if not os.path.isdir(model_dir):
    raise CheckpointError(f'{model_dir}: not a directory; from_mesh_tf takes a local Mesh '
                          f'TensorFlow model folder ({OPERATIVE_CONFIG} and model.ckpt-* '
                          'files), e.g. one bi_v1_* folder copied with gsutil.')
  return sorted(int(m.group(1)) for m in map(_INDEX_FILE.match, os.listdir(model_dir)) if m)


def _checkpoint_prefix(model_dir: str, step: int | None) -> tuple[str, int]:
  steps = checkpoint_steps(model_dir)
  if not steps:
    raise CheckpointError(f'{model_dir}: no model.ckpt-*.index file; copy the checkpoint files '
                          '(model.ckpt-STEP.index and .data-*) into the folder.')
  if step is None:
    step = steps[-1]
  elif step not in steps:
    raise CheckpointError(f'{model_dir}: no checkpoint at step {step}; steps present: '
                          f'{", ".join(map(str, steps))}.')
  return os.path.join(model_dir, f'model.ckpt-{step}'), step


class _Variables:
  """The model variables of one checkpoint: optimizer state skipped, `_slice_K` pieces joined."""

  def __init__(self, prefix: str):
    import tensorflow as tf  # a dependency; imported here to keep `import text.t5` light
    self.prefix = prefix
    self._errors = (tf.errors.OpError, ValueError, IndexError, RuntimeError)
    try:
      self.reader = tf.train.load_checkpoint(prefix)
      shapes = self.reader.get_variable_to_shape_map()
    except self._errors as e:
      raise self._unreadable(e) from e
    self.shapes = {n: tuple(s) for n, s in shapes.items() if not _OPTIMIZER_STATE.search(n)}
    # Mesh-TF's per-device copies, `NAME_slice_K`, stand in for NAME only when NAME is absent.
    self.pieces: dict[str, list[str]] = {}
    for name in sorted(self.shapes):
      match = _SLICE.match(name)
      if match and match.group(1) not in self.shapes:
        self.pieces.setdefault(match.group(1), []).append(name)
    for base, names in self.pieces.items():
      names.sort(key=lambda n: int(_SLICE.match(n).group(2)))
      numbers = [int(_SLICE.match(n).group(2)) for n in names]
      if numbers != list(range(len(names))):
        raise CheckpointError(f'{prefix}: {base!r} is split into slices {numbers}; '
                              f'expected slices 0..{len(names) - 1}, all present.')
    self.redundant = {n for n in self.shapes if _SLICE.match(n) and
                      _SLICE.match(n).group(1) in self.shapes}

  def __contains__(self, name: str) -> bool:
    return name in self.shapes or name in self.pieces

  def names(self) -> set[str]:
    pieces = {n for names in self.pieces.values() for n in names}
    return (set(self.shapes) - pieces - self.redundant) | set(self.pieces)

  def shape(self, name: str, expected: tuple[int | None, ...]) -> tuple[int, ...]:
    """The variable's full shape; for slices, joined along the one axis that fits `expected`
    (None: any size)."""
    if name not in self.pieces:
      return self.shapes[name]
    piece_shapes = {self.shapes[n] for n in self.pieces[name]}
    count = len(self.pieces[name])
    if len(piece_shapes) == 1:
      piece = piece_shapes.pop()
      for axis in range(len(piece)):
        full = piece[:axis] + (piece[axis] * count,) + piece[axis + 1:]
        if len(full) == len(expected) and all(
            e is None or e == f for e, f in zip(expected, full, strict=True)):
          return full
    raise CheckpointError(
        f'{self.prefix}: {name!r} is stored as {count} slices of shapes '
        f'{sorted(self.shapes[n] for n in self.pieces[name])}, which do not join along one '
        f'axis into {tuple("?" if e is None else e for e in expected)}; re-save the checkpoint '
        'with whole variables (Mesh TensorFlow saves its master variables whole).')

  def _unreadable(self, error: Exception) -> CheckpointError:
    first_line = str(error).strip().split('\n')[0][:300]
    return CheckpointError(
        f'{self.prefix}: cannot read the checkpoint ({type(error).__name__}: {first_line}); its '
        '.index or .data-* files are missing or truncated: copy every file of this step again.')

  def _tensor(self, name: str) -> np.ndarray:
    try:
      return np.asarray(self.reader.get_tensor(name)).astype(np.float32)
    except self._errors as e:
      raise self._unreadable(e) from e

  def read(self, name: str, full_shape: tuple[int, ...]) -> np.ndarray:
    """float32 values (bfloat16 storage is cast); slices concatenated."""
    if name not in self.pieces:
      return self._tensor(name)
    parts = [self._tensor(n) for n in self.pieces[name]]
    axis = next(a for a, (p, f) in enumerate(zip(parts[0].shape, full_shape, strict=True))
                if p != f)
    return np.concatenate(parts, axis=axis)


def _open(model_dir: str, step: int | None) -> tuple[GinConfig, _GinModel, str, _Variables]:
  checkpoint_steps(model_dir)  # a clear error first when model_dir is not a folder
  gin = read_gin(os.path.join(model_dir, OPERATIVE_CONFIG))
  model = _model_from_gin(gin)
  prefix, _ = _checkpoint_prefix(model_dir, step)
  return gin, model, prefix, _Variables(prefix)


def _shape(gin: GinConfig, model: _GinModel, prefix: str, variables: _Variables) -> Shape:
  """The Shape: the gin's fields, the vocabulary from the embedding's rows when unbound."""
  embedding = 'shared/embedding'
  if embedding not in variables:
    raise CheckpointError(f'{prefix}: variable {embedding!r} is missing; a T5 with '
                          'Bitransformer.shared_embedding = True keeps its vocabulary there.')
  rows = variables.shape(embedding, (model.vocab_size, model.fields['d_model']))[0]
  if model.vocab_size is None and rows % model.vocab_divisor:
    raise CheckpointError(f'{prefix}: {embedding!r} has {rows} rows, not a multiple of '
                          f'Unitransformer.vocab_divisor = {model.vocab_divisor} in '
                          f'{gin.path}; the gin and the checkpoint disagree.')
  try:
    return Shape(vocab_size=rows if model.vocab_size is None else model.vocab_size,
                 **model.fields)
  except (ValueError, TypeError) as e:
    raise CheckpointError(f'{gin.path}: {e}') from e


def checkpoint_shape(model_dir: str, step: int | None = None) -> Shape:
  """The Shape `from_mesh_tf(model_dir, step)` builds, from the gin and the checkpoint's
  variable shapes alone (no weight is read); the same CheckpointErrors."""
  return _shape(*_open(model_dir, step))


def from_mesh_tf(model_dir: str, step: int | None = None, dtype: Any = jnp.float32,
                 **network_options) -> tuple[T5Network, dict]:
  """(network, params) from a local Mesh TensorFlow T5 folder at `step` (default: the latest).

  The shape comes from `operative_config.gin` (the vocabulary from the embedding's rows when
  the gin does not bind it). Raises CheckpointError naming the file, binding or variable when
  the folder cannot be this T5: a missing step (the message lists the steps present), a
  missing or unsupported binding, a missing, misshapen or unknown variable. Optimizer state
  is skipped; bfloat16 weights are cast to float32. Logits equal the Mesh-TF model's, like
  from_hf's equal transformers' (T5 v1.0's tied head rescales by d_model**-0.5).
  """
  gin, model, prefix, variables = _open(model_dir, step)
  shape = _shape(gin, model, prefix, variables)
  network_options.setdefault('dropout_rate', model.dropout_rate)
  network = T5Network(shape, dtype=dtype, layer_norm_epsilon=model.layer_norm_epsilon,
                      **network_options)
  expected = _param_shapes(network)
  flat, used = {}, set()
  for ours, name, kind in _variable_map(shape, model.naming):
    want = _mesh_tf_shape(expected[ours], kind)
    if name not in variables:
      raise CheckpointError(
          f'{prefix}: variable {name!r} is missing; {gin.path} describes a T5 with '
          f'{shape.num_encoder_layers} encoder / {shape.num_decoder_layers} decoder layers, '
          f'activation {shape.activation} and a {"tied" if shape.tie_embeddings else "untied"} '
          f'head, which needs it with shape {want}.')
    have = variables.shape(name, want)
    if have != want:
      raise CheckpointError(f'{prefix}: variable {name!r} has shape {have} but {gin.path} '
                            f'implies {want}; the gin and the checkpoint disagree.')
    flat[ours] = jnp.asarray(variables.read(name, have).reshape(expected[ours]))
    used.add(name)
  if set(flat) != set(expected):  # the map and the network must describe the same tree
    raise AssertionError(f'variable map out of step with T5Network: '
                         f'{sorted(set(expected) ^ set(flat))}')
  unused = sorted(variables.names() - used)
  if unused:
    listed = ', '.join(repr(n) for n in unused[:5])
    more = f' and {len(unused) - 5} more' if len(unused) > 5 else ''
    raise CheckpointError(
        f'{prefix}: {len(unused)} variable(s) that {gin.path} has no place for: {listed}'
        f'{more}. The gin and the checkpoint disagree (e.g. more layers in the checkpoint), '
        'or the model has parts our T5 lacks.')
  params = unflatten(flat)
  if network.scan_layers:
    params = scan_params(params)
  return network, params
