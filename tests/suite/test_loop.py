"""`fit`: files written, exact resume after a crash, divergence, finetuning from params."""

import glob
import os

import jax
import numpy as np
import pytest

from suite import loop, metrics_log, optim
from tests.suite.core_toy import ToyModel, batches, make_batch, param_leaves, summarize

OPTIMIZER = optim.OptimizerConfig(schedule='rsqrt', learning_rate=0.05, warmup_steps=4,
                                  min_dim_size_to_factor=8)


def _eval_data():
  return [make_batch(1000 + i, batch_size=8) for i in range(2)]


def _train_losses(workdir):
  return [(r['step'], r['train/loss']) for r in metrics_log.read_metrics(workdir, 'train')]


def test_fit_writes_metrics_evaluations_and_checkpoints(tmp_path):
  config = loop.LoopConfig(num_steps=12, log_every=4, eval_every=6, checkpoint_every=3,
                           keep_checkpoints=2)
  adamw = optim.OptimizerConfig(name='adamw', schedule='linear', learning_rate=0.03,
                                warmup_steps=0, total_steps=12)
  result = loop.fit(ToyModel(), adamw, batches, config, tmp_path,
                    eval_data=_eval_data, summarize_eval=summarize)
  assert (result.status, result.step, result.resumed_from) == ('ok', 12, None)
  assert int(result.state.step) == 12
  records = metrics_log.read_metrics(tmp_path)
  train = [r for r in records if 'train/loss' in r]
  assert [r['step'] for r in train] == [4, 8, 12]
  assert train[-1]['train/loss'] < train[0]['train/loss']
  # The rate of the step's update: optax counts from 0, so step 4 used schedule(3).
  assert train[0]['train/learning_rate'] == pytest.approx(0.03 * (1 - 3 / 12))
  assert train[-1]['train/learning_rate'] == pytest.approx(0.03 / 12)
  assert all(r['examples_per_s'] > 0 for r in train[1:])
  evals = [r for r in records if 'eval/accuracy' in r]
  assert [r['step'] for r in evals] == [6, 12]
  assert result.eval_metrics == pytest.approx(
      {'loss': evals[-1]['eval/loss'], 'accuracy': evals[-1]['eval/accuracy']})
  assert records[-1] == {'step': 12, 'status': 'ok'}
  assert sorted(os.listdir(tmp_path / loop.CHECKPOINT_DIR)) == ['12', '9']
  assert glob.glob(str(tmp_path / 'tensorboard' / 'events.out.tfevents.*'))
  # Running again with the same arguments finds the run finished and does no step.
  again = loop.fit(ToyModel(), adamw, batches, config, tmp_path, eval_data=_eval_data,
                   summarize_eval=summarize)
  assert (again.status, again.step, again.resumed_from) == ('ok', 12, 12)
  assert again.eval_metrics == pytest.approx(result.eval_metrics)


class Crash(Exception):
  pass


RESUME_CONFIG = loop.LoopConfig(num_steps=10, log_every=1, checkpoint_every=5,
                                tensorboard=False)


@pytest.fixture(scope='module')
def straight(tmp_path_factory):
  """10 uninterrupted steps; dropout on, so the RNG must be restored for an exact resume."""
  workdir = tmp_path_factory.mktemp('straight')
  return workdir, loop.fit(ToyModel(dropout=0.3), OPTIMIZER, batches, RESUME_CONFIG, workdir)


def test_resume_after_a_crash_reproduces_the_uninterrupted_run(tmp_path, straight):
  """Crash at step 8 (last checkpoint: 5), restart in a new Trainer: the same curve, bit for bit.

  The restart gets the data as a plain list, which `fit` fast-forwards by the 5 batches the
  checkpoint records as consumed.
  """
  straight_dir, straight_result = straight

  def crashing(start):
    for i, batch in enumerate(batches(start), start=start):
      if i == 7:  # the 8th batch never arrives
        raise Crash()
      yield batch

  with pytest.raises(Crash):
    loop.fit(ToyModel(dropout=0.3), OPTIMIZER, crashing, RESUME_CONFIG, tmp_path)
  assert [s for s, _ in _train_losses(tmp_path)] == [1, 2, 3, 4, 5, 6, 7]
  data = [make_batch(i) for i in range(10)]
  resumed = loop.fit(ToyModel(dropout=0.3), OPTIMIZER, data, RESUME_CONFIG, tmp_path)
  assert resumed.resumed_from == 5 and resumed.status == 'ok'
  assert _train_losses(tmp_path) == _train_losses(straight_dir)
  assert len(set(_train_losses(tmp_path))) == 10
  for a, b in zip(param_leaves(straight_result.state), param_leaves(resumed.state), strict=True):
    np.testing.assert_array_equal(a, b)


