"""Image tasks for ViT: TFDS datasets and embedded images, with train/eval/few-shot pipelines.

Pipelines yield dicts of NHWC float32 images in [-1, 1] (`'image'`) and int32 labels
(`'label'`). Few-shot splits follow the paper's linear-probe protocol: `shots` examples per
class (1, 5, 10, 25), drawn from the task's few-shot pool by a seeded shuffle, so the same seed
gives the same examples. The embedded digits (scikit-learn's 8x8 scans, shipped with the
package) stand in offline: classes 0-4 are the upstream task, classes 5-9 (relabelled 0-4) the
few-shot downstream task, as ImageNet-21k upstream and disjoint transfer datasets are in the
paper. The embedded glyphs (`tasks.glyphs`: 24 upstream and 12 few-shot shape classes,
generated in memory) follow the same protocol at a scale that separates model shapes.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from tasks import glyphs, image_preprocess, tfds_load

FEWSHOT_SHOTS = (1, 5, 10, 25)
SHUFFLE_BUFFER = 10_000


@dataclasses.dataclass(frozen=True)
class ImageTask:
  """One image classification task and where its splits come from."""

  name: str
  tfds_name: str | None  # None: an embedded source (`embedded`)
  num_classes: int
  train_split: str
  eval_split: str
  fewshot_split: str  # the pool few-shot examples are drawn from
  image_size: int  # default resolution of the pipelines
  augment: bool = True  # inception crop + flip for training (not for embedded tasks)
  embedded: str | None = None  # with tfds_name None: the EMBEDDED_SOURCES entry to read

  @property
  def splits(self) -> tuple[str, ...]:
    return tuple(dict.fromkeys([self.train_split, self.eval_split, self.fewshot_split]))


DIGITS_UPSTREAM, DIGITS_FEWSHOT = 'embedded_digits_v1', 'embedded_digits_fewshot_v1'

IMAGE_TASKS = {
  t.name: t
  for t in [
    ImageTask('cifar10', 'cifar10', 10, 'train', 'test', 'train', 224),
    ImageTask('cifar100', 'cifar100', 100, 'train', 'test', 'train', 224),
    ImageTask('oxford_iiit_pet', 'oxford_iiit_pet', 37, 'train', 'test', 'train', 224),
    # Flowers has 10 training images per class; the few-shot pool adds validation (20/class).
    ImageTask('oxford_flowers102', 'oxford_flowers102', 102, 'train', 'test',
              'train+validation', 224),
    ImageTask('dtd', 'dtd', 47, 'train', 'test', 'train', 224),
    # ImageNet needs a manual download; the loader's error repeats TFDS's instructions.
    ImageTask('imagenet2012', 'imagenet2012', 1000, 'train', 'validation', 'train', 224),
    ImageTask(DIGITS_UPSTREAM, None, 5, 'train', 'test', 'train', 32, augment=False,
              embedded='digits'),
    ImageTask(DIGITS_FEWSHOT, None, 5, 'train', 'test', 'train', 32, augment=False,
              embedded='digits'),
    *(ImageTask(name, None, len(glyphs.GLYPHS[name]), 'train', 'test', 'train',
                glyphs.IMAGE_SIZE, augment=False, embedded='glyphs')
      for name in (glyphs.UPSTREAM, glyphs.FEWSHOT)),
  ]
}

DIGITS_TEST_FRACTION = 0.25
DIGITS_SPLIT_SEED = 0


def digits_arrays(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """uint8 images [N, 8, 8, 1] (0-255) and int64 labels of an embedded digits task and split.

  Upstream holds digits 0-4, the few-shot task digits 5-9 relabelled 0-4; each is divided into
  train (75%) and test (25%) by a fixed permutation.
  """
  from sklearn.datasets import load_digits  # ships its data; imported lazily (slow import)

  if split not in ('train', 'test'):
    raise ValueError(f'unknown split {split!r} for {name}; valid splits: train, test')
  digits = load_digits()
  low = 0 if name == DIGITS_UPSTREAM else 5
  chosen = np.flatnonzero((digits.target >= low) & (digits.target < low + 5))
  order = np.random.RandomState(DIGITS_SPLIT_SEED).permutation(len(chosen))
  cut = int(round(len(chosen) * (1 - DIGITS_TEST_FRACTION)))
  index = np.sort(chosen[order[:cut]] if split == 'train' else chosen[order[cut:]])
  images = np.round(digits.images[index] * (255.0 / 16.0)).astype(np.uint8)[..., None]
  return images, (digits.target[index] - low).astype(np.int64)


# Offline image sources: (task name, split) -> (uint8 images [N, H, W, C], integer labels).
EMBEDDED_SOURCES = {'digits': digits_arrays, 'glyphs': glyphs.split_arrays}


def get(name: str) -> ImageTask:
  """The registered image task `name` (see `tasks.registry.get_image` for friendly errors)."""
  return IMAGE_TASKS[name]


def _check_shard(shard: tuple[int, int] | None) -> tuple[int, int]:
  index, count = shard if shard is not None else (0, 1)
  if count < 1 or not 0 <= index < count:
    raise ValueError(f'shard={shard}: give (index, count) with count >= 1 and 0 <= index < '
                     'count (the process index and the number of input shards)')
  return index, count


def raw_dataset(task: ImageTask, split: str, shuffle_files: bool = False,
                seed: int | None = None, shard: tuple[int, int] | None = None) -> tf.data.Dataset:
  """Undecorated examples {'image': uint8 [H, W, C], 'label': int64} of one split.

  shard: (index, count): only that part of the split, disjoint from the other parts, for one
  process of several: a contiguous slice of a TFDS split (`tfds.even_splits`), every
  count-th example of an embedded one (its classes stay mixed).
  """
  index, count = _check_shard(shard)
  if task.tfds_name is None:
    images, labels = EMBEDDED_SOURCES[task.embedded](task.name, split)
    images, labels = images[index::count], labels[index::count]
    return tf.data.Dataset.from_tensor_slices({'image': images, 'label': labels})
  ds = tfds_load.load(task.tfds_name, split, shuffle_files=shuffle_files, seed=seed,
                      shard=(index, count))
  return ds.map(lambda ex: {'image': ex['image'], 'label': ex['label']})


def _with_seeds(ds: tf.data.Dataset, seed: int) -> tf.data.Dataset:
  """Pairs each example with its own stateless seed [2] derived from `seed`."""
  return tf.data.Dataset.zip((ds, tf.data.Dataset.random(seed=seed).batch(2)))


def train_dataset(task: ImageTask, batch_size: int, image_size: int | None = None,
                  seed: int = 0, split: str | None = None,
                  shuffle_buffer: int = SHUFFLE_BUFFER,
                  shard: tuple[int, int] | None = None) -> tf.data.Dataset:
  """Endless shuffled, augmented training batches {'image': [B, S, S, 3], 'label': [B]}; with
  `shard` (index, count), of that part of the split only (`raw_dataset`)."""
  size = image_size or task.image_size
  ds = raw_dataset(task, split or task.train_split, shuffle_files=True, seed=seed, shard=shard)
  ds = _with_seeds(ds.shuffle(shuffle_buffer, seed=seed).repeat(), seed)
  ds = ds.map(
    lambda ex, s: {
      'image': image_preprocess.train_image(ex['image'], size, s, task.augment),
      'label': tf.cast(ex['label'], tf.int32),
    },
    num_parallel_calls=tf.data.AUTOTUNE,
  )
  return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def _eval_map(size: int):
  return lambda ex: {
    'image': image_preprocess.eval_image(ex['image'], size),
    'label': tf.cast(ex['label'], tf.int32),
  }


def eval_dataset(task: ImageTask, batch_size: int, image_size: int | None = None,
                 split: str | None = None) -> tf.data.Dataset:
  """One ordered pass over the eval split in batches (the last one may be smaller)."""
  ds = raw_dataset(task, split or task.eval_split)
  ds = ds.map(_eval_map(image_size or task.image_size), num_parallel_calls=tf.data.AUTOTUNE)
  return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def fewshot_dataset(task: ImageTask, shots: int, seed: int = 0, batch_size: int = 256,
                    image_size: int | None = None) -> tf.data.Dataset:
  """The first `shots` examples of each class of the seeded-shuffled few-shot pool (eval views).

  Streams the pool and stops once every class is full, so ImageNet needs no full pass.
  """
  if shots < 1:
    raise ValueError(f'shots must be positive, got {shots}; the paper uses {FEWSHOT_SHOTS}')
  ds = raw_dataset(task, task.fewshot_split).shuffle(SHUFFLE_BUFFER, seed=seed)

  def count(counts, ex):
    label = tf.cast(ex['label'], tf.int32)
    full_before = tf.reduce_all(counts >= shots)
    keep = counts[label] < shots
    counts = tf.tensor_scatter_nd_add(counts, [[label]], [tf.cast(keep, tf.int32)])
    return counts, (ex, keep, full_before)

  def not_full(ex, keep, full):
    return ~full

  def kept(ex, keep, full):
    return keep

  def example(ex, keep, full):
    return ex

  ds = ds.scan(tf.zeros([task.num_classes], tf.int32), count)
  ds = ds.take_while(not_full).filter(kept).map(example)
  return ds.map(_eval_map(image_size or task.image_size)).batch(batch_size)


def fewshot_arrays(task: ImageTask, shots: int, seed: int = 0,
                   image_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """`fewshot_dataset` as numpy (images [C*shots, S, S, 3], labels); errors if a class is short."""
  batches = list(fewshot_dataset(task, shots, seed, image_size=image_size).as_numpy_iterator())
  images = np.concatenate([b['image'] for b in batches])
  labels = np.concatenate([b['label'] for b in batches])
  counts = np.bincount(labels, minlength=task.num_classes)
  short = np.flatnonzero(counts < shots)
  if short.size:
    raise ValueError(
      f'{task.name}: few-shot pool {task.fewshot_split!r} has fewer than {shots} examples for '
      f'classes {short.tolist()[:10]} (counts {counts[short].tolist()[:10]}); use fewer shots'
    )
  return images, labels
