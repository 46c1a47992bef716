"""Vision training on the shared core (vision.train, vision.domain's stages): a tiny ViT on the
embedded digits, trained once per module and shared by the tests."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from suite import domain as contract
from suite import metrics_log, shapes, trainer
from tasks import images
from vision import train
from vision.domain import DOMAIN

UPSTREAM, FEWSHOT = images.DIGITS_UPSTREAM, images.DIGITS_FEWSHOT
SHAPE = train.match_task(shapes.parse('Ti/16').replace(
    image_size=16, patch_size=4, num_encoder_layers=2, d_model=48, d_ff=96, num_heads=2,
    d_kv=16), UPSTREAM)


@pytest.fixture(scope='module')
def upstream(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('upstream')
  result = train.upstream(SHAPE, UPSTREAM, steps=60, batch_size=32, workdir=workdir,
                          log_every=10, eval_batch_size=64, tensorboard=False,
                          async_checkpoints=False)
  return result, workdir


def test_upstream_training_reduces_the_loss(upstream):
  result, workdir = upstream
  assert result.status == 'ok' and result.steps == 60
  losses = [r['train/loss'] for r in metrics_log.read_metrics(workdir, 'train')]
  assert len(losses) == 6 and losses[-1] < 0.8 * losses[0], losses
  assert result.metrics['accuracy'] > 0.4  # 5 classes: chance is 0.2


def test_evaluation_counts_every_example_once_with_a_ragged_last_batch(upstream):
  result, _ = upstream
  pixels, labels = [np.concatenate(x) for x in zip(*(
      (b['image'], b['label']) for b in images.eval_dataset(images.get(UPSTREAM), 1000, 16)
      .as_numpy_iterator()), strict=True)]
  assert len(labels) % 64  # the test split leaves a ragged last batch of 64
  model = train._model(SHAPE, jnp.float32, 0.0, 0.0)
  logits = jax.jit(model.logits)(result.params, pixels)
  correct = int(np.sum(np.argmax(np.asarray(logits), -1) == labels))
  evaluated = train.evaluate(SHAPE, result.params, UPSTREAM, batch_size=64)
  assert evaluated.metrics['num_examples'] == len(labels)
  assert evaluated.metrics['accuracy'] * len(labels) == pytest.approx(correct, abs=1e-9)
  assert result.metrics['num_examples'] == len(labels)  # the loop's evaluator, likewise


def test_fewshot_stage_returns_probes_and_pixel_baseline(upstream):
  result, _ = upstream
  config = contract.StageConfig(task=FEWSHOT, init_params=result.params, eval_batch_size=64,
                                options={'shots': (1, 5), 'pixel_baseline': True})
  out = DOMAIN.stages['fewshot'](SHAPE, contract.ModelOptions(), config, '/unused')
  keys = {f'{prefix}/{FEWSHOT}/{k}shot' for prefix in ('fewshot', 'fewshot_pixels')
          for k in (1, 5)}
  assert set(out.metrics) == keys
  assert all(0.0 <= v <= 1.0 for v in out.metrics.values())
  assert out.stage == 'fewshot' and out.status == contract.OK


def test_transfer_replaces_the_head_and_keeps_the_body(upstream):
  result, _ = upstream
  target = train._model(SHAPE.replace(num_classes=7), jnp.float32, 0.0, 0.0)
  params = train.transfer_params(result.params, target)
  assert params['head']['kernel'].shape == (SHAPE.d_model, 7)
  assert not np.any(params['head']['kernel'])
  body = {k: v for k, v in jax.device_get(result.params).items() if k != 'head'}
  jax.tree_util.tree_map(np.testing.assert_array_equal, body,
                         {k: v for k, v in params.items() if k != 'head'})
  with pytest.raises(ValueError, match='target model wants'):
    train.transfer_params(result.params,
                          train._model(SHAPE.replace(d_ff=64), jnp.float32, 0.0, 0.0))


def test_finetune_stage_trains_a_new_head_from_the_upstream_workdir(upstream, tmp_path):
  _, upstream_dir = upstream
  config = contract.StageConfig(task=FEWSHOT, steps=4, batch_size=16, init_params=upstream_dir,
                                eval_batch_size=64, max_eval_examples=100,
                                loop={'log_every': 2, 'tensorboard': False})
  out = DOMAIN.stages['finetune'](SHAPE, contract.ModelOptions(), config, tmp_path)
  assert out.status == contract.OK and out.steps == 4 and out.metrics['num_examples'] == 100
  assert out.params['head']['kernel'].shape == (SHAPE.d_model, images.get(FEWSHOT).num_classes)
  record = contract.journal_record(out, domain='vision', shape=SHAPE,
                                   workload=DOMAIN.workload(SHAPE), seed=0)
  for field in ('run_id', 'domain', 'shape_name', 'params', 'train_flops_per_example',
                'stage', 'task', 'metrics', 'steps', 'seed', 'wall_s', 'status', 'versions'):
    assert field in record, field
  assert record['stage'] == 'finetune' and 'train/loss' in record['metrics']


def test_mixup_loss_mixes_labels_in_the_drawn_ratio():
  model = train._model(SHAPE, jnp.float32, 0.0, 0.0)
  mixup = train.Mixup(model, alpha=0.4)
  params = trainer.unbox(model.init(jax.random.PRNGKey(0)))
  batch = {'image': np.zeros((4, 16, 16, 3), np.float32), 'label': np.arange(4, dtype=np.int32)}
  # A zero head gives uniform logits: every label's loss is log(5) whatever the mixing.
  loss, metrics = mixup.loss(params, batch, jax.random.PRNGKey(1))
  assert float(loss) == pytest.approx(np.log(5), rel=1e-5)
  with pytest.raises(ValueError, match='alpha'):
    train.Mixup(model, alpha=0.0)
