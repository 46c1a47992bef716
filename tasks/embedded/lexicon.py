"""The facts behind the embedded corpus and tasks: countries, animals, elements, sentiment words.

Everything embedded is generated from `lexicon.json` (real facts, written by hand) with a fixed
seed, so the pretraining corpus and the downstream tasks share one world: the knowledge a model
can pick up while pretraining is the knowledge the downstream tasks test.
"""

import dataclasses
import functools
import json
import pathlib

import numpy as np

LEXICON_PATH = pathlib.Path(__file__).with_name('lexicon.json')

DIET_PHRASES = {'meat': 'meat', 'plants': 'plants', 'both': 'both plants and meat'}
DIET_NOUNS = {'meat': 'carnivore', 'plants': 'herbivore', 'both': 'omnivore'}
HABITAT_PHRASES = {
  'grassland': 'the grassland',
  'forest': 'the forest',
  'desert': 'the desert',
  'ocean': 'the ocean',
  'river': 'rivers and lakes',
  'polar': 'the polar regions',
  'mountain': 'the mountains',
}


@dataclasses.dataclass(frozen=True)
class Country:
  name: str
  capital: str
  continent: str
  language: str
  currency: str


@dataclasses.dataclass(frozen=True)
class Animal:
  name: str
  kind: str
  diet: str
  habitat: str
  size: str

  def shared_attributes(self, other: 'Animal') -> int:
    """How many of kind, diet, habitat and size the two animals share (0-4)."""
    return sum(getattr(self, f) == getattr(other, f) for f in ('kind', 'diet', 'habitat', 'size'))


@dataclasses.dataclass(frozen=True)
class Element:
  name: str
  symbol: str
  number: int
  state: str


@dataclasses.dataclass(frozen=True)
class Lexicon:
  countries: tuple[Country, ...]
  animals: tuple[Animal, ...]
  elements: tuple[Element, ...]
  positive: tuple[str, ...]
  negative: tuple[str, ...]
  reviewables: tuple[str, ...]
  names: tuple[str, ...]


@functools.cache
def load() -> Lexicon:
  """The lexicon shipped with the package."""
  raw = json.loads(LEXICON_PATH.read_text())
  return Lexicon(
    countries=tuple(Country(*row) for row in raw['countries']),
    animals=tuple(Animal(*row) for row in raw['animals']),
    elements=tuple(Element(*row) for row in raw['elements']),
    positive=tuple(raw['positive']),
    negative=tuple(raw['negative']),
    reviewables=tuple(raw['reviewables']),
    names=tuple(raw['names']),
  )


class Picker:
  """Deterministic choices (numpy's legacy RandomState: its stream is stable across versions)."""

  def __init__(self, seed: int):
    self.rng = np.random.RandomState(seed)

  def pick(self, seq):
    return seq[self.rng.randint(len(seq))]

  def sample(self, seq, k: int) -> list:
    return [seq[i] for i in self.rng.permutation(len(seq))[:k]]

  def shuffled(self, seq) -> list:
    return [seq[i] for i in self.rng.permutation(len(seq))]

  def chance(self, p: float) -> bool:
    return bool(self.rng.random_sample() < p)


def held_out(items, fraction: float = 0.3, seed: int = 7) -> tuple[tuple, tuple]:
  """Splits items into (seen, held_out) by a fixed permutation.

  Downstream training data uses only `seen` items; validation mixes both, so that a model can
  answer held-out items only with knowledge learnt during pretraining.
  """
  order = np.random.RandomState(seed).permutation(len(items))
  cut = int(round(len(items) * (1 - fraction)))
  return tuple(items[i] for i in order[:cut]), tuple(items[i] for i in order[cut:])


def article(word: str) -> str:
  """'a' or 'an' for the word that follows."""
  return 'an' if word[:1].lower() in 'aeiou' else 'a'
