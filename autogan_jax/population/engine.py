"""Generations of a population: train all members, quarantine failures, exploit and explore.

One generation is one jitted call:

1. train every member for `steps_per_generation` steps and evaluate it
   (`jit(vmap(scan))`, sharded over the `pop` mesh axis when the state is);
2. replace each member whose training loss, params, optimizer state or
   fitness is NaN or Inf with a copy of the best healthy member, and count it;
3. population-based training (Jaderberg et al., "Population Based Training of
   Neural Networks", 2017): members chosen by truncation or tournament
   selection copy the params, optimizer state and meta-parameters of a better
   member (exploit), then perturb their injected hyperparameters and their
   meta-parameters (explore).

All shapes are fixed by the population and the task, so generations after the
first reuse the compiled step.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from jax.sharding import Mesh

from autogan_jax.core import tree as tree_lib
from autogan_jax.core import validation
from autogan_jax.population import hyperparams as hyperparams_lib
from autogan_jax.population import selection
from autogan_jax.population import sharding
from autogan_jax.population import training

PyTree = Any
SELECTIONS = ("truncation", "tournament", "none")


@struct.dataclass
class PopulationState:
  """Members along a leading axis; rows at and after `population_size` are padding.

  Attributes:
    params: task parameters, leading axis N (padded size).
    opt_state: optimizer states, including per-member injected hyperparameters.
    meta_params: per-member meta-parameters (an empty dict when unused).
    fitness: shape [N], the last evaluation metric, lower is better; +inf for
      padding and before the first generation.
    generation: generations completed, int32.
    step: inner training steps completed by each member, int32.
    num_replaced: members replaced for non-finite values so far, int32.
    population_size: number of real members (static).
  """

  params: PyTree
  opt_state: PyTree
  meta_params: PyTree
  fitness: jax.Array
  generation: jax.Array
  step: jax.Array
  num_replaced: jax.Array
  population_size: int = struct.field(pytree_node=False, default=1)

  def valid(self) -> jax.Array:
    """Return the [N] mask that is True for real members and False for padding."""
    return jnp.arange(self.fitness.shape[0]) < self.population_size


@dataclasses.dataclass(frozen=True)
class GenerationConfig:
  """Settings of one generation; all of them are static.

  Attributes:
    steps_per_generation: inner training steps of each member per generation.
    eval_split: data split whose metric is the fitness.
    fitness_metric: key of `task.evaluate`'s result used as fitness.
    selection: "truncation", "tournament" or "none" (no exploit or explore).
    truncation_fraction: share of members in the top and bottom groups.
    tournament_size: entrants per tournament.
    explore_hyperparams: injected hyperparameter names to perturb; an empty
      tuple perturbs none.
    perturb_factor: an explored hyperparameter is multiplied by this factor or
      by its inverse, with equal probability.
    meta_params_noise: standard deviation of the Gaussian noise added to every
      floating-point leaf of an explored member's meta-parameters.
    tasks_batched: whether `tasks` carries the population axis.
  """

  steps_per_generation: int = 50
  eval_split: str = "valid"
  fitness_metric: str = "loss"
  selection: str = "truncation"
  truncation_fraction: float = 0.25
  tournament_size: int = 2
  explore_hyperparams: tuple[str, ...] = ("learning_rate",)
  perturb_factor: float = 1.25
  meta_params_noise: float = 0.01
  tasks_batched: bool = False

  def __post_init__(self):
    validation.check("steps_per_generation", self.steps_per_generation, validation.IntRange(1))
    validation.check_choice("selection", self.selection, SELECTIONS)
    validation.check("truncation_fraction", self.truncation_fraction,
                     validation.FloatRange(0.0, 0.5, low_inclusive=False))
    validation.check("tournament_size", self.tournament_size, validation.IntRange(1))
    validation.check("perturb_factor", self.perturb_factor,
                     validation.FloatRange(1.0, low_inclusive=True))
    validation.check("meta_params_noise", self.meta_params_noise, validation.FloatRange(0.0))


def init_population(key: jax.Array, tasks: PyTree, update_rule: training.UpdateRule,
                    population_size: int, hyperparams: dict[str, jax.typing.ArrayLike] | None = None,
                    meta_params: PyTree = None, tasks_batched: bool = False) -> PopulationState:
  """Create a population of `population_size` freshly initialised members.

  Args:
    key: PRNG key; member `i` initialises its params from `fold_in(key, i)`.
    tasks: one task, or a task pytree with the population axis when
      `tasks_batched`.
    update_rule: an optax transform, or a function of one member's
      meta-parameters that returns one.
    population_size: number of members.
    hyperparams: injected hyperparameter values by name, each a scalar or an
      array of shape [population_size].
    meta_params: per-member meta-parameters with the population axis, or None.
    tasks_batched: whether `tasks` carries the population axis.
  """
  validation.check("population_size", population_size, validation.IntRange(1))
  meta_params = {} if meta_params is None else meta_params
  params, opt_state = training.init_members(key, tasks, update_rule, population_size,
                                            meta_params, tasks_batched)
  if hyperparams:
    opt_state = hyperparams_lib.set_hyperparams(opt_state, {
        name: jnp.broadcast_to(jnp.asarray(value), (population_size,))
        for name, value in hyperparams.items()})
  return PopulationState(
      params=params, opt_state=opt_state, meta_params=meta_params,
      fitness=jnp.full((population_size,), jnp.inf, jnp.float32),
      generation=jnp.zeros((), jnp.int32), step=jnp.zeros((), jnp.int32),
      num_replaced=jnp.zeros((), jnp.int32), population_size=population_size)


def distribute(state: PopulationState, mesh: Mesh,
               tasks: PyTree = None) -> tuple[PopulationState, PyTree]:
  """Pad the population to a multiple of the mesh size and shard it over `pop`.

  Padded members are copies of member 0 with fitness +inf. They are never
  selected, never donate and never counted. Pass `tasks` when they carry the
  population axis, so they are padded and sharded the same way.

  NOTE: padded members still train, so each costs as much compute as a real one.

  Returns:
    `(state, tasks)` placed on `mesh`; `tasks` is None when not given.
  """
  size = sharding.padded_size(state.fitness.shape[0], mesh.shape[sharding.AXIS])
  padded = sharding.pad_leading(state, size)
  padded = padded.replace(fitness=jnp.where(padded.valid(), padded.fitness, jnp.inf))
  placed_tasks = None
  if tasks is not None:
    placed_tasks = sharding.shard_leading(sharding.pad_leading(tasks, size), mesh)
  return sharding.shard_leading(padded, mesh), placed_tasks


def real_members(state: PopulationState) -> PopulationState:
  """Drop the padding rows of a population."""
  return sharding.unpad_leading(state, state.population_size)


def _copy_rows(tree: PyTree, rows: jax.Array) -> PyTree:
  return jax.tree.map(lambda leaf: leaf[rows], tree)


def _member_healthy(params, opt_state, fitness) -> jax.Array:
  return tree_lib.all_finite(params) & tree_lib.all_finite(opt_state) & jnp.isfinite(fitness)


def replace_nonfinite(state: PopulationState,
                      train_losses: jax.Array | None = None) -> tuple[PopulationState, jax.Array]:
  """Replace each real member with non-finite params, optimizer state, fitness or loss.

  `train_losses` (shape [N, steps]), when given, also marks a member as failed
  when any of its training losses is NaN or Inf, even if its params stayed
  finite.

  A failed member becomes a copy of the healthy member with the best
  fitness. When no real member is healthy, nothing is copied and
  `num_replaced` does not change.

  Returns:
    `(state, failed)`: the repaired state, with `num_replaced` increased by
    the number of replaced members, and the [N] mask of failed real members.
  """
  valid = state.valid()
  healthy = jax.vmap(_member_healthy)(state.params, state.opt_state, state.fitness)
  if jax.tree.leaves(state.meta_params):
    healthy = healthy & jax.vmap(tree_lib.all_finite)(state.meta_params)
  if train_losses is not None:
    healthy = healthy & jnp.all(jnp.isfinite(train_losses), axis=1)
  failed = valid & ~healthy
  any_healthy = jnp.any(valid & healthy)
  donor = jnp.argmin(jnp.where(valid & healthy, state.fitness, jnp.inf))
  replace = failed & any_healthy
  rows = jnp.where(replace, donor, jnp.arange(state.fitness.shape[0]))
  repaired = state.replace(
      params=_copy_rows(state.params, rows),
      opt_state=_copy_rows(state.opt_state, rows),
      meta_params=_copy_rows(state.meta_params, rows),
      fitness=state.fitness[rows],
      num_replaced=state.num_replaced + jnp.sum(replace).astype(jnp.int32))
  return repaired, failed


def exploit_and_explore(key: jax.Array, state: PopulationState,
                        config: GenerationConfig) -> tuple[PopulationState, dict[str, jax.Array]]:
  """Run one exploit and explore step of population-based training.

  Returns:
    `(state, info)` where `info["parents"][i]` is the member that member `i`
    copied (itself when it did not) and `info["explored"]` marks the members
    that copied and were perturbed.
  """
  size = state.fitness.shape[0]
  valid = state.valid()
  named = {name: jax.random.fold_in(key, i)
           for i, name in enumerate(("select", "hyperparams", "meta_params"))}
  if config.selection == "none":
    return state, {"parents": jnp.arange(size), "explored": jnp.zeros(size, bool)}
  if config.selection == "truncation":
    parents, chosen = selection.truncation_selection(
        named["select"], state.fitness, valid, state.population_size, config.truncation_fraction)
  else:
    parents, chosen = selection.tournament_selection(
        named["select"], state.fitness, valid, state.population_size, config.tournament_size)

  params = _copy_rows(state.params, parents)
  opt_state = _copy_rows(state.opt_state, parents)
  meta_params = _copy_rows(state.meta_params, parents)
  fitness = state.fitness[parents]

  rows = jnp.arange(size)
  if config.explore_hyperparams:
    log_factor = jnp.log(config.perturb_factor)

    def perturb_hyperparam(name, value):
      name_key = jax.random.fold_in(named["hyperparams"], config.explore_hyperparams.index(name))
      signs = jax.vmap(lambda i: jax.random.rademacher(jax.random.fold_in(name_key, i), ()))(rows)
      factor = jnp.exp(log_factor * signs.astype(jnp.float32))
      shaped = lambda x: x.reshape((size,) + (1,) * (jnp.ndim(value) - 1))  # noqa: E731
      return jnp.where(shaped(chosen), value * shaped(factor), value)

    opt_state = hyperparams_lib.map_hyperparams(perturb_hyperparam, opt_state,
                                                config.explore_hyperparams)

  if config.meta_params_noise > 0 and jax.tree.leaves(meta_params):
    leaves, treedef = jax.tree.flatten(meta_params)
    noisy = []
    for index, leaf in enumerate(leaves):
      if not jnp.issubdtype(leaf.dtype, jnp.floating):
        noisy.append(leaf)
        continue
      leaf_key = jax.random.fold_in(named["meta_params"], index)
      noise = jax.vmap(lambda i, shape=leaf.shape[1:], dtype=leaf.dtype: jax.random.normal(
          jax.random.fold_in(leaf_key, i), shape, dtype))(rows)
      mask = chosen.reshape((size,) + (1,) * (leaf.ndim - 1))
      noisy.append(jnp.where(mask, leaf + config.meta_params_noise * noise, leaf))
    meta_params = jax.tree.unflatten(treedef, noisy)

  state = state.replace(params=params, opt_state=opt_state, meta_params=meta_params,
                        fitness=fitness)
  return state, {"parents": parents, "explored": chosen}


def make_generation_step(update_rule: training.UpdateRule, config: GenerationConfig):
  """Build `generation(state, tasks, key) -> (state, metrics)`, not yet jitted.

  The keys of generation `g` are `fold_in(key, g)`, and member `i` trains
  with `fold_in(fold_in(key, g), i)`, so results do not depend on padding or
  sharding. Wrap the result in `jax.jit` (and count traces with
  `core.TraceCounter` where it matters).

  Returns a function whose metrics are:
    train_loss [N, steps], eval (dict of [N]), fitness [N] after the
    generation's training, failed [N] (non-finite members before repair),
    num_failed (real members that failed this generation), parents [N],
    explored [N].
  """
  trainer = training.make_population_trainer(update_rule, config.steps_per_generation,
                                             config.eval_split, config.tasks_batched)

  def generation(state: PopulationState, tasks: PyTree, key: jax.Array):
    generation_key = jax.random.fold_in(key, state.generation)
    train_key = jax.random.fold_in(generation_key, 0)
    pbt_key = jax.random.fold_in(generation_key, 1)
    size = state.fitness.shape[0]
    member_keys = jax.vmap(lambda i: jax.random.fold_in(train_key, i))(jnp.arange(size))

    params, opt_state, losses, eval_metrics = trainer(
        state.params, state.opt_state, state.meta_params, tasks, member_keys, state.step)
    if config.fitness_metric not in eval_metrics:
      raise ValueError(f"Fitness metric {config.fitness_metric!r} is not among the task's "
                       f"evaluation metrics {sorted(eval_metrics)}.")
    fitness = jnp.where(state.valid(), eval_metrics[config.fitness_metric].astype(jnp.float32),
                        jnp.inf)
    trained = state.replace(params=params, opt_state=opt_state, fitness=fitness,
                            step=state.step + config.steps_per_generation)
    repaired, failed = replace_nonfinite(trained, losses)
    evolved, info = exploit_and_explore(pbt_key, repaired, config)
    evolved = evolved.replace(generation=state.generation + 1)
    metrics = {
        "train_loss": losses, "eval": eval_metrics, "fitness": fitness, "failed": failed,
        "num_failed": jnp.sum(failed).astype(jnp.int32), **info,
    }
    return evolved, metrics

  return generation
