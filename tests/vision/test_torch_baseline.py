"""The vision speed reference: transformers' PyTorch ViT + AdamW, timed in a fresh process."""

import dataclasses
import math
import statistics

import numpy as np
import pytest

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

from suite import costs, shapes  # noqa: E402
from vision import torch_baseline  # noqa: E402

TINY = shapes.Shape(num_encoder_layers=2, num_decoder_layers=0, d_model=64, d_ff=128,
                    num_heads=4, d_kv=16, domain=shapes.VISION, activation='gelu',
                    image_size=32, patch_size=8, pooling='cls', num_classes=10)
BATCH = 4


def _batch(shape=TINY, n=BATCH, seed=0):
  rng = np.random.default_rng(seed)
  size = shape.image_size
  return {'image': rng.uniform(-1, 1, (n, size, size, 3)).astype(np.float32),
          'label': rng.integers(0, shape.num_classes, n).astype(np.int32)}


def test_times_a_tiny_vit_in_a_fresh_process():
  result = torch_baseline.time_in_fresh_process(TINY, _batch(), steps=1, warmup=1,
                                                keep_host_memory=False, repeats=2)
  assert set(result) == {'implementation', 'step_s', 'step_s_windows', 'final_loss', 'threads',
                         'host_memory'}  # the text reference's fields
  assert 'transformers' in result['implementation'] and 'AdamW' in result['implementation']
  assert len(result['step_s_windows']) == 2 and min(result['step_s_windows']) > 0
  assert result['step_s'] == statistics.median(result['step_s_windows'])
  assert result['host_memory'] == 'system default' and result['threads'] >= 1
  # cross-entropy of a freshly initialised 10-class head after two small AdamW steps
  assert abs(result['final_loss'] - math.log(10)) < 1.0


def test_adamw_is_the_vision_domains():
  from vision import domain
  preset = domain.adamw_constant()
  assert (preset.name, preset.schedule) == ('adamw', 'constant')
  assert (torch_baseline.LEARNING_RATE, torch_baseline.WEIGHT_DECAY) == (
      preset.learning_rate, preset.weight_decay)


def test_torch_gets_the_same_pixels_in_nchw():
  batch = _batch(n=2)
  inputs = torch_baseline.torch_inputs(batch)
  assert inputs['pixel_values'].shape == (2, 3, 32, 32) and inputs['labels'].dtype == np.int64
  np.testing.assert_array_equal(inputs['pixel_values'][1, 2, 5, 7], batch['image'][1, 5, 7, 2])
  np.testing.assert_array_equal(inputs['pixel_values'].transpose(0, 2, 3, 1), batch['image'])


def test_reference_has_the_shapes_parameters_including_wide_attention():
  """4 heads of 32 = 128 != d_model 64: transformers 5.x builds it from head_dim."""
  wide = dataclasses.replace(TINY, d_kv=32)
  if int(transformers.__version__.split('.')[0]) < 5:
    with pytest.raises(ValueError, match='cannot express attention width'):
      torch_baseline.build_reference(wide)
    return
  for shape in (TINY, wide):
    model = torch_baseline.build_reference(shape)
    assert sum(p.numel() for p in model.parameters()) == costs.params(shape)


def test_a_transformers_that_ignores_head_dim_is_a_clear_error():
  """What transformers 4.x does (it ignores head_dim and splits d_model among the heads): an
  error, never a silently different model."""
  wide = dataclasses.replace(TINY, d_kv=32)
  config = {k: v for k, v in torch_baseline.hf_config(wide).items() if k != 'head_dim'}
  with pytest.raises(ValueError, match=r'num_heads x d_kv = 4 x 32 = 128 with d_model=64'):
    torch_baseline.build_reference(wide, config)


@pytest.mark.parametrize('shape, message', [
    (dataclasses.replace(TINY, pooling='gap'), "pooling='gap'.*class token only"),
    (dataclasses.replace(TINY, pooling='map'), "pooling='map'"),
    (shapes.parse('small'), 'text shape given to the ViT reference'),
])
def test_shapes_hf_cannot_express_are_refused_before_a_process_starts(shape, message):
  with pytest.raises(ValueError, match=message):
    torch_baseline.time_in_fresh_process(shape, _batch(), steps=1, warmup=0,
                                         keep_host_memory=False)


@pytest.mark.parametrize('batch, message', [
    ({'image': np.zeros((2, 32, 32, 3), np.float32)}, r"lacks \['label'\]"),
    ({'image': np.zeros((2, 32, 32), np.float32), 'label': np.zeros(2, int)},
     r'shape \(2, 32, 32\); expected \[batch, 32, 32, 3\]'),
    ({'image': np.zeros((2, 3, 32, 32), np.float32), 'label': np.zeros(2, int)},
     r'shape \(2, 3, 32, 32\); expected \[batch, 32, 32, 3\]'),
    ({'image': np.zeros((2, 40, 40, 3), np.float32), 'label': np.zeros(2, int)},
     r'expected \[batch, 32, 32, 3\]'),
    ({'image': np.zeros((2, 32, 32, 3), np.float32), 'label': np.zeros(3, int)},
     r'label has shape \(3,\).*expected \[2\]'),
    ({'image': np.zeros((2, 32, 32, 3), np.float32), 'label': np.array([0, 10])},
     r'outside \[0, 10\)'),
], ids=['no-label', 'rank-3', 'nchw', 'size', 'label-count', 'label-range'])
def test_bad_batches_are_named(batch, message):
  with pytest.raises(ValueError, match=message):
    torch_baseline.time_train_steps(TINY, batch, steps=1, warmup=0)
