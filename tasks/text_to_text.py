"""Registering a text-to-text seqio task: source -> {'inputs', 'targets'} strings -> tokens.

The embedded and extra task families differ only in their sources, their text formats and
their metrics; the pipeline after the format (tokenize, cache point, EOS) is this one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import seqio

from tasks import metrics
from tasks.vocab import OUTPUT_FEATURES


def register(name: str, source: seqio.DataSource, to_text: Callable,
             postprocess_fn: Callable | None, metric_fns: Sequence[Callable]) -> None:
  """Adds task `name`: `to_text` (a seqio preprocessor) formats each source example."""
  seqio.TaskRegistry.add(
    name,
    source=source,
    preprocessors=[
      to_text,
      seqio.preprocessors.tokenize,
      seqio.CacheDatasetPlaceholder(),
      seqio.preprocessors.append_eos_after_trim,
    ],
    output_features=OUTPUT_FEATURES,
    postprocess_fn=postprocess_fn,
    metric_fns=list(metric_fns),
  )


# Postprocessors shared by the task families (seqio's signature: text, example, is_target).

def class_id(labels: Sequence[str], text, example=None, is_target=False) -> int:
  """The index of `text` among `labels` (-1 for anything else); bind labels with partial."""
  del example, is_target
  return metrics.string_label_to_class_id(text, labels)


def float_value(text, example=None, is_target=False) -> float:
  del example, is_target
  return metrics.string_to_float(text)


def text_value(text, example=None, is_target=False) -> str:
  del example, is_target
  return metrics.as_text(text)
