"""Metrics JSON lines, TensorBoard events and the stderr progress line."""

import glob
import json
import os

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
