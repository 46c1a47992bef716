"""Registering a text-to-text seqio task: source -> {'inputs', 'targets'} strings -> tokens.

The embedded and extra task families differ only in their sources, their text formats and
their metrics; the pipeline after the format (tokenize, cache point, EOS) is this one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import seqio

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
