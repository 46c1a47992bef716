r"""The embedded default: both domains, offline, on this package's own data (CPU-sized).

  python -m suite.run                       # this config, into ./shapebench_run
  python -m suite.run --quick               # its small variant (get_config('quick'))
  python -m suite.run --config.domains.text.recipe.pretrain.steps=400

Text: a T5 pre-trained with span corruption on the embedded corpus (embedded_pretrain_v1),
finetuned on the `embedded` mixture (checkpoints kept along the way) and scored per task at the
best and the last checkpoint; the canonical shapes are also finetuned from scratch (the "no
pretraining" baseline). Vision: a ViT trained on the embedded glyphs (embedded_glyphs_v1, 24
classes), probed few-shot on 12 held-out glyph classes (with the raw-pixel probe as the
baseline) and finetuned on them. Every shape also gets a train-step speed measurement.

Strategies deep_narrow, width_first and uniform scale a small base shape per domain to 0.5, 1
and 2 times its parameters; the canonical shapes they are compared with are the base grown
uniformly (as T5's and ViT's named sizes grow depth and width together), so in this config
they are the `uniform` strategy's shapes (run once, journaled for both); the `paper` config
compares with T5's named sizes instead. The step counts and sizes are small on purpose (the
whole run is sized for a 2-core CPU); raise them with --config.* overrides.
"""

from __future__ import annotations

import ml_collections

from suite import configs

TEXT_SHAPE = dict(num_encoder_layers=2, num_decoder_layers=2, d_model=64, d_ff=256, num_heads=2,
                  d_kv=32)
VISION_SHAPE = dict(image_size=32, patch_size=4, num_encoder_layers=2, d_model=64, d_ff=256,
                    num_heads=2, d_kv=32)
# The tasks scored: the `embedded` mixture's five but STS-B, whose Pearson correlation is
# undefined (NaN) when a model this small predicts one similarity for every pair, as they do at
# these step counts (it is still in the finetuning mixture).
TEXT_TASKS = ['embedded_mc_v1', 'embedded_rte_v1', 'embedded_squad_v1', 'embedded_sst_v1']
FEWSHOT_TASK = 'embedded_glyphs_fewshot_v1'
# The canonical family of these toy bases: the base grown uniformly (depth, width, FFN and heads
# together, as T5's and ViT's named sizes grow), i.e. the `uniform` strategy's shapes, which
# then run once for both.
CANONICAL = 'uniform'
LOOP = dict(log_every=50, tensorboard=True)
# The bench times the pretraining step's own program (same batch, lengths, optimizer), so the
# compilation cache serves the pretraining unit.
TEXT_BENCH = dict(stage='bench', role='cost', shapes='all', batch_size=32, steps=3, warmup=1,
                  repeats=1)
VISION_BENCH = dict(TEXT_BENCH, batch_size=64)
# The embedded tasks' inputs are at most 70 tokens and their targets at most 10 (measured on
# every split); span corruption of 64-token inputs makes 14-token targets.
PRETRAIN_SIZES = dict(input_length=64, target_length=14)
TASK_SIZES = dict(input_length=72, target_length=12)


def _text(quick: bool) -> dict:
  # 400 finetuning steps: at 120, every task but SQuAD stayed at chance or below (pretrained or
  # not); at 400 all four are learned (MC ~45, SQuAD ~70, SST ~70 on 500 validation examples).
  # (At 300 steps scratch still matched pretrained on average over the canonical shapes.)
  # Scored: 100 examples per task and checkpoint, the first 100 of the validation split; the
  # finetuning's own teacher-forced evaluation (not scored) reads 50 per task.
  pretrain_steps, finetune_steps, checkpoints = (20, 20, 1) if quick else (200, 400, 2)
  eval_examples, eval_batch = (32, 32) if quick else (100, 100)
  tasks = TEXT_TASKS[-1:] if quick else TEXT_TASKS
  finetune = dict(stage='finetune', task='embedded', steps=finetune_steps, batch_size=32,
                  eval_batch_size=50, max_eval_examples=50, workload=TASK_SIZES,
                  optimizer='adafactor', optimizer_overrides=dict(
                      schedule='constant', learning_rate=1e-2, warmup_steps=0),
                  checkpoints=checkpoints, options=dict(decode=False), loop=LOOP)
  evaluate = dict(stage='evaluate', tasks=tasks, eval_batch_size=eval_batch, workload=TASK_SIZES,
                  max_eval_examples=eval_examples, score='checkpoints',
                  options=dict(max_decode_len=TASK_SIZES['target_length']))
  return dict(
      base='tiny', base_overrides=TEXT_SHAPE, size_to_task='embedded_pretrain_v1',
      canonical=() if quick else CANONICAL,
      workload=PRETRAIN_SIZES,
      order=['bench', 'pretrain', 'finetune', 'evaluate', 'finetune_scratch',
             'evaluate_scratch'],
      recipe=dict(
          bench=TEXT_BENCH,
          pretrain=dict(stage='pretrain', task='embedded_pretrain_v1', steps=pretrain_steps,
                        batch_size=32, role='upstream', max_eval_examples=64, loop=LOOP,
                        headline=dict(metric='neg_log_perplexity', higher_is_better=True,
                                      label='validation negative log-perplexity of span '
                                            'corruption (teacher-forced), last step')),
          finetune=dict(init='pretrain', role='intermediate', **finetune),
          evaluate=dict(init='finetune', role='downstream', **evaluate, headline=dict(
              higher_is_better=True,
              label='validation score (the task\'s first metric), best of the finetuning '
                    'checkpoints')),
          finetune_scratch=dict(init=None, role='intermediate', shapes='canonical', **finetune),
          evaluate_scratch=dict(init='finetune_scratch', role='baseline', shapes='canonical',
                                baseline_of='evaluate', baseline_label='no pretraining',
                                **evaluate, headline=dict(
                                    higher_is_better=True,
                                    label='validation score, best of the finetuning '
                                          'checkpoints, finetuned from scratch')),
      ),
  )


