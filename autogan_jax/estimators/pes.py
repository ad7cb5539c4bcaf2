"""Persistent evolution strategies (PES) for long unrolled computations.

Vicol, Metz and Sohl-Dickstein, "Unbiased Gradient Estimation in Unrolled
Computation Graphs with Persistent Evolution Strategies", ICML 2021.

An inner run of T steps is cut into truncations of K steps. Every particle
keeps its own inner state across truncations and the sum `xi` of all
perturbations it has used since its run started. At each truncation particle
`i` draws `eps_i ~ N(0, sigma^2 I)`, sets `xi_i += eps_i`, unrolls K steps
with `theta + eps_i` and reports the loss `L_i` of those steps. The estimate

    g = 1 / (N sigma^2) * sum_i xi_i * L_i

summed over the truncations of a run is an unbiased estimate of the gradient
of the whole run's smoothed loss, where truncated ES (which uses `eps_i` in
place of `xi_i`) is biased. Particles come in mirrored pairs (`+eps`, `-eps`,
so their `xi` are mirrored too), the antithetic variant of the paper.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from autogan_jax.estimators import es

PyTree = Any


@struct.dataclass
class PESState:
  """Particles of persistent ES.

  Attributes:
    inner_state: the unroll state of each particle, leading axis 2N: the N
      positive particles first, then their N mirrored partners.
    accumulated: `xi` of each positive particle, leading axis N, shaped like
      theta; partner `N + i` has `-xi_i`.
    truncation: truncations done since the last full reset, int32.
  """

  inner_state: PyTree
  accumulated: PyTree
  truncation: jax.Array


def _broadcast(tree: PyTree, count: int) -> PyTree:
  return jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (count,) + jnp.shape(leaf)), tree)


def pes_init(theta: PyTree, inner_state: PyTree, num_pairs: int) -> PESState:
  """Start `2 * num_pairs` particles from one fresh `inner_state`, with `xi = 0`."""
  if num_pairs < 1:
    raise ValueError(f"num_pairs must be at least 1, got {num_pairs}.")
  return PESState(
      inner_state=_broadcast(inner_state, 2 * num_pairs),
      accumulated=jax.tree.map(lambda t: jnp.zeros((num_pairs,) + jnp.shape(t),
                                                   jnp.result_type(t)), theta),
      truncation=jnp.zeros((), jnp.int32))


def pes_reset(state: PESState, inner_state: PyTree | None = None,
              pairs: jax.Array | None = None) -> PESState:
  """Restart particles: `xi` becomes 0 and, when given, the inner state becomes `inner_state`.

  Call it when an inner run ends. `pairs` (bool, shape [N]) restarts only those
  pairs, both partners of each; None restarts all. Resetting only `xi` before
  every truncation turns PES into truncated ES.
  """
  num_pairs = jax.tree.leaves(state.accumulated)[0].shape[0]
  pairs = jnp.ones((num_pairs,), bool) if pairs is None else pairs
  both = jnp.concatenate([pairs, pairs])

  def where_rows(mask, new, old):
    return jnp.where(mask.reshape(mask.shape + (1,) * (old.ndim - 1)), new, old)

  accumulated = jax.tree.map(lambda xi: where_rows(pairs, jnp.zeros_like(xi), xi),
                             state.accumulated)
  particles = state.inner_state
  if inner_state is not None:
    fresh = _broadcast(inner_state, 2 * num_pairs)
    particles = jax.tree.map(lambda new, old: where_rows(both, new, old), fresh, particles)
  truncation = jnp.where(jnp.all(pairs), 0, state.truncation)
  return PESState(inner_state=particles, accumulated=accumulated, truncation=truncation)


def pes_step(key: jax.Array, theta: PyTree, state: PESState,
             unroll_fn: Callable[[PyTree, PyTree, jax.Array], tuple[PyTree, jax.Array]],
             sigma: float | jax.Array) -> tuple[PyTree, PESState, dict[str, jax.Array]]:
  """Run one truncation of every particle and return the PES gradient estimate.

  Args:
    key: PRNG key of this truncation.
    theta: the meta-parameters being estimated.
    state: the particles.
    unroll_fn: `unroll_fn(theta, inner_state, key) -> (inner_state, loss)` runs
      one truncation of K steps and returns the summed (or mean) loss of those
      steps; it is vmapped over the 2N particles. Mirrored partners get the
      same key.
    sigma: standard deviation of the perturbations.

  Returns:
    `(grad, state, metrics)`: `grad` is shaped like `theta`, `metrics["loss"]`
    is the mean truncation loss over all particles.
  """
  num_pairs = jax.tree.leaves(state.accumulated)[0].shape[0]
  perturb_key, unroll_key = jax.random.split(key)
  eps = es.antithetic_perturbations(perturb_key, theta, num_pairs, sigma)
  accumulated = jax.tree.map(jnp.add, state.accumulated, eps)

  thetas = jax.tree.map(lambda t, e: jnp.concatenate([t + e, t - e]), theta, eps)
  pair_keys = jax.random.split(unroll_key, num_pairs)
  particle_keys = jnp.concatenate([pair_keys, pair_keys])
  inner_state, losses = jax.vmap(unroll_fn)(thetas, state.inner_state, particle_keys)

  grad = es.es_gradient_from_losses(accumulated, losses[:num_pairs], losses[num_pairs:], sigma)
  new_state = PESState(inner_state=inner_state, accumulated=accumulated,
                       truncation=state.truncation + 1)
  return grad, new_state, {"loss": jnp.mean(losses)}
