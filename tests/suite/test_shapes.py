"""Shape names: released checkpoints parse, names round-trip, bad names fail helpfully."""

import dataclasses

import pytest

from suite import shapes

# Released names whose knobs are not in canonical order (depth knobs come first).
NON_CANONICAL_RELEASED = {'large-nh8-nl32': 'large-nl32-nh8'}


def test_released_list_is_the_whole_family():
  assert len(shapes.RELEASED_T5_EFFICIENT) == len(set(shapes.RELEASED_T5_EFFICIENT)) >= 160
  assert set(shapes.T5_EFFICIENT_SIZES) <= set(shapes.RELEASED_T5_EFFICIENT)


@pytest.mark.parametrize('name', shapes.RELEASED_T5_EFFICIENT)
def test_released_names_parse_and_round_trip(name):
  shape = shapes.parse(name)
  assert shape.domain == 'text' and shape.activation == 'relu' and shape.tie_embeddings
  formatted = shapes.format_name(shape)
  assert formatted == NON_CANONICAL_RELEASED.get(name, name)
  assert shapes.parse(formatted) == shape
  assert shapes.format_name(shapes.parse(formatted)) == formatted


# Values from the released config.json files (google/t5-efficient-*).
RELEASED_CONFIGS = {
    # name: (num_layers, num_decoder_layers, d_model, d_ff, num_heads, d_kv)
    'tiny-nl2': (2, 2, 256, 1024, 4, 64),
    'small-el32': (32, 6, 512, 2048, 8, 64),
    'small-dm768': (6, 6, 768, 2048, 8, 64),
    'small-kv128': (6, 6, 512, 2048, 8, 128),
    'small-ff6000': (6, 6, 512, 6144, 8, 64),
    'base-kv32': (12, 12, 768, 3072, 12, 32),
    'base-nh24': (12, 12, 768, 3072, 24, 64),
    'base-nl40': (40, 40, 768, 3072, 12, 64),
    'large-el2': (2, 24, 1024, 4096, 16, 64),
    'large-nl20': (20, 20, 1024, 4096, 16, 64),
    'xxl': (24, 24, 1024, 65536, 128, 128),
    'xxl-nl4': (4, 4, 1024, 65536, 32, 64),
}


@pytest.mark.parametrize('name', sorted(RELEASED_CONFIGS))
def test_released_configs(name):
  s = shapes.parse(name)
  fields = (s.num_encoder_layers, s.num_decoder_layers, s.d_model, s.d_ff, s.num_heads, s.d_kv)
  assert fields == RELEASED_CONFIGS[name]
  assert s.vocab_size == 32128 and s.relative_buckets == 32


@pytest.mark.parametrize('name', ['t5.1.1-base', 't5.1.1-xl-nl12', 'B/16', 'S/16-nl24',
                                  'B/16-dm512', 'So400m/14', 'Ti/16-nl36-dm448-ff1920-nh7',
                                  'small-el16-dl2', 'base-ff2000'])
def test_names_round_trip(name):
  assert shapes.format_name(shapes.parse(name)) == name


@pytest.mark.parametrize('domain', shapes.DOMAINS)
def test_canonical_names_parse(domain):
  for name in shapes.names(domain):
    assert shapes.parse(name, domain).domain == domain
    assert shapes.format_name(shapes.parse(name)) == name


def test_power_of_two_knob_values():
  assert shapes.parse('small-ff2000').d_ff == 2048
  assert shapes.parse('base-dm1000').d_model == 1024
  assert shapes.parse('small-ff6000').d_ff == 6144
  assert shapes.format_name(shapes.parse('small').replace(d_ff=12288)) == 'small-ff12000'


def test_values_a_name_cannot_carry_get_a_descriptive_name():
  odd = shapes.parse('small').replace(d_ff=8000)  # 'ff8000' would read back as 8192
  with pytest.raises(shapes.ShapeError, match='8000'):
    shapes.format_name(odd)
  assert shapes.display_name(odd) == 'text:el6-dl6-dm512-ff8000-nh8-kv64-relu-v32128'
  tiny_vit = shapes.parse('S/16').replace(image_size=32)
  assert shapes.display_name(tiny_vit) == 'vision:p16-i32-nl12-dm384-ff1536-nh6-kv64-cls-c1000'
  odd_patch = tiny_vit.replace(image_size=60, patch_size=20)  # 20 does not tile 224
  assert shapes.display_name(odd_patch).startswith('vision:p20-i60-')


@pytest.mark.parametrize('name', shapes.RELEASED_T5_EFFICIENT)
def test_released_checkpoints_are_labelled_by_their_names(name):
  # Width knobs too (small-dm768 is a checkpoint of its own), in canonical knob order.
  assert shapes.display_name(shapes.parse(name)) == NON_CANONICAL_RELEASED.get(name, name)


