"""A thin wrapper over `orbax.checkpoint.CheckpointManager` for run states.

Typed PRNG keys are stored as their raw key data and wrapped again on restore,
because orbax saves plain arrays. Saves are synchronous: a run killed right
after `save` returns finds that step on restart, and a run killed during a save
leaves only a temporary folder, which orbax ignores.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

PyTree = Any


def _is_key(leaf: Any) -> bool:
  return hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _to_storable(state: PyTree) -> PyTree:
  return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, state)


def _from_storable(stored: PyTree, like: PyTree) -> PyTree:
  return jax.tree.map(lambda x, ref: jax.random.wrap_key_data(x) if _is_key(ref) else x,
                      stored, like)


class RunCheckpointer:
  """Save and restore one pytree per step under `directory`, keeping the newest few."""

  def __init__(self, directory: str | pathlib.Path, max_to_keep: int = 2):
    self._directory = pathlib.Path(directory).absolute()
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=False)
    self._manager = ocp.CheckpointManager(self._directory, options=options)

  @property
  def directory(self) -> pathlib.Path:
    return self._directory

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: PyTree) -> None:
    """Write `state` as checkpoint `step`, replacing a checkpoint of that step if present."""
    storable = _to_storable(state)
    self._manager.save(int(step), args=ocp.args.StandardSave(storable), force=True)
    self._manager.wait_until_finished()

  def restore(self, like: PyTree, step: int | None = None) -> PyTree:
    """Restore checkpoint `step` (the newest when None) into the structure of `like`."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"No checkpoint found under {self._directory}.")
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype) if not hasattr(
            x, "sharding") else jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
        _to_storable(like))
    stored = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
    return _from_storable(stored, like)

  def close(self) -> None:
    self._manager.close()
