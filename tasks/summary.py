"""Benchmark averages as the T5 paper computes them, and the Scale-Efficiently summary columns.

A benchmark column (e.g. MRPC) is the mean of its metrics (F1 and accuracy; Pearson and
Spearman; MNLI matched and mismatched accuracy; CB F1 and accuracy; MultiRC F1a and EM; ReCoRD
F1 and EM); the GLUE and SuperGLUE scores are the means of their 8 columns. WNLI and the
diagnostic sets are not part of either (T5 does not train on them).

The paper's summary columns are GLUE, SuperGLUE, SQuAD and AVG (the mean of the three). The
SQuAD column is SQuAD v1.1 exact match (EM): under its SQuAD heading the T5 paper reports EM
alone, finding EM and F1 highly correlated (its baseline's 80.88 is an EM), and Tay et al.
report T5-style tables from T5's codebase. F1 is still scored per task, not averaged in.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

# benchmark -> column -> (task, metric) pairs averaged into that column.
COLUMNS: dict[str, dict[str, tuple[tuple[str, str], ...]]] = {
  'glue': {
    'CoLA': (('glue_cola_v1', 'matthews_corrcoef'),),
    'SST-2': (('glue_sst2_v1', 'accuracy'),),
    'MRPC': (('glue_mrpc_v1', 'f1'), ('glue_mrpc_v1', 'accuracy')),
    'STS-B': (('glue_stsb_v1', 'pearson_corrcoef'), ('glue_stsb_v1', 'spearman_corrcoef')),
    'QQP': (('glue_qqp_v1', 'f1'), ('glue_qqp_v1', 'accuracy')),
    'MNLI': (('glue_mnli_matched_v1', 'accuracy'), ('glue_mnli_mismatched_v1', 'accuracy')),
    'QNLI': (('glue_qnli_v1', 'accuracy'),),
    'GLUE RTE': (('glue_rte_v1', 'accuracy'),),
  },
  'super_glue': {
    'BoolQ': (('super_glue_boolq_v1', 'accuracy'),),
    'CB': (('super_glue_cb_v1', 'mean_3class_f1'), ('super_glue_cb_v1', 'accuracy')),
    'COPA': (('super_glue_copa_v1', 'accuracy'),),
    'MultiRC': (('super_glue_multirc_v1', 'f1'), ('super_glue_multirc_v1', 'exact_match')),
    'ReCoRD': (('super_glue_record_v1', 'f1'), ('super_glue_record_v1', 'em')),
    'SuperGLUE RTE': (('super_glue_rte_v1', 'accuracy'),),
    'WiC': (('super_glue_wic_v1', 'accuracy'),),
    'WSC': (('super_glue_wsc_v1', 'accuracy'),),
  },
}

# The (task, metric) of the SQuAD summary column, and the three columns AVG averages.
SQUAD: tuple[str, str] = ('squad11_v1', 'em')
SUMMARY_COLUMNS: tuple[str, ...] = ('glue_average', 'super_glue_average', 'squad')


def averages(scores: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
  """Columns and summary averages from `{task_name: {metric: value}}` validation scores.

  Returns every column whose metrics are all present; `glue_average` / `super_glue_average`
  when all 8 columns of that benchmark are; `squad` (SQuAD v1.1 EM) when `squad11_v1` has `em`;
  and `avg`, the mean of those three, when all three are present. A summary value whose inputs
  are incomplete is left out, never averaged over what is there.
  """
  result: dict[str, float] = {}
  for benchmark, columns in COLUMNS.items():
    column_values = []
    for column, parts in columns.items():
      if all(task in scores and metric in scores[task] for task, metric in parts):
        result[column] = float(np.mean([scores[task][metric] for task, metric in parts]))
        column_values.append(result[column])
    if len(column_values) == len(columns):
      result[f'{benchmark}_average'] = float(np.mean(column_values))
  task, metric = SQUAD
  if metric in scores.get(task, {}):
    result['squad'] = float(scores[task][metric])
  if all(column in result for column in SUMMARY_COLUMNS):
    result['avg'] = float(np.mean([result[column] for column in SUMMARY_COLUMNS]))
  return result
