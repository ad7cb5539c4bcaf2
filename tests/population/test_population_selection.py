"""Truncation and tournament selection, with padded members masked out."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from autogan_jax import population


def test_ranks_put_nan_and_padding_last():
  fitness = jnp.array([3.0, jnp.nan, 1.0, 2.0, 0.0])
  valid = jnp.array([True, True, True, True, False])
  np.testing.assert_array_equal(population.ranks(fitness, valid), [2, 3, 0, 1, 4])


def test_truncation_hand_example():
  fitness = jnp.array([4.0, 1.0, 3.0, 2.0])
  parents, chosen = population.truncation_selection(jax.random.key(0), fitness,
                                                    jnp.ones(4, bool), 4, 0.25)
  np.testing.assert_array_equal(chosen, [True, False, False, False])
  np.testing.assert_array_equal(parents, [1, 1, 2, 3])


def test_tournament_copies_only_better():
  fitness = jnp.array([0.0, 1.0, 2.0, 3.0])
  parents, chosen = population.tournament_selection(jax.random.key(1), fitness,
                                                    jnp.ones(4, bool), 4, tournament_size=4)
  assert not bool(chosen[0])
  assert int(parents[0]) == 0
  for member in range(1, 4):
    winner = int(parents[member])
    assert fitness[winner] <= fitness[member]
    assert bool(chosen[member]) == (winner != member)


@functools.partial(jax.jit, static_argnames=("num_valid", "use_tournament"))
def select(key, fitness, valid, num_valid, use_tournament):
  if use_tournament:
    return population.tournament_selection(key, fitness, valid, num_valid, tournament_size=3)
  return population.truncation_selection(key, fitness, valid, num_valid, 0.25)


@settings(max_examples=20, deadline=None)
@given(num_valid=st.sampled_from([3, 7, 12]), padding=st.sampled_from([0, 4]),
       seed=st.integers(0, 1000), use_tournament=st.booleans())
def test_selection_ignores_padding(num_valid, padding, seed, use_tournament):
  rng = np.random.default_rng(seed)
  fitness = rng.normal(size=num_valid).astype(np.float32)
  padded = np.concatenate([fitness, np.full(padding, -100.0, np.float32)])
  valid = np.arange(num_valid + padding) < num_valid
  key = jax.random.key(seed)

  parents, chosen = select(key, padded, valid, num_valid, use_tournament)
  reference_parents, reference_chosen = select(key, fitness, np.ones(num_valid, bool), num_valid,
                                               use_tournament)

  # A padded member is never a parent, even with the best raw fitness, and never copies.
  assert np.all(np.asarray(parents)[:num_valid] < num_valid)
  assert not np.any(np.asarray(chosen)[num_valid:])
  # Real members select exactly as without padding.
  np.testing.assert_array_equal(np.asarray(parents)[:num_valid], reference_parents)
  np.testing.assert_array_equal(np.asarray(chosen)[:num_valid], reference_chosen)
  # A member that copies always copies a strictly better one.
  for member in np.flatnonzero(np.asarray(chosen)):
    assert fitness[int(parents[member])] < fitness[member]
