"""BUILD stays in step with the tree: a py_library per package, a py_test per test file."""

import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ('suite', 'text', 'vision', 'tasks')


def _load_build() -> dict[str, dict]:
  targets: dict[str, dict] = {}

  def rule(kind):
    def record(**kwargs):
      name = kwargs['name']
      assert name not in targets, f'duplicate BUILD target {name!r}'
      targets[name] = dict(kind=kind, **kwargs)
    return record

  def glob(patterns, exclude=()):
    found = set()
    for pattern in patterns:
      found.update(str(p.relative_to(ROOT)) for p in ROOT.glob(pattern) if p.is_file())
    for pattern in exclude:
      found.difference_update(str(p.relative_to(ROOT)) for p in ROOT.glob(pattern))
    return sorted(found)

  namespace = {'py_library': rule('py_library'), 'py_test': rule('py_test'),
               'py_binary': rule('py_binary'), 'glob': glob,
               'package': lambda **_: None, 'exports_files': lambda *_, **__: None}
  exec(compile((ROOT / 'BUILD').read_text(), 'BUILD', 'exec'), namespace)  # noqa: S102
  return targets


def _tracked(pattern: str) -> set[str]:
  return {str(p.relative_to(ROOT)) for p in ROOT.glob(pattern)
          if '__pycache__' not in p.parts and '.venv' not in p.parts}


def test_every_package_module_is_in_a_target():
  targets = _load_build()
  for package in PACKAGES:
    library = targets.get(package)
    assert library and library['kind'] == 'py_library', f'BUILD lacks py_library {package!r}'
    srcs = set()
    for target in targets.values():
      if target['kind'] != 'py_test':
        srcs.update(s for s in target.get('srcs', []) if s.startswith(package + '/'))
    missing = _tracked(f'{package}/**/*.py') - srcs
    assert not missing, f'BUILD has no target for {sorted(missing)}'
    stale = {s for s in srcs if not (ROOT / s).exists()}
    assert not stale, f'BUILD lists missing files {sorted(stale)}'


def test_every_test_file_has_a_py_test():
  targets = _load_build()
  tested = {t['srcs'][0] for t in targets.values() if t['kind'] == 'py_test'}
  files = _tracked('tests/**/test_*.py')
  assert files - tested == set(), f'test files without py_test: {sorted(files - tested)}'
  assert tested - files == set(), f'py_test targets for missing files: {sorted(tested - files)}'


@pytest.mark.parametrize('package', PACKAGES)
def test_library_dependencies_follow_the_layering(package):
  """suite/ never depends on text/ or vision/ at the BUILD level; tasks never on models."""
  deps = set(_load_build()[package].get('deps', []))
  forbidden = {'suite': {':text', ':vision'}, 'tasks': {':text', ':vision'},
               'text': {':vision'}, 'vision': {':text'}}[package]
  assert not deps & forbidden, f'{package} must not depend on {sorted(deps & forbidden)}'
