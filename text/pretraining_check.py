r"""Does pretraining help? Finetune the same T5 from pretrained and from random weights.

  python -m text.pretraining_check --workdir=/tmp/ptcheck

The embedded default's own check, offline, on a CPU (about 25 minutes on 2 cores): a 2+2-layer
T5 (d_model 128, d_ff 512, 4 heads of 32, the embedded vocabulary) is pretrained with span
corruption on the embedded corpus (2,000 steps, batch 32, 128 input tokens), then finetuned on
each task for 600 steps (batch 32, Adafactor at a constant 3e-3) twice: from the pretrained
params and from scratch. Prints one JSON object: the majority baselines, the pretraining
record, and each task's decoded validation metrics for both starts. Reruns in the same workdir
reuse finished runs. Measured on the project's 2-core CPU (22 minutes):

  task              majority   scratch   pretrained   (validation accuracy, 500 examples)
  embedded_sst_v1   50.8       63.6      97.4
  embedded_rte_v1   51.0       57.6      55.0
"""

from __future__ import annotations

import collections
import json

from absl import app, flags

from suite import host_memory, optim, shapes
from tasks import metrics, registry
from tasks.embedded import examples as generated
from tasks.embedded import tasks as embedded
from text import train

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Where the runs and their checkpoints go.', required=True)
flags.DEFINE_list('tasks', ['embedded_sst_v1', 'embedded_rte_v1'], 'Embedded downstream tasks.')
flags.DEFINE_integer('pretrain_steps', 2000, 'Span-corruption pretraining steps.')
flags.DEFINE_integer('finetune_steps', 600, 'Finetuning steps per task and start.')
flags.DEFINE_integer('batch_size', 32, 'Examples per step, both stages.')
flags.DEFINE_float('finetune_learning_rate', 3e-3, 'Constant Adafactor rate of finetuning.')
flags.DEFINE_integer('max_eval_examples', None, 'Validation examples scored (None: all).')


def small_shape() -> shapes.Shape:
  """The 2+2-layer, d_model-128 T5 of the check, sized to the embedded vocabulary."""
  return train.match_vocabulary(shapes.parse('tiny').replace(
      num_encoder_layers=2, num_decoder_layers=2, d_model=128, d_ff=512, num_heads=4, d_kv=32))


def majority_accuracy(task: str) -> float:
  """Accuracy, in percent, of always answering the training split's most common answer."""
  classification = [n for n, spec in embedded.DOWNSTREAM.items() if metrics.accuracy in spec[3]]
  if task not in classification:
    raise ValueError(f'{task!r} is not an embedded classification task; choose from '
                     f'{", ".join(classification)}.')

  def answer(ex):
    return ex['choices'][ex['label']] if 'choices' in ex else ex['label']

  key = embedded.DOWNSTREAM[task][0]
  top = collections.Counter(map(answer, generated.examples(key, 'train'))).most_common(1)[0][0]
  validation = [answer(ex) for ex in generated.examples(key, 'validation')]
  return 100.0 * sum(a == top for a in validation) / len(validation)


def run(workdir: str, tasks: list[str], pretrain_steps: int, finetune_steps: int,
        batch_size: int, learning_rate: float, max_eval_examples: int | None) -> dict:
  shape = small_shape()
  common = dict(log_every=100, checkpoint_every=1000, tensorboard=False)
  pre = train.pretrain(shape, steps=pretrain_steps, batch_size=batch_size, input_length=128,
                       workdir=f'{workdir}/pretrain', max_eval_examples=max_eval_examples,
                       **common)
  result = {'shape': shape.fields(), 'pretrain': pre.record(), 'tasks': {}}
  for task in tasks:
    runs = {'majority_accuracy': majority_accuracy(task)}
    for start, init in (('pretrained', pre.params), ('scratch', None)):
      finetuned = train.finetune(
          shape, task, steps=finetune_steps, batch_size=batch_size, input_length=96,
          target_length=16, workdir=f'{workdir}/{task}-{start}', init_params=init,
          optimizer=optim.t5_finetune(learning_rate), max_eval_examples=max_eval_examples,
          **common)
      runs[start] = finetuned.metrics
    result['tasks'][task] = runs
  return result


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]}')
  host_memory.keep_freed_memory()  # CPU steps reuse freed buffers instead of page-faulting
  for task in FLAGS.tasks:
    registry.get_text(task)
    majority_accuracy(task)  # a bad name fails here, before any training
  print(json.dumps(run(FLAGS.workdir, FLAGS.tasks, FLAGS.pretrain_steps, FLAGS.finetune_steps,
                       FLAGS.batch_size, FLAGS.finetune_learning_rate,
                       FLAGS.max_eval_examples), indent=1))


if __name__ == '__main__':
  app.run(main)
