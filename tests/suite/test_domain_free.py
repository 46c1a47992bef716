"""suite/ knows no model family: it reaches text/ and vision/ through the Domain contract alone.

The rule, checked on the code (identifiers and string literals; docstrings and comments may
cite a family as an example):
- no module of suite/ imports text/ or vision/ (the registry, suite/domains.py, names their glue
  modules as strings and imports them on first use);
- no module of suite/ names a model family (`t5`, `T5`, `vit`, `ViT` as a word or a word's
  start), except those that hold per-family tables by design: shapes.py (size tables, names),
  costs.py (parameter and FLOP formulas), strategies.py (the canonical size tables), optim.py
  (the papers' optimizer presets, which the domains choose from) and gpu_check.py (the issue's
  speed cases: named shapes at their workloads);
- no module of suite/ names a domain's batch keys or workload sizes (T5's feature names, token
  lengths, image size), except those five and plan.py (which moves onto the Domain interface
  next, as DESIGN.md orders the work).
"""

import ast
import pathlib
import re

import pytest

SUITE = pathlib.Path(__file__).resolve().parents[2] / 'suite'
FAMILY_TABLES = {'shapes.py', 'costs.py', 'strategies.py', 'optim.py', 'gpu_check.py'}
NOT_YET_ON_THE_CONTRACT = {'plan.py'}
FAMILY = re.compile(r'(?<![a-z0-9])(t5|vit)', re.IGNORECASE)
DOMAIN_NAMES = ('encoder_input_tokens', 'decoder_input_tokens', 'decoder_target_tokens',
                'decoder_loss_weights', 'input_length', 'target_length', 'image_size')
MODULES = sorted(p.name for p in SUITE.glob('*.py'))


def _docstrings(tree: ast.AST) -> set[int]:
  ids = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
      body = node.body
      if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        ids.add(id(body[0].value))
  return ids


def code_words(source: str) -> list[str]:
  """Identifiers, attribute and argument names, and string literals other than docstrings."""
  tree = ast.parse(source)
  docstrings = _docstrings(tree)
  words = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Name):
      words.append(node.id)
    elif isinstance(node, ast.Attribute):
      words.append(node.attr)
    elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
      words.append(node.name)
    elif isinstance(node, ast.arg):
      words.append(node.arg)
    elif isinstance(node, ast.keyword) and node.arg:
      words.append(node.arg)
    elif isinstance(node, ast.alias):
      words.extend(filter(None, (node.name, node.asname)))
    elif isinstance(node, ast.ImportFrom) and node.module:
      words.append(node.module)
    elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
          and id(node) not in docstrings):
      words.append(node.value)
  return words


def imported_modules(source: str) -> list[str]:
  modules = []
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      modules += [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      modules.append(node.module)
  return modules


@pytest.mark.parametrize('module', MODULES)
def test_suite_never_imports_a_domain(module):
  imports = imported_modules((SUITE / module).read_text())
  assert not [m for m in imports if m.split('.')[0] in ('text', 'vision')], module


@pytest.mark.parametrize('module', sorted(set(MODULES) - FAMILY_TABLES))
def test_suite_names_no_model_family(module):
  words = code_words((SUITE / module).read_text())
  assert not [w for w in words if FAMILY.search(w)], module


@pytest.mark.parametrize('module', sorted(set(MODULES) - FAMILY_TABLES - NOT_YET_ON_THE_CONTRACT))
def test_suite_names_no_batch_key_or_workload_size(module):
  words = code_words((SUITE / module).read_text())
  assert not [w for w in words if any(name in w for name in DOMAIN_NAMES)], module


def test_the_rule_catches_what_it_should():
  source = '''"""Docstrings may say T5."""
import text.t5
from vision import vit
def f(t5_model, image_size=224):  # comments may say ViT too
  """So may this one: input_length."""
  return t5_model.encoder_input_tokens, 'ViT-B/16', optim.t5_pretrain
'''
  words = code_words(source)
  assert {w for w in words if FAMILY.search(w)} == {
      'text.t5', 'vit', 't5_model', 'ViT-B/16', 't5_pretrain'}
  assert [w for w in words if any(n in w for n in DOMAIN_NAMES)] == [
      'image_size', 'encoder_input_tokens']
  assert imported_modules(source) == ['text.t5', 'vision']
  assert not FAMILY.search('activation') and not FAMILY.search('pivot_table')
