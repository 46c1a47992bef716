r"""Does pretraining help? Finetune the same T5 from pretrained and from random weights.

  python -m text.pretraining_check --workdir=/tmp/ptcheck [--seed=0]

The embedded default's own check, offline, on a CPU: a 2+2-layer T5 (d_model 128, d_ff 512,
4 heads of 32, the embedded vocabulary) is pretrained with span corruption on the embedded
corpus (2,000 steps, batch 32, 128 input tokens), then finetuned on each task for 600 steps
(batch 32, Adafactor at a constant 3e-3) twice: from the pretrained params and from scratch.
Prints one JSON object: the shape, the pretraining record, and for each task the majority
baseline and the decoded validation metrics of both starts. Reruns in the same workdir reuse
finished runs (a finished run is restored and evaluated again).

The run is deterministic for a fixed `--seed` (initialisation, data order and dropout of every
stage): two runs on the same machine and software give the same losses and predictions, bit
for bit. A change to the code's numerics (an op order, an optimizer detail) acts like a new
seed, so compare starts within one run, never across code versions. The figures of the current
code are in results/pretraining_check.json (see results/README.md for the command).
"""

from __future__ import annotations

import collections
import json
import math
from collections.abc import Sequence

from absl import flags

from suite import flagcheck, host_memory, optim, shapes
from tasks import metrics
from tasks.embedded import examples as generated
from tasks.embedded import tasks as embedded
from text import train

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Where the runs and their checkpoints go.', required=True)
flags.DEFINE_list('tasks', ['embedded_sst_v1', 'embedded_rte_v1'], 'Embedded downstream tasks.')
flags.DEFINE_integer('pretrain_steps', 2000, 'Span-corruption pretraining steps.',
                     lower_bound=1)
flags.DEFINE_integer('finetune_steps', 600, 'Finetuning steps per task and start.',
                     lower_bound=1)
flags.DEFINE_integer('batch_size', 32, 'Examples per step, both stages; a multiple of the '
                     'devices.', lower_bound=1)
flags.DEFINE_float('finetune_learning_rate', 3e-3, 'Constant Adafactor rate of finetuning.')
flagcheck.require('finetune_learning_rate', lambda rate: 0 < rate < math.inf, 'a number > 0')
flags.DEFINE_integer('max_eval_examples', None, 'Validation examples scored (None: all).',
                     lower_bound=1)
flags.DEFINE_integer('seed', 0, 'Seed of initialisation, data order and dropout, both stages.',
                     lower_bound=0)


def small_shape() -> shapes.Shape:
  """The 2+2-layer, d_model-128 T5 of the check, sized to the embedded vocabulary."""
  return train.match_vocabulary(shapes.parse('tiny').replace(
      num_encoder_layers=2, num_decoder_layers=2, d_model=128, d_ff=512, num_heads=4, d_kv=32))


def classification_tasks() -> list[str]:
  """The embedded tasks scored by accuracy, which have a majority baseline."""
  return [n for n, spec in embedded.DOWNSTREAM.items() if metrics.accuracy in spec[3]]


def check_tasks(names: Sequence[str]) -> None:
  """Raises flagcheck.FlagError naming the closest valid names unless every name is an
  embedded classification task."""
  valid = classification_tasks()
  for name in names:
    if name not in valid:
      raise flagcheck.FlagError(
          f'--tasks={",".join(names)}: {name!r} is not an embedded classification task; '
          f'closest: {shapes.closest(name, valid)}.')


def majority_accuracy(task: str, max_examples: int | None = None) -> float:
  """Accuracy, in percent, of always answering the training split's most common answer, on
  the first `max_examples` validation examples (None: all), as evaluation takes them."""
  classification = classification_tasks()
  if task not in classification:
    raise ValueError(f'{task!r} is not an embedded classification task; choose from '
                     f'{", ".join(classification)}.')

  def answer(ex):
    return ex['choices'][ex['label']] if 'choices' in ex else ex['label']

  key = embedded.DOWNSTREAM[task][0]
  top = collections.Counter(map(answer, generated.examples(key, 'train'))).most_common(1)[0][0]
  validation = [answer(ex) for ex in generated.examples(key, 'validation')][:max_examples]
  return 100.0 * sum(a == top for a in validation) / len(validation)


def run(workdir: str, tasks: list[str], pretrain_steps: int, finetune_steps: int,
        batch_size: int, learning_rate: float, max_eval_examples: int | None,
        seed: int = 0) -> dict:
  """Pretrains once, then finetunes each task from the pretrained params and from scratch.

  Every stage uses `seed` (initialisation, data order, dropout); a rerun with the same arguments
  on the same machine and software repeats every loss bit for bit.
  """
  shape = small_shape()
  common = dict(log_every=100, checkpoint_every=1000, tensorboard=False, seed=seed)
  pre = train.pretrain(shape, steps=pretrain_steps, batch_size=batch_size, input_length=128,
                       workdir=f'{workdir}/pretrain', max_eval_examples=max_eval_examples,
                       **common)
  result = {'shape': shape.fields(), 'pretrain': pre.record(), 'tasks': {}}
  for task in tasks:
    runs = {'majority_accuracy': majority_accuracy(task, max_eval_examples)}
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
  del argv  # flagcheck.run rejects positional arguments
  host_memory.keep_freed_memory()  # CPU steps reuse freed buffers instead of page-faulting
  check_tasks(FLAGS.tasks)  # bad names and batch sizes fail here, before any training
  flagcheck.check_batch('batch_size', FLAGS.batch_size)
  print(json.dumps(run(FLAGS.workdir, FLAGS.tasks, FLAGS.pretrain_steps, FLAGS.finetune_steps,
                       FLAGS.batch_size, FLAGS.finetune_learning_rate,
                       FLAGS.max_eval_examples, FLAGS.seed), indent=1))


if __name__ == '__main__':
  flagcheck.run(main)
