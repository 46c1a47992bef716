r"""Bad flag values end a `python -m` command with one `error:` line on stderr and status 1.

A command states each numeric flag's range where it defines it, with absl's own bounds (which
`--helpfull` prints too), adds what bounds cannot say with `require`, checks what needs the
running program (the devices) in `main` by raising `FlagError`, and starts with `run`:

  flags.DEFINE_integer('steps', 10, 'Timed steps.', lower_bound=1)
  flags.DEFINE_float('learning_rate', 1e-3, 'Constant rate.')
  flagcheck.require('learning_rate', lambda rate: rate > 0, 'a number > 0')

  def main(argv):
    flagcheck.check_batch('batch', FLAGS.batch)     # raises FlagError
    ...

  if __name__ == '__main__':
    flagcheck.run(main)

  $ python -m suite.bench --steps=0
  error: --steps=0 is out of range: --steps takes an integer >= 1; e.g. --steps=10 (the default)

Every flag error becomes such a line: a value that does not parse or is out of bounds, a failed
`require` rule, a missing required flag, an unknown flag, a positional argument. Tests parse a
command's real flags with `parse` into `copy_flags(module)`, away from the global FLAGS (or, for
flags defined only when run as a program, into a fresh `flags.FlagValues()` handed to the
module's `define_flags`), and call `main`'s checks directly.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import sys
import types
from collections.abc import Callable, Sequence
from typing import Any

from absl import app, flags
from absl.flags import _argument_parser

FLAGS = flags.FLAGS


class FlagError(ValueError):
  """A bad flag value; the message is the one line printed after `error: `."""


@dataclasses.dataclass(frozen=True)
class _Rule:
  """A check on one flag's parsed value that bounds cannot express, and what passes it.

  An unset flag (None) passes: its command's default applies. A value that makes `accepts`
  raise TypeError or ValueError (e.g. `float('lots')`) fails.
  """

  accepts: Callable[[Any], bool]
  valid: str  # what passes, as a phrase after 'takes': 'a number > 0'

  def __call__(self, value: Any) -> bool:
    if value is None:
      return True
    try:
      return bool(self.accepts(value))
    except (TypeError, ValueError):
      return False


def require(name: str, accepts: Callable[[Any], bool], valid: str,
            flag_values: flags.FlagValues = FLAGS) -> None:
  """Adds a rule to flag `--name`, checked when flags are parsed: `accepts(value)` must hold.

  valid: what passes, e.g. 'a number > 0' or 'comma-separated numbers > 0, e.g. 1e8,2e8'.
  """
  flags.register_validator(name, _Rule(accepts, valid), message=f'takes {valid}',
                           flag_values=flag_values)


def parse(argv: Sequence[str], flag_values: flags.FlagValues = FLAGS) -> list[str]:
  """Parses `argv` (the program name first) into `flag_values`; returns `[program]`.

  Raises FlagError with one line naming the flag, the bad value, what is valid and what to do,
  for any flag error or positional argument.
  """
  try:
    rest = flag_values(list(argv))
  except flags.Error as error:
    raise FlagError(_describe(error, flag_values)) from None
  if len(rest) > 1:
    raise FlagError(f'unexpected arguments {" ".join(rest[1:])}; flags are --name=value '
                    '(--helpfull lists them)')
  return rest


def run(main: Callable[[list[str]], Any]) -> None:
  """`app.run(main)` where every FlagError, from parsing or from `main`, is one `error:` line
  on stderr and exit status 1."""

  def guarded(argv: list[str]) -> Any:
    try:
      return main(argv)
    except FlagError as error:
      _exit(error)

  def parse_or_exit(argv: list[str]) -> list[str]:
    try:
      return parse(argv)
    except FlagError as error:
      _exit(error)

  app.run(guarded, flags_parser=parse_or_exit)


def _exit(error: FlagError) -> None:
  print(f'error: {" ".join(str(error).split())}', file=sys.stderr, flush=True)
  sys.exit(1)


def copy_flags(module: types.ModuleType | str,
               flag_values: flags.FlagValues = FLAGS) -> flags.FlagValues:
  """A new FlagValues with copies of the flags `module` defined (bounds and rules included), to
  parse command lines in tests without touching `flag_values`."""
  name = module if isinstance(module, str) else module.__name__
  defined = flag_values.flags_by_module_dict().get(name)
  if not defined:
    raise ValueError(f'module {name!r} defined no flags in this FlagValues; import it first')
  fresh = flags.FlagValues()
  for flag in copy.deepcopy(defined):  # one deepcopy, so shared validators stay shared
    fresh[flag.name] = flag
  return fresh


def check_mesh(name: str, spec: Any) -> Any:
  """The `jax.sharding.Mesh` that mesh text `spec` lays out over all devices (None: every
  device on 'data'); FlagError naming the flag `name` ('mesh', 'config.mesh') when it does
  not parse or does not fit the devices (`suite.partition.make_mesh`)."""
  from suite import partition

  try:
    return partition.make_mesh(spec)
  except partition.PartitionError as error:
    raise FlagError(f'--{name}={spec}: {error}') from None


def check_batch(name: str, batch_size: int, microbatches: int = 1, mesh: Any = None) -> None:
  """Raises FlagError unless a global batch of `batch_size` splits over the data x fsdp
  slices of `mesh` (a Mesh; None: every device on 'data') times `microbatches`, as the train
  step needs."""
  from suite import partition

  mesh = mesh if mesh is not None else partition.make_mesh()
  try:
    partition.process_rows(batch_size, mesh, microbatches)
  except partition.PartitionError as error:
    raise FlagError(f'--{name}={batch_size}: {error}') from None


# Turning absl's errors into the one line.

_FLAG_IN_MESSAGE = re.compile(r'flags? --(\w+)=(.*?): ')


def _describe(error: flags.Error, flag_values: flags.FlagValues) -> str:
  """One line for an absl flag error: the flag, the value, what is valid and what to do."""
  text = str(error)
  if isinstance(error, flags.UnrecognizedFlagError):
    return f'{" ".join(text.split())} (--helpfull lists the flags)'
  if not flag_values.is_parsed():  # absl stops at the first value that does not parse
    return _describe_unparsed(text, flag_values)
  # Validators ran after parsing; each failure is one line of absl's message.
  return '; '.join(_describe_invalid(line, flag_values) for line in text.splitlines())


def _describe_unparsed(text: str, flag_values: flags.FlagValues) -> str:
  match = _FLAG_IN_MESSAGE.match(text)
  if not match or match[1] not in flag_values:
    return ' '.join(text.split())
  name, raw = match[1], match[2]
  flag = flag_values[name]
  parser = flag.parser
  if not isinstance(parser, _argument_parser.NumericParser):
    return ' '.join(text.removeprefix('flag ').split())  # enum: absl lists the choices
  try:
    parser.convert(raw)
    problem = 'is out of range'
  except (TypeError, ValueError, OverflowError):
    problem = f'is not {_number_word(parser)}'
  return f'--{name}={raw} {problem}: --{name} takes {_numbers(parser)}{_todo(flag)}'


def _describe_invalid(line: str, flag_values: flags.FlagValues) -> str:
  match = _FLAG_IN_MESSAGE.match(line)
  if not match or match[1] not in flag_values:
    return ' '.join(line.split())
  name = match[1]
  flag = flag_values[name]
  failed = [v.checker for v in flag.validators
            if isinstance(v.checker, _Rule) and not v.checker(flag.value)]
  if failed:
    return (f'--{name}={_as_text(flag.value)} is not valid: --{name} takes '
            f'{failed[0].valid}{_todo(flag, failed[0])}')
  if flag.value is None:  # flags.mark_flag_as_required
    return f'--{name} is required ({" ".join(flag.help.split()).rstrip(".")})'
  return ' '.join(line.removeprefix('flag ').split())


def _number_word(parser: _argument_parser.NumericParser) -> str:
  return 'an integer' if isinstance(parser, _argument_parser.IntegerParser) else 'a number'


def _numbers(parser: _argument_parser.NumericParser) -> str:
  """The valid range as words: 'an integer >= 1', 'a number from 0 to 1'."""
  low, high, word = parser.lower_bound, parser.upper_bound, _number_word(parser)
  if low is not None and high is not None:
    return f'{word} from {low} to {high}'
  if low is not None:
    return f'{word} >= {low}'
  if high is not None:
    return f'{word} <= {high}'
  return word


def _as_text(value: Any) -> str:
  if isinstance(value, list | tuple):
    return ','.join(map(str, value))
  return str(value)


def _todo(flag: flags.Flag, rule: _Rule | None = None) -> str:
  """What to do instead: the default when it is a valid value, else leaving the flag out."""
  default = flag.default
  if default is None:
    return f', or leave --{flag.name} out'
  if default in ([], ()) or (rule is not None and not rule(default)):
    return ''
  return f'; e.g. --{flag.name}={_as_text(default)} (the default)'
