"""Image preprocessing in the style of big_vision's ops, written for tf.data.

Train: inception crop (random area 5%-100%, aspect 3/4-4/3), resize, random horizontal flip.
Eval: resize to the square size. Both end with the value range [-1, 1] as float32 and 3 channels.
Randomness is stateless (a per-example seed pair), so a pipeline built with a seed is reproducible.
"""

import tensorflow as tf


def to_rgb(image: tf.Tensor) -> tf.Tensor:
  """Grayscale (1 channel) images become 3 channels; RGB passes through."""
  channels = image.shape[-1]
  if channels == 1:
    return tf.image.grayscale_to_rgb(image)
  if channels not in (3, None):
    raise ValueError(f'images must have 1 or 3 channels, got shape {image.shape}')
  return image


def value_range(image: tf.Tensor, low: float = -1.0, high: float = 1.0,
                max_value: float = 255.0) -> tf.Tensor:
  """uint8-range pixels [0, max_value] -> float32 [low, high]."""
  image = tf.cast(image, tf.float32) / max_value
  return low + image * (high - low)


def resize(image: tf.Tensor, size: int) -> tf.Tensor:
  """Bilinear resize to size x size, keeping the pixel range (float32 out)."""
  return tf.image.resize(tf.cast(image, tf.float32), [size, size], method='bilinear')


def inception_crop(image: tf.Tensor, seed: tf.Tensor, area_min: float = 0.05,
                   area_max: float = 1.0) -> tf.Tensor:
  """A random crop covering area_min..area_max of the image with aspect ratio 3/4..4/3."""
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
    tf.shape(image),
    bounding_boxes=tf.zeros([1, 0, 4], tf.float32),
    seed=seed,
    area_range=(area_min, area_max),
    aspect_ratio_range=(3 / 4, 4 / 3),
    min_object_covered=0.0,
    use_image_if_no_bounding_boxes=True,
  )
  return tf.slice(image, begin, size)


def train_image(image: tf.Tensor, size: int, seed: tf.Tensor, augment: bool = True) -> tf.Tensor:
  """Training view: inception crop + flip when `augment`, else a plain resize; in [-1, 1]."""
  image = to_rgb(image)
  if augment:
    seeds = tf.random.experimental.stateless_split(seed, 2)
    image = resize(inception_crop(image, seeds[0]), size)
    image = tf.image.stateless_random_flip_left_right(image, seeds[1])
  else:
    image = resize(image, size)
  return value_range(image)


def eval_image(image: tf.Tensor, size: int) -> tf.Tensor:
  """Evaluation view: resize to size x size, in [-1, 1]."""
  return value_range(resize(to_rgb(image), size))
