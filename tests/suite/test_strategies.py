"""Every strategy x both domains x several budgets gives a valid shape near the budget."""

import math

import numpy as np
import pytest

from suite import costs, shapes, strategies

BASES = {'text': shapes.parse('small'), 'vision': shapes.parse('S/16')}
# Within reach of every strategy: one-dimension strategies cannot shrink the embeddings.
BUDGET_MULTIPLES = (0.85, 1.5, 3.0)
FIELDS = ('num_encoder_layers', 'num_decoder_layers', 'd_model', 'd_ff', 'num_heads', 'd_kv')


def _cases():
  for name in strategies.STRATEGIES:
    for domain in shapes.DOMAINS:
      if name == 'decoder_depth' and domain == 'vision':
        continue
      yield name, domain


@pytest.mark.parametrize('name,domain', list(_cases()))
@pytest.mark.parametrize('kind', strategies.BUDGET_KINDS)
def test_solve_hits_budgets(name, domain, kind):
  base = BASES[domain]
  base_cost = strategies.cost(base, kind)
  previous = 0
  for multiple in BUDGET_MULTIPLES:
    budget = multiple * base_cost
    shape = strategies.solve(name, base, budget, kind)
    assert isinstance(shape, shapes.Shape) and shape.domain == domain
    got = strategies.cost(shape, kind)
    assert got >= previous  # larger budgets never give smaller shapes
    previous = got
    # No shape the strategy gives at factors around the budget's (sampled off the solver's
    # grid) is closer to the budget.
    strategy = strategies.get(name)
    for j in range(-8, 9):
      other = strategies.cost(strategy(base, multiple * 1.03 ** j), kind)
      assert abs(math.log(got / budget)) <= abs(math.log(other / budget)) + 1e-12
    if name != 'canonical':  # the size table is coarse; the others land near the budget
      assert got == pytest.approx(budget, rel=0.25)
    # Family options are never touched.
    unchanged = {k: v for k, v in base.fields().items() if k not in FIELDS}
    assert {k: v for k, v in shape.fields().items() if k not in FIELDS} == unchanged


# Bases on and off the size tables (deeper, shallower, another d_kv, more heads).
MONOTONE_BASES = ('small', 'small-nl16', 'small-nl48', 'small-el16-dl2', 'base-kv16', 'xxl-nl4',
                  'S/16', 'So400m/14', 'B/16-nh24')


def _monotone_cases():
  for base_name in MONOTONE_BASES:
    for name in strategies.STRATEGIES:
      if not (name == 'decoder_depth' and shapes.parse(base_name).domain == 'vision'):
        yield name, base_name  # decoder_depth of an encoder-only ViT is an error (test_errors)


@pytest.mark.parametrize('name,base_name', list(_monotone_cases()))
def test_factor_one_is_the_base_and_factors_are_monotone(name, base_name):
  base = shapes.parse(base_name)
  strategy = strategies.get(name)
  assert strategy(base, 1.0) == base and strategy.step(base, 0) == base
  assert strategy.description and '\n' not in strategy.description
  factors = [2 ** (k / 8) for k in range(-32, 33)]
  sizes = [costs.params(strategy(base, f)) for f in factors]
  assert sizes == sorted(sizes)
  base_params = costs.params(base)
  assert all(c >= base_params for f, c in zip(factors, sizes, strict=True) if f > 1)
  assert all(c <= base_params for f, c in zip(factors, sizes, strict=True) if f < 1)


def test_canonical_never_moves_against_the_factor():
  canonical = strategies.get('canonical')
  deep, shallow = shapes.parse('small-nl48'), shapes.parse('small-nl16')
  assert costs.params(canonical(deep, 1.05)) >= costs.params(deep)  # was base, fewer params
  assert costs.params(canonical(shallow, 0.99)) <= costs.params(shallow)  # was base, more
  # Known answers from small-nl16 (133.9M): small 60.5M, base 222.9M, large 737.7M.
  assert canonical(shallow, 0.99) == shallow and canonical(shallow, 1.01) == shallow
  assert canonical(shallow, 2) == shapes.parse('base')
  assert canonical(shallow, 4) == shapes.parse('large')
  assert canonical(shallow, 0.5) == shapes.parse('small')
  # On-table bases behave as before: the nearest size.
  assert canonical(shapes.parse('small'), 3) == shapes.parse('base')
  assert canonical(shapes.parse('small'), 1.05) == shapes.parse('small')


