"""OpenAI-ES and CMA-ES from evosax on a shifted sphere, with non-finite fitness handled."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from autogan_jax import core
from autogan_jax import population

TARGET = {"a": jnp.array([1.0, -2.0]), "b": jnp.array(0.5)}


def sphere(solution, key):
  del key
  return (jnp.sum((solution["a"] - TARGET["a"]) ** 2) + (solution["b"] - TARGET["b"]) ** 2)


@pytest.mark.parametrize("name", population.evolution.STRATEGIES)
def test_strategy_solves_sphere(name):
  mean = {"a": jnp.zeros(2), "b": jnp.array(0.0)}
  strategy = population.make_strategy(name, 16, mean, std_init=0.5)
  evolve = population.make_evolve(strategy, sphere, num_generations=60)
  state, metrics = evolve(jax.random.key(0), mean)

  start = float(sphere(mean, None))
  assert start == pytest.approx(5.25)
  assert float(metrics["best_fitness"][-1]) < 0.05 * start
  assert float(metrics["mean_fitness"][-1]) < 0.2 * start
  final = strategy.mean(state)
  assert float(sphere(final, None)) < 0.1 * start
  assert int(jnp.sum(metrics["num_nonfinite"])) == 0


def test_nonfinite_fitness_counted_and_ranked_last():
  fitness, count = population.clean_fitness(jnp.array([1.0, jnp.nan, 3.0, jnp.inf]))
  np.testing.assert_array_equal(fitness, [1.0, 3.0, 3.0, 3.0])
  assert int(count) == 2

  def sometimes_nan(solution, key):
    return jnp.where(solution["b"] > 1.0, jnp.nan, sphere(solution, key))

  mean = {"a": jnp.zeros(2), "b": jnp.array(0.0)}
  strategy = population.make_strategy("open_es", 16, mean, std_init=1.0)
  _, metrics = population.make_evolve(strategy, sometimes_nan, num_generations=20)(
      jax.random.key(1), mean)
  assert int(jnp.sum(metrics["num_nonfinite"])) > 0
  assert bool(jnp.all(jnp.isfinite(metrics["best_fitness"])))
  assert float(metrics["best_fitness"][-1]) < 1.0


def test_strategy_rejects_bad_settings():
  mean = {"a": jnp.zeros(2)}
  with pytest.raises(core.ConfigError, match="even"):
    population.make_strategy("open_es", 7, mean)
  with pytest.raises(core.ConfigError, match="strategy"):
    population.make_strategy("nelder_mead", 8, mean)
  with pytest.raises(core.ConfigError, match="optimizer"):
    population.make_strategy("cma_es", 8, mean, optimizer=optax.sgd(0.1))
