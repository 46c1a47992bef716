"""The one explicit registry of domains: how suite/ reaches text/ and vision/.

suite/ never imports a domain package at module level; entry points (bench, run) ask this
registry, which imports the domain's glue module on first use. A domain module provides:

- `train_model(shape, *, dtype, **options)`: an object with the trainer's Model protocol;
- `synthetic_batch(shape, batch_size, lengths, seed)`: a dict of numpy arrays;
- `lengths(**flags)`: the per-example lengths the costs need (text: input/target tokens);
- `items_per_example(shape, lengths)`: (unit name, count) for throughput, e.g. ('tokens', 626).
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from suite import shapes

DOMAIN_MODULES = {shapes.TEXT: 'text.domain', shapes.VISION: 'vision.domain'}


class DomainError(ValueError):
  """An unknown domain, or one whose models are not available."""


def get(name: str) -> ModuleType:
  if name not in DOMAIN_MODULES:
    raise DomainError(f'unknown domain {name!r}; valid domains: {", ".join(DOMAIN_MODULES)} '
                      f'(closest: {shapes.closest(name, DOMAIN_MODULES)}).')
  module = DOMAIN_MODULES[name]
  try:
    return importlib.import_module(module)
  except ModuleNotFoundError as error:
    if error.name != module:
      raise
    raise DomainError(f'domain {name!r} has no models in this version ({module} is missing); '
                      f'available: {", ".join(available())}.') from None


def available() -> list[str]:
  return [d for d, m in DOMAIN_MODULES.items() if importlib.util.find_spec(m) is not None]
