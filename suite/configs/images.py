r"""Vision on TFDS image tasks, for accelerators: ViT upstream training on ImageNet-1k
(imagenet2012), few-shot linear probes on CIFAR-100, Oxford-IIIT Pets, Oxford Flowers-102 and
DTD (big_vision's protocol, with the raw-pixel probe beside them), and transfer by finetuning
on CIFAR-100. Strategies deep_narrow, width_first and uniform from S/16 at 0.5x, 1x and 2x its
parameters, against the canonical B/16, S/16 and Ti/16.

  python -m suite.run --config=images --dry_run
  python -m suite.run --config=images --workdir=/data/images     # TFDS data prepared locally

The TFDS datasets must be prepared beforehand (tfds build; ImageNet needs its manual
download); nothing is downloaded by the run. `get_config('quick')`: a few hundred steps.
"""

from __future__ import annotations

import ml_collections

from suite import configs

FEWSHOT_TASKS = 'cifar100,oxford_iiit_pet,oxford_flowers102,dtd'


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  if arg not in (None, '', 'quick'):
    raise ValueError(f'images config: unknown variant {arg!r}; valid: quick.')
  quick = arg == 'quick'
  upstream_steps, transfer_steps = (300, 100) if quick else (90_000, 10_000)
  config = ml_collections.ConfigDict()
  config.name = 'images' + ('_quick' if quick else '')
  config.seeds = (0,)
  config.strategies = ('deep_narrow', 'width_first', 'uniform')
  config.scales = (0.5, 1.0, 2.0)
  config.budget_kind = 'params'
  config.model = configs.model(dtype='bfloat16')
  config.estimate_tflops_per_s = 400.0
  vision = dict(
      base='S/16', base_overrides={}, size_to_task='imagenet2012',
      canonical=[dict(name='Ti/16'), dict(name='S/16'), dict(name='B/16')],
      workload={},
      order=['bench', 'upstream', 'fewshot', 'transfer'],
      recipe=dict(
          bench=dict(stage='bench', role='cost', batch_size=256, steps=20, warmup=3, repeats=3),
          upstream=dict(stage='upstream', task='imagenet2012', steps=upstream_steps,
                        batch_size=4096, optimizer='big_vision_adafactor',
                        optimizer_overrides=dict(total_steps=upstream_steps,
                                                 warmup_steps=min(10_000,
                                                                  upstream_steps // 10)),
                        role='upstream', options=dict(label_smoothing=0.0, mixup_alpha=0.2),
                        loop=dict(log_every=500, eval_every=10_000, checkpoint_every=5_000),
                        headline=dict(metric='accuracy', higher_is_better=True,
                                      label='ImageNet validation top-1, last step')),
          fewshot=dict(stage='fewshot', task=FEWSHOT_TASKS, init='upstream', role='downstream',
                       eval_batch_size=512, options=dict(shots=(1, 5, 10, 25),
                                                         pixel_baseline=True),
                       headline=dict(metric='fewshot/cifar100/10shot', higher_is_better=True,
                                     label='CIFAR-100 10-shot linear probe top-1',
                                     baseline_metric='fewshot_pixels/cifar100/10shot',
                                     baseline_label='raw pixels')),
          transfer=dict(stage='finetune', task='cifar100', init='upstream',
                        steps=transfer_steps, batch_size=512, optimizer='sgd',
                        optimizer_overrides=dict(total_steps=transfer_steps,
                                                 warmup_steps=max(1, transfer_steps // 20)),
                        role='downstream', loop=dict(log_every=200),
                        headline=dict(metric='accuracy', higher_is_better=True,
                                      label='CIFAR-100 test top-1 after finetuning')),
      ))
  config.domains = dict(vision=vision)
  return config
