"""A tiny `suite.run` config for the tests: both domains, one strategy at one scale, a few
steps per stage. Variants: 'canonical' adds a canonical shape and a second scale (for the
plan); 'bad_task' names a vision task that does not exist; 'broken' is vision only with an
upstream learning rate that diverges, a few-shot step that starts from it and one without
params (an exception inside the stage)."""

import ml_collections

TEXT = dict(num_encoder_layers=1, num_decoder_layers=1, d_model=32, d_ff=64, num_heads=2,
            d_kv=16)
VISION = dict(image_size=16, patch_size=4, num_encoder_layers=1, d_model=32, d_ff=64,
              num_heads=2, d_kv=16)
LOOP = dict(log_every=2, tensorboard=False, async_checkpoints=False)
BENCH = dict(stage='bench', role='cost', batch_size=4, steps=1, warmup=1, repeats=1)


def get_config(arg=None):
  config = ml_collections.ConfigDict()
  config.name = f'test_{arg or "tiny"}'
  config.seeds = (0,)
  config.strategies = ('deep_narrow',)
  config.scales = (1.0, 2.0) if arg == 'canonical' else (1.0,)
  config.budget_kind = 'params'
  config.model = dict(dtype='float32')
  config.estimate_tflops_per_s = 0.02
  text = dict(
      base='tiny', base_overrides=TEXT, size_to_task='embedded_pretrain_v1',
      canonical=([dict(name='tiny', **{**TEXT, 'd_model': 48, 'd_ff': 96, 'num_heads': 3})]
                 if arg == 'canonical' else []),
      workload=dict(input_length=32, target_length=8),
      order=['bench', 'pretrain', 'finetune', 'evaluate'],
      recipe=dict(
          bench=BENCH,
          pretrain=dict(stage='pretrain', task='embedded_pretrain_v1', steps=6, batch_size=8,
                        role='upstream', workload=dict(target_length=8), max_eval_examples=16,
                        loop=LOOP, headline=dict(metric='neg_log_perplexity',
                                                 higher_is_better=True, label='nlp')),
          finetune=dict(stage='finetune', task='embedded_sst_v1', init='pretrain', steps=4,
                        batch_size=8, eval_batch_size=16, max_eval_examples=16, checkpoints=2,
                        role='intermediate', loop=LOOP),
          evaluate=dict(stage='evaluate', tasks=['embedded_sst_v1'], init='finetune',
                        eval_batch_size=16, max_eval_examples=16, score='checkpoints',
                        role='downstream', headline=dict(higher_is_better=True, label='acc')),
      ))
  transfer_task = 'embedded_glyphs_fewshot_v2' if arg == 'bad_task' else (
      'embedded_glyphs_fewshot_v1')
  vision = dict(
      base='Ti/16', base_overrides=VISION, size_to_task='embedded_glyphs_v1',
      canonical=([dict(name='Ti/16', **{**VISION, 'd_model': 48, 'd_ff': 96, 'num_heads': 3})]
                 if arg == 'canonical' else []),
      workload={},
      order=['bench', 'upstream', 'fewshot', 'transfer'],
      recipe=dict(
          bench=BENCH,
          upstream=dict(stage='upstream', task='embedded_glyphs_v1', steps=6, batch_size=8,
                        eval_batch_size=64, max_eval_examples=64, role='upstream', loop=LOOP,
                        headline=dict(metric='accuracy', higher_is_better=True, label='top1')),
          fewshot=dict(stage='fewshot', task='embedded_glyphs_fewshot_v1', init='upstream',
                       eval_batch_size=64, role='downstream',
                       options=dict(shots=[1], pixel_baseline=True),
                       headline=dict(metric='fewshot/embedded_glyphs_fewshot_v1/1shot',
                                     label='1-shot')),
          transfer=dict(stage='finetune', task=transfer_task, init='upstream', steps=4,
                        batch_size=8, eval_batch_size=64, max_eval_examples=64,
                        role='downstream', loop=LOOP,
                        headline=dict(metric='accuracy', label='top1')),
      ))
  config.domains = dict(text=text, vision=vision)
  if arg == 'broken':
    recipe = vision['recipe']
    vision['order'] = ['upstream', 'fewshot', 'probe_without_params']
    vision['recipe'] = dict(
        upstream={**recipe['upstream'], 'optimizer': 'adamw',
                  'optimizer_overrides': dict(learning_rate=1e30)},
        fewshot=recipe['fewshot'],
        probe_without_params={**recipe['fewshot'], 'init': None})
    config.domains = dict(vision=vision)
  return config