def _vision(quick: bool) -> dict:
  upstream_steps, transfer_steps = (20, 10) if quick else (100, 20)
  eval_images = 300 if quick else 1200
  shots = (1, 5) if quick else (1, 5, 10, 25)
  k = 10 if 10 in shots else shots[-1]
  return dict(
      base='Ti/16', base_overrides=VISION_SHAPE, size_to_task='embedded_glyphs_v1',
      canonical=() if quick else CANONICAL,
      workload={},
      order=['bench', 'upstream', 'fewshot', 'transfer'],
      recipe=dict(
          bench=VISION_BENCH,
          upstream=dict(stage='upstream', task='embedded_glyphs_v1', steps=upstream_steps,
                        batch_size=64, eval_batch_size=300, max_eval_examples=eval_images,
                        optimizer='adamw', optimizer_overrides=dict(
                            schedule='cosine', learning_rate=3e-3, total_steps=upstream_steps,
                            warmup_steps=upstream_steps // 10, grad_clip_norm=1.0),
                        role='upstream',
                        loop=LOOP,
                        headline=dict(metric='accuracy', higher_is_better=True,
                                      label=f'top-1 on {eval_images:,} test images, last step')),
          fewshot=dict(stage='fewshot', task=FEWSHOT_TASK, init='upstream', role='downstream',
                       eval_batch_size=300, options=dict(shots=shots, pixel_baseline=True),
                       headline=dict(metric=f'fewshot/{FEWSHOT_TASK}/{k}shot',
                                     higher_is_better=True,
                                     label=f'{k}-shot linear probe top-1 on the test split',
                                     baseline_metric=f'fewshot_pixels/{FEWSHOT_TASK}/{k}shot',
                                     baseline_label='raw pixels')),
          transfer=dict(stage='finetune', task=FEWSHOT_TASK, init='upstream',
                        steps=transfer_steps, batch_size=64, eval_batch_size=300,
                        optimizer='sgd', optimizer_overrides=dict(
                            learning_rate=0.03, total_steps=transfer_steps,
                            warmup_steps=transfer_steps // 10),
                        role='downstream',
                        loop=LOOP,
                        headline=dict(metric='accuracy', higher_is_better=True,
                                      label='top-1 on the test split after finetuning, '
                                            'last step')),
      ),
  )


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The embedded default; `arg='quick'`: fewer steps and tasks (the --quick variant)."""
  if arg not in (None, '', 'quick'):
    raise ValueError(f'embedded config: unknown variant {arg!r}; valid: quick.')
  quick = arg == 'quick'
  config = ml_collections.ConfigDict()
  config.name = 'embedded' + ('_quick' if quick else '')
  config.seeds = (0,)
  # --quick: two strategies at one scale, no canonical shapes and no scratch baseline (16 units;
  # at (0.5, 2.0), 32 units, it took 4 min 31 s on 2 cores).
  config.strategies = ('deep_narrow', 'width_first') if quick else (
      'deep_narrow', 'width_first', 'uniform')
  config.scales = (2.0,) if quick else (0.5, 1.0, 2.0)
  config.budget_kind = 'params'
  config.model = configs.model(dtype='float32')
  # For --dry_run before any speed is measured: training FLOPs per second of the training units
  # of results/embedded's run (2-core CPU, domains in parallel), net of the fixed 10 s each.
  config.estimate_tflops_per_s = 0.04
  config.domains = dict(text=_text(quick), vision=_vision(quick))
  if quick:  # a smoke test, not a measurement: one timed step per bench
    for domain in config.domains.values():
      domain.recipe.bench.update(steps=1, warmup=0)
    del config.domains.text.recipe['finetune_scratch']
    del config.domains.text.recipe['evaluate_scratch']
    config.domains.text.order = ['bench', 'pretrain', 'finetune', 'evaluate']
  return config
