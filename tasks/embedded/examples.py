"""Downstream examples of the embedded tasks, generated from the lexicon with fixed seeds.

Each task mirrors a format of the real suite (SST-2, RTE, STS-B, a multiple-choice task, SQuAD).
Training examples use only the lexicon's "seen" entities (and half of the sentiment words);
validation mixes seen and held-out ones half and half, so a model can score well on it only with
knowledge from pretraining, while the seen half keeps the tasks learnable without it.
"""

import functools

from tasks.embedded import lexicon as lex
from tasks.embedded.lexicon import article as art

SIZES = {'train': 2000, 'validation': 500}
SPLIT_SEEDS = {'train': 11, 'validation': 12}
SPLITS = tuple(SIZES)
KNOWLEDGE_SPLIT_SEED = 7


def _check_split(split: str) -> None:
  if split not in SIZES:
    raise ValueError(f'unknown split {split!r}; valid splits: {", ".join(SIZES)}')


def _pool(items, split: str, p: lex.Picker) -> tuple:
  """Training draws from seen items; validation draws seen or held-out items with equal odds."""
  seen, unseen = lex.held_out(items, seed=KNOWLEDGE_SPLIT_SEED)
  return unseen if split == 'validation' and p.chance(0.5) else seen


def _task_rng(name: str, split: str) -> lex.Picker:
  return lex.Picker(SPLIT_SEEDS[split] * 1000 + sum(map(ord, name)))


# ---------------------------------------------------------------- single sentence: sentiment


def _sentiment(p: lex.Picker, world: lex.Lexicon, split: str, idx: int) -> dict:
  label = int(p.chance(0.5))
  words = _pool(world.positive if label else world.negative, split, p)
  adj, thing, person = p.pick(words), p.pick(world.reviewables), p.pick(world.names)
  negated = p.chance(0.15)
  if negated:
    sentence = p.pick([f'The {thing} was not {adj}.', f'{person} did not find the {thing} {adj}.'])
    label = 1 - label
  else:
    sentence = p.pick([
      f'The {thing} was {adj}.', f'What {art(adj)} {adj} {thing}.',
      f'{person} thought the {thing} was {adj}.', f'I found the {thing} {adj}.',
      f'This {thing} is {adj}.', f'{art(adj).capitalize()} {adj} {thing}, from start to finish.',
    ])
  return {'idx': idx, 'sentence': sentence, 'label': label}


# ---------------------------------------------------------------- sentence pair: entailment


def _entailment(p: lex.Picker, world: lex.Lexicon, split: str, idx: int) -> dict:
  person, kind = p.pick(world.names), int(p.rng.randint(3))
  entailed = p.chance(0.5)
  if kind == 0:
    c = p.pick(_pool(world.countries, split, p))
    other = c if entailed else p.pick([o for o in world.countries if o.capital != c.capital])
    premise, hypothesis = f'{person} lives in {c.capital}.', f'{person} lives in {other.name}.'
    entailed = other.name == c.name
  elif kind == 1:
    c = p.pick(_pool(world.countries, split, p))
    continents = sorted({o.continent for o in world.countries})
    place = c.continent if entailed else p.pick([x for x in continents if x != c.continent])
    premise, hypothesis = f'{person} grew up in {c.name}.', f'{person} grew up in {place}.'
  else:
    a = p.pick(_pool(world.animals, split, p))
    kinds = sorted({b.kind for b in world.animals})
    kind_word = a.kind if entailed else p.pick([k for k in kinds if k != a.kind])
    premise = f'{person} keeps {art(a.name)} {a.name} at home.'
    hypothesis = f'{person} keeps {art(kind_word)} {kind_word} at home.'
  return {'idx': idx, 'premise': premise, 'hypothesis': hypothesis, 'label': int(not entailed)}


# ---------------------------------------------------------------- regression: similarity


def _similarity(p: lex.Picker, world: lex.Lexicon, split: str, idx: int) -> dict:
  a = p.pick(_pool(world.animals, split, p))
  if p.chance(0.1):
    b = a
  elif p.chance(0.4):
    b = p.pick([x for x in world.animals if x.kind == a.kind and x != a])
  else:
    b = p.pick([x for x in world.animals if x != a])
  place = p.pick(['near the river', 'in a picture', 'at the zoo', 'in a book'])
  return {
    'idx': idx,
    'sentence1': f'{p.pick(world.names)} saw {art(a.name)} {a.name} {place}.',
    'sentence2': f'{p.pick(world.names)} saw {art(b.name)} {b.name} {place}.',
    'label': 5.0 * a.shared_attributes(b) / 4.0,
  }


