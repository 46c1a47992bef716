"""Transformer shapes: one frozen dataclass, the canonical size tables, and their names.

A `Shape` is the architecture of one Transformer stack pair, shared by the text (T5
encoder-decoder) and vision (ViT, encoder only) families. Names follow the released
T5-Efficient checkpoints (`google/t5-efficient-{size}[-{knob}{value}]*`), the T5.1.1 family
(`t5.1.1-{size}[-...]`) and big_vision's ViT names (`B/16[-{knob}{value}]*`).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
from collections.abc import Mapping

TEXT = 'text'
VISION = 'vision'
DOMAINS = (TEXT, VISION)

TEXT_ACTIVATIONS = ('relu', 'gated-gelu')
VISION_ACTIVATIONS = ('gelu',)
# Vision pooling: class token, global average, or multihead attention pooling (MAP head).
POOLINGS = ('cls', 'gap', 'map')
# Vision position embeddings: learned (a parameter), or fixed 2-D sin-cos (none).
POSEMBS = ('learn', 'sincos2d')

T5_VOCAB_SIZE = 32128


class ShapeError(ValueError):
  """A shape, a shape name or a knob is invalid; the message says why and what is valid."""


def closest(name: str, choices, n: int = 3) -> str:
  """'did you mean' text listing the registered names closest to `name`.

  Compares case-insensitively ('b/16' finds 'B/16') and lists the registered spellings.
  """
  choices = list(choices)
  spelling = {}
  for choice in choices:
    spelling.setdefault(choice.lower(), choice)
  near = difflib.get_close_matches(name.lower(), list(spelling), n=n, cutoff=0.0)
  return ', '.join(spelling[c] for c in near) if near else ', '.join(choices[:n])


@dataclasses.dataclass(frozen=True)
class Shape:
  """The architecture of one Transformer: depths, widths and the family options.

  Attention width is `num_heads * d_kv` and need not equal `d_model`. Text shapes
  (`domain='text'`) are T5 encoder-decoders; vision shapes (`domain='vision'`) are ViT
  encoders with `num_decoder_layers == 0`.
  """

  num_encoder_layers: int
  num_decoder_layers: int
  d_model: int
  d_ff: int
  num_heads: int
  d_kv: int
  domain: str = TEXT
  activation: str = 'relu'
  # Text options (T5): vocabulary, tied input/output embedding, relative position buckets.
  vocab_size: int = T5_VOCAB_SIZE
  tie_embeddings: bool = True
  relative_buckets: int = 32
  relative_max_distance: int = 128
  # Vision options (ViT): square images cut into square patches, pooling, classifier size,
  # position embeddings (text shapes keep the default 'learn', which T5 does not use).
  image_size: int = 0
  patch_size: int = 0
  pooling: str = ''
  num_classes: int = 0
  posemb: str = POSEMBS[0]

  def __post_init__(self):
    for field in ('num_encoder_layers', 'd_model', 'd_ff', 'num_heads', 'd_kv'):
      value = getattr(self, field)
      if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ShapeError(f'{field}={value!r}: must be a positive integer.')
    if not isinstance(self.num_decoder_layers, int) or self.num_decoder_layers < 0:
      raise ShapeError(
          f'num_decoder_layers={self.num_decoder_layers!r}: must be an integer >= 0.')
    if self.domain == TEXT:
      self._validate_text()
    elif self.domain == VISION:
      self._validate_vision()
    else:
      raise ShapeError(f'domain={self.domain!r}: valid domains are {", ".join(DOMAINS)}.')

  def _validate_text(self):
    if self.activation not in TEXT_ACTIVATIONS:
      raise ShapeError(f'activation={self.activation!r}: text shapes take one of '
                       f'{", ".join(TEXT_ACTIVATIONS)}.')
    if self.num_decoder_layers <= 0:
      raise ShapeError('num_decoder_layers=0: a T5 text shape needs a decoder; '
                       'use domain="vision" for encoder-only models.')
    for field in ('vocab_size', 'relative_buckets', 'relative_max_distance'):
      if getattr(self, field) <= 0:
        raise ShapeError(f'{field}={getattr(self, field)!r}: must be positive.')
    if (self.image_size or self.patch_size or self.pooling or self.num_classes
        or self.posemb != POSEMBS[0]):
      raise ShapeError('image_size, patch_size, pooling, num_classes and posemb are vision '
                       'options; leave them unset on a text shape.')

  def _validate_vision(self):
    if self.activation not in VISION_ACTIVATIONS:
      raise ShapeError(f'activation={self.activation!r}: vision shapes take one of '
                       f'{", ".join(VISION_ACTIVATIONS)}.')
    if self.num_decoder_layers != 0:
      raise ShapeError(f'num_decoder_layers={self.num_decoder_layers}: a ViT is '
                       'encoder-only; set it to 0.')
    if self.patch_size <= 0 or self.image_size <= 0:
      raise ShapeError(f'image_size={self.image_size}, patch_size={self.patch_size}: '
                       'a vision shape needs both, positive.')
    if self.image_size % self.patch_size:
      raise ShapeError(f'image_size={self.image_size} is not a multiple of '
                       f'patch_size={self.patch_size}; pick sizes that tile the image.')
    if self.pooling not in POOLINGS:
      raise ShapeError(f'pooling={self.pooling!r}: valid poolings are {", ".join(POOLINGS)}.')
    if self.num_classes <= 0:
      raise ShapeError(f'num_classes={self.num_classes}: must be positive.')
    if self.posemb not in POSEMBS:
      raise ShapeError(f'posemb={self.posemb!r}: valid position embeddings are '
                       f'{", ".join(POSEMBS)}.')
    if self.posemb == 'sincos2d' and self.d_model % 4:
      raise ShapeError(f"posemb='sincos2d' needs d_model divisible by 4 (sin and cos of the "
                       f'row and of the column), got d_model={self.d_model}; use '
                       "posemb='learn' or another width.")

  @property
  def attention_width(self) -> int:
    return self.num_heads * self.d_kv

  @property
  def num_layers(self) -> int:
    return self.num_encoder_layers + self.num_decoder_layers

  @property
  def num_patches(self) -> int:
    """Patch tokens per image (vision); the class token, if any, is not counted."""
    return (self.image_size // self.patch_size) ** 2 if self.patch_size else 0

  @property
  def is_gated(self) -> bool:
    return self.activation.startswith('gated')

  def fields(self) -> dict:
    return dataclasses.asdict(self)

  def replace(self, **changes) -> Shape:
    return dataclasses.replace(self, **changes)


def _t5(layers, d_model, d_ff, heads, d_kv, gated=False):
  return Shape(num_encoder_layers=layers, num_decoder_layers=layers, d_model=d_model,
               d_ff=d_ff, num_heads=heads, d_kv=d_kv,
               activation='gated-gelu' if gated else 'relu', tie_embeddings=not gated)


def _vit(layers, d_model, d_ff, heads):
  return Shape(num_encoder_layers=layers, num_decoder_layers=0, d_model=d_model, d_ff=d_ff,
               num_heads=heads, d_kv=d_model // heads, domain=VISION, activation='gelu',
               image_size=224, patch_size=16, pooling='cls', num_classes=1000)


# T5-Efficient (T5 v1.0 style: ReLU FFN, tied embeddings), as released.
T5_EFFICIENT_SIZES: Mapping[str, Shape] = {
    'tiny': _t5(4, 256, 1024, 4, 64),
    'mini': _t5(4, 384, 1536, 8, 64),
    'small': _t5(6, 512, 2048, 8, 64),
    'base': _t5(12, 768, 3072, 12, 64),
    'large': _t5(24, 1024, 4096, 16, 64),
    'xl': _t5(24, 1024, 16384, 32, 128),
    'xxl': _t5(24, 1024, 65536, 128, 128),
}
# T5.1.1: gated-GELU FFN, untied output head.
T5_1_1_PREFIX = 't5.1.1-'
T5_1_1_SIZES: Mapping[str, Shape] = {
    'small': _t5(8, 512, 1024, 6, 64, gated=True),
    'base': _t5(12, 768, 2048, 12, 64, gated=True),
    'large': _t5(24, 1024, 2816, 16, 64, gated=True),
    'xl': _t5(24, 2048, 5120, 32, 64, gated=True),
    'xxl': _t5(24, 4096, 10240, 64, 64, gated=True),
}
# big_vision ViT sizes (d_kv = width / heads); default 224 pixels, class token, 1000 classes.
VIT_SIZES: Mapping[str, Shape] = {
    'Ti': _vit(12, 192, 768, 3),
    'S': _vit(12, 384, 1536, 6),
    'M': _vit(12, 512, 2048, 8),
    'B': _vit(12, 768, 3072, 12),
    'L': _vit(24, 1024, 4096, 16),
    'So400m': _vit(27, 1152, 4304, 16),
    'H': _vit(32, 1280, 5120, 16),
    'g': _vit(40, 1408, 6144, 16),
}
# Patch sizes of the canonical ViT names (`So400m/14`, `H/14`, `g/14`; the rest /16).
VIT_CANONICAL_PATCH = {'So400m': 14, 'H': 14, 'g': 14}

# Knob -> Shape field(s) it sets. `nl` sets both depths.
TEXT_KNOBS: Mapping[str, tuple[str, ...]] = {
    'nl': ('num_encoder_layers', 'num_decoder_layers'),
    'el': ('num_encoder_layers',),
    'dl': ('num_decoder_layers',),
    'dm': ('d_model',),
    'ff': ('d_ff',),
    'kv': ('d_kv',),
    'nh': ('num_heads',),
}
VISION_KNOBS: Mapping[str, tuple[str, ...]] = {
    'nl': ('num_encoder_layers',),
    'dm': ('d_model',),
    'ff': ('d_ff',),
    'kv': ('d_kv',),
    'nh': ('num_heads',),
}
_KNOB_RE = re.compile(r'^([a-z]+?)(\d+)$')
# A typical value per knob, for the examples in error messages.
_KNOB_EXAMPLES = {'nl': '16', 'el': '16', 'dl': '16', 'dm': '1000', 'ff': '2000', 'kv': '64',
                  'nh': '16'}


def knob_value(text: str) -> int:
  """Numbers in names: a multiple of 1000 means that many KiB-style units (ff2000 = 2048)."""
  value = int(text)
  return value // 1000 * 1024 if value >= 1000 and value % 1000 == 0 else value


def format_knob_value(value: int) -> str:
  return f'{value // 1024}000' if value >= 1024 and value % 1024 == 0 else str(value)


def knob_expressible(value: int) -> bool:
  """Whether a name can carry `value`: 8000 would read back as 8192, so it cannot."""
  return knob_value(format_knob_value(value)) == value


def _parse_knobs(name: str, head: str, parts: list[str],
                 knobs: Mapping[str, tuple[str, ...]]) -> dict[str, int]:
  """Knob values of a name whose size part is `head`; each knob at most once, and `nl`
  (both depths) never with `el` or `dl`."""
  values: dict[str, int] = {}
  written: dict[str, str] = {}
  for part in parts:
    match = _KNOB_RE.match(part)
    if part in knobs:
      raise ShapeError(f'knob {part!r} in shape name {name!r} needs a number, e.g. '
                       f'"{head}-{part}{_KNOB_EXAMPLES[part]}".')
    if not match or match.group(1) not in knobs:
      bad = match.group(1) if match else part
      raise ShapeError(f'unknown knob {bad!r} in shape name {name!r}; valid knobs: '
                       f'{", ".join(knobs)} (closest: {closest(bad, knobs)}), each followed '
                       f'by a number, e.g. "{head}-nl16".')
    knob, value = match.group(1), knob_value(match.group(2))
    if value <= 0:
      raise ShapeError(f'knob {part!r} in {name!r}: the value must be positive.')
    if knob in written:
      raise ShapeError(f'knob {knob!r} appears twice in shape name {name!r} ({written[knob]} '
                       f'and {part}); give each knob once, e.g. "{head}-{part}".')
    values[knob], written[knob] = value, part
  depth_knobs = [k for k in ('el', 'dl') if k in values]
  if 'nl' in values and depth_knobs:
    nl = written['nl']
    enc, dec = (written.get(k, k + nl[2:]) for k in ('el', 'dl'))
    raise ShapeError(f'knob {nl} conflicts with {" and ".join(written[k] for k in depth_knobs)} '
                     f'in shape name {name!r}: nl sets both the encoder and the decoder layers. '
                     f'Write "{head}-{nl}" for equal depths, or el and dl alone for different '
                     f'ones, e.g. "{head}-{enc}-{dec}".')
  return values


def _apply_knobs(base: Shape, values: Mapping[str, int], knobs) -> Shape:
  changes = {}
  for knob, value in values.items():
    for field in knobs[knob]:
      changes[field] = value
  return dataclasses.replace(base, **changes)


def _text_base(size: str, table: Mapping[str, Shape], family_prefix: str,
               values: Mapping[str, int]) -> Shape:
  base = table[size]
  # Released quirk: the xxl `nl` variants use 32 heads of d_kv 64.
  if not family_prefix and size == 'xxl' and 'nl' in values:
    base = dataclasses.replace(base, num_heads=32, d_kv=64)
  return base


def text_names() -> list[str]:
  return list(T5_EFFICIENT_SIZES) + [T5_1_1_PREFIX + s for s in T5_1_1_SIZES]


def vision_names() -> list[str]:
  return [f'{s}/{VIT_CANONICAL_PATCH.get(s, 16)}' for s in VIT_SIZES]


def names(domain: str) -> list[str]:
  """The canonical size names of a domain."""
  _check_domain(domain)
  return text_names() if domain == TEXT else vision_names()


def _check_domain(domain: str):
  if domain not in DOMAINS:
    raise ShapeError(f'unknown domain {domain!r}; valid domains: {", ".join(DOMAINS)}.')


def parse(name: str, domain: str | None = None) -> Shape:
  """Shape for a released-style name: 'small-nl16', 't5.1.1-base', 'B/16-dm512'.

  The domain is inferred from the name (a '/' means vision) unless given.
  """
  if domain is None:
    domain = VISION if '/' in name else TEXT
  _check_domain(domain)
  return _parse_vision(name) if domain == VISION else _parse_text(name)


def _parse_text(name: str) -> Shape:
  family_prefix, table = '', T5_EFFICIENT_SIZES
  rest = name
  if name.startswith(T5_1_1_PREFIX):
    family_prefix, table, rest = T5_1_1_PREFIX, T5_1_1_SIZES, name[len(T5_1_1_PREFIX):]
  parts = rest.split('-')
  size = parts[0]
  if size not in table:
    hint = (" A '/' marks a vision name: pass domain='vision' (--domain=vision)."
            if '/' in name else '')
    raise ShapeError(f'unknown text shape {name!r}: {size!r} is not a size of the '
                     f'{"T5.1.1" if family_prefix else "T5-Efficient"} family; closest names: '
                     f'{closest(name, text_names())}. Sizes: {", ".join(table)}.{hint}')
  values = _parse_knobs(name, family_prefix + size, parts[1:], TEXT_KNOBS)
  base = _text_base(size, table, family_prefix, values)
  return _apply_knobs(base, values, TEXT_KNOBS)


def _parse_vision(name: str) -> Shape:
  head, *knob_parts = name.split('-')
  size, _, patch = head.partition('/')
  if size not in VIT_SIZES or not patch.isdigit() or int(patch) <= 0:
    raise ShapeError(f'unknown vision shape {name!r}; closest names: '
                     f'{closest(name, vision_names())}. Vision names are SIZE/PATCH '
                     f'with SIZE in {", ".join(VIT_SIZES)}, e.g. "B/16" or "S/16-nl24".')
  values = _parse_knobs(name, head, knob_parts, VISION_KNOBS)
  if VIT_SIZES[size].image_size % int(patch):
    raise ShapeError(f'patch size {patch} in {name!r} does not tile 224-pixel images; '
                     'use a divisor of 224 such as 8, 14, 16 or 32.')
  base = dataclasses.replace(VIT_SIZES[size], patch_size=int(patch))
  return _apply_knobs(base, values, VISION_KNOBS)


def _knob_diff(shape: Shape, base: Shape, knobs) -> list[str] | None:
  """Knob parts that turn `base` into `shape`, or None when other fields differ."""
  parts = []
  changed = {}
  if knobs is TEXT_KNOBS and (shape.num_encoder_layers != base.num_encoder_layers or
                              shape.num_decoder_layers != base.num_decoder_layers):
    if shape.num_encoder_layers == shape.num_decoder_layers:
      parts.append(f'nl{shape.num_encoder_layers}')
    else:
      if shape.num_encoder_layers != base.num_encoder_layers:
        parts.append(f'el{shape.num_encoder_layers}')
      if shape.num_decoder_layers != base.num_decoder_layers:
        parts.append(f'dl{shape.num_decoder_layers}')
    changed.update(num_encoder_layers=shape.num_encoder_layers,
                   num_decoder_layers=shape.num_decoder_layers)
  elif knobs is VISION_KNOBS and shape.num_encoder_layers != base.num_encoder_layers:
    parts.append(f'nl{shape.num_encoder_layers}')
    changed['num_encoder_layers'] = shape.num_encoder_layers
  for knob, field in (('dm', 'd_model'), ('ff', 'd_ff'), ('kv', 'd_kv'), ('nh', 'num_heads')):
    if getattr(shape, field) != getattr(base, field):
      if not knob_expressible(getattr(shape, field)):
        return None
      parts.append(f'{knob}{format_knob_value(getattr(shape, field))}')
      changed[field] = getattr(shape, field)
  if dataclasses.replace(base, **changed) != shape:
    return None
  return parts


def _named_candidates(shape: Shape) -> list[tuple[str, list[str], Shape]]:
  """(size part, knob parts, the size's shape) of every released-style name of `shape`, fewest
  knobs first; each name parses back to `shape`."""
  candidates = []
  if shape.domain == TEXT:
    for prefix, table in (('', T5_EFFICIENT_SIZES), (T5_1_1_PREFIX, T5_1_1_SIZES)):
      for size in table:
        plain = table[size]
        quirk = _text_base(size, table, prefix, {'nl': 0})
        for base in (plain, quirk) if quirk is not plain else (plain,):
          parts = _knob_diff(shape, base, TEXT_KNOBS)
          if parts is None:
            continue
          # Where the xxl quirk exists, a name with an `nl` knob means the quirk base.
          has_nl = any(p.startswith('nl') for p in parts)
          if quirk is not plain and has_nl != (base is quirk):
            continue
          candidates.append((prefix + size, parts, base))
  else:
    for size, base in VIT_SIZES.items():
      if base.image_size % shape.patch_size:
        continue  # no name for patches that do not tile the named sizes' images
      base = dataclasses.replace(base, patch_size=shape.patch_size)
      parts = _knob_diff(shape, base, VISION_KNOBS)
      if parts is not None:
        candidates.append((f'{size}/{shape.patch_size}', parts, base))
  candidates.sort(key=lambda c: len(c[1]))
  # e.g. 8000 would read back as 8192
  return [c for c in candidates if parse('-'.join([c[0], *c[1]]), shape.domain) == shape]


def format_name(shape: Shape) -> str:
  """The canonical name of a shape: the size needing the fewest knobs, then its knobs.

  The inverse of `parse`, for any shape a name can express, including ones whose size part
  does not resemble them (`tiny-nl36-dm896-ff3520-nh14`); labels use `display_name`. Raises
  ShapeError for shapes that no name can express (another vocab, image size or class count,
  or a value such as 8000 that a name would read back as 8192): those are named by their
  fields alone (`descriptive_name`).
  """
  candidates = _named_candidates(shape)
  if candidates:
    head, parts, _ = candidates[0]
    return '-'.join([head, *parts])
  raise ShapeError(f'no released-style name describes {shape}: its family options '
                   '(vocab, embeddings tying, image size, classes, pooling) differ from '
                   'every size table, or a value (such as 8000) cannot be written in a name.')


def canonical(name: str, domain: str | None = None) -> str:
  return format_name(parse(name, domain))


def descriptive_name(shape: Shape) -> str:
  """A name spelling out every architecture field, for shapes no released-style name fits.

  Relative-position buckets and maximum distance appear (`-rb64`, `-rd256`) only when they
  differ from T5's 32 and 128, so shapes that differ only there get different names. Nothing
  parses these names back: they are labels.
  """
  head = (f'el{shape.num_encoder_layers}-dl{shape.num_decoder_layers}' if shape.domain == TEXT
          else f'p{shape.patch_size}-i{shape.image_size}-nl{shape.num_encoder_layers}')
  body = f'dm{shape.d_model}-ff{shape.d_ff}-nh{shape.num_heads}-kv{shape.d_kv}'
  if shape.domain == TEXT:
    tail = f'{shape.activation}-v{shape.vocab_size}{"" if shape.tie_embeddings else "-untied"}'
  else:
    tail = f'{shape.pooling}-c{shape.num_classes}'
    if shape.posemb != POSEMBS[0]:
      tail += f'-{shape.posemb}'
  defaults = {f.name: f.default for f in dataclasses.fields(Shape)}
  for field, tag in (('relative_buckets', 'rb'), ('relative_max_distance', 'rd')):
    if getattr(shape, field) != defaults[field]:
      tail += f'-{tag}{getattr(shape, field)}'
  return f'{shape.domain}:{head}-{body}-{tail}'


# Knobs that change depth alone: a name with only these reads as its size, deeper or shallower.
_DEPTH_KNOBS = ('nl', 'el', 'dl')


def display_name(shape: Shape) -> str:
  """The label of a shape that has no name of its own (a ladder rung, a solved budget): never
  one that reads as another size than the shape is.

  1. The released T5-Efficient checkpoint the shape is exactly, if any (`small-nl16`).
  2. Else the released-style name with the fewest knobs whose size has the shape's d_model and
     whose knobs are depth knobs (nl, el, dl) plus at most one of ff, nh, kv: `large-nl6`,
     `small-nl12-ff2176`, `M/16-ff2176`, `t5.1.1-base-nl24`.
  3. Else `descriptive_name` (`text:el36-dl36-dm896-...`, not `tiny-nl36-dm896-ff3520-nh14`).

  A shape given by name is best labelled by that name, `canonical(name)`.
  """
  if shape in _released_shapes():
    return format_name(shape)
  for head, parts, size in _named_candidates(shape):
    width_knobs = [p for p in parts if not p.startswith(_DEPTH_KNOBS)]
    if size.d_model == shape.d_model and len(width_knobs) <= 1:
      return '-'.join([head, *parts])
  return descriptive_name(shape)


@functools.cache
def _released_shapes() -> frozenset[Shape]:
  return frozenset(parse(name) for name in RELEASED_T5_EFFICIENT)


def _released(size: str, *variants: str) -> list[str]:
  return [size] + [f'{size}-{v}' for v in variants]


# The T5-Efficient checkpoints released as `google/t5-efficient-{name}` on the Hugging Face
# hub (the "Scale Efficiently" release, Tay et al. 2021), without the prefix.
# Unconfirmed: tiny-nh1, tiny-nh8, tiny-nh16, tiny-nh32. No config.json of them was found; they
# parse with tiny's d_kv 64. The hub's weight files of tiny-nh16 (100 MB) and tiny-nh32
# (150 MB) fit that (25.0M, 37.6M parameters x 4 bytes); tiny-nh8's (62.3 MB) and
# tiny-ff2000's fit tiny's 15.6M instead (tiny-nh8 could be 8 heads of d_kv 32). tiny-el12's
# config.json has 12 encoder and 12 decoder layers, and the files of tiny-el6, tiny-el8 and
# tiny-dl8 fit 12 layers in the other stack; here `el`/`dl` change one stack, as the small,
# base and large variants' configs confirm. See the README's Known limits.
RELEASED_T5_EFFICIENT: tuple[str, ...] = tuple(
    _released('tiny', 'nl2', 'nl6', 'nl8', 'nl12', 'nl16', 'nl24', 'nl32', 'el2', 'el6', 'el8',
              'el12', 'dl2', 'dl6', 'dl8', 'ff2000', 'ff3000', 'ff6000', 'ff9000', 'ff12000',
              'kv16', 'kv32', 'kv128', 'kv256', 'nh1', 'nh8', 'nh16', 'nh32')
    + _released('mini', 'nl6', 'nl8', 'nl12', 'nl24')
    + _released('small', 'nl2', 'nl4', 'nl8', 'nl16', 'nl20', 'nl22', 'nl24', 'nl32', 'nl36',
                'nl40', 'nl48', 'el2', 'el4', 'el8', 'el12', 'el16', 'el32', 'el48', 'el64',
                'dl2', 'dl4', 'dl8', 'dl12', 'dl16', 'el8-dl1', 'el8-dl2', 'el8-dl4',
                'el16-dl1', 'el16-dl2', 'el16-dl4', 'el16-dl8', 'dm128', 'dm256', 'dm768',
                'dm1000', 'dm2000', 'ff1000', 'ff3000', 'ff6000', 'ff9000', 'ff12000', 'kv16',
                'kv32', 'kv128', 'kv256')
    + _released('base', 'nl2', 'nl4', 'nl8', 'nl16', 'nl24', 'nl32', 'nl36', 'nl40', 'nl48',
                'el2', 'el4', 'el6', 'el8', 'el16', 'dl2', 'dl4', 'dl6', 'dl8', 'dm256', 'dm512',
                'dm1000', 'dm2000', 'ff1000', 'ff2000', 'ff6000', 'ff9000', 'ff12000', 'kv16',
                'kv32', 'kv128', 'kv256', 'nh8', 'nh16', 'nh24', 'nh32')
    + _released('large', 'nl2', 'nl4', 'nl8', 'nl10', 'nl12', 'nl16', 'nl20', 'nl32', 'nl36',
                'el2', 'el4', 'el6', 'el8', 'el12', 'dl2', 'dl4', 'dl6', 'dl8', 'dl12', 'dl16',
                'dl32', 'dm128', 'dm256', 'dm512', 'dm768', 'dm2000', 'ff2000', 'ff6000',
                'ff12000', 'kv16', 'kv32', 'kv128', 'kv256', 'nh2', 'nh4', 'nh8', 'nh12', 'nh24',
                'nh32', 'nh8-nl32')
    + _released('xl', 'nl2', 'nl4', 'nl6', 'nl8', 'nl12', 'nl16', 'nl28')
    + _released('xxl', 'nl4'))
