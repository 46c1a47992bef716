"""`python -m tasks.list [--format=table|json]`: registered tasks and mixtures, by domain.

Text tasks are grouped by where they come from (benchmark, extra/<family>, embedded); mixtures
list their member tasks; image tasks show their source, classes and default resolution.
"""

import json
import sys

from absl import flags

from suite import flagcheck
from tasks import extra, registry
from tasks.embedded import tasks as embedded

# How `listing` describes each offline image source (tasks.images.EMBEDDED_SOURCES).
EMBEDDED = {'digits': 'embedded (scikit-learn digits)',
            'glyphs': 'embedded (generated shapes, tasks.glyphs)'}


def text_group(name: str) -> str:
  """Which collection a text task belongs to: embedded, extra/<family> or benchmark."""
  if name in embedded.DOWNSTREAM or name == embedded.PRETRAIN:
    return 'embedded'
  if name in extra.TASKS:
    return f'extra/{extra.TASKS[name].family}'
  return 'benchmark'


def listing() -> dict:
  """Everything registered, as plain data: {'text': {...}, 'vision': {...}}."""
  groups: dict[str, list[str]] = {}
  for name in registry.text_task_names():
    groups.setdefault(text_group(name), []).append(name)
  mixtures = {
    name: sorted(t.name for t in registry.get_text(name).tasks)
    for name in registry.text_mixture_names()
  }
  vision = {}
  for name in registry.image_task_names():
    task = registry.get_image(name)
    vision[name] = {
      'source': f'tfds:{task.tfds_name}' if task.tfds_name else EMBEDDED[task.embedded],
      'num_classes': task.num_classes,
      'splits': {'train': task.train_split, 'eval': task.eval_split,
                 'fewshot_pool': task.fewshot_split},
      'image_size': task.image_size,
    }
  return {'text': {'tasks': dict(sorted(groups.items())), 'mixtures': mixtures},
          'vision': {'tasks': vision}}


def table(data: dict) -> str:
  lines = ['text tasks:']
  for group, names in data['text']['tasks'].items():
    lines.append(f'  {group} ({len(names)}): {", ".join(names)}')
  lines.append('text mixtures:')
  for name, members in data['text']['mixtures'].items():
    lines.append(f'  {name} ({len(members)} tasks): {", ".join(members)}')
  lines.append('vision tasks:')
  for name, info in data['vision']['tasks'].items():
    lines.append(f'  {name}: {info["source"]}, {info["num_classes"]} classes, '
                 f'{info["image_size"]}px, splits {info["splits"]}')
  return '\n'.join(lines)


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """The CLI flags; defined only when run as a program, so that importing this module never
  collides with another module's flags."""
  flags.DEFINE_enum('format', 'table', ['table', 'json'], 'Output format.',
                    flag_values=flag_values)


def main(argv: list[str]) -> None:
  del argv  # flagcheck.run rejects positional arguments
  data = listing()
  as_json = flags.FLAGS.format == 'json'
  sys.stdout.write((json.dumps(data, indent=2) if as_json else table(data)) + '\n')


if __name__ == '__main__':
  define_flags()
  flagcheck.run(main)
