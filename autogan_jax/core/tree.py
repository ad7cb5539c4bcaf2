"""Small pytree utilities that optax.tree and jax.tree do not provide."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any


def all_finite(tree: PyTree) -> jax.Array:
  """Return a scalar bool that is True when every leaf holds only finite values."""
  leaves = jax.tree.leaves(tree)
  if not leaves:
    return jnp.array(True)
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


def select(condition: jax.Array, on_true: PyTree, on_false: PyTree) -> PyTree:
  """Pick `on_true` where the scalar `condition` holds, else `on_false`, leaf by leaf."""
  return jax.tree.map(lambda a, b: jnp.where(condition, a, b), on_true, on_false)


def select_rows(mask: jax.Array, on_true: PyTree, on_false: PyTree) -> PyTree:
  """Pick members along the leading axis: row i of `on_true` where `mask[i]`, else of `on_false`."""

  def pick(a, b):
    shaped = mask.reshape(mask.shape + (1,) * (a.ndim - 1))
    return jnp.where(shaped, a, b)

  return jax.tree.map(pick, on_true, on_false)


def stack(trees: list[PyTree]) -> PyTree:
  """Stack a list of pytrees of one structure along a new leading axis."""
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def index(tree: PyTree, i: int | jax.Array) -> PyTree:
  """Return member `i` of a pytree with a leading population axis."""
  return jax.tree.map(lambda leaf: leaf[i], tree)


def size(tree: PyTree) -> int:
  """Return the number of scalars in a pytree."""
  return sum(int(leaf.size) for leaf in jax.tree.leaves(tree))
