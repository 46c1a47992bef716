"""Reading a TFDS split for the extra text tasks and the image tasks, with a clear error if absent.

The TFDS data directory is the one the runner configured for every task
(`tasks.sources.configure(tfds_data_dir=...)`, the `--tfds_data_dir` flag), read at load time so
that configuring after import takes effect. Nothing is downloaded here.
"""

import tensorflow as tf
import tensorflow_datasets as tfds

from tasks import sources


def how_to_prepare(tfds_name: str, data_dir: str | None, manual: str | None = None) -> str:
  """One line saying how to prepare the dataset (with the builder's manual steps, if any)."""
  flag = f' --data_dir={data_dir}' if data_dir else ''
  if manual:
    steps = ' '.join(manual.split())
    return (f'it needs a manual download ({steps}); put the files in a directory D and run '
            f'`tfds build {tfds_name} --manual_dir=D{flag}`, then pass --tfds_data_dir')
  return (f'prepare it once with `tfds build {tfds_name}{flag}` (or tfds.load({tfds_name!r}, '
          'download=True)), then pass --tfds_data_dir to the directory that holds it')


def load(tfds_name: str, split: str, shuffle_files: bool = False,
         seed: int | None = None, shard: tuple[int, int] | None = None) -> tf.data.Dataset:
  """`tfds_name` split `split` from the configured TFDS data dir; DataNotFoundError if absent.

  shard: (index, count): only the index-th of `count` near-equal contiguous parts of the split
  (`tfds.even_splits`, exact example counts), the slice one process of several reads.
  """
  data_dir = sources.config().tfds_data_dir
  read_config = tfds.ReadConfig(shuffle_seed=seed) if seed is not None else None
  part = tfds.even_splits(split, n=shard[1])[shard[0]] if shard and shard[1] > 1 else split
  builder = None
  try:
    builder = tfds.builder(tfds_name, data_dir=data_dir)
    return builder.as_dataset(split=part, shuffle_files=shuffle_files, read_config=read_config)
  except (AssertionError, FileNotFoundError, tfds.core.registered.DatasetNotFoundError) as e:
    where = data_dir or '~/tensorflow_datasets (the TFDS default)'
    manual = getattr(builder, 'MANUAL_DOWNLOAD_INSTRUCTIONS', None)
    raise sources.DataNotFoundError(
      f'TFDS dataset {tfds_name} split {split!r} is not prepared in {where}; '
      f'{how_to_prepare(tfds_name, data_dir, manual)}. ({" ".join(str(e).split())})') from e
