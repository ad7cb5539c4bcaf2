"""Selection over a population's fitness (lower is better), with padded members masked out.

Random draws of member `i` use `fold_in(key, i)`, so a member's draw does not
depend on how many padded members follow it or on how the population is
sharded. NaN fitness counts as the worst value.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def masked_fitness(fitness: jax.Array, valid: jax.Array) -> jax.Array:
  """Return fitness with NaN and padded members set to +inf, so they rank last."""
  return jnp.where(valid & ~jnp.isnan(fitness), fitness, jnp.inf)


def ranks(fitness: jax.Array, valid: jax.Array) -> jax.Array:
  """Return each member's rank, 0 for the best; ties keep the lower index first."""
  order = jnp.argsort(masked_fitness(fitness, valid), stable=True)
  return jnp.zeros_like(order).at[order].set(jnp.arange(order.shape[0], dtype=order.dtype))


def _member_keys(key: jax.Array, count: int) -> jax.Array:
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(count))


def truncation_selection(key: jax.Array, fitness: jax.Array, valid: jax.Array,
                         num_valid: int, fraction: float) -> tuple[jax.Array, jax.Array]:
  """Let the worst `fraction` of members each copy a random member of the best `fraction`.

  Args:
    key: PRNG key.
    fitness: shape [N], lower is better.
    valid: shape [N] bool, False for padded members.
    num_valid: number of real members, a Python int.
    fraction: share of real members in the top and in the bottom group, in
      (0, 0.5]. The group size is `max(1, floor(fraction * num_valid))`.

  Returns:
    `(parents, chosen)`: `parents[i]` is the member that member `i` copies
    (`i` itself when it keeps its state), and `chosen[i]` is True where member
    `i` copies another member.
  """
  if not 0.0 < fraction <= 0.5:
    raise ValueError(f"Truncation fraction must be in (0, 0.5], got {fraction}.")
  count = max(1, int(fraction * num_valid))
  size = fitness.shape[0]
  order = jnp.argsort(masked_fitness(fitness, valid), stable=True)
  member_rank = jnp.zeros_like(order).at[order].set(jnp.arange(size, dtype=order.dtype))
  top = order[:count]

  picks = jax.vmap(lambda k: jax.random.randint(k, (), 0, count))(_member_keys(key, size))
  chosen = valid & (member_rank >= num_valid - count)
  parents = jnp.where(chosen, top[picks], jnp.arange(size))
  return parents, chosen


def tournament_selection(key: jax.Array, fitness: jax.Array, valid: jax.Array,
                         num_valid: int, tournament_size: int) -> tuple[jax.Array, jax.Array]:
  """Let each member copy the winner of a tournament when the winner is strictly better.

  Each member draws `tournament_size` real members uniformly with replacement.
  The draw with the lowest fitness wins (ties go to the lower index).

  Returns:
    `(parents, chosen)` as in `truncation_selection`.
  """
  if tournament_size < 1:
    raise ValueError(f"Tournament size must be at least 1, got {tournament_size}.")
  size = fitness.shape[0]
  scores = masked_fitness(fitness, valid)

  def tournament(member_key):
    entrants = jax.random.randint(member_key, (tournament_size,), 0, num_valid)
    entrant_scores = scores[entrants]
    best = jnp.argmin(entrant_scores)
    # Among entrants tied on fitness, prefer the lowest index.
    tied = entrant_scores == entrant_scores[best]
    return jnp.min(jnp.where(tied, entrants, size))

  winners = jax.vmap(tournament)(_member_keys(key, size))
  chosen = valid & (scores[winners] < scores)
  parents = jnp.where(chosen, winners, jnp.arange(size))
  return parents, chosen