def test_resume_between_log_lines_logs_the_same_averages(tmp_path):
  """Log every 4 steps, checkpoint every 6, crash at 7: the step-8 line still averages 5-8."""
  config = loop.LoopConfig(num_steps=12, log_every=4, checkpoint_every=6, tensorboard=False)
  straight_dir = tmp_path / 'straight'
  loop.fit(ToyModel(dropout=0.3), OPTIMIZER, batches, config, straight_dir)

  def crashing(start):
    for i, batch in enumerate(batches(start), start=start):
      if i == 6:
        raise Crash()
      yield batch

  with pytest.raises(Crash):
    loop.fit(ToyModel(dropout=0.3), OPTIMIZER, crashing, config, tmp_path / 'resumed')
  resumed = loop.fit(ToyModel(dropout=0.3), OPTIMIZER, batches, config, tmp_path / 'resumed')
  assert resumed.resumed_from == 6
  expected = _train_losses(straight_dir)
  assert [s for s, _ in expected] == [4, 8, 12]
  assert _train_losses(tmp_path / 'resumed') == expected


def test_checkpoint_records_the_window_as_it_was_at_the_save(tmp_path, monkeypatch):
  """orbax serialises the data record later, on its own thread: the loop hands it a copy."""
  records = {}
  save = loop.Checkpointer.save

  def spy(self, step, state, data=None):
    records[step] = data
    return save(self, step, state, data)

  monkeypatch.setattr(loop.Checkpointer, 'save', spy)
  config = loop.LoopConfig(num_steps=8, log_every=4, checkpoint_every=6, tensorboard=False)
  loop.fit(ToyModel(), OPTIMIZER, batches, config, tmp_path)
  # Saved at 6 with steps 5 and 6 unlogged; steps 7 and 8 arrive before the step-8 log line.
  assert len(records[6]['log_window']) == 2
  assert records[8]['log_window'] == []


def test_non_finite_loss_stops_with_status_diverged(tmp_path):
  def poisoned(start):
    for i, batch in enumerate(batches(start), start=start):
      if i == 3:
        batch = dict(batch, x=np.full_like(batch['x'], np.inf))
      yield batch

  config = loop.LoopConfig(num_steps=20, log_every=5, checkpoint_every=2, tensorboard=False)
  result = loop.fit(ToyModel(), OPTIMIZER, poisoned, config, tmp_path)
  assert (result.status, result.step) == ('diverged', 4)
  assert sorted(int(s) for s in os.listdir(tmp_path / loop.CHECKPOINT_DIR)) == [2]
  assert metrics_log.read_metrics(tmp_path)[-1] == {
      'step': 4, 'status': 'diverged', 'loss': 'nan'}


@pytest.mark.parametrize('source', ['params', 'workdir'])
def test_finetuning_starts_from_given_params(tmp_path, straight, source):
  pretrained_dir, pretrained = straight
  init = jax.device_get(pretrained.state.params) if source == 'params' else pretrained_dir
  config = loop.LoopConfig(num_steps=1, log_every=1, tensorboard=False)
  adamw = optim.OptimizerConfig(name='adamw', schedule='constant', learning_rate=1e-6,
                                warmup_steps=0)  # another optimizer than pre-training's
  warm = loop.fit(ToyModel(dropout=0.3), adamw, batches, config, tmp_path, init_params=init)
  # The same seed, model and first batch from scratch: the straight run's first step.
  cold_loss = _train_losses(pretrained_dir)[0][1]
  assert warm.train_metrics['loss'] < 0.9 * cold_loss
  assert warm.train_metrics['learning_rate'] == pytest.approx(1e-6)
  assert warm.resumed_from is None and int(warm.state.step) == 1
  with pytest.raises(FileNotFoundError, match='no checkpoints'):
    loop.fit(ToyModel(), adamw, batches, config, tmp_path / 'x', init_params=tmp_path / 'none')


def test_running_out_of_data_is_an_error(tmp_path):
  config = loop.LoopConfig(num_steps=5, tensorboard=False)
  with pytest.raises(ValueError, match='ran out after 2 batches'):
    loop.fit(ToyModel(), OPTIMIZER, [make_batch(0), make_batch(1)], config, tmp_path)


def test_resume_drops_a_metrics_line_cut_by_the_kill(tmp_path, straight, caplog):
  """Killed while writing step 8's line (last checkpoint: 5), metrics.jsonl ends in a cut line
  (no newline, not JSON): the resume drops it with a warning and draws the same curve."""
  straight_dir, _ = straight

  def crashing(start):
    for i, batch in enumerate(batches(start), start=start):
      if i == 7:
        raise Crash()
      yield batch

  with pytest.raises(Crash):
    loop.fit(ToyModel(dropout=0.3), OPTIMIZER, crashing, RESUME_CONFIG, tmp_path)
  path = tmp_path / metrics_log.METRICS_FILE
  cut = b'{"step": 8, "train/loss": 1.2'
  with open(path, 'ab') as f:
    f.write(cut)
  with caplog.at_level('WARNING'):
    resumed = loop.fit(ToyModel(dropout=0.3), OPTIMIZER, batches, RESUME_CONFIG, tmp_path)
  assert resumed.resumed_from == 5 and resumed.status == 'ok'
  assert f'{path}: dropping a cut final line ({len(cut)} bytes' in caplog.text
  assert _train_losses(tmp_path) == _train_losses(straight_dir)
