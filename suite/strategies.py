"""Scaling strategies: pure functions from a base Shape and a scale factor to a new Shape.

A strategy knows nothing about T5 or ViT: it moves the dimensions of a `Shape` (depths,
d_model, d_ff, heads, d_kv) and leaves the family options alone. `f == 1` is the base itself.
What the factor `f` multiplies depends on the strategy:

- `depth`, `uniform`, `deep_narrow`, `width_first`: the parameters of the Transformer layers
  (embeddings aside), approximately. `depth` multiplies the layers by `f`; `uniform` multiplies
  layers, d_model, d_ff and heads each by `f ** (1/3)`; `deep_narrow` and `width_first` split
  `f` between depth (x) and width (x squared, as d_model and d_ff both move), each by the
  dimension it prefers, which it grows first and gives up last:
  - `deep_narrow` prefers depth. Growing, it adds layers first, up to DEEP_NARROW_MAX_LAYERS
    per stack, then widens. Shrinking, it keeps every layer and narrows d_model, d_ff and
    heads together (d_kv fixed) by sqrt(f), down to one head; only a budget below that gives
    up depth.
  - `width_first` prefers width. Growing, it widens first, up to d_model
    WIDTH_FIRST_MAX_D_MODEL, then adds layers. Shrinking, it keeps the width and removes
    layers first, down to one per stack; only then does it narrow.
  So at a given budget `deep_narrow` is never shallower and never wider than `width_first`.
- `encoder_depth`, `decoder_depth`, `width`, `ff`, `heads`, `kv`: their one dimension, by `f`
  (f < 1 shrinks it, f > 1 grows it).
  The layer parameters then grow by `f` only for `width` (every layer matrix has a d_model
  side); for the others they grow by less, as the rest of the layers stays put: from
  T5-Efficient small, `f = 2` gives x1.43 (encoder_depth, heads, kv) or x1.57 (decoder_depth,
  ff).
- `canonical`: the named size of the base's family nearest `f` x the base's parameters, never
  crossing the base (f > 1 never gives fewer parameters, f < 1 never more).

Rounding (hardware-friendly, stated once): layers are whole numbers >= 1 (a decoder stays
absent when the base has none); d_model and d_ff are multiples of 64; d_kv a multiple of 8;
heads a whole number >= 1. When the base's attention width equals its d_model (ViT, and most
T5 sizes), strategies that grow heads with d_model keep them equal: d_model = heads x d_kv
wins over the multiple of 64, so d_model is a multiple of d_kv (So400m/14's d_kv of 72 gives
d_model 864 = 12 x 72, not a multiple of 64).

A ladder step k (0 = base, |k| <= LADDER_MAX_STEP) is the factor `LADDER_BASE ** k`, applied
as above: each step doubles the strategy's factor, not necessarily the parameters; for
`canonical` it is the k-th next size of the table. `solve` picks, among the shapes a strategy
gives at factors 2**-12 .. 2**12 (64 per octave), the one whose parameters or training FLOPs
are closest to a budget.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Mapping, Sequence

from suite import costs
from suite.shapes import (
  T5_1_1_SIZES,
  T5_EFFICIENT_SIZES,
  TEXT,
  VISION,
  VIT_SIZES,
  Shape,
  ShapeError,
  closest,
)

DEEP_NARROW_MAX_LAYERS = 36
WIDTH_FIRST_MAX_D_MODEL = 4096
LADDER_BASE = 2.0
WIDTH_MULTIPLE = 64
KV_MULTIPLE = 8
BUDGET_KINDS = ('params', 'flops')
# The solver scans factors 2**-12 .. 2**12 on this many points per octave.
_SOLVE_POINTS_PER_OCTAVE = 64
_SOLVE_OCTAVES = 12
# Ladder steps run over the solver's range: factors LADDER_BASE ** -12 .. LADDER_BASE ** 12.
LADDER_MAX_STEP = _SOLVE_OCTAVES


def _round_to(value: float, multiple: int) -> int:
  return max(multiple, multiple * round(value / multiple))


def _scale_layers(base: Shape, factor: float) -> dict:
  return {
      'num_encoder_layers': max(1, round(base.num_encoder_layers * factor)),
      'num_decoder_layers': (max(1, round(base.num_decoder_layers * factor))
                             if base.num_decoder_layers else 0),
  }


def _scale_width(base: Shape, factor: float, max_d_model: int | None = None) -> dict:
  """d_model, d_ff and heads together by `factor`, d_kv fixed; d_model at most
  max(max_d_model, the base's) when `max_d_model` is given."""
  heads = max(1, round(base.num_heads * factor))
  if base.attention_width == base.d_model:
    if max_d_model is not None:
      heads = min(heads, max(base.num_heads, max_d_model // base.d_kv))
    d_model = heads * base.d_kv
  else:
    d_model = _round_to(base.d_model * factor, WIDTH_MULTIPLE)
    if max_d_model is not None:
      d_model = min(d_model, max(base.d_model, max_d_model // WIDTH_MULTIPLE * WIDTH_MULTIPLE))
  return {'d_model': d_model, 'd_ff': _round_to(base.d_ff * factor, WIDTH_MULTIPLE),
          'num_heads': heads}


def _replace(base: Shape, factor: float, changes: dict) -> Shape:
  return base if factor == 1 else dataclasses.replace(base, **changes)


def depth(base: Shape, factor: float) -> Shape:
  return _replace(base, factor, _scale_layers(base, factor))


def encoder_depth(base: Shape, factor: float) -> Shape:
  return _replace(base, factor,
                  {'num_encoder_layers': max(1, round(base.num_encoder_layers * factor))})


def decoder_depth(base: Shape, factor: float) -> Shape:
  if base.num_decoder_layers == 0:
    raise ShapeError(f'decoder_depth needs a shape with a decoder; the base ({base.domain}) is '
                     'encoder-only. Use depth or encoder_depth instead.')
  return _replace(base, factor,
                  {'num_decoder_layers': max(1, round(base.num_decoder_layers * factor))})


def width(base: Shape, factor: float) -> Shape:
  return _replace(base, factor, {'d_model': _round_to(base.d_model * factor, WIDTH_MULTIPLE)})


def ff(base: Shape, factor: float) -> Shape:
  return _replace(base, factor, {'d_ff': _round_to(base.d_ff * factor, WIDTH_MULTIPLE)})


def heads(base: Shape, factor: float) -> Shape:
  return _replace(base, factor, {'num_heads': max(1, round(base.num_heads * factor))})


def kv(base: Shape, factor: float) -> Shape:
  return _replace(base, factor, {'d_kv': _round_to(base.d_kv * factor, KV_MULTIPLE)})


def uniform(base: Shape, factor: float) -> Shape:
  per_dim = factor ** (1 / 3)  # depth x two matrix dimensions
  return _replace(base, factor, {**_scale_layers(base, per_dim), **_scale_width(base, per_dim)})


def _depth_floor(base: Shape) -> float:
  """The depth factor at which every stack is down to one layer."""
  return 1 / max(base.num_encoder_layers, base.num_decoder_layers)


def _width_floor(base: Shape) -> float:
  """The width factor at which heads are down to one (d_model = d_kv where the base has
  d_model = heads x d_kv): the narrowest width `deep_narrow` goes to before giving up depth."""
  return 1 / base.num_heads


def _depth_and_width(base: Shape, factor: float, depth_factor: float,
                     width_factor: float, max_d_model: int | None = None) -> Shape:
  changes = {}
  if depth_factor != 1:
    changes.update(_scale_layers(base, depth_factor))
  if width_factor != 1:
    changes.update(_scale_width(base, width_factor, max_d_model))
  return _replace(base, factor, changes)


def deep_narrow(base: Shape, factor: float,
                max_layers: int = DEEP_NARROW_MAX_LAYERS) -> Shape:
  """Prefers depth, in both directions; `factor` = depth x width squared.

  Growing (factor > 1): layers first, up to `max_layers` per stack (or the base's depth, if
  deeper), then d_model, d_ff and heads together (d_kv fixed) by the square root of the rest.
  Shrinking (factor < 1): the layers stay; d_model, d_ff and heads narrow together by
  sqrt(factor), down to a single head (width factor 1 / num_heads). Only a budget below that
  narrowest width gives up depth: the layers then shrink by factor x num_heads^2, to one layer
  per stack at the least.
  """
  deepest = max(base.num_encoder_layers, base.num_decoder_layers)
  if factor >= 1:
    depth_factor = min(factor, max(max_layers, deepest) / deepest)
    width_factor = math.sqrt(factor / depth_factor)
  else:
    width_factor = max(math.sqrt(factor), _width_floor(base))
    depth_factor = max(factor / width_factor ** 2, _depth_floor(base))
  return _depth_and_width(base, factor, depth_factor, width_factor)


def width_first(base: Shape, factor: float,
                max_d_model: int = WIDTH_FIRST_MAX_D_MODEL) -> Shape:
  """Prefers width, in both directions; `factor` = depth x width squared.

  Growing (factor > 1): d_model with d_ff and heads in proportion (d_kv fixed) up to
  `max_d_model` (or the base's d_model, if wider), then depth with the rest; where d_model =
  heads x d_kv, heads stop at the most whose width fits. Shrinking (factor < 1): the width
  stays and the layers shrink by `factor` until every stack is down to one layer; only then do
  d_model, d_ff and heads narrow, by the square root of the rest.
  """
  if factor >= 1:
    width_room = max(max_d_model, base.d_model) / base.d_model
    width_factor = min(math.sqrt(factor), width_room)
    depth_factor = factor / width_factor ** 2
  else:
    depth_factor = max(factor, _depth_floor(base))
    width_factor = math.sqrt(factor / depth_factor)
  return _depth_and_width(base, factor, depth_factor, width_factor, max_d_model)


# Shape.domain -> the named size table of a shape's family (text: T5.1.1's for gated-GELU
# shapes, T5-Efficient's otherwise).
SIZE_TABLES: Mapping[str, Callable[[Shape], Mapping[str, Shape]]] = {
    TEXT: lambda base: T5_1_1_SIZES if base.is_gated else T5_EFFICIENT_SIZES,
    VISION: lambda base: VIT_SIZES,
}


def _family_table(base: Shape) -> list[Shape]:
  """The canonical sizes of the base's family, with the base's own family options."""
  table = SIZE_TABLES[base.domain](base)
  keep = ('num_encoder_layers', 'num_decoder_layers', 'd_model', 'd_ff', 'num_heads', 'd_kv')
  sizes = [dataclasses.replace(base, **{k: getattr(size, k) for k in keep})
           for size in table.values()]
  return sorted(set(sizes), key=costs.params)


def canonical(base: Shape, factor: float) -> Shape:
  """The shape nearest (in log) `factor` x the base's parameters among the base and the named
  sizes of its family on the side `factor` points to: for factor > 1 only sizes with more
  parameters than the base, for factor < 1 only sizes with fewer. `factor == 1` is the base.

  So the result never moves against the factor, also from a base outside the table.
  """
  if factor == 1:
    return base
  base_params = costs.params(base)
  side = [s for s in _family_table(base)
          if (costs.params(s) > base_params if factor > 1 else costs.params(s) < base_params)]
  target = math.log(factor * base_params)
  return min([base, *side], key=lambda s: abs(math.log(costs.params(s)) - target))


@dataclasses.dataclass(frozen=True)
class Strategy:
  """A registered scaling strategy: `apply(base, factor) -> Shape`, described in one line."""

  name: str
  description: str
  apply: Callable[[Shape, float], Shape]

  def __call__(self, base: Shape, factor: float) -> Shape:
    """The shape at scale `factor`: any real number (numpy scalars too) that is finite and
    > 0; booleans are refused."""
    if (not isinstance(factor, numbers.Real) or isinstance(factor, bool) or
        not factor > 0 or math.isinf(factor)):
      raise ValueError(f'scale factor {factor!r} for strategy {self.name!r}: must be a '
                       'finite number > 0 (1 = the base shape).')
    return self.apply(base, float(factor))

  def step(self, base: Shape, k: int) -> Shape:
    """The k-th rung of the ladder: factor LADDER_BASE ** k (0 = base; k > 0 grows, k < 0
    shrinks), |k| <= LADDER_MAX_STEP; for `canonical`, the k-th next size of the table."""
    if not isinstance(k, numbers.Integral) or isinstance(k, bool):
      raise ValueError(f'ladder step {k!r} for strategy {self.name!r}: must be a whole number '
                       f'from {-LADDER_MAX_STEP} to {LADDER_MAX_STEP}.')
    if self.name == 'canonical':
      return _canonical_step(base, int(k))
    if abs(k) > LADDER_MAX_STEP:
      raise ShapeError(f'ladder step {k} for strategy {self.name!r} is out of range: steps run '
                       f'from {-LADDER_MAX_STEP} to {LADDER_MAX_STEP} (factors '
                       f'{LADDER_BASE:g}^-{LADDER_MAX_STEP} to {LADDER_BASE:g}^{LADDER_MAX_STEP}, '
                       "the solver's range); pick a step in that range, or solve for a budget.")
    return self(base, LADDER_BASE ** int(k))

  def ladders(self, bases: Mapping[str, Shape],
              steps: Sequence[int]) -> dict[str, list[Shape]]:
    """One ladder per base, from this one definition: `{key: [step(base, k) for k in
    steps]}`. The bases may belong to different domains (a T5 and a ViT), which is how one
    strategy is compared across text and vision."""
    return {key: [self.step(base, k) for k in steps] for key, base in bases.items()}


def _canonical_step(base: Shape, k: int) -> Shape:
  table = _family_table(base)
  below = sum(1 for s in table if costs.params(s) < costs.params(base))
  index = below + k if base in table else below + k - (k > 0)
  if k == 0:
    return base
  if not 0 <= index < len(table):
    raise ShapeError(f'canonical step {k} from a base of {costs.params(base):,} parameters '
                     f'leaves the size table ({len(table)} sizes, {below} below the base).')
  return table[index]


STRATEGIES: Mapping[str, Strategy] = {s.name: s for s in (
    Strategy('deep_narrow', f'prefers depth: grows layers first (up to '
             f'{DEEP_NARROW_MAX_LAYERS} per stack), then d_model, d_ff and heads together; '
             'shrinks by narrowing them, keeping every layer', deep_narrow),
    Strategy('width_first', f'prefers width: grows d_model with d_ff and heads in proportion '
             f'(d_kv fixed) up to d_model {WIDTH_FIRST_MAX_D_MODEL}, then layers; shrinks by '
             'removing layers first, narrowing only at one layer per stack', width_first),
    Strategy('depth', 'encoder and decoder layers together', depth),
    Strategy('encoder_depth', 'encoder layers only', encoder_depth),
    Strategy('decoder_depth', 'decoder layers only (encoder-decoder shapes)', decoder_depth),
    Strategy('width', 'd_model only (attention width and d_ff fixed)', width),
    Strategy('ff', 'feed-forward width d_ff only', ff),
    Strategy('heads', 'number of heads, d_kv fixed (attention width grows)', heads),
    Strategy('kv', 'head dimension d_kv, heads fixed', kv),
    Strategy('uniform', 'layers, d_model, d_ff and heads together (d_kv fixed)', uniform),
    Strategy('canonical', "the named size table of the base's family", canonical),
)}


def get(name: str) -> Strategy:
  """The registered strategy called `name`; unknown names list the closest ones."""
  if name not in STRATEGIES:
    raise ShapeError(f'unknown strategy {name!r}; closest: {closest(name, STRATEGIES)}. '
                     f'Strategies: {", ".join(STRATEGIES)}.')
  return STRATEGIES[name]


def cost(shape: Shape, kind: str, input_length: int = costs.DEFAULT_INPUT_LENGTH,
         target_length: int = costs.DEFAULT_TARGET_LENGTH) -> int:
  """The budgeted cost of a shape: parameters, or training FLOPs per example."""
  if kind == 'params':
    return costs.params(shape)
  if kind == 'flops':
    return costs.train_flops_per_example(shape, input_length, target_length)
  raise ValueError(f'budget kind {kind!r}: valid kinds are {", ".join(BUDGET_KINDS)}.')


def reachable(strategy: str | Strategy, base: Shape) -> list[Shape]:
  """Every distinct shape the strategy reaches from `base`, scanning factors 2**-12..2**12."""
  strategy = get(strategy) if isinstance(strategy, str) else strategy
  if strategy.name == 'canonical':
    return _family_table(base) if base in _family_table(base) else [base, *_family_table(base)]
  seen: dict[Shape, None] = {}
  n = _SOLVE_OCTAVES * _SOLVE_POINTS_PER_OCTAVE
  for i in range(-n, n + 1):
    seen.setdefault(strategy(base, 2.0 ** (i / _SOLVE_POINTS_PER_OCTAVE)))
  return list(seen)


def solve(strategy: str | Strategy, base: Shape, budget: float, kind: str = 'params',
          input_length: int = costs.DEFAULT_INPUT_LENGTH,
          target_length: int = costs.DEFAULT_TARGET_LENGTH) -> Shape:
  """The shape the strategy reaches from `base` whose cost is closest to `budget` (in log).

  Raises ShapeError when the budget lies outside the costs the strategy can reach, stating
  the smallest and largest reachable costs.
  """
  if kind not in BUDGET_KINDS:
    raise ValueError(f'budget kind {kind!r}: valid kinds are {", ".join(BUDGET_KINDS)}.')
  if not budget > 0 or math.isinf(budget):
    raise ValueError(f'budget {budget!r}: must be a finite number > 0.')
  strategy = get(strategy) if isinstance(strategy, str) else strategy
  priced = [(cost(s, kind, input_length, target_length), s) for s in reachable(strategy, base)]
  low, high = min(c for c, _ in priced), max(c for c, _ in priced)
  if not low <= budget <= high:
    raise ShapeError(f'{kind} budget {budget:.4g} is out of reach of strategy '
                     f'{strategy.name!r} from this base: reachable {kind} run from {low:.4g} to '
                     f'{high:.4g}. Pick a budget in that range or another base.')
  return min(priced, key=lambda p: (abs(math.log(p[0] / budget)), p[0]))[1]
