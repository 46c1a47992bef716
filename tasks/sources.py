"""Where benchmark text comes from: TFDS (default) or the original distribution files.

Both sources yield the same raw examples: dicts with the TFDS feature names and Python values
(str, int, float, lists; `label` is the TFDS ClassLabel index, -1 when absent). Files are parsed
exactly as the TFDS builders parse the downloads, so a task reads alike from either source.

`read(dataset, split, ordered=True)` returns the split sorted by its source key (the TFDS `idx`,
`(paragraph, question, answer)` for MultiRC, `(passage, query)` for ReCoRD, the question `id` for
SQuAD): that order is what gives every evaluation example its stable position (see
`tasks.benchmark`). With `ordered=False` examples stream in storage order (for training).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

Raw = dict[str, Any]


class DataNotFoundError(FileNotFoundError):
  """A dataset is not where the configuration says it is."""


@dataclasses.dataclass(frozen=True)
class Config:
  """`data_dir`: original files (GLUE tsv, SuperGLUE jsonl, SQuAD json); else TFDS at
  `tfds_data_dir` (None = TFDS's own default, ~/tensorflow_datasets)."""

  data_dir: str | None = None
  tfds_data_dir: str | None = None


_config = Config()


def configure(data_dir: str | None = None, tfds_data_dir: str | None = None) -> Config:
  """Sets where every benchmark task reads its data (the runner's --data_dir/--tfds_data_dir)."""
  global _config
  _config = Config(data_dir=data_dir or None, tfds_data_dir=tfds_data_dir or None)
  return _config


def config() -> Config:
  return _config


# ---------------------------------------------------------------- the datasets


@dataclasses.dataclass(frozen=True)
class FileSpec:
  """How one TFDS dataset is laid out in its original distribution.

  `folder` is the directory the official download script creates, `files` maps TFDS split ->
  file name, `parse(path, split)` yields raw examples in storage order.
  """

  folder: str
  files: dict[str, str]
  parse: Callable[[str, str], Iterator[Raw]]
  roots: tuple[str, ...]  # sub-directories of data_dir that may hold `folder`


_GLUE_ROOTS = ('glue', 'glue_data', '')
_SUPER_GLUE_ROOTS = ('super_glue', '')


def _tsv_rows(path: str, header: bool) -> Iterator[Any]:
  # utf-8-sig: MRPC's header (copied from the MSR file) starts with a byte-order mark.
  with open(path, encoding='utf-8-sig', newline='') as f:
    if header:
      yield from csv.DictReader(f, delimiter='\t', quoting=csv.QUOTE_NONE)
    else:
      yield from csv.reader(f, delimiter='\t', quoting=csv.QUOTE_NONE)


def _glue_parser(text_columns: dict[str, str], label_column: str,
                 label_classes: Sequence[str] | None) -> Callable[[str, str], Iterator[Raw]]:
  """A GLUE tsv reader with a header; rows with a missing field or label are skipped (as TFDS)."""

  def parse(path: str, split: str) -> Iterator[Raw]:
    del split
    for n, row in enumerate(_tsv_rows(path, header=True)):
      example = {feature: row.get(column) for feature, column in text_columns.items()}
      label = row.get(label_column)
      if label is None or label == '' or any(v is None for v in example.values()):
        continue
      if label_classes is None:
        example['label'] = float(label)
      elif label in label_classes:
        example['label'] = list(label_classes).index(label)
      else:
        example['label'] = int(label)
      example['idx'] = n
      yield example

  return parse


def _parse_cola(path: str, split: str) -> Iterator[Raw]:
  """CoLA train/dev: no header; columns source, label, original label, sentence."""
  del split
  for n, row in enumerate(_tsv_rows(path, header=False)):
    if len(row) < 4 or row[1] == '':
      continue
    yield {'sentence': row[3], 'label': int(row[1]), 'idx': n}


_parse_mrpc_tsv = _glue_parser({'sentence1': '#1 String', 'sentence2': '#2 String'}, 'Quality',
                               ('0', '1'))


def _parse_mrpc(path: str, split: str) -> Iterator[Raw]:
  """MRPC from the GLUE script's train.tsv/dev.tsv, or from the MSR release + dev_ids.tsv."""
  if os.path.basename(path) != 'msr_paraphrase_train.txt':
    yield from _parse_mrpc_tsv(path, split)
    return
  ids_path = os.path.join(os.path.dirname(path), 'dev_ids.tsv')
  if not os.path.exists(ids_path):
    raise DataNotFoundError(f'MRPC: {path} needs {ids_path} (the GLUE dev split ids) beside it.')
  dev_ids = {(r[0], r[1]) for r in _tsv_rows(ids_path, header=False) if len(r) >= 2}
  for n, row in enumerate(_tsv_rows(path, header=True)):
    if ((row['#1 ID'], row['#2 ID']) in dev_ids) == (split == 'validation'):
      yield {'sentence1': row['#1 String'], 'sentence2': row['#2 String'],
             'label': int(row['Quality']), 'idx': n}


def _jsonl(path: str) -> Iterator[Raw]:
  with open(path, encoding='utf-8') as f:
    for line in f:
      if line.strip():
        yield json.loads(line)


def _class(label: Any, label_classes: Sequence[str]) -> int:
  if label is None:
    return -1
  if isinstance(label, bool):
    label = 'True' if label else 'False'
  return list(label_classes).index(str(label))


def _super_glue_parser(features: Sequence[str], label_classes: Sequence[str] = ('False', 'True'),
                       ) -> Callable[[str, str], Iterator[Raw]]:

  def parse(path: str, split: str) -> Iterator[Raw]:
    del split
    for row in _jsonl(path):
      example = {f: row[f] for f in features}
      example['idx'] = row['idx']
      example['label'] = _class(row.get('label'), label_classes)
      yield example

  return parse


def _parse_copa(path: str, split: str) -> Iterator[Raw]:
  for row in _jsonl(path):
    example = {f: row[f] for f in ('premise', 'choice1', 'choice2', 'question')}
    example.update(idx=row['idx'], label=-1 if row.get('label') is None else int(row['label']))
    yield example


def _parse_multirc(path: str, split: str) -> Iterator[Raw]:
  """One example per answer option, as TFDS flattens paragraph -> questions -> answers."""
  for row in _jsonl(path):
    paragraph = row['passage']
    for question in paragraph['questions']:
      for answer in question['answers']:
        label = answer.get('label')
        yield {'paragraph': paragraph['text'], 'question': question['question'],
               'answer': answer['text'], 'label': -1 if label is None else int(bool(label)),
               'idx': {'paragraph': row['idx'], 'question': question['idx'],
                       'answer': answer['idx']}}


def _parse_record(path: str, split: str) -> Iterator[Raw]:
  """One example per query; entities and answers are the sorted unique span texts (as TFDS)."""
  for row in _jsonl(path):
    text = row['passage']['text']
    entities = sorted({text[e['start']:e['end'] + 1] for e in row['passage']['entities']})
    for qa in row['qas']:
      yield {'passage': text, 'query': qa['query'], 'entities': entities,
             'answers': sorted({a['text'] for a in qa.get('answers', [])}),
             'idx': {'passage': row['idx'], 'query': qa['idx']}}


_WSC_UNFIXABLE = ('Kamenev and Zinoviev', 'Kamenev, Zinoviev, and Stalin')


def _fix_wsc_spans(example: Raw) -> Raw:
  """TFDS `wsc.fixed`: make span texts substrings of the text where the release has them off.

  A span text missing from the text gets the case of the word at its index on its first
  letter, loses trailing periods and has newlines turned to spaces. Two spans with intervening
  words cannot be fixed and stay as released; the 'theyscold' span gets pronoun index 10.
  """
  example = dict(example)
  for span in ('span1', 'span2'):
    span_text, index = example[f'{span}_text'], example[f'{span}_index']
    if span_text in example['text'] or span_text in _WSC_UNFIXABLE:
      continue
    if 'theyscold' in span_text:
      example['span2_index'] = 10
    word = example['text'].split()[index]
    first = span_text[0].lower() if word[0].islower() else span_text[0].upper()
    span_text = (first + span_text[1:]).rstrip('.').replace('\n', ' ')
    if span_text not in example['text']:
      raise ValueError(f'WSC example {example}: {span} text {span_text!r} is not in the text')
    example[f'{span}_text'] = span_text
  return example


def _parse_wsc(path: str, split: str) -> Iterator[Raw]:
  """WSC with the span fixes of TFDS's `wsc.fixed` (the config T5 trains on)."""
  for row in _jsonl(path):
    target = row['target']
    example = {'text': row['text'], 'span1_index': target['span1_index'],
               'span2_index': target['span2_index'], 'span1_text': target['span1_text'],
               'span2_text': target['span2_text']}
    example = _fix_wsc_spans(example)
    example.update(idx=row['idx'], label=_class(row.get('label'), ('False', 'True')))
    yield example


def _parse_squad(path: str, split: str) -> Iterator[Raw]:
  """SQuAD v1.1 json: one example per question id, answers merged per id (as TFDS)."""
  with open(path, encoding='utf-8') as f:
    data = json.load(f)['data']
  merged: dict[str, Raw] = {}
  for article in data:
    for paragraph in article['paragraphs']:
      for qa in paragraph['qas']:
        example = merged.setdefault(qa['id'], {
          'id': qa['id'], 'title': article.get('title', ''), 'context': paragraph['context'],
          'question': qa['question'], 'answers': {'text': [], 'answer_start': []}})
        example['answers']['text'].extend(a['text'] for a in qa['answers'])
        example['answers']['answer_start'].extend(a['answer_start'] for a in qa['answers'])
  yield from merged.values()


_GLUE_SPLITS = {'train': 'train.tsv', 'validation': 'dev.tsv'}
_SG_SPLITS = {'train': 'train.jsonl', 'validation': 'val.jsonl'}
_MNLI_LABELS = ('entailment', 'neutral', 'contradiction')
_NLI2 = ('entailment', 'not_entailment')

FILES: dict[str, FileSpec] = {
  'glue/cola': FileSpec('CoLA', _GLUE_SPLITS, _parse_cola, _GLUE_ROOTS),
  'glue/sst2': FileSpec('SST-2', _GLUE_SPLITS,
                        _glue_parser({'sentence': 'sentence'}, 'label', ('0', '1')), _GLUE_ROOTS),
  'glue/mrpc': FileSpec('MRPC', _GLUE_SPLITS, _parse_mrpc, _GLUE_ROOTS),
  'glue/qqp': FileSpec('QQP', _GLUE_SPLITS, _glue_parser(
    {'question1': 'question1', 'question2': 'question2'}, 'is_duplicate', ('0', '1')),
    _GLUE_ROOTS),
  'glue/stsb': FileSpec('STS-B', _GLUE_SPLITS, _glue_parser(
    {'sentence1': 'sentence1', 'sentence2': 'sentence2'}, 'score', None), _GLUE_ROOTS),
  'glue/mnli': FileSpec('MNLI', {'train': 'train.tsv', 'validation_matched': 'dev_matched.tsv',
                                 'validation_mismatched': 'dev_mismatched.tsv'},
                        _glue_parser({'premise': 'sentence1', 'hypothesis': 'sentence2'},
                                     'gold_label', _MNLI_LABELS), _GLUE_ROOTS),
  'glue/qnli': FileSpec('QNLI', _GLUE_SPLITS, _glue_parser(
    {'question': 'question', 'sentence': 'sentence'}, 'label', _NLI2), _GLUE_ROOTS),
  'glue/rte': FileSpec('RTE', _GLUE_SPLITS, _glue_parser(
    {'sentence1': 'sentence1', 'sentence2': 'sentence2'}, 'label', _NLI2), _GLUE_ROOTS),
  'super_glue/boolq': FileSpec('BoolQ', _SG_SPLITS, _super_glue_parser(('question', 'passage')),
                               _SUPER_GLUE_ROOTS),
  'super_glue/cb': FileSpec('CB', _SG_SPLITS, _super_glue_parser(
    ('premise', 'hypothesis'), ('entailment', 'contradiction', 'neutral')), _SUPER_GLUE_ROOTS),
  'super_glue/copa': FileSpec('COPA', _SG_SPLITS, _parse_copa, _SUPER_GLUE_ROOTS),
  'super_glue/multirc': FileSpec('MultiRC', _SG_SPLITS, _parse_multirc, _SUPER_GLUE_ROOTS),
  'super_glue/record': FileSpec('ReCoRD', _SG_SPLITS, _parse_record, _SUPER_GLUE_ROOTS),
  'super_glue/rte': FileSpec('RTE', _SG_SPLITS, _super_glue_parser(
    ('premise', 'hypothesis'), _NLI2), _SUPER_GLUE_ROOTS),
  'super_glue/wic': FileSpec('WiC', _SG_SPLITS, _super_glue_parser(
    ('word', 'sentence1', 'sentence2', 'start1', 'start2', 'end1', 'end2')), _SUPER_GLUE_ROOTS),
  'super_glue/wsc.fixed': FileSpec('WSC', _SG_SPLITS, _parse_wsc, _SUPER_GLUE_ROOTS),
  'squad/v1.1': FileSpec('', {'train': 'train-v1.1.json', 'validation': 'dev-v1.1.json'},
                         _parse_squad, ('squad', '')),
}

_MRPC_MSR_FILE = 'msr_paraphrase_train.txt'


def splits(dataset: str) -> tuple[str, ...]:
  return tuple(_spec(dataset).files)


def _spec(dataset: str) -> FileSpec:
  if dataset not in FILES:
    from suite.shapes import closest
    raise KeyError(f'unknown dataset {dataset!r}; closest: {closest(dataset, FILES)}')
  return FILES[dataset]


def candidate_paths(dataset: str, split: str, data_dir: str) -> list[str]:
  """Every path `read` tries for (dataset, split) under data_dir, in order."""
  spec = _spec(dataset)
  if split not in spec.files:
    raise ValueError(f'{dataset} has no split {split!r}; splits: {", ".join(spec.files)}')
  names = [spec.files[split]]
  if dataset == 'glue/mrpc' and split in ('train', 'validation'):
    names.append(_MRPC_MSR_FILE)
  paths = []
  for name in names:
    for root in spec.roots:
      paths.append(os.path.normpath(os.path.join(data_dir, root, spec.folder, name)))
  return list(dict.fromkeys(paths))


def _how_to_provide(dataset: str) -> str:
  spec = _spec(dataset)
  if dataset.startswith('glue/'):
    layout = f'<data_dir>/glue/{spec.folder}/{{train.tsv,dev.tsv}} (as download_glue_data.py)'
  elif dataset.startswith('super_glue/'):
    layout = f'<data_dir>/super_glue/{spec.folder}/{{train.jsonl,val.jsonl}} (the SuperGLUE zips)'
  else:
    layout = '<data_dir>/squad/{train-v1.1.json,dev-v1.1.json}'
  return (f'Provide it with --data_dir laid out as {layout}, or prepare it for TFDS with '
          f'`tfds build {dataset} --data_dir=DIR` and pass --tfds_data_dir=DIR.')


def _read_files(dataset: str, split: str, data_dir: str) -> Iterator[Raw]:
  paths = candidate_paths(dataset, split, data_dir)
  for path in paths:
    if os.path.isfile(path):
      return _spec(dataset).parse(path, split)
  raise DataNotFoundError(
    f'{dataset} split {split!r} not found under data_dir={data_dir!r}: looked at '
    f'{", ".join(paths)}. {_how_to_provide(dataset)}')


def _to_python(value: Any) -> Any:
  if isinstance(value, bytes):
    return value.decode('utf-8')
  if isinstance(value, dict):
    return {k: _to_python(v) for k, v in value.items()}
  if hasattr(value, 'tolist'):
    return _to_python(value.tolist())
  if isinstance(value, list):
    return [_to_python(v) for v in value]
  return value


def _read_tfds(dataset: str, split: str, tfds_data_dir: str | None) -> Iterator[Raw]:
  import tensorflow_datasets as tfds

  try:
    builder = tfds.builder(dataset, data_dir=tfds_data_dir)
    ds = builder.as_dataset(split=split, shuffle_files=False)
  except (AssertionError, FileNotFoundError, tfds.core.registered.DatasetNotFoundError) as e:
    where = tfds_data_dir or '~/tensorflow_datasets (TFDS default)'
    raise DataNotFoundError(
      f'{dataset} split {split!r} is not prepared in TFDS data dir {where}: {e}. '
      f'{_how_to_provide(dataset)}') from e
  return (_to_python(ex) for ex in tfds.as_numpy(ds))


def source_key(dataset: str, example: Raw) -> Any:
  """The key the source itself orders a split by (see module docstring)."""
  if dataset == 'squad/v1.1':
    return example['id']
  idx = example['idx']
  if dataset == 'super_glue/multirc':
    return (idx['paragraph'], idx['question'], idx['answer'])
  if dataset == 'super_glue/record':
    return (idx['passage'], idx['query'])
  return idx


def read(dataset: str, split: str, ordered: bool = True) -> Iterator[Raw] | list[Raw]:
  """Raw examples of a split from the configured source; a list sorted by `source_key` when
  `ordered`, else an iterator in storage order."""
  if split not in _spec(dataset).files:
    raise ValueError(f'{dataset} has no split {split!r}; splits: {", ".join(splits(dataset))}')
  if _config.data_dir:
    examples = _read_files(dataset, split, _config.data_dir)
  else:
    examples = _read_tfds(dataset, split, _config.tfds_data_dir)
  if not ordered:
    return examples
  return sorted(examples, key=lambda ex: source_key(dataset, ex))
