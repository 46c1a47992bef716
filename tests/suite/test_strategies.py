"""Every strategy x both domains x several budgets gives a valid shape near the budget."""

import math

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
    # No other reachable shape is closer to the budget.
    best = min(abs(math.log(strategies.cost(s, kind) / budget))
               for s in strategies.reachable(name, base))
    assert abs(math.log(got / budget)) == pytest.approx(best)
    if name != 'canonical':  # the size table is coarse; the others land near the budget
      assert got == pytest.approx(budget, rel=0.25)
    # Family options are never touched.
    unchanged = {k: v for k, v in base.fields().items() if k not in FIELDS}
    assert {k: v for k, v in shape.fields().items() if k not in FIELDS} == unchanged


@pytest.mark.parametrize('name', list(strategies.STRATEGIES))
def test_factor_one_is_the_base_and_factors_are_monotone(name):
  base = BASES['text']
  strategy = strategies.get(name)
  assert strategy(base, 1.0) == base and strategy.step(base, 0) == base
  assert strategy.description and '\n' not in strategy.description
  sizes = [costs.params(strategy(base, 2 ** (k / 4))) for k in range(-8, 9)]
  assert sizes == sorted(sizes)


@pytest.mark.parametrize('name', [n for n in strategies.STRATEGIES if n != 'canonical'])
def test_rounding_is_hardware_friendly(name):
  for domain, base in BASES.items():
    if (name, domain) not in set(_cases()):
      continue
    for factor in (0.3, 1.7, 3.1, 9.0):
      s = strategies.get(name)(base, factor)
      if s.d_model != base.d_model:
        assert s.d_model % 64 == 0
      if s.d_ff != base.d_ff:
        assert s.d_ff % 64 == 0
      assert s.d_kv % 8 == 0 and s.num_heads >= 1 and s.num_encoder_layers >= 1


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


def test_width_first_widens_to_the_cap_then_deepens():
  small = BASES['text']
  deep = strategies.width_first(small, 64 * 2)  # 8x width is 4096, then 2x depth
  assert deep.d_model == 4096 and deep.num_encoder_layers == 12


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


def test_flops_budget_uses_lengths():
  small = BASES['text']
  short = strategies.solve('depth', small, 2e11, 'flops', input_length=128, target_length=32)
  long = strategies.solve('depth', small, 2e11, 'flops', input_length=512, target_length=114)
  assert short.num_encoder_layers > long.num_encoder_layers
