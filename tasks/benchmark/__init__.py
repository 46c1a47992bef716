"""GLUE, SuperGLUE and SQuAD v1.1 as seqio text-to-text tasks, formatted and scored as T5 did.

Importing this package registers the tasks and the `glue`, `super_glue` and
`glue_super_glue_squad` mixtures with seqio (no data is read, no vocabulary built).
"""

from tasks.benchmark.seqio_tasks import MIXTURES, OUTPUT_FEATURES, VOCABULARY, register
from tasks.benchmark.specs import (
  CAP,
  EVAL_TASKS,
  SPECS,
  TRAIN_TASKS,
  TaskSpec,
  examples,
  get,
  iter_examples,
  score,
)
from tasks.summary import COLUMNS, SQUAD, SUMMARY_COLUMNS, averages

register()

__all__ = [
  'CAP', 'COLUMNS', 'EVAL_TASKS', 'MIXTURES', 'OUTPUT_FEATURES', 'SPECS', 'SQUAD',
  'SUMMARY_COLUMNS', 'TRAIN_TASKS', 'VOCABULARY', 'TaskSpec', 'averages', 'examples', 'get',
  'iter_examples', 'register', 'score',
]
