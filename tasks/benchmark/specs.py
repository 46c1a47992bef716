"""The benchmark task table: one `TaskSpec` per registered task, and example/scoring functions.

Names are `{benchmark}_{task}_v{format}` (`glue_cola_v1`, `super_glue_boolq_v1`,
`squad11_v1` for SQuAD v1.1); the suffix is this project's format version and changes whenever
the text an example produces or its scoring changes.

Evaluation examples carry `idx`: their position (0, 1, ...) in the split sorted by the source's
own key (see `tasks.sources`), the same under TFDS and under --data_dir files. Predictions are
matched to examples by it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from tasks import metrics, sources
from tasks.benchmark import formats

Raw = dict[str, Any]
Postprocessor = Callable[..., Any]

CAP = 2**19  # T5's example-count cap for proportional mixing ("examples-proportional, K=2^19")


def _target_text(example: Mapping[str, Any]) -> Any:
  # seqio evaluators pass tokenized examples that keep the text under `targets_pretokenized`.
  return example.get('targets_pretokenized', example['targets'])


def classes(label_names: Sequence[str]) -> Postprocessor:

  def postprocess(text, example=None, is_target=False):
    del example, is_target
    return metrics.string_label_to_class_id(text, label_names)

  return postprocess


def float_value(text, example=None, is_target=False):
  del example, is_target
  return metrics.string_to_float(text)


def multirc_value(text, example=None, is_target=False):
  value = {'value': metrics.string_label_to_class_id(text, ('False', 'True'))}
  if is_target:
    value['group'] = metrics.as_text(example['group'])
  return value


def answers_value(text, example=None, is_target=False):
  if is_target:
    return [metrics.as_text(a) for a in example['answers']]
  return metrics.as_text(text)


def padded_answers_value(text, example=None, is_target=False):
  """SQuAD: gold answers are punctuation padded (as T5 trains on them); predictions are padded
  the same way, so that "U.S." and T5's "U . S ." both match the gold "U . S ."."""
  if is_target:
    return answers_value(text, example, is_target)
  return formats.pad_punctuation(metrics.as_text(text))


def wsc_value(text, example=None, is_target=False):
  if is_target:
    return int(example['label'])
  return metrics.wsc_predicts_referent(text, _target_text(example))


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """One benchmark task: where its data is, how it reads as text, how it is scored.

  `splits` maps the task's split names to the source's; `num_train_examples` (formatted
  training examples, as T5's GLUE/SuperGLUE weight mappings count them: ReCoRD one per answer,
  WSC only true referents; SQuAD's official 87,599) sets its mixing rate; `metric_group` names
  the benchmark column its metrics are averaged into.
  """

  name: str
  benchmark: str  # glue | super_glue | squad
  dataset: str  # TFDS name, also the key of tasks.sources.FILES
  splits: Mapping[str, str]
  format: formats.Formatter
  postprocess: Postprocessor
  metric_fns: tuple[metrics.MetricFn, ...]
  num_train_examples: int
  metric_group: str

  @property
  def rate(self) -> float:
    return float(min(self.num_train_examples, CAP)) if 'train' in self.splits else 0.0


def _glue(task, dataset, keys, labels, metric_fns, n, group, splits=None, benchmark='glue'):
  return TaskSpec(
    name=f'{benchmark}_{task}_v1', benchmark=benchmark, dataset=dataset,
    splits=splits or {'train': 'train', 'validation': 'validation'},
    format=formats.glue(task.split('_')[0], keys, labels), postprocess=classes(labels),
    metric_fns=tuple(metric_fns), num_train_examples=n, metric_group=group)


_ACC = (metrics.accuracy,)
_F1_ACC = (metrics.f1_with_invalid, metrics.accuracy)
_MNLI = ('entailment', 'neutral', 'contradiction')
_NLI2 = ('entailment', 'not_entailment')
_BOOL = ('False', 'True')