@pytest.mark.parametrize('name,label', [
    # Depth knobs and at most one width knob on a size with the shape's d_model: kept.
    ('large-nl6', 'large-nl6'),
    ('small-nl12-ff2176', 'small-nl12-ff2176'),
    ('t5.1.1-base-nl24', 't5.1.1-base-nl24'),
    ('t5.1.1-xl-nl12', 't5.1.1-xl-nl12'),
    ('S/16-nl24', 'S/16-nl24'),
    ('M/16-nl8-kv32', 'M/16-nl8-kv32'),
    # The size part would misstate d_model, or two width knobs drift from the size: fields.
    ('tiny-nl36-dm896-ff3520-nh14', 'text:el36-dl36-dm896-ff3520-nh14-kv64-relu-v32128'),
    ('tiny-nl2-dm128-ff512-nh2', 'text:el2-dl2-dm128-ff512-nh2-kv64-relu-v32128'),
    ('small-dm640', 'text:el6-dl6-dm640-ff2048-nh8-kv64-relu-v32128'),
    ('small-ff4000-nh16', 'text:el6-dl6-dm512-ff4096-nh16-kv64-relu-v32128'),
    ('B/16-dm512', 'vision:p16-i224-nl12-dm512-ff3072-nh12-kv64-cls-c1000'),
    ('Ti/16-nl36-dm448-ff1920-nh7', 'vision:p16-i224-nl36-dm448-ff1920-nh7-kv64-cls-c1000'),
])
def test_labels_never_read_as_another_size(name, label):
  shape = shapes.parse(name)
  assert shapes.display_name(shape) == label
  assert shapes.format_name(shape) == name  # the name itself still parses and round-trips


def test_descriptive_names_tell_relative_position_options_apart():
  odd = shapes.parse('small').replace(d_ff=8000)
  variants = [odd, odd.replace(relative_buckets=64), odd.replace(relative_max_distance=256),
              odd.replace(relative_buckets=64, relative_max_distance=256)]
  names = [shapes.descriptive_name(v) for v in variants]
  assert len(set(names)) == len(variants)
  assert names[0] == 'text:el6-dl6-dm512-ff8000-nh8-kv64-relu-v32128'  # defaults: unchanged
  assert names[1].endswith('-rb64') and names[2].endswith('-rd256')
  assert names[3].endswith('-rb64-rd256')
  # A released-style name cannot carry them either, so display_name falls back.
  assert shapes.display_name(shapes.parse('small').replace(relative_buckets=64)).endswith('-rb64')


@pytest.mark.parametrize('bad,message', [
    ('small-el8-nl16', r'knob nl16 conflicts with el8 .* "small-nl16" .* "small-el8-dl16"'),
    ('small-nl16-el8', r'knob nl16 conflicts with el8 .* "small-el8-dl16"'),
    ('small-nl16-dl2', r'knob nl16 conflicts with dl2 .* "small-el16-dl2"'),
    ('small-el4-nl16-dl2', r'knob nl16 conflicts with el4 and dl2 .* "small-el4-dl2"'),
    ('small-nl16-nl8', r"knob 'nl' appears twice .* \(nl16 and nl8\)"),
    ('small-ff2000-ff3000', "knob 'ff' appears twice"),
    ('t5.1.1-base-el2-el4', r"knob 'el' appears twice .*\"t5.1.1-base-el4\""),
    ('B/16-nl12-nl24', "knob 'nl' appears twice"),
])
def test_conflicting_or_repeated_knobs(bad, message):
  with pytest.raises(shapes.ShapeError, match=message):
    shapes.parse(bad)


def test_closest_ignores_case_and_returns_registered_spellings():
  assert shapes.closest('b/16', shapes.vision_names()).startswith('B/16')
  assert shapes.closest('SMALL', shapes.text_names()).startswith('small')
  assert shapes.closest('so400M/14', shapes.vision_names()).startswith('So400m/14')


def test_vision_name_as_text_hints_at_the_domain():
  with pytest.raises(shapes.ShapeError, match=r"unknown text shape 'B/16'.*domain='vision'"):
    shapes.parse('B/16', 'text')
  with pytest.raises(shapes.ShapeError) as error:
    shapes.parse('smal', 'text')
  assert 'vision' not in str(error.value)  # no hint without a '/'


@pytest.mark.parametrize('bad,message', [
    ('smal', 'closest names: small'),
    ('b/16', 'closest names: B/16'),
    ('small-xx4', "unknown knob 'xx'"),
    ('small-nl', r"knob 'nl' in shape name 'small-nl' needs a number, e\.g\. \"small-nl16\""),
    ('B/16-kv', r'needs a number, e\.g\. "B/16-kv64"'),
    ('small-nl0', 'must be positive'),
    ('t5.1.1-tiny', 'T5.1.1'),
    ('Q/16', 'closest names'),
    ('B/15', 'does not tile'),
])
def test_bad_names(bad, message):
  with pytest.raises(shapes.ShapeError, match=message):
    shapes.parse(bad)


@pytest.mark.parametrize('changes,message', [
    ({'d_model': 0}, 'd_model=0'),
    ({'num_decoder_layers': 0}, 'needs a decoder'),
    ({'activation': 'gelu'}, 'text shapes take'),
    ({'image_size': 224}, 'vision options'),
])
def test_text_validation(changes, message):
  with pytest.raises(shapes.ShapeError, match=message):
    dataclasses.replace(shapes.parse('small'), **changes)


@pytest.mark.parametrize('changes,message', [
    ({'num_decoder_layers': 2}, 'encoder-only'),
    ({'image_size': 100}, 'not a multiple'),
    ({'pooling': 'max'}, 'valid poolings'),
    ({'num_classes': 0}, 'num_classes=0'),
])
def test_vision_validation(changes, message):
  with pytest.raises(shapes.ShapeError, match=message):
    dataclasses.replace(shapes.parse('B/16'), **changes)
