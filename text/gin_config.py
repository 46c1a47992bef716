"""A strict reader for the gin bindings that a Mesh TensorFlow `operative_config.gin` holds.

Operative configs are flat: macros (`d_model = 768`), bindings (`scope/Configurable.param =
value`), references (`@name`, `@name()`), macro uses (`%name`), Python literals, lists, tuples
and dicts, comments and multi-line values. `parse_gin` reads that subset and nothing more;
anything else (an `include`, a malformed value) raises CheckpointError naming path:line.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import os
import tokenize
from collections.abc import Iterator, Mapping
from typing import Any

from suite.hf_checkpoint import CheckpointError

OPERATIVE_CONFIG = 'operative_config.gin'

@dataclasses.dataclass(frozen=True)
class Macro:
  """`%name` in a gin value."""
  name: str


@dataclasses.dataclass(frozen=True)
class Reference:
  """`@name` (a configurable) or `@name()` (its result) in a gin value."""
  name: str
  evaluate: bool

  @property
  def short_name(self) -> str:
    return self.name.split('/')[-1].split('.')[-1]


REQUIRED = object()  # GinConfig.get's default: the binding must be present


@dataclasses.dataclass(frozen=True)
class GinConfig:
  """Bindings `[scope/]Configurable.param = value` and macros `name = value` of one file.

  `get` follows gin: a binding in the caller's scope wins over an unscoped one. Configurables
  are matched by their last name (`utils.run` and `run` are the same), as operative configs
  print them. Values are Python literals, lists, tuples, dicts, Macro and Reference.
  """
  path: str
  bindings: Mapping[tuple[str, str, str], tuple[Any, int]]  # -> (value, line)
  macros: Mapping[str, tuple[Any, int]]

  def get(self, configurable: str, param: str, scope: str = '', default: Any = REQUIRED) -> Any:
    """The value bound to configurable.param in `scope` (macros resolved), else `default`."""
    for key in ((scope, configurable, param), ('', configurable, param)):
      if key in self.bindings:
        value, line = self.bindings[key]
        return self._resolve(value, line, f'{key[0] + "/" if key[0] else ""}{configurable}.'
                             f'{param}', ())
    if default is REQUIRED:
      scoped = f'{scope}/{configurable}.{param}' if scope else f'{configurable}.{param}'
      also = f' (or {configurable}.{param})' if scope else ''
      raise CheckpointError(
          f'{self.path}: no binding for {scoped}{also}. The operative_config.gin that Mesh '
          'TensorFlow writes next to its checkpoints binds it; use the file that came with '
          'the checkpoint, unedited.')
    return default

  def values(self, configurable: str, param: str) -> dict[str, Any]:
    """{scope: value} of every binding of configurable.param, in any scope."""
    return {scope: self.get(name, p, scope) for scope, name, p in self.bindings
            if (name, p) == (configurable, param)}

  def _resolve(self, value: Any, line: int, where: str, seen: tuple[str, ...]) -> Any:
    if isinstance(value, Macro):
      if value.name in seen:
        raise CheckpointError(f'{self.path}:{line}: macro %{value.name} refers to itself '
                              f'({" -> ".join((*seen, value.name))}).')
      if value.name not in self.macros:
        raise CheckpointError(f'{self.path}:{line}: {where} uses macro %{value.name}, which '
                              f'the file never defines (a line `{value.name} = ...`).')
      inner, inner_line = self.macros[value.name]
      return self._resolve(inner, inner_line, where, (*seen, value.name))
    if isinstance(value, (list, tuple)):
      return type(value)(self._resolve(v, line, where, seen) for v in value)
    if isinstance(value, dict):
      return {k: self._resolve(v, line, where, seen) for k, v in value.items()}
    return value


def parse_gin(text: str, path: str = OPERATIVE_CONFIG) -> GinConfig:
  """Parses the gin subset that operative configs use; CheckpointError names path:line.

  Handles `import` lines, comments, macros, scoped bindings, `%macro`, `@ref` and `@ref()`,
  numbers, strings, True/False/None, lists, tuples, dicts, and values that continue over
  lines (open brackets or a trailing backslash). `include` is refused: an operative config
  is self-contained.
  """
  bindings, macros = {}, {}
  for statement in _statements(text, path):
    line = statement[0].start[0]
    first = statement[0].string
    if first == 'import':
      continue
    if first == 'include':
      raise CheckpointError(f'{path}:{line}: `include` is not supported; an operative config '
                            'lists every binding itself. Pass the operative_config.gin that '
                            'Mesh TensorFlow wrote next to the checkpoint.')
    parser = _ValueParser(statement, path)
    key = parser.name(separators=('.', '/'))
    parser.expect('=')
    value = parser.value()
    parser.end()
    *scopes, selector = key.split('/')
    parts = selector.split('.')
    if len(parts) == 1 and not scopes:
      macros[selector] = (value, line)
    elif len(parts) >= 2:
      bindings[('/'.join(scopes), parts[-2], parts[-1])] = (value, line)
    else:
      raise CheckpointError(f'{path}:{line}: {key!r} is neither a macro (`name = ...`) nor a '
                            'binding (`[scope/]Configurable.param = ...`).')
  return GinConfig(path, bindings, macros)


def read_gin(path: str) -> GinConfig:
  """parse_gin of a file; CheckpointError when it is missing or unreadable."""
  if not os.path.isfile(path):
    raise CheckpointError(f'{path}: missing; a Mesh TensorFlow model folder holds its '
                          f'{OPERATIVE_CONFIG} next to the model.ckpt-* files (copy it too).')
  with open(path, encoding='utf-8') as f:
    return parse_gin(f.read(), path)


def _statements(text: str, path: str) -> Iterator[list[tokenize.TokenInfo]]:
  """Logical lines as token lists (Python's tokenizer joins bracketed and `\\` lines)."""
  skip = {tokenize.COMMENT, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING}
  statement = []
  try:
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
      if token.type in skip:
        continue
      if token.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
        if statement:
          yield statement
        statement = []
      else:
        statement.append(token)
  except (tokenize.TokenError, SyntaxError) as e:
    raise CheckpointError(f'{path}: cannot tokenize ({e}); an unclosed bracket or string?') from e


class _ValueParser:
  """Recursive descent over one statement's tokens."""

  def __init__(self, tokens: list[tokenize.TokenInfo], path: str):
    self.tokens, self.path, self.i = tokens, path, 0

  def _error(self, message: str) -> CheckpointError:
    token = self.tokens[min(self.i, len(self.tokens) - 1)]
    return CheckpointError(f'{self.path}:{token.start[0]}: {message} in `{token.line.strip()}`.')

  def peek(self) -> str | None:
    return self.tokens[self.i].string if self.i < len(self.tokens) else None

  def take(self) -> tokenize.TokenInfo:
    if self.i >= len(self.tokens):
      raise self._error('unexpected end of the value')
    self.i += 1
    return self.tokens[self.i - 1]

  def expect(self, string: str) -> None:
    token = self.take()
    if token.string != string:
      raise self._error(f'expected {string!r}, found {token.string!r}')

  def end(self) -> None:
    if self.i != len(self.tokens):
      raise self._error(f'unexpected {self.tokens[self.i].string!r} after the value')

  def name(self, separators: tuple[str, ...]) -> str:
    token = self.take()
    if token.type != tokenize.NAME:
      raise self._error(f'expected a name, found {token.string!r}')
    parts = [token.string]
    while self.peek() in separators:
      parts.append(self.take().string)
      token = self.take()
      if token.type != tokenize.NAME:
        raise self._error(f'expected a name after {parts[-1]!r}, found {token.string!r}')
      parts.append(token.string)
    return ''.join(parts)

  def value(self) -> Any:
    token = self.take()
    kind, string = token.type, token.string
    if kind == tokenize.NUMBER:
      return ast.literal_eval(string)
    if string == '-' and self.peek() is not None and self.tokens[self.i].type == tokenize.NUMBER:
      return -ast.literal_eval(self.take().string)
    if kind == tokenize.STRING:
      pieces = [ast.literal_eval(string)]
      while self.i < len(self.tokens) and self.tokens[self.i].type == tokenize.STRING:
        pieces.append(ast.literal_eval(self.take().string))
      return ''.join(pieces)
    if kind == tokenize.NAME and string in ('True', 'False', 'None'):
      return {'True': True, 'False': False, 'None': None}[string]
    if string == '%':
      return Macro(self.name(separators=('.', '/')))
    if string == '@':
      name = self.name(separators=('.', '/'))
      evaluate = self.peek() == '('
      if evaluate:
        self.take()
        self.expect(')')
      return Reference(name, evaluate)
    if string in ('[', '('):
      closing = ']' if string == '[' else ')'
      items, trailing_comma = self._sequence(closing, self.value)
      if string == '(' and len(items) == 1 and not trailing_comma:
        return items[0]
      return items if string == '[' else tuple(items)
    if string == '{':
      items, _ = self._sequence('}', self._dict_item)
      return dict(items)
    raise self._error(f'unexpected {string!r}')

  def _dict_item(self) -> tuple[Any, Any]:
    key = self.value()
    self.expect(':')
    return key, self.value()

  def _sequence(self, closing: str, item) -> tuple[list, bool]:
    items, trailing_comma = [], False
    while self.peek() != closing:
      items.append(item())
      trailing_comma = self.peek() == ','
      if trailing_comma:
        self.take()
      elif self.peek() != closing:
        raise self._error(f'expected "," or "{closing}"')
    self.take()
    return items, trailing_comma
