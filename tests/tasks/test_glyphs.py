"""The embedded glyph tasks: determinism, balance, disjoint classes, colour, pipelines, tools."""

import json

import numpy as np
import pytest
from sklearn.linear_model import RidgeClassifier

from tasks import glyphs, images, registry, show
from tasks import list as task_list

UP, FEW = glyphs.UPSTREAM, glyphs.FEWSHOT


def test_sizes_meet_the_issue():
  assert len(glyphs.UPSTREAM_GLYPHS) >= 20 and len(glyphs.FEWSHOT_GLYPHS) >= 10
  assert glyphs.split_size(UP, 'train') >= 20_000 and glyphs.split_size(UP, 'test') >= 2_000
  assert glyphs.split_size(FEW, 'train') >= 25 * len(glyphs.FEWSHOT_GLYPHS)
  assert glyphs.IMAGE_SIZE >= 32


def test_same_seed_same_bytes_other_seed_other_bytes():
  a, labels = glyphs.generate(UP, 'train', 0, 200)
  b, _ = glyphs.generate(UP, 'train', 0, 200)
  c, _ = glyphs.generate(UP, 'train', 0, 200, seed=1)
  assert a.tobytes() == b.tobytes()
  assert (a != c).mean() > 0.5
  assert labels.tolist() == (np.arange(200) % 24).tolist()
  # Splits draw from their own seeds: the same labels look different in train and test.
  t, _ = glyphs.generate(UP, 'test', 0, 200)
  assert (a != t).mean() > 0.5


def test_any_slice_is_the_same_rows_of_the_split():
  whole, labels = glyphs.generate(FEW, 'train', 900, 1200)
  part, part_labels = glyphs.generate(FEW, 'train', 950, 1030)  # crosses a block boundary
  assert np.array_equal(part, whole[50:130]) and np.array_equal(part_labels, labels[50:130])
  assert glyphs.generate(FEW, 'train', 5, 5)[0].shape == (0, 32, 32, 3)
  with pytest.raises(ValueError, match='outside'):
    glyphs.generate(FEW, 'train', 0, 1201)
  with pytest.raises(ValueError, match='valid splits: train, test'):
    glyphs.generate(FEW, 'validation')
  with pytest.raises(ValueError, match='must be in'):
    glyphs.render(FEW, np.array([12]), np.random.default_rng(0))


def test_images_shapes_dtypes_and_variety():
  x, _ = glyphs.generate(UP, 'test', 0, 480)
  assert x.shape == (480, 32, 32, 3) and x.dtype == np.uint8
  assert x.min() < 20 and x.max() > 235  # the full range is used
  assert len({im.tobytes() for im in x}) == len(x)
  assert glyphs.generate(UP, 'test', 0, 2, image_size=48)[0].shape == (2, 48, 48, 3)


def test_every_split_is_exactly_balanced():
  for task, splits in glyphs.SPLIT_SIZES.items():
    classes = len(glyphs.GLYPHS[task])
    for split, size in splits.items():
      assert size % classes == 0
      counts = np.bincount(glyphs.labels_of(task, split), minlength=classes)
      assert counts.tolist() == [size // classes] * classes


def test_fewshot_classes_are_new_shapes():
  """No few-shot class is an upstream class at any rotation, nor a duplicate within its task."""
  up = glyphs.silhouettes(UP, 48, angles=72)
  few = glyphs.silhouettes(FEW, 48, angles=72)
  assert not set(glyphs.class_names(UP)) & set(glyphs.class_names(FEW))

  def best_iou(a, b):  # [A] canonical masks vs [B, angles] rotated masks -> [A, B]
    inter = np.einsum('ahw,bkhw->abk', a, b)
    union = a.sum((1, 2))[:, None, None] + b.sum((2, 3))[None] - inter
    return (inter / union).max(-1)

  assert best_iou(few[:, 0], up).max() < 0.9
  for masks in (up, few):
    iou = best_iou(masks[:, 0], masks)
    np.fill_diagonal(iou, 0)
    assert iou.max() < 0.95  # distinct, though some pairs (hexagon, disk) are close on purpose


def _colour_histograms(x):
  """Each image's share of pixels in 4 x 4 x 4 RGB bins: [N, 64]."""
  q = x.astype(np.int64) // 64
  bins = q[..., 0] * 16 + q[..., 1] * 4 + q[..., 2] + 64 * np.arange(len(x))[:, None, None]
  return np.bincount(bins.ravel(), minlength=64 * len(x)).reshape(len(x), 64) / x[0, ..., 0].size


def test_colour_does_not_predict_the_class():
  """Linear probes on colour features stay at chance, and every class has the same mean colour.

  (A foreground colour fixed per class would give the histogram probe about 50% and move a
  class's mean colour by about 0.14: both checks fail then.)"""
  x, y = glyphs.generate(UP, 'train', 0, 4800)
  x_test, y_test = glyphs.generate(UP, 'test', 0, 2400)
  chance = 1 / len(glyphs.UPSTREAM_GLYPHS)
  for features in (lambda im: im.mean((1, 2)) / 255, _colour_histograms):
    probe = RidgeClassifier().fit(features(x), y)
    assert probe.score(features(x_test), y_test) < 2 * chance
  rgb = x.mean((1, 2)) / 255
  per_class = np.stack([rgb[y == c].mean(0) for c in range(len(glyphs.UPSTREAM_GLYPHS))])
  assert np.abs(per_class - rgb.mean(0)).max() < 0.05


def test_registry_and_pipelines():
  assert {UP, FEW} <= set(registry.image_task_names())
  listed = task_list.listing()['vision']['tasks']
  assert listed[UP]['num_classes'] == 24 and listed[FEW]['num_classes'] == 12
  assert 'tasks.glyphs' in listed[UP]['source']
  task = registry.get_image(FEW)
  batch = next(iter(images.eval_dataset(task, 64)))
  assert batch['image'].shape == (64, 32, 32, 3) and batch['image'].dtype.name == 'float32'
  assert -1.0 <= float(batch['image'].numpy().min()) < float(batch['image'].numpy().max()) <= 1.0
  expected, _ = glyphs.generate(FEW, 'test', 0, 64)
  assert np.allclose(batch['image'].numpy(), expected / 127.5 - 1, atol=1e-5)
  assert batch['label'].numpy().tolist() == (np.arange(64) % 12).tolist()


@pytest.mark.parametrize('shots', [1, 25])
def test_fewshot_split_draws_shots_per_class(shots):
  task = registry.get_image(FEW)
  x, y = images.fewshot_arrays(task, shots, seed=3)
  assert x.shape == (12 * shots, 32, 32, 3) and x.dtype == np.float32
  assert np.bincount(y, minlength=12).tolist() == [shots] * 12
  x_again, y_again = images.fewshot_arrays(task, shots, seed=3)
  assert np.array_equal(x, x_again) and np.array_equal(y, y_again)


def test_show_prints_examples_and_names_valid_splits(capsys):
  # `python -m tasks.show --task=embedded_glyphs_v1 --format=json` runs this (the program's flag
  # handling is tested for every task in test_list_show).
  assert show.show(UP, n=2, as_json=True) == 0
  rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
  assert [r['label'] for r in rows] == [0, 1] and rows[0]['shape'] == [32, 32, 3]
  assert rows[0]['split'] == 'validation' and -1.0 <= rows[0]['min'] < rows[0]['max'] <= 1.0
  assert show.show(FEW, split='tset', n=1) == 1
  err = capsys.readouterr().err.strip()
  assert err.startswith('error:') and 'valid splits: train, test' in err and '\n' not in err
