"""Metrics JSON lines, TensorBoard events and the stderr progress line."""

import glob
import json
import os
import re

import pytest

from suite import metrics_log


def test_writes_json_lines_tensorboard_and_a_progress_line(tmp_path, capsys):
  """Outside an absl app (flags not parsed) the progress line goes straight to stderr."""
  with metrics_log.MetricsLogger(tmp_path, total_steps=100) as logger:
    logger.write_train(10, {'loss': 2.5, 'accuracy': 0.25}, examples_per_step=32)
    logger.write_eval(10, {'accuracy': 0.5})
    logger.write_train(20, {'loss': float('nan'), 'accuracy': 0.5}, examples_per_step=32)
    logger.write_status(20, 'ok')
  with open(tmp_path / metrics_log.METRICS_FILE) as f:
    records = [json.loads(line) for line in f]
  assert [r['step'] for r in records] == [10, 10, 20, 20]
  first = records[0]
  assert first['train/loss'] == 2.5 and first['train/accuracy'] == 0.25
  assert first['steps_per_s'] > 0
  assert first['examples_per_s'] == first['steps_per_s'] * 32
  assert records[1] == {'step': 10, 'eval/accuracy': 0.5}
  assert records[2]['train/loss'] is None  # NaN is not JSON: written as null
  assert records[3] == {'step': 20, 'status': 'ok'}
  assert glob.glob(os.path.join(tmp_path, metrics_log.TENSORBOARD_DIR, 'events.out.tfevents.*'))
  lines = capsys.readouterr().err.splitlines()
  progress = [line for line in lines if 'steps/s' in line]
  assert len(progress) == 2
  assert progress[0].startswith('step 10/100 loss=2.5 accuracy=0.25 | ') and 'ETA' in progress[0]
  assert 'step 10 eval/accuracy=0.5' in lines


def test_read_metrics_filters_by_prefix(tmp_path):
  with metrics_log.MetricsLogger(tmp_path, total_steps=4, tensorboard=False) as logger:
    for step in (1, 2):
      logger.write_train(step, {'loss': 1.0 / step}, examples_per_step=4)
    logger.write_eval(2, {'loss': 0.1})
  assert [r['train/loss'] for r in metrics_log.read_metrics(tmp_path, 'train')] == [1.0, 0.5]
  assert [r['eval/loss'] for r in metrics_log.read_metrics(tmp_path, 'eval')] == [0.1]
  assert not os.path.exists(tmp_path / metrics_log.TENSORBOARD_DIR)
  assert metrics_log.read_metrics(tmp_path / 'nothing') == []


def test_resuming_drops_lines_written_after_the_checkpoint(tmp_path):
  with metrics_log.MetricsLogger(tmp_path, total_steps=6, tensorboard=False) as logger:
    for step in range(1, 6):
      logger.write_train(step, {'loss': float(step)}, examples_per_step=1)
  # The run was killed after step 5; its last checkpoint is step 3.
  with metrics_log.MetricsLogger(tmp_path, total_steps=6, start_step=3,
                                 tensorboard=False) as logger:
    logger.write_train(4, {'loss': 40.0}, examples_per_step=1)
  losses = [(r['step'], r['train/loss']) for r in metrics_log.read_metrics(tmp_path)]
  assert losses == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]


def _write_losses(workdir, steps):
  with metrics_log.MetricsLogger(workdir, total_steps=10, tensorboard=False) as logger:
    for step in steps:
      logger.write_train(step, {'loss': float(step)}, examples_per_step=1)


def test_each_record_is_one_unbuffered_write_of_a_whole_line(tmp_path, monkeypatch):
  """A kill can then cut only the line being written, never leave a buffer half flushed."""
  writes = []
  real_write = os.write

  def spy(fd, data):
    writes.append(bytes(data))
    return real_write(fd, data)

  monkeypatch.setattr(metrics_log.os, 'write', spy)
  _write_losses(tmp_path, [1, 2])
  monkeypatch.undo()
  assert len(writes) == 2
  assert all(w.endswith(b'\n') and w.count(b'\n') == 1 for w in writes)
  assert (tmp_path / metrics_log.METRICS_FILE).read_bytes() == b''.join(writes)


def test_a_cut_final_line_is_dropped_on_resume_with_a_warning(tmp_path, caplog):
  _write_losses(tmp_path, [1, 2, 3, 4])
  path = tmp_path / metrics_log.METRICS_FILE
  cut = b'{"step": 5, "train/loss": 5.0, "steps_'  # killed mid-write: no newline
  with open(path, 'ab') as f:
    f.write(cut)
  with caplog.at_level('WARNING'):
    assert [r['step'] for r in metrics_log.read_metrics(tmp_path)] == [1, 2, 3, 4]
  assert f'{path}: skipping a cut final line ({len(cut)} bytes' in caplog.text
  caplog.clear()
  # The last checkpoint was at step 3: the resume drops step 4 and the cut line, then appends.
  with caplog.at_level('WARNING'):
    with metrics_log.MetricsLogger(tmp_path, total_steps=10, start_step=3,
                                   tensorboard=False) as logger:
      logger.write_train(4, {'loss': 40.0}, examples_per_step=1)
  assert f'{path}: dropping a cut final line ({len(cut)} bytes' in caplog.text
  losses = [(r['step'], r['train/loss']) for r in metrics_log.read_metrics(tmp_path)]
  assert losses == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]
  assert path.read_bytes().endswith(b'}\n')


def test_a_whole_final_record_without_its_newline_is_kept(tmp_path):
  _write_losses(tmp_path, [1, 2])
  path = tmp_path / metrics_log.METRICS_FILE
  path.write_bytes(path.read_bytes().rstrip(b'\n'))
  with metrics_log.MetricsLogger(tmp_path, total_steps=10, start_step=2,
                                 tensorboard=False) as logger:
    logger.write_train(3, {'loss': 3.0}, examples_per_step=1)
  assert [r['step'] for r in metrics_log.read_metrics(tmp_path)] == [1, 2, 3]


@pytest.mark.parametrize('corrupt, line', [
    (b'{"step": 2, "train/lo\n', 2),  # a cut line that later lines follow
    (b'not json\n', 2),  # an invalid final line that was written whole
])
def test_an_invalid_line_elsewhere_is_an_error_naming_the_file_and_line(tmp_path, corrupt,
                                                                        line):
  _write_losses(tmp_path, [1])
  path = tmp_path / metrics_log.METRICS_FILE
  with open(path, 'ab') as f:
    f.write(corrupt)
    if corrupt.startswith(b'{'):  # later whole lines follow the cut one
      f.write(b'{"step": 3, "train/loss": 3.0}\n')
  expected = re.escape(f'{path}:{line}: not valid JSON')
  with pytest.raises(metrics_log.MetricsFileError, match=expected):
    metrics_log.read_metrics(tmp_path)
  with pytest.raises(metrics_log.MetricsFileError, match=expected):
    metrics_log.MetricsLogger(tmp_path, total_steps=10, start_step=1, tensorboard=False)