def test_factors_accept_any_real_number_but_not_booleans():
  small, depth = BASES['text'], strategies.get('depth')
  doubled = depth(small, 2)
  assert depth(small, np.float32(2.0)) == doubled
  assert depth(small, np.float64(2.0)) == doubled and depth(small, np.int64(2)) == doubled
  assert depth(small, 2) == doubled
  for bad in (True, False, float('nan'), float('inf'), 0, -1.0, '2'):
    with pytest.raises(ValueError, match='scale factor'):
      depth(small, bad)


@pytest.mark.parametrize('name', [n for n in strategies.STRATEGIES if n != 'canonical'])
def test_ladder_steps_stay_in_the_solver_range(name):
  strategy = strategies.get(name)
  base = BASES['text']
  top = strategies.LADDER_MAX_STEP
  assert top == 12
  strategy.step(base, top)
  strategy.step(base, -top)
  for bad in (top + 1, -top - 1, 1100, -1100):
    with pytest.raises(shapes.ShapeError, match=rf'ladder step {bad} .* from -12 to 12'):
      strategy.step(base, bad)
  with pytest.raises(ValueError, match='whole number'):
    strategy.step(base, 1.5)


@pytest.mark.parametrize('name', [n for n in strategies.STRATEGIES if n != 'canonical'])
def test_rounding_is_hardware_friendly(name):
  # So400m/14 has d_kv 72: d_model = heads x d_kv wins over the multiple of 64.
  bases = [*BASES.values(), shapes.parse('So400m/14'), shapes.parse('xl')]
  for base in bases:
    if name == 'decoder_depth' and base.domain == 'vision':
      continue
    coupled = base.attention_width == base.d_model
    for factor in (0.02, 0.3, 1.7, 3.1, 9.0, 64.0):
      s = strategies.get(name)(base, factor)
      if s.d_model != base.d_model:
        if coupled and s.num_heads != base.num_heads:
          assert s.d_model == s.num_heads * s.d_kv
        else:
          assert s.d_model % 64 == 0
      if s.d_ff != base.d_ff:
        assert s.d_ff % 64 == 0
      assert s.d_kv % 8 == 0 and s.num_heads >= 1 and s.num_encoder_layers >= 1
      if name == 'width_first':
        assert s.d_model <= max(strategies.WIDTH_FIRST_MAX_D_MODEL, base.d_model)


def test_what_each_strategy_moves():
  small = BASES['text']
  assert strategies.depth(small, 2) == small.replace(num_encoder_layers=12, num_decoder_layers=12)
  assert strategies.encoder_depth(small, 2) == small.replace(num_encoder_layers=12)
  assert strategies.decoder_depth(small, 2) == small.replace(num_decoder_layers=12)
  assert strategies.width(small, 2) == small.replace(d_model=1024)
  assert strategies.ff(small, 2) == small.replace(d_ff=4096)
  assert strategies.heads(small, 2) == small.replace(num_heads=16)
  assert strategies.kv(small, 2) == small.replace(d_kv=128)
  # width_first: heads with d_model (attention width stays = d_model), d_kv fixed.
  wide = strategies.width_first(small, 4)
  assert (wide.d_model, wide.d_ff, wide.num_heads, wide.d_kv) == (1024, 4096, 16, 64)
  assert wide.num_encoder_layers == 6
  # uniform: all together; 8x params -> 2x each dimension.
  assert strategies.uniform(small, 8) == small.replace(
      num_encoder_layers=12, num_decoder_layers=12, d_model=1024, d_ff=4096, num_heads=16)