# ---------------------------------------------------------------- multiple choice


def _choice_question(p: lex.Picker, world: lex.Lexicon, split: str) -> tuple[str, str, list]:
  kind = int(p.rng.randint(5))
  if kind == 0:
    c = p.pick(_pool(world.countries, split, p))
    return f'What is the capital of {c.name}?', c.capital, [o.capital for o in world.countries]
  if kind == 1:
    c = p.pick(_pool(world.countries, split, p))
    return f'Which continent is {c.name} in?', c.continent, [o.continent for o in world.countries]
  if kind == 2:
    c = p.pick(_pool(world.countries, split, p))
    return f'Which language do most people in {c.name} speak?', c.language, [
      o.language for o in world.countries
    ]
  if kind == 3:
    a = p.pick(_pool(world.animals, split, p))
    return f'What kind of animal is the {a.name}?', a.kind, [b.kind for b in world.animals]
  e = p.pick(_pool(world.elements, split, p))
  return f'What is the chemical symbol of {e.name}?', e.symbol, [x.symbol for x in world.elements]


def _multiple_choice(p: lex.Picker, world: lex.Lexicon, split: str, idx: int) -> dict:
  question, answer, candidates = _choice_question(p, world, split)
  wrong = p.sample(sorted(set(candidates) - {answer}), 3)
  label = int(p.rng.randint(4))
  choices = wrong[:label] + [answer] + wrong[label:]
  return {'idx': idx, 'question': question, 'choices': choices, 'label': label}


# ---------------------------------------------------------------- extractive QA


def _qa_facts(p: lex.Picker, world: lex.Lexicon, split: str) -> tuple[list[str], list]:
  """Context sentences about one entity and (question, answer) pairs answerable from them."""
  if p.chance(0.6):
    c = p.pick(_pool(world.countries, split, p))
    facts = [
      (f'The capital of {c.name} is {c.capital}.', f'What is the capital of {c.name}?', c.capital),
      (f'{c.name} lies in {c.continent}.', f'On which continent is {c.name}?', c.continent),
      (f'People there speak {c.language}.', f'What language is spoken in {c.name}?', c.language),
      (f'Shops take the {c.currency}.', f'What currency is used in {c.name}?', c.currency),
    ]
  else:
    a = p.pick(_pool(world.animals, split, p))
    habitat = lex.HABITAT_PHRASES[a.habitat]
    facts = [
      (f'The {a.name} is {art(a.kind)} {a.kind}.', f'What kind of animal is the {a.name}?', a.kind),
      (f'It lives in {habitat}.', f'Where does the {a.name} live?', habitat),
      (f'It feeds on {lex.DIET_PHRASES[a.diet]}.', f'What does the {a.name} eat?',
       lex.DIET_PHRASES[a.diet]),
    ]
  facts = p.shuffled(facts)
  return [f[0] for f in facts], [(f[1], f[2]) for f in facts]


def _qa(p: lex.Picker, world: lex.Lexicon, split: str, idx: int) -> dict:
  sentences, questions = _qa_facts(p, world, split)
  question, answer = p.pick(questions)
  context = ' '.join(sentences)
  return {'idx': idx, 'context': context, 'question': question, 'answers': [answer]}


GENERATORS = {
  'sst': _sentiment,
  'rte': _entailment,
  'stsb': _similarity,
  'mc': _multiple_choice,
  'squad': _qa,
}


@functools.cache
def examples(task: str, split: str) -> tuple[dict, ...]:
  """The fixed examples of embedded task `task` ('sst', 'rte', ...) and `split`."""
  _check_split(split)
  if task not in GENERATORS:
    raise ValueError(f'unknown embedded task {task!r}; valid: {", ".join(GENERATORS)}')
  p, world = _task_rng(task, split), lex.load()
  return tuple(GENERATORS[task](p, world, split, i) for i in range(SIZES[split]))
