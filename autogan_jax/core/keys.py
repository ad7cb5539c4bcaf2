"""PRNG-key handling: one split at the top into named subkeys, never a reused key."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np


def as_key(seed_or_key: int | jax.Array) -> jax.Array:
  """Return a typed PRNG key for an integer seed, or the key itself.

  Raw `uint32[2]` keys from `jax.random.PRNGKey` are wrapped as typed keys so
  that every key in the framework has one representation.
  """
  if isinstance(seed_or_key, (int, np.integer)):
    return jax.random.key(int(seed_or_key))
  key = seed_or_key
  if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
    return key
  if key.dtype == np.uint32 and key.shape[-1:] == (2,):
    return jax.random.wrap_key_data(key)
  raise TypeError(
      f"Expected an int seed or a PRNG key, got an array of dtype {key.dtype} and shape "
      f"{key.shape}. Create keys with jax.random.key(seed).")


def split_named(key: jax.Array, names: Sequence[str]) -> dict[str, jax.Array]:
  """Split `key` once into one independent subkey per name."""
  if len(set(names)) != len(names):
    raise ValueError(f"Subkey names must be unique, got {list(names)}.")
  subkeys = jax.random.split(key, len(names))
  return {name: subkeys[i] for i, name in enumerate(names)}


def step_key(key: jax.Array, step: int | jax.Array) -> jax.Array:
  """Return the key of one step, a pure function of the base key and the step.

  A resumed run draws the same keys as an uninterrupted one because no key
  depends on how many keys were drawn before.
  """
  return jax.random.fold_in(key, step)