def test_deep_narrow_goes_deep_to_the_cap_then_wide():
  small = BASES['text']
  assert strategies.deep_narrow(small, 4) == small.replace(num_encoder_layers=24,
                                                           num_decoder_layers=24)
  capped = strategies.deep_narrow(small, 6 * 4)
  assert capped.num_encoder_layers == capped.num_decoder_layers == 36
  assert capped.d_model == 1024 and capped.num_heads == 16 and capped.d_ff == 4096
  assert strategies.deep_narrow(small, 12, max_layers=24).num_encoder_layers == 24
  vit = strategies.deep_narrow(BASES['vision'], 2)
  assert vit.num_encoder_layers == 24 and vit.num_decoder_layers == 0


def test_deep_narrow_below_the_base_keeps_depth_and_narrows():
  base = shapes.parse('base')
  # Half the layer parameters: every layer kept, width by sqrt(1/2) (12 -> 8 heads).
  assert strategies.deep_narrow(base, 0.5) == base.replace(d_model=512, d_ff=2176, num_heads=8)
  # The issue's acceptance: from base at small-nl16's parameters (133.9M), deep and narrow.
  budget = costs.params(shapes.parse('small-nl16'))
  assert budget == 133_932_544
  solved = strategies.solve('deep_narrow', base, budget)
  assert solved.num_encoder_layers >= 12 and solved.num_decoder_layers >= 12
  assert solved.d_model < 768
  assert (solved.num_encoder_layers, solved.d_model, solved.num_heads) == (12, 576, 9)
  # Width narrows down to one head (factor 1/12^2); only below that does depth go.
  narrowest = strategies.deep_narrow(base, 1 / 144)
  assert (narrowest.num_encoder_layers, narrowest.d_model, narrowest.num_heads) == (12, 64, 1)
  below = strategies.deep_narrow(base, 1 / 288)
  assert (below.num_encoder_layers, below.d_model, below.num_heads) == (6, 64, 1)
  floor = strategies.deep_narrow(base, 2.0 ** -12)
  assert floor.num_encoder_layers == floor.num_decoder_layers == 1
  # Bases with unequal stacks keep both; a ViT keeps its encoder.
  skewed = strategies.deep_narrow(shapes.parse('small-el16-dl2'), 0.25)
  assert (skewed.num_encoder_layers, skewed.num_decoder_layers, skewed.d_model) == (16, 2, 256)
  vit = strategies.deep_narrow(shapes.parse('B/16'), 0.25)
  assert (vit.num_encoder_layers, vit.d_model, vit.num_heads, vit.d_kv) == (12, 384, 6, 64)


def test_width_first_below_the_base_gives_up_depth_then_narrows():
  base = shapes.parse('base')
  assert strategies.width_first(base, 0.5) == base.replace(num_encoder_layers=6,
                                                           num_decoder_layers=6)
  one_layer = strategies.width_first(base, 1 / 12)
  assert one_layer == base.replace(num_encoder_layers=1, num_decoder_layers=1)
  narrow = strategies.width_first(base, 1 / 48)  # 1 layer, then width by sqrt(1/4)
  assert (narrow.num_encoder_layers, narrow.d_model, narrow.num_heads) == (1, 384, 6)
  skewed = strategies.width_first(shapes.parse('small-el16-dl2'), 1 / 16)
  assert (skewed.num_encoder_layers, skewed.num_decoder_layers, skewed.d_model) == (1, 1, 512)


# Text and vision bases of both T5 families; budgets from 0.1x to 10x the base's parameters.
PREFERENCE_BASES = ('base', 'small', 't5.1.1-base', 'B/16', 'S/16')
PREFERENCE_MULTIPLES = (0.1, 0.2, 0.5, 0.8, 1.25, 3.0, 10.0)
PREFERENCE_CASES = [(name, 'params') for name in PREFERENCE_BASES] + [('base', 'flops')]


