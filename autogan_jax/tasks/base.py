"""The task protocol of level 0.

A task is a pytree: its structure (shapes, data set) is static and its variant
(width in use, activation, batch size, data subset, seed) is array data. Tasks
of one structure therefore stack along a leading axis and train in one
`vmap`, and changing a variant never recompiles.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import jax
import jax.flatten_util
from flax import struct

Params = Any
Batch = Any


@runtime_checkable
class Task(Protocol):
  """The interface of every level-0 task; all methods are pure and jittable."""

  name: str

  def init(self, key: jax.Array) -> Params:
    """Return freshly initialised parameters."""

  def batch(self, key: jax.Array, step: jax.Array | int) -> Batch:
    """Return the training batch of `step`, a pure function of `key` and `step`."""

  def loss(self, params: Params, batch: Batch, key: jax.Array) -> jax.Array:
    """Return the scalar training loss of `params` on `batch`."""

  def evaluate(self, params: Params, split: str = "test") -> dict[str, jax.Array]:
    """Return `loss` and, where the task has one, `accuracy` on a whole split."""


def _unravel_fn(task):
  shapes = jax.eval_shape(task.init, jax.random.key(0))
  _, unravel = jax.flatten_util.ravel_pytree(
      jax.tree.map(lambda s: jax.numpy.zeros(s.shape, s.dtype), shapes))
  return unravel


@struct.dataclass
class FlatTask:
  """A task whose parameters are one flat vector.

  A per-parameter update rule then runs once over one tensor instead of once
  per leaf, which shrinks the compiled program of meta-training several times
  over. The math of the task is unchanged.
  """

  task: Any
  name: str = struct.field(pytree_node=False, default="flat")

  def describe(self) -> str:
    return self.task.describe()

  def init(self, key):
    flat, _ = jax.flatten_util.ravel_pytree(self.task.init(key))
    return flat

  def batch(self, key, step):
    return self.task.batch(key, step)

  def loss(self, params, batch, key=None):
    return self.task.loss(_unravel_fn(self.task)(params), batch, key)

  def evaluate(self, params, split="test"):
    return self.task.evaluate(_unravel_fn(self.task)(params), split)
