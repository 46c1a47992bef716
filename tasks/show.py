"""`python -m tasks.show --task=NAME [--split=validation] [--n=3]`: preprocessed examples as text.

Text tasks and mixtures print their tokenized inputs and targets decoded with the configured
vocabulary (`--vocab=PATH` for T5's SentencePiece model); image tasks print the label and the
preprocessed image's shape and value range. An unknown name exits with status 1 and one line
naming the closest registered tasks.
"""

import json
import sys

import numpy as np
import tensorflow as tf
from absl import flags

from suite import flagcheck
from tasks import images, registry, sources, vocab


def text_examples(name: str, split: str, n: int, lengths: dict[str, int], seed: int = 0):
  """The first `n` preprocessed examples of a text task or mixture, decoded to strings."""
  provider = registry.get_text(name)
  vocabulary = vocab.get_vocabulary()
  ds = provider.get_dataset(lengths, split=split, shuffle=False, seed=seed, num_epochs=1)
  rows = []
  for ex in ds.take(n).as_numpy_iterator():
    row = {}
    for key in ('inputs', 'targets'):
      if key in ex:
        ids = ex[key].tolist()
        row[key] = vocabulary.decode(ids)
        row[f'{key}_tokens'] = len(ids)
    rows.append(row)
  return rows


def image_examples(name: str, split: str, n: int, seed: int = 0):
  """The first `n` examples of an image task's split, preprocessed, summarised as numbers."""
  task = registry.get_image(name)
  if split == 'train':
    ds = images.train_dataset(task, batch_size=1, seed=seed, shuffle_buffer=max(n, 1))
  else:
    split = task.eval_split if split == 'validation' else split
    ds = images.eval_dataset(task, batch_size=1, split=split)
  rows = []
  for batch in ds.take(n).as_numpy_iterator():
    image = batch['image'][0]
    rows.append({'label': int(batch['label'][0]), 'shape': list(image.shape),
                 'min': round(float(np.min(image)), 4), 'max': round(float(np.max(image)), 4),
                 'mean': round(float(np.mean(image)), 4)})
  return rows


def _print(name: str, split: str, rows: list[dict], as_json: bool) -> None:
  for i, row in enumerate(rows):
    if as_json:
      print(json.dumps({'task': name, 'split': split, 'index': i, **row}))
      continue
    print(f'{name} [{split}] example {i}')
    for key, value in row.items():
      if not key.endswith('_tokens'):
        tokens = f' ({row[key + "_tokens"]} tokens)' if key + '_tokens' in row else ''
        print(f'  {key}{tokens}: {value}')


def _check_text_split(task: str, split: str) -> None:
  """Raises ValueError naming the valid splits when a task (or a mixture's task) lacks one."""
  provider = registry.get_text(task)
  for sub in getattr(provider, 'tasks', None) or [provider]:
    if split not in sub.splits:
      raise ValueError(f'split {split!r} is not a split of {sub.name}; valid splits: '
                       f'{", ".join(sub.splits)}')


def show(task: str, split: str = 'validation', n: int = 3, inputs_length: int = 512,
         targets_length: int = 128, seed: int = 0, as_json: bool = False) -> int:
  """Prints `n` examples of `task`; returns the exit status (1 with one line on stderr if the
  name is unknown or its data is missing)."""
  try:
    if registry.domain_of(task) == registry.VISION:
      rows = image_examples(task, split, n, seed)
    else:
      _check_text_split(task, split)
      lengths = {'inputs': inputs_length, 'targets': targets_length}
      rows = text_examples(task, split, n, lengths, seed)
  except (registry.TaskNotFoundError, FileNotFoundError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  except tf.errors.OpError as e:
    # Missing data found inside a tf.data Python function arrives wrapped in a TF error.
    causes = [line for line in e.message.splitlines() if 'DataNotFoundError: ' in line]
    if not causes:
      raise
    print(f"error: {causes[-1].split('DataNotFoundError: ', 1)[1]}", file=sys.stderr)
    return 1
  _print(task, split, rows, as_json)
  return 0


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """The CLI flags; defined only when run as a program, so that importing this module (tests,
  other apps) never collides with another module's flags."""
  fv = {'flag_values': flag_values}
  flags.DEFINE_string('task', None, 'Task or mixture name (python -m tasks.list shows them).',
                      required=True, **fv)
  flags.DEFINE_string('split', 'validation', 'Split: train, validation or a task split.', **fv)
  flags.DEFINE_integer('n', 3, 'How many examples to show.', lower_bound=1, **fv)
  flags.DEFINE_integer('inputs_length', 512, 'Text: inputs length in tokens.', lower_bound=1,
                       **fv)
  flags.DEFINE_integer('targets_length', 128, 'Text: targets length in tokens.', lower_bound=1,
                       **fv)
  flags.DEFINE_integer('seed', 0, 'Seed for tasks with random preprocessing.', lower_bound=0,
                       **fv)
  flags.DEFINE_enum('format', 'text', ['text', 'json'], 'text blocks or JSON lines.', **fv)
  flags.DEFINE_string('vocab', None, 'SentencePiece model (default: embedded vocabulary).', **fv)
  flags.DEFINE_string('tfds_data_dir', None, 'TFDS data directory.', **fv)
  flags.DEFINE_string('data_dir', None, 'Original GLUE/SuperGLUE/SQuAD files (tasks.sources).',
                      **fv)


def main(argv: list[str]) -> None:
  del argv  # flagcheck.run rejects positional arguments
  f = flags.FLAGS
  vocab.configure(f.vocab)
  sources.configure(data_dir=f.data_dir, tfds_data_dir=f.tfds_data_dir)
  sys.exit(show(f.task, f.split, f.n, f.inputs_length, f.targets_length, f.seed,
                f.format == 'json'))


if __name__ == '__main__':
  define_flags()
  flagcheck.run(main)