@pytest.mark.parametrize('base_name,kind', PREFERENCE_CASES)
def test_deep_narrow_is_never_shallower_or_wider_than_width_first(base_name, kind):
  base = shapes.parse(base_name)
  for multiple in PREFERENCE_MULTIPLES:
    budget = multiple * strategies.cost(base, kind)
    deep = strategies.solve('deep_narrow', base, budget, kind)
    wide = strategies.solve('width_first', base, budget, kind)
    assert deep.num_encoder_layers >= wide.num_encoder_layers, (multiple, deep, wide)
    assert deep.num_decoder_layers >= wide.num_decoder_layers, (multiple, deep, wide)
    assert deep.d_model <= wide.d_model, (multiple, deep, wide)
    if multiple < 0.9:  # below the base: deep_narrow keeps the layers, width_first the width
      assert (deep.num_encoder_layers, deep.num_decoder_layers) == (
          base.num_encoder_layers, base.num_decoder_layers)
      assert deep.d_model < base.d_model
      assert wide.num_encoder_layers < base.num_encoder_layers
      one_layer = max(wide.num_encoder_layers, wide.num_decoder_layers) == 1
      assert wide.d_model == base.d_model or one_layer  # narrower only at one layer per stack
    if multiple > 1.1:  # above: deep_narrow adds layers first, width_first widens first
      assert deep.num_encoder_layers > base.num_encoder_layers
      assert wide.d_model > base.d_model


# The one field each single-knob strategy moves.
KNOBS = {'depth': 'num_encoder_layers', 'encoder_depth': 'num_encoder_layers',
         'decoder_depth': 'num_decoder_layers', 'width': 'd_model', 'ff': 'd_ff',
         'heads': 'num_heads', 'kv': 'd_kv'}


ROUNDING = {'num_encoder_layers': 1, 'num_decoder_layers': 1, 'd_model': 64, 'd_ff': 64,
            'num_heads': 1, 'd_kv': 8}


def _knob_cases():
  for name in KNOBS:
    for domain in shapes.DOMAINS:
      if not (name == 'decoder_depth' and domain == 'vision'):
        yield name, domain


@pytest.mark.parametrize('name,domain', list(_knob_cases()))
def test_single_knob_strategies_move_their_knob_both_ways(name, domain):
  base = BASES[domain]
  field = KNOBS[name]
  moved = {field, 'num_decoder_layers'} if name == 'depth' else {field}
  for factor, below in ((0.5, True), (0.25, True), (2.0, False), (3.0, False)):
    shape = strategies.get(name)(base, factor)
    value, start = getattr(shape, field), getattr(base, field)
    assert value < start if below else value > start, (factor, shape)
    assert abs(value - start * factor) <= ROUNDING[field] / 2  # the nearest allowed value
    for other in FIELDS:
      if other not in moved:
        assert getattr(shape, other) == getattr(base, other)


def test_width_first_widens_to_the_cap_then_deepens():
  small = BASES['text']
  deep = strategies.width_first(small, 64 * 2)  # 8x width is 4096, then 2x depth
  assert deep.d_model == 4096 and deep.num_encoder_layers == 12
  # d_kv 72: 57 heads would be 4104 > 4096, so heads stop at 56 (d_model 4032).
  so400m = strategies.width_first(shapes.parse('So400m/14'), 64)
  assert (so400m.num_heads, so400m.d_model) == (56, 56 * 72)
  assert strategies.width_first(shapes.parse('So400m/14'), 64, max_d_model=2000).d_model == 1944


def test_canonical_ladder_walks_the_size_table():
  small = BASES['text']
  ladder = [shapes.format_name(strategies.get('canonical').step(small, k)) for k in (-2, -1, 1, 2)]
  assert ladder == ['tiny', 'mini', 'base', 'large']
  assert strategies.get('canonical').step(shapes.parse('t5.1.1-small'), 1) == shapes.parse(
      't5.1.1-base')
  assert shapes.format_name(strategies.get('canonical').step(BASES['vision'], 1)) == 'M/16'
  with pytest.raises(shapes.ShapeError, match='leaves the size table'):
    strategies.get('canonical').step(small, 40)