_SPECS = [
  _glue('cola', 'glue/cola', ['sentence'], ('unacceptable', 'acceptable'),
        [metrics.matthews_corrcoef], 8_551, 'CoLA'),
  _glue('sst2', 'glue/sst2', ['sentence'], ('negative', 'positive'), _ACC, 67_349, 'SST-2'),
  _glue('mrpc', 'glue/mrpc', ['sentence1', 'sentence2'], ('not_equivalent', 'equivalent'),
        _F1_ACC, 3_668, 'MRPC'),
  _glue('qqp', 'glue/qqp', ['question1', 'question2'], ('not_duplicate', 'duplicate'),
        _F1_ACC, 363_849, 'QQP'),
  TaskSpec('glue_stsb_v1', 'glue', 'glue/stsb', {'train': 'train', 'validation': 'validation'},
           formats.stsb, float_value, (metrics.pearson_corrcoef, metrics.spearman_corrcoef),
           5_749, 'STS-B'),
  _glue('mnli', 'glue/mnli', ['hypothesis', 'premise'], _MNLI, _ACC, 392_702, 'MNLI',
        splits={'train': 'train', 'validation_matched': 'validation_matched',
                'validation_mismatched': 'validation_mismatched'}),
  _glue('mnli_matched', 'glue/mnli', ['hypothesis', 'premise'], _MNLI, _ACC, 0, 'MNLI',
        splits={'validation': 'validation_matched'}),
  _glue('mnli_mismatched', 'glue/mnli', ['hypothesis', 'premise'], _MNLI, _ACC, 0, 'MNLI',
        splits={'validation': 'validation_mismatched'}),
  _glue('qnli', 'glue/qnli', ['question', 'sentence'], _NLI2, _ACC, 104_743, 'QNLI'),
  _glue('rte', 'glue/rte', ['sentence1', 'sentence2'], _NLI2, _ACC, 2_490, 'GLUE RTE'),
  _glue('boolq', 'super_glue/boolq', ['passage', 'question'], _BOOL, _ACC, 9_427, 'BoolQ',
        benchmark='super_glue'),
  _glue('cb', 'super_glue/cb', ['hypothesis', 'premise'],
        ('entailment', 'contradiction', 'neutral'),
        (metrics.mean_multiclass_f1(3), metrics.accuracy), 250, 'CB', benchmark='super_glue'),
  _glue('copa', 'super_glue/copa', ['choice1', 'choice2', 'premise', 'question'],
        ('choice1', 'choice2'), _ACC, 400, 'COPA', benchmark='super_glue'),
  dataclasses.replace(
    _glue('multirc', 'super_glue/multirc', ['question', 'answer', 'paragraph'], _BOOL, (),
          27_243, 'MultiRC', benchmark='super_glue'),
    postprocess=multirc_value, metric_fns=(metrics.multirc_f1a, metrics.multirc_exact_match)),
  TaskSpec('super_glue_record_v1', 'super_glue', 'super_glue/record',
           {'train': 'train', 'validation': 'validation'}, formats.record, answers_value,
           (metrics.squad,), 138_854, 'ReCoRD'),
  _glue('rte', 'super_glue/rte', ['hypothesis', 'premise'], _NLI2, _ACC, 2_490,
        'SuperGLUE RTE', benchmark='super_glue'),
  _glue('wic', 'super_glue/wic', ['sentence1', 'sentence2', 'word'], _BOOL, _ACC, 5_428, 'WiC',
        benchmark='super_glue'),
  TaskSpec('super_glue_wsc_v1', 'super_glue', 'super_glue/wsc.fixed',
           {'train': 'train', 'validation': 'validation'}, formats.wsc, wsc_value, _ACC,
           259, 'WSC'),
  TaskSpec('squad11_v1', 'squad', 'squad/v1.1', {'train': 'train', 'validation': 'validation'},
           formats.squad, padded_answers_value, (metrics.squad,), 87_599, 'SQuAD'),
]

SPECS: dict[str, TaskSpec] = {spec.name: spec for spec in _SPECS}

# The 17 benchmark tasks that train (MNLI once); evaluation adds MNLI matched and mismatched.
TRAIN_TASKS = tuple(name for name, spec in SPECS.items() if 'train' in spec.splits)
EVAL_TASKS = tuple(name for name, spec in SPECS.items() if 'validation' in spec.splits)


def get(name: str) -> TaskSpec:
  if name not in SPECS:
    from suite.shapes import closest
    raise KeyError(f'unknown benchmark task {name!r}; closest: {closest(name, SPECS)}')
  return SPECS[name]


def _check_split(spec: TaskSpec, split: str) -> str:
  if split not in spec.splits:
    raise ValueError(f'task {spec.name} has no split {split!r}; splits: {", ".join(spec.splits)}')
  return spec.splits[split]


def iter_examples(name: str, split: str, ordered: bool = True) -> Iterator[Raw]:
  """Formatted examples of a split. With `ordered`, `idx` is the stable evaluation position;
  unordered (training) streams in storage order with `idx` counting as it goes."""
  spec = get(name)
  source_split = _check_split(spec, split)
  position = 0
  for raw in sources.read(spec.dataset, source_split, ordered=ordered):
    for example in spec.format(raw, split):
      example['idx'] = position
      position += 1
      yield example


def examples(name: str, split: str = 'validation') -> list[Raw]:
  """The whole split, formatted, in evaluation order (`example['idx'] == position`)."""
  return list(iter_examples(name, split, ordered=True))


def score(name: str, split: str, predictions: Sequence[str],
          split_examples: Sequence[Raw] | None = None) -> dict[str, float]:
  """Scores decoded predictions (one per example, in `idx` order) with the task's metrics."""
  spec = get(name)
  split_examples = examples(name, split) if split_examples is None else split_examples
  if len(predictions) != len(split_examples):
    raise ValueError(f'{name}/{split}: {len(predictions)} predictions for '
                     f'{len(split_examples)} examples')
  targets = [spec.postprocess(_target_text(ex), example=ex, is_target=True)
             for ex in split_examples]
  values = [spec.postprocess(p, example=ex, is_target=False)
            for p, ex in zip(predictions, split_examples, strict=True)]
  result: dict[str, float] = {}
  for metric_fn in spec.metric_fns:
    result.update(metric_fn(targets, values))
  return result
