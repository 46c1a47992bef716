"""Checkpoints of the training state (orbax): step, params, optimizer state, RNG, data position.

One `Checkpointer` per workdir keeps the N latest steps under `<workdir>/checkpoints/<step>/`,
each holding the train state (arrays, restored straight onto the shardings the trainer asks
for) and a small JSON record (how many batches the input pipeline has delivered, plus anything
the caller adds). Saves are asynchronous by default; `close()` waits for the last one.
Arrays are stored as global arrays (tensorstore chunks addressed by index), not tied to the
saving mesh, so a state saved on one mesh restores on any other (saved on `data:8`, resumed on
`fsdp:4` over 4 of the devices): each device reads its target shard's slice
(tests/suite/test_meshes.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import orbax.checkpoint as ocp

STATE = 'state'
DATA = 'data'


class Checkpointer:
  """Saves and restores (train state, data position) pairs under `directory`."""

  def __init__(self, directory: str | os.PathLike, keep: int = 3, asynchronous: bool = True):
    if keep < 1:
      raise ValueError(f'keep must be >= 1 (number of latest checkpoints kept), got {keep}')
    self.directory = os.path.abspath(os.fspath(directory))
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, enable_async_checkpointing=asynchronous)
    self._manager = ocp.CheckpointManager(
        self.directory, item_names=(STATE, DATA), options=options)

  def latest_step(self) -> int | None:
    """The newest finished checkpoint's step, or None if there is none."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """Steps of the checkpoints kept, oldest first."""
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, data: Mapping[str, Any] | None = None) -> None:
    """Starts saving `state` (a pytree of arrays) and the JSON-able `data` record as `step`."""
    self._manager.save(
        int(step),
        args=ocp.args.Composite(**{
            STATE: ocp.args.PyTreeSave(state),
            DATA: ocp.args.JsonSave(dict(data or {})),
        }),
        force=True,
    )

  def restore(self, target: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
    """(state, data record) of `step` (default: latest), laid out like `target`.

    `target` is a pytree of `jax.ShapeDtypeStruct` with shardings (or of arrays): each
    restored array gets that shape, dtype and sharding.
    """
    step = self._step_or_latest(step)
    restored = self._manager.restore(
        step, args=ocp.args.Composite(**{STATE: _restore_args(target),
                                         DATA: ocp.args.JsonRestore()}))
    return restored[STATE], dict(restored[DATA] or {})

  def restore_params(self, target: Any, step: int | None = None) -> Any:
    """Only the params of a saved train state (e.g. pre-training's, to finetune from).

    `target` is laid out like the params (abstract or real, with shardings); the optimizer
    state on disk may come from another optimizer: it is not read.
    """
    step = self._step_or_latest(step)
    restored = self._manager.restore(
        step, args=ocp.args.Composite(**{STATE: _restore_args({'params': target},
                                                                partial=True)}))
    return restored[STATE]['params']

  def _step_or_latest(self, step: int | None) -> int:
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f'no checkpoint to restore under {self.directory}')
    return int(step)

  def wait(self) -> None:
    """Blocks until any save in flight is on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def _restore_args(target: Any, partial: bool = False) -> ocp.args.PyTreeRestore:
  """Restores arrays with the shapes, dtypes and shardings of `target`'s leaves."""
  abstract = jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), target)
  return ocp.args.PyTreeRestore(
      item=abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
      partial_restore=partial)
