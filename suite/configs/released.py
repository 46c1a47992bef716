r"""The paper's released checkpoints, finetuned and scored downstream without pre-training:
local copies of `google/t5-efficient-*` Hugging Face directories or of the paper's Mesh
TensorFlow model folders (`bi_v1_*`, at any released step), each finetuned on the GLUE +
SuperGLUE + SQuAD mixture and scored on the paper's 17 tasks at its best checkpoint, so that
shapes compare downstream on one accelerator, and, with intermediate steps, over training time.

  python -m suite.run --config=released --dry_run \
      --config.checkpoints=/ckpt/t5-efficient-small,/ckpt/t5-efficient-small-el16 \
      --config.vocab=/ckpt/sentencepiece.model
  python -m suite.run --config=released --workdir=/data/released \
      --config.checkpoints=/ckpt/bi_v1_small_el16@65536,/ckpt/bi_v1_small_el16@524288 \
      --config.vocab=/ckpt/sentencepiece.model --config.tfds_data_dir=/data/tfds

Fields (top level; each feeds the text domain's recipe):
- `checkpoints`: comma-separated folders, `PATH` or `PATH@STEP` (a Mesh TensorFlow folder's
  `model.ckpt-STEP`; default its latest; a Hugging Face directory has one step). Each folder's
  shape comes from its own config (config.json, or operative_config.gin), never from here. A
  shape that is a bare canonical size (`small`, `base`, ...) is strategy `canonical`, others
  `released`; an explicit step adds `@STEP` to the strategy, so each step is a row of the
  report. Scale = parameters over the first canonical checkpoint's (else the first's).
- `vocab`: T5's SentencePiece model (gs://t5-data/vocabs/cc_all.32000/sentencepiece.model,
  copied locally): the released checkpoints' 32128 ids; the plan refuses a task vocabulary
  that is not the checkpoint's (the embedded one, when `vocab` is unset).
- `data_dir` (the original GLUE/SuperGLUE/SQuAD files) or `tfds_data_dir` (prepared TFDS data;
  unset: TFDS's default): see tasks/sources.py. Nothing is downloaded by the run.
- `task` (the finetuning mixture), `tasks` (the evaluated tasks, a tuple), `steps`,
  `batch_size`, `eval_batch_size`, `max_eval_examples` (None: the whole validation split).

Recipe per checkpoint: a train-step speed measurement (bench), finetuning from the checkpoint
(`init='checkpoint'`, Adafactor at a constant 1e-3, 8 evenly spaced checkpoints kept), then
each task scored at every kept checkpoint (best and last reported, as T5 reports the best).
`get_config('quick')` (--quick): 2^8 finetuning steps, 2 checkpoints, 256 examples per task.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from suite import configs
from suite.configs import paper
from tasks.benchmark import specs

MIXTURE = 'glue_super_glue_squad'


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  if arg not in (None, '', 'quick'):
    raise ValueError(f'released config: unknown variant {arg!r}; valid: quick.')
  quick = arg == 'quick'
  config = ml_collections.ConfigDict()
  config.name = 'released' + ('_quick' if quick else '')
  config.checkpoints = ''
  config.vocab = config_dict.placeholder(str)
  config.data_dir = config_dict.placeholder(str)
  config.tfds_data_dir = config_dict.placeholder(str)
  config.task = MIXTURE
  config.tasks = tuple(specs.EVAL_TASKS)
  config.steps = 2 ** 8 if quick else paper.FINETUNE_STEPS
  config.batch_size = 128
  config.eval_batch_size = 128
  config.max_eval_examples = 256 if quick else config_dict.placeholder(int)
  config.seeds = (0,)
  config.strategies = ()  # the shapes are the checkpoints'
  config.scales = (1.0,)
  config.budget_kind = 'params'
  config.model = configs.model(dtype='bfloat16')
  config.estimate_tflops_per_s = 400.0
  bench = (dict(batch_size=8, steps=3, warmup=1, repeats=1) if quick else
           dict(batch_size=128, steps=20, warmup=3, repeats=3))
  text = dict(
      init_from=config.get_ref('checkpoints'), size_to_task=config.get_ref('task'),
      workload=dict(input_length=512, target_length=114),
      order=['bench', 'finetune', 'evaluate'],
      recipe=dict(
          bench=dict(stage='bench', role='cost', **bench),
          finetune=dict(stage='finetune', task=config.get_ref('task'), init='checkpoint',
                        steps=config.get_ref('steps'), batch_size=config.get_ref('batch_size'),
                        eval_batch_size=config.get_ref('eval_batch_size'),
                        max_eval_examples=config.get_ref('max_eval_examples'),
                        checkpoints=2 if quick else 8, role='intermediate',
                        options=dict(decode=False),
                        loop=dict(log_every=10 if quick else 1000)),
          evaluate=dict(stage='evaluate', tasks=config.get_ref('tasks'), init='finetune',
                        eval_batch_size=config.get_ref('eval_batch_size'),
                        max_eval_examples=config.get_ref('max_eval_examples'),
                        score='checkpoints', role='downstream',
                        headline=dict(higher_is_better=True,
                                      label='validation score (the task\'s first metric), '
                                            'best finetuning checkpoint')),
      ))
  config.domains = dict(text=text)
  return config
