"""The experiments `python -m suite.run` ships: one Python file per experiment.

Each module here defines `get_config(arg=None) -> ml_collections.ConfigDict`; `arg='quick'`
is its small variant (`--quick`). `--config=NAME` picks a module by name, `--config=PATH.py`
any file with the same function, and `--config.FIELD=VALUE` overrides a field.

What a config holds (data only; suite/run.py reads it and knows no domain):

- `seeds`, `strategies` (suite.strategies names), `scales` (multiples of the base's budget),
  `budget_kind` ('params' or 'flops': the axis canonical shapes are placed on);
- `domains.<name>` per domain (a `suite.domains` name):
  - `base` (a registered shape name) and `base_overrides` (Shape fields), sized to
    `size_to_task` through the domain's `for_task`;
  - `canonical`: shapes compared with the strategies, each `{'name': ..., **field overrides}`;
  - `workload`: the domain's workload sizes for every step (a step may override them);
  - `recipe`: ordered steps `{name: {...}}`; a step has `stage` (a domain stage, or 'bench'),
    `task` or `tasks` (one unit per task), `steps`, `batch_size`, `optimizer` (a preset of
    the domain, None: the stage's default) and `optimizer_overrides`, `init` (an earlier
    step's name, or None), `role`, `shapes` ('all' or 'canonical'), `headline`, and
    `checkpoints` (finetuning: how many evenly spaced checkpoints to keep) or `score`
    ('checkpoints': score each checkpoint of the init step and keep the best and the last).
  - `init_from` (instead of base/canonical): released checkpoint folders, `PATH` or
    `PATH@STEP` (a list, or one comma-separated string), each a shape read from the folder
    itself (`Domain.checkpoint_shape`); a step with `init='checkpoint'` starts from them.
- optional `vocab`, `data_dir`, `tfds_data_dir`: where the tasks read their vocabulary and
  data (`suite.run.configure_data`).
- `model`: `suite.domain.ModelOptions` fields (dtype, attention, scan, remat, dropout_rate);
  `model(...)` below lists them all, so that each is overridable on the command line
  (`--config.model.remat=dots`, `--config.model.scan=false`).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import pkgutil
from typing import Any

DIRECTORY = os.path.dirname(os.path.abspath(__file__))
DEFAULT = 'embedded'


def names() -> list[str]:
  """The shipped config names, sorted."""
  return sorted(m.name for m in pkgutil.iter_modules([DIRECTORY]) if not m.name.startswith('_'))


def path(name: str) -> str:
  """The file of shipped config `name`; unknown names raise ValueError listing the closest."""
  if name not in names():
    close = difflib.get_close_matches(name, names(), n=3, cutoff=0.0)
    raise ValueError(f'unknown config {name!r}; closest: {", ".join(close)}. Shipped configs: '
                     f'{", ".join(names())}; or give the path of a .py file with get_config().')
  return os.path.join(DIRECTORY, f'{name}.py')


def model(**fields: Any) -> dict[str, Any]:
  """A config's `model` field: every `suite.domain.ModelOptions` field, at its default unless
  given in `fields`, so that each can be overridden on the command line. `scan` unset (None,
  which suite.run reads as 'auto': on for accelerators, off on CPU) still takes
  `--config.model.scan=true|false`. Unknown names raise ValueError listing the valid ones."""
  from ml_collections import config_dict

  from suite.domain import AUTO, ModelOptions
  values = {f.name: f.default for f in dataclasses.fields(ModelOptions)}
  unknown = sorted(set(fields) - set(values))
  if unknown:
    raise ValueError(f'model fields {unknown}: valid are {", ".join(values)}.')
  values.update(fields)
  if values['scan'] == AUTO:
    values['scan'] = config_dict.placeholder(bool)
  return values
