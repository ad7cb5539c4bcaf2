"""Populations as a leading axis: vmapped and sharded training, selection, PBT and evosax ES."""

from autogan_jax.population.engine import GenerationConfig
from autogan_jax.population.engine import PopulationState
from autogan_jax.population.engine import distribute
from autogan_jax.population.engine import exploit_and_explore
from autogan_jax.population.engine import init_population
from autogan_jax.population.engine import make_generation_step
from autogan_jax.population.engine import real_members
from autogan_jax.population.engine import replace_nonfinite
from autogan_jax.population.evolution import Strategy
from autogan_jax.population.evolution import clean_fitness
from autogan_jax.population.evolution import make_evolve
from autogan_jax.population.evolution import make_strategy
from autogan_jax.population.hyperparams import get_hyperparams
from autogan_jax.population.hyperparams import hyperparam_names
from autogan_jax.population.hyperparams import map_hyperparams
from autogan_jax.population.hyperparams import set_hyperparams
from autogan_jax.population.selection import ranks
from autogan_jax.population.selection import tournament_selection
from autogan_jax.population.selection import truncation_selection
from autogan_jax.population.sharding import pad_leading
from autogan_jax.population.sharding import padded_size
from autogan_jax.population.sharding import population_mesh
from autogan_jax.population.sharding import shard_leading
from autogan_jax.population.sharding import unpad_leading
from autogan_jax.population.training import init_members
from autogan_jax.population.training import make_member_trainer
from autogan_jax.population.training import make_population_trainer
from autogan_jax.population.training import resolve_update_rule

__all__ = [
    "GenerationConfig", "PopulationState", "Strategy", "clean_fitness", "distribute",
    "exploit_and_explore", "get_hyperparams", "hyperparam_names", "init_members",
    "init_population", "make_evolve", "make_generation_step", "make_member_trainer",
    "make_population_trainer", "make_strategy", "map_hyperparams", "pad_leading",
    "padded_size", "population_mesh", "ranks", "real_members", "replace_nonfinite",
    "resolve_update_rule", "set_hyperparams", "shard_leading", "tournament_selection",
    "truncation_selection", "unpad_leading",
]
