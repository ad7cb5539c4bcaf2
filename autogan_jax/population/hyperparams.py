"""Per-member hyperparameters stored in the state of `optax.inject_hyperparams`.

`optax.inject_hyperparams(optax.adam)(learning_rate=...)` keeps its numeric
hyperparameters in the optimizer state as arrays. In a population those arrays
carry the population axis, so every member has its own values, and changing
them is a change of data: the jitted training step is not traced again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

PyTree = Any

_INJECT_STATES = (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)


def _is_inject_state(node: Any) -> bool:
  return isinstance(node, _INJECT_STATES)


def hyperparam_names(opt_state: PyTree) -> tuple[str, ...]:
  """Return the sorted names of all injected hyperparameters found in `opt_state`."""
  names = set()
  for node in jax.tree.leaves(opt_state, is_leaf=_is_inject_state):
    if _is_inject_state(node):
      names.update(node.hyperparams)
  return tuple(sorted(names))


def get_hyperparams(opt_state: PyTree) -> dict[str, jax.Array]:
  """Return the injected hyperparameters of `opt_state` by name.

  When several `inject_hyperparams` states in one chain share a name, the first
  one in pytree order is returned.
  """
  found: dict[str, jax.Array] = {}
  for node in jax.tree.leaves(opt_state, is_leaf=_is_inject_state):
    if _is_inject_state(node):
      for name, value in node.hyperparams.items():
        found.setdefault(name, value)
  return found


def _check_names(opt_state: PyTree, names: Mapping[str, Any] | tuple[str, ...]) -> None:
  available = hyperparam_names(opt_state)
  missing = sorted(set(names) - set(available))
  if missing:
    raise ValueError(
        f"Hyperparameters {missing} are not in the optimizer state, which has {list(available)}. "
        "Wrap the transform with optax.inject_hyperparams and pass those names as numbers.")


def map_hyperparams(fn, opt_state: PyTree, names: tuple[str, ...] | None = None) -> PyTree:
  """Replace each injected hyperparameter `value` named in `names` by `fn(name, value)`.

  `names=None` maps every floating-point hyperparameter. Integer and boolean
  hyperparameters are never passed to `fn` unless named.
  """
  if names is not None:
    _check_names(opt_state, names)

  def visit(node):
    if not _is_inject_state(node):
      return node
    updated = dict(node.hyperparams)
    for name, value in node.hyperparams.items():
      chosen = (jnp.issubdtype(jnp.asarray(value).dtype, jnp.floating)
                if names is None else name in names)
      if chosen:
        updated[name] = jnp.asarray(fn(name, value), jnp.asarray(value).dtype)
    return node._replace(hyperparams=updated)

  return jax.tree.map(visit, opt_state, is_leaf=_is_inject_state)


def set_hyperparams(opt_state: PyTree, values: Mapping[str, jax.typing.ArrayLike]) -> PyTree:
  """Return `opt_state` with the named injected hyperparameters set to `values`.

  Each value must broadcast to the stored shape: in a population state with
  leading axis N, pass an array of shape [N] to give each member its own value.

  Raises:
    ValueError: when a name is not an injected hyperparameter of `opt_state`.
  """
  _check_names(opt_state, tuple(values))

  def assign(name, old):
    return jnp.broadcast_to(jnp.asarray(values[name], jnp.asarray(old).dtype), jnp.shape(old))

  return map_hyperparams(assign, opt_state, tuple(values))
