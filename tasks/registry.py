"""One place to look up every task: seqio text tasks and mixtures, and image tasks.

Importing this module registers all task modules (benchmark, extra, embedded, images); nothing
is read or trained until a dataset is built. Unknown names raise `TaskNotFoundError`, whose
message lists the closest registered names.
"""

import seqio

import tasks.benchmark  # noqa: F401  (registers GLUE, SuperGLUE, SQuAD and their mixtures)
import tasks.embedded.tasks  # noqa: F401  (registers the embedded tasks and mixture)
import tasks.extra  # noqa: F401  (registers the twelve extra TFDS tasks and mixture)
from suite.shapes import closest
from tasks import images

TEXT, VISION = 'text', 'vision'


class TaskNotFoundError(ValueError):
  """A task or mixture name that is not registered."""


def text_task_names() -> tuple[str, ...]:
  """Every registered seqio task, sorted."""
  return tuple(sorted(seqio.TaskRegistry.names()))


def text_mixture_names() -> tuple[str, ...]:
  """Every registered seqio mixture, sorted."""
  return tuple(sorted(seqio.MixtureRegistry.names()))


def image_task_names() -> tuple[str, ...]:
  """Every registered image task, sorted."""
  return tuple(sorted(images.IMAGE_TASKS))


def all_names() -> tuple[str, ...]:
  return text_task_names() + text_mixture_names() + image_task_names()


def _not_found(name: str, kind: str, choices) -> TaskNotFoundError:
  return TaskNotFoundError(
    f'unknown {kind} {name!r}; closest registered: {closest(name, choices)} '
    '(python -m tasks.list shows them all)'
  )


def get_text(name: str) -> seqio.Task | seqio.Mixture:
  """The seqio task or mixture `name`."""
  if name in seqio.TaskRegistry.names():
    return seqio.TaskRegistry.get(name)
  if name in seqio.MixtureRegistry.names():
    return seqio.MixtureRegistry.get(name)
  raise _not_found(name, 'text task or mixture', text_task_names() + text_mixture_names())


def get_image(name: str) -> images.ImageTask:
  """The image task `name`."""
  if name not in images.IMAGE_TASKS:
    raise _not_found(name, 'image task', image_task_names())
  return images.IMAGE_TASKS[name]


def domain_of(name: str) -> str:
  """'text' or 'vision' for a registered task or mixture name."""
  if name in images.IMAGE_TASKS:
    return VISION
  if name in seqio.TaskRegistry.names() or name in seqio.MixtureRegistry.names():
    return TEXT
  raise _not_found(name, 'task', all_names())
