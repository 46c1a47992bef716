"""Image tasks: batches from mocked TFDS and the embedded digits, preprocessing, few-shot splits."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tasks import image_preprocess, images, sources

SIZE = 16


@pytest.mark.parametrize('name', list(images.IMAGE_TASKS))
def test_train_and_eval_batches(name):
  task = images.IMAGE_TASKS[name]
  with tfds.testing.mock_data(num_examples=6):
    train = next(iter(images.train_dataset(task, 4, image_size=SIZE, shuffle_buffer=8)))
    evaluation = next(iter(images.eval_dataset(task, 4, image_size=SIZE)))
  for batch in (train, evaluation):
    assert batch['image'].shape == (4, SIZE, SIZE, 3)
    assert batch['image'].dtype == tf.float32
    assert batch['label'].dtype == tf.int32
    assert -1.0 <= float(tf.reduce_min(batch['image'])) <= float(tf.reduce_max(batch['image']))
    assert float(tf.reduce_max(batch['image'])) <= 1.0
    assert np.all((batch['label'].numpy() >= 0) & (batch['label'].numpy() < task.num_classes))


def test_digits_splits_are_disjoint_classes_and_fixed():
  up_train, up_labels = images.digits_arrays(images.DIGITS_UPSTREAM, 'train')
  down_train, down_labels = images.digits_arrays(images.DIGITS_FEWSHOT, 'train')
  up_test, _ = images.digits_arrays(images.DIGITS_UPSTREAM, 'test')
  assert set(up_labels) == set(down_labels) == set(range(5))
  assert up_train.shape[1:] == (8, 8, 1) and up_train.dtype == np.uint8
  assert len(up_train) + len(up_test) == 901  # digits 0-4 in scikit-learn's set
  again, _ = images.digits_arrays(images.DIGITS_UPSTREAM, 'train')
  assert np.array_equal(up_train, again)
  # Upstream and downstream images are different digits: no image appears in both.
  up = {x.tobytes() for x in up_train}
  assert not any(x.tobytes() in up for x in down_train)


@pytest.mark.parametrize('shots', images.FEWSHOT_SHOTS)
def test_fewshot_counts_and_determinism(shots):
  task = images.IMAGE_TASKS[images.DIGITS_FEWSHOT]
  x, y = images.fewshot_arrays(task, shots, seed=1, image_size=SIZE)
  assert x.shape == (5 * shots, SIZE, SIZE, 3)
  assert np.bincount(y, minlength=5).tolist() == [shots] * 5
  x_again, y_again = images.fewshot_arrays(task, shots, seed=1, image_size=SIZE)
  assert np.array_equal(x, x_again) and np.array_equal(y, y_again)
  x_other, _ = images.fewshot_arrays(task, shots, seed=2, image_size=SIZE)
  assert not np.array_equal(x, x_other)


def test_fewshot_rejects_short_pools_and_bad_shots():
  task = images.IMAGE_TASKS[images.DIGITS_FEWSHOT]
  with pytest.raises(ValueError, match='fewer than 1000'):
    images.fewshot_arrays(task, 1000, image_size=SIZE)
  with pytest.raises(ValueError, match='positive'):
    images.fewshot_dataset(task, 0)


def test_train_pipeline_is_seeded():
  task = images.IMAGE_TASKS['cifar10']
  with tfds.testing.mock_data(num_examples=8):
    a = next(iter(images.train_dataset(task, 4, image_size=SIZE, seed=3, shuffle_buffer=8)))
    b = next(iter(images.train_dataset(task, 4, image_size=SIZE, seed=3, shuffle_buffer=8)))
  assert np.array_equal(a['image'].numpy(), b['image'].numpy())


def test_preprocessing_ops():
  image = tf.cast(tf.reshape(tf.range(4 * 6 * 3) % 256, [4, 6, 3]), tf.uint8)
  out = image_preprocess.eval_image(image, 8)
  assert out.shape == (8, 8, 3)
  assert float(tf.reduce_min(out)) >= -1.0 and float(tf.reduce_max(out)) <= 1.0
  assert image_preprocess.value_range(tf.constant([0, 255], tf.uint8)).numpy().tolist() == [-1, 1]
  gray = tf.zeros([5, 5, 1], tf.uint8)
  assert image_preprocess.train_image(gray, 4, tf.constant([1, 2])).shape == (4, 4, 3)
  crop = image_preprocess.inception_crop(tf.zeros([100, 100, 3]), tf.constant([0, 1]))
  area = crop.shape[0] * crop.shape[1]
  assert 0.05 * 100 * 100 * 0.9 <= area <= 100 * 100
  with pytest.raises(ValueError, match='channels'):
    image_preprocess.to_rgb(tf.zeros([2, 2, 2]))


def test_imagenet_without_data_explains_manual_download(tmp_path):
  sources.configure(tfds_data_dir=str(tmp_path))
  try:
    with pytest.raises(sources.DataNotFoundError, match='manual_dir'):
      images.raw_dataset(images.IMAGE_TASKS['imagenet2012'], 'train')
  finally:
    sources.configure()


def test_process_shards_of_a_split_are_disjoint_and_cover_it(monkeypatch):
  """One process of several reads its own part: every count-th example of an embedded split
  (each part keeps every class), a `tfds.even_splits` part of a TFDS split."""
  task = images.IMAGE_TASKS[images.DIGITS_UPSTREAM]

  def examples(shard):
    ds = images.raw_dataset(task, 'train', shard=shard)
    return [(x['image'].tobytes(), int(x['label'])) for x in ds.as_numpy_iterator()]

  whole, parts = examples(None), [examples((i, 3)) for i in range(3)]
  assert sorted(sum(parts, [])) == sorted(whole)
  assert all(abs(len(part) - len(whole) / 3) < 1 for part in parts)
  assert all({label for _, label in part} == set(range(5)) for part in parts)
  with pytest.raises(ValueError, match=r'shard=\(3, 3\)'):
    images.raw_dataset(task, 'train', shard=(3, 3))

  asked = []

  class Builder:
    def as_dataset(self, split, **kwargs):
      asked.append(split)
      return tf.data.Dataset.from_tensor_slices({'image': np.zeros((2, 4, 4, 3), np.uint8),
                                                 'label': np.zeros((2,), np.int64)})

  monkeypatch.setattr(tfds, 'builder', lambda name, data_dir=None: Builder())
  images.raw_dataset(images.IMAGE_TASKS['cifar10'], 'train', shard=(1, 2))
  images.raw_dataset(images.IMAGE_TASKS['cifar10'], 'train')
  assert asked == [tfds.even_splits('train', n=2)[1], 'train']
