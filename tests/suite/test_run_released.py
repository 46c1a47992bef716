"""`suite.run --config=released`: released checkpoints finetuned and scored without pre-training.

A tiny random transformers T5 saved with `save_pretrained`, its vocabulary the embedded
SentencePiece model's (1079 ids, padded to 1152 as T5 checkpoints pad 32100 to 32128), given
as `--config.vocab`: the plan takes each shape from the checkpoint, one end-to-end run
finetunes from its weights and scores the task; Mesh TensorFlow folders (written as
tests/text/test_mesh_tf.py writes them) plan one row per step; bad folders and a vocabulary
that is not the checkpoint's are one-line errors.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

from suite import costs, flagcheck, journal, run, units  # noqa: E402
from suite.configs import released  # noqa: E402
from suite.domain import CheckpointRef  # noqa: E402
from tasks import sources, vocab  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TASK = 'embedded_sst_v1'
TINY = dict(d_model=32, d_ff=64, d_kv=16, num_heads=2, num_layers=2, num_decoder_layers=1,
            dropout_rate=0.0)
OVERRIDES = dict(task=TASK, tasks=(TASK,), steps=4, batch_size=8, eval_batch_size=16,
                 max_eval_examples=16)


def _save_hf(path, vocab_size, seed=0):
  torch.manual_seed(seed)
  model = transformers.T5ForConditionalGeneration(
      transformers.T5Config(vocab_size=vocab_size, **TINY))
  model.save_pretrained(str(path))
  return str(path)


@pytest.fixture(scope='module')
def cache(tmp_path_factory):
  return tmp_path_factory.mktemp('cache')


@pytest.fixture(scope='module')
def spm_model(cache):
  """The embedded SentencePiece model, as a file to give as `vocab`."""
  previous = os.environ.get(vocab.CACHE_ENV)
  os.environ[vocab.CACHE_ENV] = str(cache)
  try:
    return str(vocab.train_embedded_model())
  finally:
    if previous is None:
      del os.environ[vocab.CACHE_ENV]
    else:
      os.environ[vocab.CACHE_ENV] = previous


@pytest.fixture(scope='module')
def hf_dir(tmp_path_factory):
  """A google/t5-efficient-style HF directory whose vocabulary is the embedded one, padded."""
  return _save_hf(tmp_path_factory.mktemp('hf') / 't5-efficient-test', 1152)


@pytest.fixture(autouse=True)
def default_data():
  yield
  vocab.configure(None)
  sources.configure()


def _config(checkpoints, vocab_path=None, **changes):
  config = released.get_config('quick')
  config.checkpoints = checkpoints
  config.vocab = vocab_path
  for name, value in {**OVERRIDES, **changes}.items():
    setattr(config, name, value)
  config.domains.text.workload = dict(input_length=32, target_length=8)
  config.model.dtype = 'float32'
  return config


def _plan(config):
  run.configure_data(config)
  return units.build(config)


def test_dry_run_shows_the_checkpoints_shape(hf_dir, spm_model, capsys):
  config = _config(hf_dir, spm_model)
  plan = _plan(config)
  run.dry_run(plan, config, [])
  items = json.loads(capsys.readouterr().out)['units']
  assert [u['stage'] for u in items] == ['bench', 'finetune', 'evaluate']
  model = transformers.T5ForConditionalGeneration.from_pretrained(hf_dir)
  params = sum(p.numel() for p in model.parameters())  # the tied head is counted once
  shape = plan[0].shape
  assert (shape.num_encoder_layers, shape.num_decoder_layers, shape.d_model, shape.d_ff,
          shape.num_heads, shape.d_kv, shape.vocab_size) == (2, 1, 32, 64, 2, 16, 1152)
  assert all(u['params'] == params == costs.params(shape) for u in items)
  finetune = items[1]
  assert finetune['checkpoint'] == hf_dir and finetune['init'] is None
  assert finetune['strategy'] == 'released' and finetune['scale'] == 1.0
  assert items[2]['init'] == finetune['unit'] and items[2]['checkpoint'] is None
  assert plan[1].config['init_checkpoint'] == hf_dir  # the checkpoint enters the run_id


def test_mesh_tf_steps_are_rows_of_their_own(tmp_path, spm_model):
  pytest.importorskip('tensorflow')
  from tests.text import test_mesh_tf as mtf
  from text import mesh_tf
  from text.domain import DOMAIN
  folder = tmp_path / 'bi_v1_tiny_test'
  folder.mkdir()
  (folder / mesh_tf.OPERATIVE_CONFIG).write_text(mtf._operative_config(mtf.V10))
  for step, seed in mtf.STEPS.items():  # the gin binds no vocabulary: 1152 embedding rows
    torch.manual_seed(seed)
    model = transformers.T5ForConditionalGeneration(
        transformers.T5Config(**{**mtf.CONFIG, 'vocab_size': 1152}))
    tensors = mtf._mesh_tf_tensors(model, legacy_norms=True, tied=True)
    mtf._write_checkpoint(str(folder), step, tensors)
  shape = DOMAIN.checkpoint_shape(str(folder), 100)
  assert shape == mesh_tf.from_mesh_tf(str(folder), 100)[0].shape and shape.vocab_size == 1152
  config = _config(f'{folder}@100,{folder}@200', spm_model)
  plan = _plan(config)
  finetunes = [u for u in plan if u.stage == 'finetune']
  assert [u.strategy for u in finetunes] == ['released@100', 'released@200']
  assert [u.checkpoint for u in finetunes] == [CheckpointRef(str(folder), 100),
                                               CheckpointRef(str(folder), 200)]
  assert finetunes[0].run_id != finetunes[1].run_id and not finetunes[1].same_as
  bench = [u for u in plan if u.stage == 'bench']
  assert bench[1].same_as == bench[0].key  # one shape, measured once
  with pytest.raises(units.PlanError, match=r'no checkpoint at step 300; steps present: '
                                            r'100, 200'):
    _plan(_config(f'{folder}@300', spm_model))


def test_bad_checkpoint_folders_and_vocabularies(tmp_path, hf_dir, spm_model):
  empty = tmp_path / 'not_a_checkpoint'
  empty.mkdir()
  with pytest.raises(units.PlanError) as error:
    _plan(_config(str(empty), spm_model))
  message = str(error.value)
  assert str(empty) in message and 'config.json' in message and 'operative_config.gin' in message
  assert '\n' not in message
  with pytest.raises(units.PlanError, match='not a directory'):
    _plan(_config(str(tmp_path / 'absent'), spm_model))
  with pytest.raises(units.PlanError, match='holds one step'):
    _plan(_config(f'{hf_dir}@100', spm_model))
  with pytest.raises(units.PlanError, match='init_from is empty'):
    _plan(_config('', spm_model))
  with pytest.raises(flagcheck.FlagError, match='missing.model'):
    _plan(_config(hf_dir, str(tmp_path / 'missing.model')))
  # A T5-sized vocabulary (32128 ids) with the embedded vocabulary: refused, naming both.
  big = _save_hf(tmp_path / 't5-efficient-big-vocab', 32128)
  with pytest.raises(units.PlanError, match=r'32128 token ids .* embedded vocabulary .* 1079'):
    _plan(_config(big))


def test_finetunes_from_the_checkpoint_and_scores_the_task(hf_dir, spm_model, cache, tmp_path):
  workdir = tmp_path / 'w'
  args = [f'--config.{k}={v}' for k, v in OVERRIDES.items() if k != 'tasks']
  command = [sys.executable, '-m', 'suite.run', '--config=released', '--quick',
             f'--workdir={workdir}', f'--config.checkpoints={hf_dir}',
             f'--config.vocab={spm_model}', f"--config.tasks=('{TASK}',)", *args,
             '--config.domains.text.workload.input_length=32',
             '--config.domains.text.workload.target_length=8', '--config.model.dtype=float32']
  env = {**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3', 'SHAPEBENCH_CACHE': str(cache),
         'JAX_PLATFORMS': 'cpu'}
  done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  records = {r['step']: r for r in journal.read(workdir)}
  assert set(records) == {'bench', 'finetune', 'evaluate'}
  assert all(r['status'] == 'ok' and r['strategy'] == 'released' for r in records.values())
  evaluate = records['evaluate']
  assert evaluate['checkpoint_steps'] == [2, 4] and 'last/accuracy' in evaluate['metrics']
  assert 0.0 <= evaluate['metrics']['accuracy'] <= 1.0
  assert evaluate['headline']['metric'] == 'accuracy'
  assert records['finetune']['config']['init_checkpoint'] == hf_dir
  assert 'report.md' in {os.path.basename(p) for p in json.loads(done.stdout)['report'].values()}
  # The finetuned weights are the checkpoint's, moved a little (not a fresh initialisation).
  import jax

  from suite import loop
  from suite.checkpoint import Checkpointer
  from text import t5
  _, start = t5.from_hf(hf_dir)
  unit_dir = workdir / 'checkpoints' / records['finetune']['run_id'] / loop.CHECKPOINT_DIR
  with Checkpointer(unit_dir) as checkpointer:
    tuned = checkpointer.restore_params(start, step=4)
  before, after = (np.asarray(jax.device_get(p['token_embedder'])).ravel()
                   for p in (start, tuned))
  assert not np.array_equal(before, after)
  assert np.corrcoef(before, after)[0, 1] > 0.99
