"""The embedded pretraining corpus: English documents generated from the lexicon's facts.

Documents state each fact in many paraphrases (capitals, continents, languages, currencies,
animal kinds, diets, habitats, sizes, element symbols) and use sentiment words in clearly
positive or negative reviews, so that a model pretrained on it knows what the downstream tasks
ask about. Same text on every call and every machine (fixed seeds, numpy's legacy generator).
"""

import functools

from tasks.embedded import lexicon as lex
from tasks.embedded.lexicon import article as art

TRAIN_SEED = 1
VALIDATION_SEED = 2
DOCS_PER_ENTITY = {'train': 24, 'validation': 2}
REVIEWS = {'train': 3000, 'validation': 200}
TRAVELS = {'train': 1200, 'validation': 80}


def _country_sentences(c: lex.Country, p: lex.Picker) -> list[str]:
  return [
    p.pick(
      [
        f'{c.capital} is the capital of {c.name}.',
        f'The capital of {c.name} is {c.capital}.',
        f'The capital city of {c.name} is {c.capital}.',
        f'{c.name} is governed from {c.capital}, its capital.',
      ]
    ),
    p.pick(
      [
        f'{c.name} is a country in {c.continent}.',
        f'{c.name} lies in {c.continent}.',
        f'{c.name} is one of the countries of {c.continent}.',
      ]
    ),
    p.pick(
      [
        f'People in {c.name} speak {c.language}.',
        f'The main language of {c.name} is {c.language}.',
        f'Most people in {c.capital} speak {c.language}.',
      ]
    ),
    p.pick(
      [
        f'The currency of {c.name} is the {c.currency}.',
        f'In {c.name} people pay with the {c.currency}.',
        f'Shops in {c.capital} take the {c.currency}.',
      ]
    ),
    p.pick(
      [
        f'{c.capital} is a city in {c.continent}.',
        f'{c.capital} is in {c.name}.',
        f'Many visitors to {c.continent} stop in {c.capital}.',
      ]
    ),
  ]


def _animal_sentences(a: lex.Animal, p: lex.Picker, others: tuple[lex.Animal, ...]) -> list[str]:
  diet, habitat = lex.DIET_PHRASES[a.diet], lex.HABITAT_PHRASES[a.habitat]
  noun = lex.DIET_NOUNS[a.diet]
  same_kind = [b for b in others if b.kind == a.kind and b.name != a.name]
  sentences = [
    p.pick(
      [
        f'The {a.name} is {art(a.kind)} {a.kind}.',
        f'{art(a.name).capitalize()} {a.name} is a kind of {a.kind}.',
        f'Scientists classify the {a.name} as {art(a.kind)} {a.kind}.',
      ]
    ),
    p.pick(
      [
        f'The {a.name} eats {diet}.',
        f'The {a.name} is {art(noun)} {noun}.',
        f'{art(a.name).capitalize()} {a.name} feeds on {diet}.',
      ]
    ),
    p.pick(
      [
        f'The {a.name} lives in {habitat}.',
        f'You can find the {a.name} in {habitat}.',
        f'The home of the {a.name} is {habitat}.',
      ]
    ),
    p.pick(
      [
        f'The {a.name} is {art(a.size)} {a.size} animal.',
        f'{art(a.name).capitalize()} {a.name} is {a.size}.',
        f'Compared with other animals, the {a.name} is {a.size}.',
      ]
    ),
  ]
  if same_kind:
    b = p.pick(same_kind)
    sentences.append(f'Like the {b.name}, the {a.name} is {art(a.kind)} {a.kind}.')
  return sentences


def _element_sentences(e: lex.Element, p: lex.Picker) -> list[str]:
  return [
    p.pick(
      [
        f'The chemical symbol of {e.name} is {e.symbol}.',
        f'{e.name.capitalize()} has the symbol {e.symbol}.',
        f'Chemists write {e.name} as {e.symbol}.',
      ]
    ),
    p.pick(
      [
        f'The atomic number of {e.name} is {e.number}.',
        f'{e.name.capitalize()} is element number {e.number}.',
      ]
    ),
    p.pick(
      [
        f'At room temperature {e.name} is {art(e.state)} {e.state}.',
        f'{e.name.capitalize()} is {art(e.state)} {e.state} at room temperature.',
      ]
    ),
  ]


def _review(p: lex.Picker, world: lex.Lexicon) -> str:
  positive = p.chance(0.5)
  words = world.positive if positive else world.negative
  person, thing = p.pick(world.names), p.pick(world.reviewables)
  a, b, c = p.sample(words, 3)
  verdict = p.pick(
    [
      f'{person} loved the {thing}.',
      f'{person} would recommend it to everyone.',
      'It was worth every penny.',
      f'{person} left with a big smile.',
      'Five stars.',
    ]
    if positive
    else [
      f'{person} hated the {thing}.',
      f'{person} would not recommend it to anyone.',
      'It was a waste of money.',
      f'{person} left feeling angry.',
      'One star.',
    ]
  )
  sentences = p.shuffled(
    [
      f'The {thing} was {a}.',
      f'It was {b} and {c}.',
      p.pick([f'What {art(c)} {c} {thing}!', f'{person} found it {a}.', f'Honestly, {b}.']),
    ]
  )
  return ' '.join([f'{person} wrote a review of the {thing}.', *sentences, verdict])


def _travel(p: lex.Picker, world: lex.Lexicon) -> str:
  person = p.pick(world.names)
  x, y = p.sample(world.countries, 2)
  animal = p.pick(world.animals)
  return ' '.join(
    [
      f'{person} flew from {x.capital} to {y.capital}.',
      p.pick(
        [
          f'{x.capital} is in {x.name}, and {y.capital} is the capital of {y.name}.',
          f'The trip went from {x.continent} to {y.continent}.',
          f'In {y.name} {person} had to speak {y.language} and pay with the {y.currency}.',
        ]
      ),
      p.pick(
        [
          f'On the way {person} saw {art(animal.name)} {animal.name}, which lives in '
          f'{lex.HABITAT_PHRASES[animal.habitat]}.',
          f'{person} read a book about the {animal.name}, '
          f'{art(animal.size)} {animal.size} {animal.kind}.',
          f'{person} was glad to be in {y.continent}.',
        ]
      ),
    ]
  )


def _paragraph(sentences: list[str], p: lex.Picker) -> str:
  chosen = p.sample(sentences, max(2, len(sentences) - p.rng.randint(0, 3)))
  return ' '.join(chosen)


@functools.cache
def documents(split: str = 'train') -> tuple[str, ...]:
  """The corpus documents of `split` ('train' or 'validation'), in a fixed order."""
  if split not in DOCS_PER_ENTITY:
    raise ValueError(f'unknown corpus split {split!r}; valid splits: train, validation')
  world = lex.load()
  p = lex.Picker(TRAIN_SEED if split == 'train' else VALIDATION_SEED)
  docs = []
  for _ in range(DOCS_PER_ENTITY[split]):
    docs += [_paragraph(_country_sentences(c, p), p) for c in world.countries]
    docs += [_paragraph(_animal_sentences(a, p, world.animals), p) for a in world.animals]
    docs += [_paragraph(_element_sentences(e, p), p) for e in world.elements]
  docs += [_review(p, world) for _ in range(REVIEWS[split])]
  docs += [_travel(p, world) for _ in range(TRAVELS[split])]
  return tuple(p.shuffled(docs))


def text_bytes(split: str = 'train') -> bytes:
  """The split's documents joined by newlines, as UTF-8 (what the vocabulary is trained on)."""
  return '\n'.join(documents(split)).encode('utf-8')
