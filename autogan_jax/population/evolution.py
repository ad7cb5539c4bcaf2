"""Evolution strategies from evosax 0.3 (OpenAI-ES and CMA-ES), with a jitted generation loop.

evosax minimises fitness, as the rest of this package does. The wrappers only
choose settings and handle non-finite fitness; sampling and the mean and
covariance updates are evosax's own (`evosax.algorithms.Open_ES` and
`evosax.algorithms.CMA_ES`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from evosax import algorithms as evosax_algorithms

from autogan_jax import optim
from autogan_jax.core import validation

PyTree = Any
STRATEGIES = ("open_es", "cma_es")


@dataclasses.dataclass(frozen=True)
class Strategy:
  """An evosax algorithm with its `Params`; `init`, `ask` and `tell` are evosax's.

  Attributes:
    name: "open_es" or "cma_es".
    algorithm: the evosax algorithm object (its methods are jitted by evosax).
    params: the evosax `Params` pytree passed to every call.
  """

  name: str
  algorithm: Any
  params: Any

  @property
  def population_size(self) -> int:
    return self.algorithm.population_size

  def init(self, key: jax.Array, mean: PyTree):
    """Return the evosax state with its search distribution centred on `mean`."""
    return self.algorithm.init(key, mean, self.params)

  def ask(self, key: jax.Array, state) -> tuple[PyTree, Any]:
    """Return a population (the solution pytree with a leading axis) and the state."""
    return self.algorithm.ask(key, state, self.params)

  def tell(self, key: jax.Array, population: PyTree, fitness: jax.Array, state):
    """Update the search distribution from `fitness` (lower is better)."""
    return self.algorithm.tell(key, population, fitness, state, self.params)

  def mean(self, state) -> PyTree:
    """Return the current mean of the search distribution as a solution pytree."""
    return self.algorithm.get_mean(state)


def make_strategy(name: str, population_size: int, solution: PyTree, std_init: float = 0.1,
                  optimizer: optax.GradientTransformation | None = None,
                  antithetic: bool = True) -> Strategy:
  """Build an evosax strategy over solutions shaped like `solution`.

  Args:
    name: "open_es" (Salimans et al., "Evolution Strategies as a Scalable
      Alternative to Reinforcement Learning", 2017) or "cma_es" (Hansen,
      "The CMA Evolution Strategy: A Tutorial", 2016).
    population_size: candidates per generation; OpenAI-ES with antithetic
      sampling needs an even number.
    solution: a pytree with the shapes of one candidate.
    std_init: initial standard deviation of the search distribution.
    optimizer: OpenAI-ES only: the optax transform that applies the estimated
      gradient to the mean, for example a learned update rule. Default
      `optim.default_rule(0.05)` (G*).
    antithetic: OpenAI-ES only: sample mirrored pairs `mean +- std * eps`.
  """
  validation.check_choice("strategy", name, STRATEGIES)
  validation.check("population_size", population_size, validation.IntRange(2))
  validation.check("std_init", std_init, validation.FloatRange(0.0, low_inclusive=False))
  if name == "open_es":
    if antithetic and population_size % 2:
      raise validation.ConfigError(
          f"Invalid value population_size={population_size}: OpenAI-ES with antithetic "
          "sampling needs an even population size.")
    algorithm = evosax_algorithms.Open_ES(
        population_size=population_size, solution=solution, use_antithetic_sampling=antithetic,
        optimizer=optim.default_rule(0.05) if optimizer is None else optimizer,
        std_schedule=optax.constant_schedule(std_init))
    params = algorithm.default_params
  else:
    if optimizer is not None:
      raise validation.ConfigError("CMA-ES updates its mean itself; `optimizer` must be None.")
    algorithm = evosax_algorithms.CMA_ES(population_size=population_size, solution=solution)
    params = algorithm.default_params.replace(std_init=jnp.asarray(std_init, jnp.float32))
  return Strategy(name=name, algorithm=algorithm, params=params)


def clean_fitness(fitness: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Replace NaN and Inf fitness with the worst finite fitness of the generation.

  Evosax's fitness shaping then ranks failed candidates last without
  propagating NaN. When no candidate is finite, every fitness becomes 0.

  Returns:
    `(fitness, num_nonfinite)`.
  """
  finite = jnp.isfinite(fitness)
  worst = jnp.max(jnp.where(finite, fitness, -jnp.inf))
  worst = jnp.where(jnp.any(finite), worst, 0.0)
  return jnp.where(finite, fitness, worst), jnp.sum(~finite).astype(jnp.int32)


def make_evolve(strategy: Strategy, fitness_fn: Callable[[PyTree, jax.Array], jax.Array],
                num_generations: int) -> Callable:
  """Build a jitted `evolve(key, mean) -> (state, metrics)` over `num_generations`.

  `fitness_fn(solution, key)` returns one scalar loss; it is vmapped over the
  candidates of a generation. The generations run in a `lax.scan`.

  Metrics have a leading generation axis: `best_fitness` (best so far),
  `mean_fitness` (of the generation's finite candidates) and `num_nonfinite`.

  NOTE: the candidates are not placed on the `pop` mesh here. XLA shards their
  evaluation only when the caller runs `evolve` under a sharding of its own.
  """
  validation.check("num_generations", num_generations, validation.IntRange(1))

  def evolve(key, mean):
    init_key, loop_key = jax.random.split(key)
    state = strategy.init(init_key, mean)

    def generation(state, index):
      ask_key, eval_key, tell_key = jax.random.split(jax.random.fold_in(loop_key, index), 3)
      population, state = strategy.ask(ask_key, state)
      eval_keys = jax.random.split(eval_key, strategy.population_size)
      raw = jax.vmap(fitness_fn)(population, eval_keys)
      fitness, num_nonfinite = clean_fitness(raw)
      state, info = strategy.tell(tell_key, population, fitness, state)
      finite = jnp.isfinite(raw)
      mean_fitness = jnp.sum(jnp.where(finite, raw, 0.0)) / jnp.maximum(jnp.sum(finite), 1)
      return state, {"best_fitness": info["best_fitness"], "mean_fitness": mean_fitness,
                     "num_nonfinite": num_nonfinite}

    return jax.lax.scan(generation, state, jnp.arange(num_generations))

  return jax.jit(evolve)