def test_ladder_steps_double_the_scaled_dimension():
  small = BASES['text']
  assert strategies.get('depth').step(small, 1).num_encoder_layers == 12
  assert strategies.get('depth').step(small, -1).num_encoder_layers == 3


def test_errors():
  with pytest.raises(shapes.ShapeError, match='closest: deep_narrow'):
    strategies.get('deep_narow')
  with pytest.raises(shapes.ShapeError, match='encoder-only'):
    strategies.get('decoder_depth')(BASES['vision'], 2)
  with pytest.raises(shapes.ShapeError, match=r'reachable params run from .* to '):
    strategies.solve('depth', BASES['text'], 1e3)
  with pytest.raises(ValueError, match='budget kind'):
    strategies.solve('depth', BASES['text'], 1e8, kind='seconds')
  with pytest.raises(ValueError, match='scale factor'):
    strategies.get('depth')(BASES['text'], -1)


# One-dimension strategies from small, with every value of their dimension in a range the
# solver's grid covers densely: (strategy, field, values).
HAND_BUILT = (
    ('depth', ('num_encoder_layers', 'num_decoder_layers'), range(1, 49)),
    ('encoder_depth', ('num_encoder_layers',), range(1, 49)),
    ('decoder_depth', ('num_decoder_layers',), range(1, 49)),
    ('width', ('d_model',), range(64, 1025, 64)),
    ('ff', ('d_ff',), range(64, 4097, 64)),
    ('heads', ('num_heads',), range(1, 17)),
    ('kv', ('d_kv',), range(8, 129, 8)),
)


@pytest.mark.parametrize('name,fields,values', HAND_BUILT, ids=[c[0] for c in HAND_BUILT])
def test_solve_matches_brute_force_over_a_hand_built_set(name, fields, values):
  small = BASES['text']
  candidates = [small.replace(**dict.fromkeys(fields, v)) for v in values]
  costs_ = sorted(costs.params(c) for c in candidates)
  for t in np.linspace(0.02, 0.98, 13):
    budget = math.exp(math.log(costs_[0]) + t * math.log(costs_[-1] / costs_[0]))
    best = min(candidates, key=lambda c: abs(math.log(costs.params(c) / budget)))
    assert strategies.solve(name, small, budget) == best


def test_solve_known_answers():
  small = BASES['text']
  for name in ('small-nl16', 'small-nl2', 'small-el12', 'small-dl4', 'small-ff6000',
               'small-kv128', 'small-dm768'):
    target = shapes.parse(name)
    strategy = {'nl': 'depth', 'el': 'encoder_depth', 'dl': 'decoder_depth', 'ff': 'ff',
                'kv': 'kv', 'dm': 'width'}[name.split('-')[1][:2]]
    assert strategies.solve(strategy, small, costs.params(target)) == target
    flops = strategies.cost(target, 'flops')
    assert strategies.solve(strategy, small, flops, 'flops') == target


def test_flops_budget_uses_lengths():
  small = BASES['text']
  short = strategies.solve('depth', small, 2e11, 'flops', input_length=128, target_length=32)
  long = strategies.solve('depth', small, 2e11, 'flops', input_length=512, target_length=114)
  assert short.num_encoder_layers > long.num_encoder_layers


def _size_d_model(name: str, domain: str) -> int:
  """d_model of the size a released-style name starts with ('small-nl16' -> small's)."""
  parts = name.split('-')
  size = '-'.join(parts[:2]) if name.startswith(shapes.T5_1_1_PREFIX) else parts[0]
  return shapes.parse(size, domain).d_model


