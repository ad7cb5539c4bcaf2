"""Interpolation and merging of parameters: linear, SLERP, task arithmetic, TIES and DARE.

Every method works on one array and, through `jax.tree.map`, on whole
networks. The task-vector methods take a `base` (the common ancestor of the
models) and the models' stacked parameters [models, ...]; a model's task
vector is `model - base`.

- linear: (1 - t) a + t b.
- SLERP: the direction moves along the great circle from a/|a| to b/|b| at
  constant angular speed while the norm moves linearly from |a| to |b|
  (Shoemake, "Animating Rotation with Quaternion Curves", 1985, for the
  circle). Vectors whose directions are within `PARALLEL_THRESHOLD` of each
  other, and zero vectors, fall back to linear interpolation. For nearly
  anti-parallel vectors the circle is not unique, so the path turns through a
  fixed orthogonal direction and a linear correction, which is at most
  sqrt(2 (1 - PARALLEL_THRESHOLD)) in norm, makes t = 1 land on b exactly.
- task arithmetic: base + lambda * sum_i tau_i (Ilharco et al., "Editing
  Models with Task Arithmetic", 2023).
- TIES: trim each task vector to its largest-magnitude `density` share of
  entries (per array). Elect the sign of each entry as the sign of the sum of
  the trimmed values, then average only the trimmed values that agree with it
  (Yadav et al., "TIES-Merging: Resolving Interference When Merging Models",
  2023). An entry whose trimmed values sum to exactly zero, a sign tie, has no
  elected sign and keeps the base value.
- DARE: drop each task-vector entry with probability `drop_rate`, scale the
  kept ones by 1 / (1 - drop_rate), then add as in task arithmetic (Yu et al.,
  "Language Models are Super Mario: Absorbing Abilities from Homologous
  Models as a Free Lunch", 2024). The expected result equals task arithmetic.

Defaults: TIES keeps `density=0.2` of the entries and DARE drops
`drop_rate=0.5`. The TIES paper uses the top 20%. DARE's paper drops up
to 90% of large language models' deltas, but the small networks here have far
less redundant deltas, so the default keeps half.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any

METHODS = ("linear", "slerp", "task_arithmetic", "ties", "dare")
# Range of the coefficient of each method when a generator or a grid sets it:
# t for the two-point paths, lambda for the task-vector methods.
COEFFICIENT_RANGES = {
    "linear": (0.0, 1.0),
    "slerp": (0.0, 1.0),
    "task_arithmetic": (0.0, 2.0),
    "ties": (0.0, 2.0),
    "dare": (0.0, 2.0),
}
PARALLEL_THRESHOLD = 0.9995
TIES_DENSITY = 0.2
DARE_DROP_RATE = 0.5
# Norms at or below this count as zero vectors.
_TINY = 1e-12


def linear(a: jax.Array, b: jax.Array, t: jax.typing.ArrayLike) -> jax.Array:
  """Return (1 - t) a + t b."""
  return (1.0 - t) * a + t * b


def slerp(a: jax.Array, b: jax.Array, t: jax.typing.ArrayLike,
          parallel_threshold: float = PARALLEL_THRESHOLD) -> jax.Array:
  """Spherically interpolate the flattened arrays `a` and `b`; see the module docstring.

  Returns `a` at t = 0 and `b` at t = 1 up to float round-off, and finite
  values for all finite inputs.
  """
  shape = jnp.shape(a)
  a = jnp.ravel(a)
  b = jnp.ravel(b)
  norm_a = jnp.linalg.norm(a)
  norm_b = jnp.linalg.norm(b)
  degenerate = (norm_a <= _TINY) | (norm_b <= _TINY)
  unit_a = a / jnp.where(degenerate, 1.0, norm_a)
  unit_b = b / jnp.where(degenerate, 1.0, norm_b)
  cos = jnp.clip(jnp.dot(unit_a, unit_b), -1.0, 1.0)
  theta = jnp.arccos(cos)

  # The unit vector orthogonal to unit_a in the plane that contains unit_b.
  toward_b = unit_b - cos * unit_a
  toward_b_norm = jnp.linalg.norm(toward_b)
  anti_parallel = cos < -parallel_threshold

  # For nearly anti-parallel vectors that plane is ill-conditioned, so the
  # path turns toward the axis where unit_a is smallest, made orthogonal to it.
  axis = jax.nn.one_hot(jnp.argmin(jnp.abs(unit_a)), a.shape[0], dtype=a.dtype)
  fixed = axis - jnp.dot(axis, unit_a) * unit_a
  fixed_norm = jnp.linalg.norm(fixed)
  orthogonal = jnp.where(anti_parallel, fixed / jnp.where(fixed_norm > _TINY, fixed_norm, 1.0),
                         toward_b / jnp.where(toward_b_norm > _TINY, toward_b_norm, 1.0))
  angle = jnp.where(anti_parallel, jnp.pi, theta)
  direction = jnp.cos(t * angle) * unit_a + jnp.sin(t * angle) * orthogonal
  # Exact end point for the anti-parallel path: cos(pi) unit_a is -unit_a, not unit_b.
  direction = direction + jnp.where(anti_parallel, t * (unit_b + unit_a), 0.0)
  spherical = ((1.0 - t) * norm_a + t * norm_b) * direction

  # A one-dimensional vector has no orthogonal direction, so it uses the linear path too.
  use_linear = (degenerate | (cos > parallel_threshold)
                | (anti_parallel & (fixed_norm <= _TINY)))
  return jnp.where(use_linear, linear(a, b, t), spherical).reshape(shape)


def _task_vectors(base: jax.Array, models: jax.Array) -> jax.Array:
  if models.shape[1:] != base.shape:
    raise ValueError(f"Models of shape {models.shape[1:]} (after the leading models axis) do "
                     f"not match the base of shape {base.shape}.")
  return models - base[None]


def task_arithmetic(base: jax.Array, models: jax.Array,
                    scale: jax.typing.ArrayLike = 1.0) -> jax.Array:
  """Return base + scale * sum of the task vectors of `models` [models, ...]."""
  return base + scale * jnp.sum(_task_vectors(base, models), axis=0)


def trim(task_vector: jax.Array, density: float) -> jax.Array:
  """Keep the ceil(density * size) largest-magnitude entries of one task vector, zero the rest.

  Entries of equal magnitude at the cut are kept in index order, so exactly
  that many entries survive.
  """
  if not 0.0 < density <= 1.0:
    raise ValueError(f"Invalid density={density}: expected a share in (0, 1].")
  flat = jnp.ravel(task_vector)
  keep = max(1, math.ceil(density * flat.shape[0]))
  if keep >= flat.shape[0]:
    return task_vector
  _, indices = jax.lax.top_k(jnp.abs(flat), keep)
  mask = jnp.zeros(flat.shape, bool).at[indices].set(True)
  return jnp.where(mask, flat, 0.0).reshape(task_vector.shape)


def ties_task_vector(base: jax.Array, models: jax.Array,
                     density: float = TIES_DENSITY) -> jax.Array:
  """Return the TIES task vector: the disjoint mean of the trimmed, sign-elected task vectors."""
  trimmed = jax.vmap(lambda tv: trim(tv, density))(_task_vectors(base, models))
  elected = jnp.sign(jnp.sum(trimmed, axis=0))
  # A sign tie gives elected == 0, which no nonzero value matches.
  agree = (jnp.sign(trimmed) == elected[None]) & (trimmed != 0.0)
  count = jnp.sum(agree, axis=0)
  total = jnp.sum(jnp.where(agree, trimmed, 0.0), axis=0)
  return total / jnp.maximum(count, 1)


def ties(base: jax.Array, models: jax.Array, scale: jax.typing.ArrayLike = 1.0,
         density: float = TIES_DENSITY) -> jax.Array:
  """Return the TIES merge base + scale * `ties_task_vector(base, models, density)`."""
  return base + scale * ties_task_vector(base, models, density)


def dare_task_vector(key: jax.Array, base: jax.Array, models: jax.Array,
                     drop_rate: float = DARE_DROP_RATE) -> jax.Array:
  """Return the sum of the task vectors after random drops and rescaling by 1 / (1 - drop_rate)."""
  if not 0.0 <= drop_rate < 1.0:
    raise ValueError(f"Invalid drop_rate={drop_rate}: expected a probability in [0, 1).")
  task_vectors = _task_vectors(base, models)
  keep = jax.random.bernoulli(key, 1.0 - drop_rate, task_vectors.shape)
  return jnp.sum(jnp.where(keep, task_vectors / (1.0 - drop_rate), 0.0), axis=0)


def dare(key: jax.Array, base: jax.Array, models: jax.Array,
         scale: jax.typing.ArrayLike = 1.0, drop_rate: float = DARE_DROP_RATE) -> jax.Array:
  """Return the DARE merge base + scale * `dare_task_vector(key, base, models, drop_rate)`."""
  return base + scale * dare_task_vector(key, base, models, drop_rate)


def merge_pair(method: jax.Array | int, coefficient: jax.typing.ArrayLike, base: jax.Array,
               a: jax.Array, b: jax.Array, key: jax.Array, *, density: float = TIES_DENSITY,
               drop_rate: float = DARE_DROP_RATE) -> jax.Array:
  """Merge two arrays with method number `method` of `METHODS`, which may be traced.

  `coefficient` is t for "linear" and "slerp" and lambda for the task-vector
  methods, whose models are `a` and `b` with the common ancestor `base`.
  """
  models = jnp.stack([a, b])
  branches = [
      lambda c: linear(a, b, c),
      lambda c: slerp(a, b, c),
      lambda c: task_arithmetic(base, models, c),
      lambda c: ties(base, models, c, density=density),
      lambda c: dare(key, base, models, c, drop_rate=drop_rate),
  ]
  return jax.lax.switch(method, branches, coefficient)


def merge(method: str, coefficient: jax.typing.ArrayLike, base: jax.Array, a: jax.Array,
          b: jax.Array, key: jax.Array | None = None, *, density: float = TIES_DENSITY,
          drop_rate: float = DARE_DROP_RATE) -> jax.Array:
  """Merge two arrays with the method named `method`; see `merge_pair` for `coefficient`.

  Raises:
    ValueError: for an unknown method, or "dare" without a key.
  """
  if method not in METHODS:
    raise ValueError(f"Unknown merge method {method!r}; expected one of {METHODS}.")
  if method == "linear":
    return linear(a, b, coefficient)
  if method == "slerp":
    return slerp(a, b, coefficient)
  models = jnp.stack([a, b])
  if method == "task_arithmetic":
    return task_arithmetic(base, models, coefficient)
  if method == "ties":
    return ties(base, models, coefficient, density=density)
  if key is None:
    raise ValueError("The 'dare' merge draws random drops and needs a PRNG key.")
  return dare(key, base, models, coefficient, drop_rate=drop_rate)


def tree_merge(method: str, coefficient: jax.typing.ArrayLike, base: PyTree, a: PyTree,
               b: PyTree, key: jax.Array | None = None, *, density: float = TIES_DENSITY,
               drop_rate: float = DARE_DROP_RATE) -> PyTree:
  """Merge two networks array by array with one method and coefficient.

  DARE draws an independent mask for each array from `key`.

  Raises:
    ValueError: for an unknown method, or "dare" without a key.
  """
  if method not in METHODS:
    raise ValueError(f"Unknown merge method {method!r}; expected one of {METHODS}.")
  if method == "dare" and key is None:
    raise ValueError("The 'dare' merge draws random drops and needs a PRNG key.")
  leaves_a, treedef = jax.tree.flatten(a)
  leaves_b = treedef.flatten_up_to(b)
  leaves_base = treedef.flatten_up_to(base)
  keys = jax.random.split(key, len(leaves_a)) if key is not None else [None] * len(leaves_a)
  merged = [merge(method, coefficient, leaf_base, leaf_a, leaf_b, leaf_key, density=density,
                  drop_rate=drop_rate)
            for leaf_base, leaf_a, leaf_b, leaf_key in zip(leaves_base, leaves_a, leaves_b, keys)]
  return jax.tree.unflatten(treedef, merged)
