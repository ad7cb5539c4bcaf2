"""A short population run, shared by the one-device test and its 8-device subprocess.

Run as a script, it writes the results to the .npz file named by its argument.
The test starts it with `XLA_FLAGS=--xla_force_host_platform_device_count=8`.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

from autogan_jax import population
from autogan_jax import tasks

POPULATION_SIZE = 12
GENERATIONS = 3


def run() -> dict[str, np.ndarray]:
  """Train 12 digits MLPs for 3 generations of PBT on a mesh over all devices."""
  task = tasks.digits_task(width=16, depth=1, activation="tanh", batch_size=16)
  # SGD with momentum, because Adam turns rounding-level differences in
  # near-zero gradients into whole steps of size learning_rate.
  rule = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1, momentum=0.9)
  state = population.init_population(
      jax.random.key(0), task, rule, POPULATION_SIZE,
      hyperparams={"learning_rate": jnp.geomspace(1e-2, 5e-1, POPULATION_SIZE)})
  mesh = population.population_mesh()
  state, _ = population.distribute(state, mesh)
  config = population.GenerationConfig(steps_per_generation=10, truncation_fraction=0.25)
  generation = jax.jit(population.make_generation_step(rule, config))

  fitness, parents = [], []
  for _ in range(GENERATIONS):
    state, metrics = generation(state, task, jax.random.key(1))
    fitness.append(np.asarray(metrics["fitness"])[:POPULATION_SIZE])
    parents.append(np.asarray(metrics["parents"])[:POPULATION_SIZE])

  real = population.real_members(state)
  return {
      "fitness": np.stack(fitness),
      "parents": np.stack(parents),
      "w0": np.asarray(real.params["w0"]),
      "learning_rate": np.asarray(population.get_hyperparams(real.opt_state)["learning_rate"]),
      "device_count": np.asarray(jax.device_count()),
      "padded_size": np.asarray(state.fitness.shape[0]),
      "shards": np.asarray(len(state.params["w0"].sharding.device_set)),
      "rejects_indivisible": np.asarray(_rejects_indivisible(mesh)),
  }


def _rejects_indivisible(mesh) -> bool:
  """Return whether sharding 3 members over the mesh raises (it must when devices > 1)."""
  try:
    population.shard_leading({"a": jnp.zeros((3, 2))}, mesh)
  except ValueError:
    return True
  return False


if __name__ == "__main__":
  np.savez(sys.argv[1], **run())
