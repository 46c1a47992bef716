"""tasks.sources: original-format files parse as TFDS would; TFDS (mocked) and errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tasks import sources
from tests.tasks.fixtures import FIXTURE_COUNTS, MRPC, tsv


@pytest.mark.parametrize('dataset', sorted(FIXTURE_COUNTS))
def test_fixture_files_parse_with_tfds_feature_names(data_dir, dataset):
  examples = sources.read(dataset, 'validation')
  assert len(examples) == FIXTURE_COUNTS[dataset]
  with tfds.testing.mock_data(num_examples=1):
    mocked = sources_read_tfds(dataset)
  assert set(examples[0]) == set(mocked[0])
  for key, value in mocked[0].items():
    assert type(examples[0][key]) is type(value), key


def sources_read_tfds(dataset: str) -> list[dict]:
  current = sources.config()
  sources.configure(data_dir=None, tfds_data_dir=None)
  try:
    return sources.read(dataset, 'validation')
  finally:
    sources.configure(current.data_dir, current.tfds_data_dir)


def _python(value):
  if isinstance(value, dict):
    return {k: _python(v) for k, v in value.items()}
  if isinstance(value, np.ndarray):
    return _python(value.tolist())
  if isinstance(value, list):
    return [_python(v) for v in value]
  if isinstance(value, bytes):
    return value.decode('utf-8')
  if isinstance(value, np.generic):
    return value.item()
  return value


_TFDS_SPLIT = {'validation': 'dev', 'validation_matched': 'dev', 'validation_mismatched': 'dev'}


def _tfds_builder_examples(dataset: str, split: str, path: str) -> list[dict]:
  """What the TFDS builder itself generates (and encodes) from the same original file."""
  builder = tfds.builder(dataset)
  if dataset == 'squad/v1.1':
    generated = builder._generate_examples(path)
  elif dataset.startswith('glue/'):
    generated = builder._generate_examples(path, _TFDS_SPLIT.get(split, split))
  else:
    generated = builder._generate_examples(path, split)
  examples = [_python(builder.info.features.encode_example(ex)) for _, ex in generated]
  return sorted(examples, key=lambda ex: sources.source_key(dataset, ex))


@pytest.mark.parametrize('dataset, split', [
  *[(d, 'validation') for d in sorted(FIXTURE_COUNTS) if d != 'glue/mrpc'],
  ('glue/mnli', 'validation_mismatched'), ('super_glue/record', 'train')])
def test_files_parse_exactly_as_the_tfds_builders(data_dir, dataset, split):
  path = next(p for p in sources.candidate_paths(dataset, split, data_dir) if os.path.exists(p))
  ours = [_python(ex) for ex in sources.read(dataset, split)]
  if dataset == 'glue/stsb':  # TFDS stores the score as float32
    ours = [dict(ex, label=float(np.float32(ex['label']))) for ex in ours]
  assert ours == _tfds_builder_examples(dataset, split, path)


def test_mrpc_msr_files_parse_exactly_as_the_tfds_builder(tmp_path):
  tsv(f'{tmp_path}/glue/MRPC/msr_paraphrase_train.txt', MRPC)
  tsv(f'{tmp_path}/glue/MRPC/dev_ids.tsv', [['3', '4'], ['7', '8']])
  builder = tfds.builder('glue/mrpc')
  files = {'train': f'{tmp_path}/glue/MRPC/msr_paraphrase_train.txt',
           'dev_ids': f'{tmp_path}/glue/MRPC/dev_ids.tsv'}
  previous = sources.config()
  sources.configure(data_dir=str(tmp_path))
  try:
    for split, tfds_split in (('validation', 'dev'), ('train', 'train')):
      expected = [_python(builder.info.features.encode_example(ex))
                  for _, ex in builder._generate_examples(None, tfds_split, mrpc_files=files)]
      assert sources.read('glue/mrpc', split) == expected
  finally:
    sources.configure(previous.data_dir, previous.tfds_data_dir)


def test_cola_without_header_or_final_newline(data_dir):
  examples = sources.read('glue/cola', 'validation')
  assert [ex['label'] for ex in examples] == [1, 0, 1, 0]
  assert examples[-1]['sentence'] == 'Them reading the book.'


def test_mrpc_bom_header_and_msr_layout(data_dir, tmp_path):
  examples = sources.read('glue/mrpc', 'validation')
  assert [ex['label'] for ex in examples] == [1, 0, 1, 1]
  # The MSR release plus dev_ids.tsv (what download_glue_data.py starts from).
  tsv(f'{tmp_path}/glue/MRPC/msr_paraphrase_train.txt', MRPC)
  tsv(f'{tmp_path}/glue/MRPC/dev_ids.tsv', [['3', '4'], ['7', '8']])
  sources.configure(data_dir=str(tmp_path))
  try:
    dev = sources.read('glue/mrpc', 'validation')
    train = sources.read('glue/mrpc', 'train')
  finally:
    sources.configure(data_dir=data_dir)
  assert [ex['sentence1'] for ex in dev] == ['Shares rose 5 percent.', 'The cat sat.']
  assert [ex['label'] for ex in train] == [1, 1]


def test_labels_follow_tfds_class_order(data_dir):
  assert [ex['label'] for ex in sources.read('super_glue/cb', 'validation')] == [1, 2, 0, 0]
  assert [ex['label'] for ex in sources.read('glue/mnli', 'validation_mismatched')] == [2, 1, 0]
  assert [ex['label'] for ex in sources.read('glue/stsb', 'validation')] == [5.0, 4.75, 0.5, 0.7]
  assert [ex['label'] for ex in sources.read('super_glue/copa', 'validation')] == [1, 0, 0]


def test_ordered_by_source_key(data_dir):
  boolq = sources.read('super_glue/boolq', 'validation')
  assert [ex['idx'] for ex in boolq] == [0, 1, 2]
  squad = sources.read('squad/v1.1', 'validation')
  assert [ex['id'] for ex in squad] == ['a1', 'b2', 'c3']
  assert squad[1]['answers']['text'] == ["Levi's Stadium", "Levi's Stadium"]
  assert [ex['idx'] for ex in sources.read('super_glue/boolq', 'validation', ordered=False)
          ] == [1, 0, 2]


def test_multirc_flattens_and_record_collects_spans(data_dir):
  multirc = sources.read('super_glue/multirc', 'validation')
  assert [(ex['idx']['paragraph'], ex['idx']['question']) for ex in multirc] == [
    (0, 0), (0, 0), (0, 0), (0, 1), (0, 1), (1, 0), (1, 0)]
  assert [ex['label'] for ex in multirc] == [1, 0, 1, 1, 0, 1, 0]
  record = sources.read('super_glue/record', 'validation')
  assert record[0]['entities'] == ['Carr', 'Denver', 'Denver Broncos', 'Oakland Raiders']
  assert [ex['answers'] for ex in record] == [['Denver Broncos'], ['Denver'],
                                              ['Carr', 'Oakland Raiders']]


def test_wsc_spans_fixed_as_tfds(data_dir):
  wsc = sources.read('super_glue/wsc.fixed', 'validation')
  assert [ex['span1_text'] for ex in wsc] == ['Mark', 'The city councilmen', 'the refrigerator']
  assert [ex['label'] for ex in wsc] == [0, 1, 1]


def test_missing_files_name_every_path_and_the_fix(tmp_path):
  sources.configure(data_dir=str(tmp_path))
  try:
    with pytest.raises(sources.DataNotFoundError) as e:
      sources.read('glue/qqp', 'validation')
  finally:
    sources.configure()
  message = str(e.value)
  assert os.path.join(str(tmp_path), 'glue', 'QQP', 'dev.tsv') in message
  assert os.path.join(str(tmp_path), 'glue_data', 'QQP', 'dev.tsv') in message
  assert 'tfds build glue/qqp' in message and '--data_dir' in message


def test_missing_tfds_data_is_clear(tmp_path):
  sources.configure(tfds_data_dir=str(tmp_path))
  try:
    with pytest.raises(sources.DataNotFoundError, match=str(tmp_path)):
      sources.read('super_glue/cb', 'validation')
  finally:
    sources.configure()


def test_unknown_dataset_and_split():
  with pytest.raises(KeyError, match='glue/cola'):
    sources.read('glue/colla', 'validation')
  with pytest.raises(ValueError, match='validation_matched'):
    sources.read('glue/mnli', 'validation')
