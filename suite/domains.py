"""The one explicit registry of domains: how suite/ reaches text/ and vision/.

suite/ never imports a domain package at module level; entry points (bench, run) ask this
registry, which imports the domain's glue module on first use and returns its `DOMAIN`, an
object with the `suite.domain.Domain` protocol (models, workload, synthetic batches, logical
axis rules, optimizer presets, stages).
"""

from __future__ import annotations

import importlib
import importlib.util

from suite import shapes
from suite.domain import Domain, missing_members

# Domain name (a Shape.domain) -> the module whose `DOMAIN` implements suite.domain.Domain.
DOMAIN_MODULES = {shapes.TEXT: 'text.domain', shapes.VISION: 'vision.domain'}


class DomainError(ValueError):
  """An unknown domain, or one whose models are not available."""


def get(name: str) -> Domain:
  """The registered domain `name`; unknown or unavailable ones raise DomainError."""
  if name not in DOMAIN_MODULES:
    raise DomainError(f'unknown domain {name!r}; valid domains: {", ".join(DOMAIN_MODULES)} '
                      f'(closest: {shapes.closest(name, DOMAIN_MODULES)}).')
  module_name = DOMAIN_MODULES[name]
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as error:
    if error.name != module_name:
      raise
    raise DomainError(f'domain {name!r} has no models in this version ({module_name} is '
                      f'missing); available: {", ".join(available())}.') from None
  domain = getattr(module, 'DOMAIN', None)
  missing = missing_members(domain) if domain is not None else ['DOMAIN']
  if missing:
    raise DomainError(f'{module_name}.DOMAIN does not implement suite.domain.Domain: it lacks '
                      f'{", ".join(missing)}.')
  if domain.name != name:
    raise DomainError(f'{module_name}.DOMAIN is named {domain.name!r}, registered as {name!r}.')
  return domain


def available() -> list[str]:
  """The registered domains whose glue module exists in this installation."""
  return [d for d, m in DOMAIN_MODULES.items() if importlib.util.find_spec(m) is not None]
