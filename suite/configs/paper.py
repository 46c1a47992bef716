r"""The paper's protocol ("Scale Efficiently", Tay et al. 2022) on the real tasks, for
accelerators: span-corruption pre-training on C4 for 2^19 steps at batch 128 and lengths
512/114, then finetuning on the GLUE + SuperGLUE + SQuAD mixture and scoring each task at its
best checkpoint. Shapes: the canonical T5-Efficient sizes and DeepNarrow at the same budgets
(the comparison of its Table 4), from the base size.

  python -m suite.run --config=paper --dry_run
  python -m suite.run --config=paper \
      --config.domains.text.recipe.pretrain.task=MY_C4_TASK --workdir=/data/paper

This version registers no C4 task: set the pretrain step's task to a seqio span-corruption
task on C4 that you register (the plan names the closest registered tasks until then). Data for the
finetuning tasks come from TFDS (see the README). `get_config('quick')` runs the same plan at
2^10 pre-training and 2^8 finetuning steps, as a smoke test on an accelerator.
"""

from __future__ import annotations

import ml_collections

from suite import configs
from tasks.benchmark import specs

PRETRAIN_STEPS = 2 ** 19
FINETUNE_STEPS = 2 ** 18
CANONICAL = ('small', 'base', 'large', 'xl')
# The canonical sizes' parameters relative to base (T5-Efficient, vocab 32128): DeepNarrow is
# solved at these budgets, so each canonical size has a DeepNarrow shape of the same cost.
SCALES = (0.27, 1.0, 3.3, 12.7)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  if arg not in (None, '', 'quick'):
    raise ValueError(f'paper config: unknown variant {arg!r}; valid: quick.')
  quick = arg == 'quick'
  pretrain_steps, finetune_steps = (2 ** 10, 2 ** 8) if quick else (PRETRAIN_STEPS,
                                                                      FINETUNE_STEPS)
  config = ml_collections.ConfigDict()
  config.name = 'paper' + ('_quick' if quick else '')
  config.seeds = (0,)
  config.strategies = ('deep_narrow',)
  config.scales = SCALES
  config.budget_kind = 'params'
  config.model = configs.model(dtype='bfloat16')
  config.estimate_tflops_per_s = 400.0
  tasks = tuple(specs.EVAL_TASKS)
  finetune = dict(stage='finetune', task='glue_super_glue_squad', steps=finetune_steps,
                  batch_size=128, checkpoints=8, role='intermediate',
                  loop=dict(log_every=1000))
  text = dict(
      base='base', base_overrides={}, size_to_task='glue_super_glue_squad',
      canonical=[dict(name=n) for n in CANONICAL],
      workload=dict(input_length=512, target_length=114),
      order=['bench', 'pretrain', 'finetune', 'evaluate'],
      recipe=dict(
          bench=dict(stage='bench', role='cost', batch_size=128, steps=20, warmup=3, repeats=3),
          pretrain=dict(stage='pretrain', task='c4_v220_span_corruption',
                        steps=pretrain_steps, batch_size=128, role='upstream',
                        loop=dict(log_every=1000, eval_every=50_000, checkpoint_every=50_000),
                        headline=dict(metric='neg_log_perplexity', higher_is_better=True,
                                      label='C4 validation negative log-perplexity')),
          finetune=dict(init='pretrain', **finetune),
          evaluate=dict(stage='evaluate', tasks=tasks,
                        init='finetune', batch_size=128, score='checkpoints',
                        role='downstream',
                        headline=dict(higher_is_better=True,
                                      label='validation score, best finetuning checkpoint')),
      ))
  config.domains = dict(text=text)
  return config
