"""The task protocol of level 0.

A task is a pytree: its structure (shapes, data set) is static and its variant
(width in use, activation, batch size, data subset, seed) is array data. Tasks
of one structure therefore stack along a leading axis and train in one
`vmap`, and changing a variant never recompiles.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import jax

Params = Any
Batch = Any


@runtime_checkable
class Task(Protocol):
  """What every level-0 task provides. All methods are pure and jittable."""

  name: str

  def init(self, key: jax.Array) -> Params:
    """Return freshly initialised parameters."""

  def batch(self, key: jax.Array, step: jax.Array | int) -> Batch:
    """Return the training batch of `step`, a pure function of `key` and `step`."""

  def loss(self, params: Params, batch: Batch, key: jax.Array) -> jax.Array:
    """Return the scalar training loss of `params` on `batch`."""

  def evaluate(self, params: Params, split: str = "test") -> dict[str, jax.Array]:
    """Return `loss` and, where the task has one, `accuracy` on a whole split."""