@pytest.mark.parametrize('base_name', PREFERENCE_BASES)
def test_ladder_names_never_read_as_another_size(base_name):
  base = shapes.parse(base_name)
  released = {shapes.canonical(r) for r in shapes.RELEASED_T5_EFFICIENT}
  for name in strategies.STRATEGIES:
    if name == 'decoder_depth' and base.domain == 'vision':
      continue  # an error for encoder-only shapes (test_errors)
    strategy = strategies.get(name)
    steps = range(-3, 4) if name == 'canonical' else range(-8, 9)
    for k in steps:
      try:
        shape = strategy.step(base, k)
      except shapes.ShapeError:
        assert name == 'canonical'  # off the end of the size table
        continue
      label = shapes.display_name(shape)
      if label.startswith(f'{shape.domain}:'):  # descriptive: every field spelled out
        assert f'dm{shape.d_model}-' in label
        continue
      assert shapes.parse(label, shape.domain) == shape
      if label not in released:
        assert _size_d_model(label, shape.domain) == shape.d_model, (name, k, label)


def test_ladder_names_known_answers():
  base, small = shapes.parse('base'), BASES['text']
  # 36 layers at d_model 896 is no tiny model: it gets its fields, not 'tiny-nl36-dm896-...'.
  assert shapes.display_name(strategies.deep_narrow(base, 4)) == (
      'text:el36-dl36-dm896-ff3520-nh14-kv64-relu-v32128')
  assert shapes.format_name(strategies.deep_narrow(base, 4)) == 'tiny-nl36-dm896-ff3520-nh14'
  # A rung that is a released checkpoint exactly gets its released name.
  assert shapes.display_name(strategies.deep_narrow(small, 16 / 6)) == 'small-nl16'
  assert shapes.display_name(strategies.deep_narrow(base, 2)) == 'base-nl24'
  # Otherwise the size whose d_model it has, with depth knobs and at most one width knob.
  assert shapes.display_name(strategies.width_first(small, 4)) == 'large-nl6'
  assert shapes.display_name(strategies.deep_narrow(base, 0.5)) == 'small-nl12-ff2176'
  assert shapes.display_name(strategies.deep_narrow(shapes.parse('B/16'), 0.5)) == 'M/16-ff2176'
  assert shapes.display_name(strategies.width(small, 1.25)).startswith('text:el6-dl6-dm640-')
  assert shapes.display_name(strategies.width(small, 1.5)) == 'small-dm768'  # released


@pytest.mark.parametrize('name', [n for n in strategies.STRATEGIES if n != 'decoder_depth'])
def test_one_strategy_gives_a_t5_ladder_and_a_vit_ladder_in_one_call(name):
  strategy = strategies.get(name)
  steps = (-1, 0, 1, 2)
  ladders = strategy.ladders(BASES, steps)
  assert set(ladders) == {'text', 'vision'}
  for domain, ladder in ladders.items():
    base = BASES[domain]
    assert ladder[1] == base  # step 0
    assert [strategy.step(base, k) for k in steps] == ladder
    for shape in ladder:
      assert shape.domain == domain
      # Family options stay the base's: vocabulary and tying for T5, image options for ViT.
      assert (shape.vocab_size, shape.tie_embeddings, shape.image_size, shape.patch_size,
              shape.pooling, shape.num_classes) == (
                  base.vocab_size, base.tie_embeddings, base.image_size, base.patch_size,
                  base.pooling, base.num_classes)
      assert (shape.num_decoder_layers > 0) == (domain == 'text')
    params = [costs.params(s) for s in ladder]
    assert params == sorted(params), (domain, params)


def test_deep_narrow_ladders_go_deep_first_in_both_domains():
  ladders = strategies.get('deep_narrow').ladders(BASES, (1, 2))
  for domain, (up1, up2) in ladders.items():
    base = BASES[domain]
    assert up1.num_encoder_layers == 2 * base.num_encoder_layers, domain
    assert up1.d_model == base.d_model, domain  # depth alone at x2
    # x4: deeper still (up to the cap of 36), widening only what the cap leaves over.
    assert up2.num_encoder_layers == min(4 * base.num_encoder_layers,
                                         strategies.DEEP_NARROW_MAX_LAYERS), domain
    assert (up2.d_model > base.d_model) == (4 * base.num_encoder_layers >
                                            strategies.DEEP_NARROW_MAX_LAYERS), domain
