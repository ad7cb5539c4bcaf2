"""Pluggable gradient estimators: reparameterization, Gumbel-softmax, score function, ES, PES."""

from autogan_jax.estimators.discrete import categorical_sample
from autogan_jax.estimators.discrete import gaussian_reparameterize
from autogan_jax.estimators.discrete import gumbel_softmax
from autogan_jax.estimators.discrete import score_function_surrogate
from autogan_jax.estimators.discrete import update_baseline
from autogan_jax.estimators.es import antithetic_es_gradient
from autogan_jax.estimators.es import antithetic_perturbations
from autogan_jax.estimators.es import es_gradient_from_losses
from autogan_jax.estimators.pes import PESState
from autogan_jax.estimators.pes import pes_init
from autogan_jax.estimators.pes import pes_reset
from autogan_jax.estimators.pes import pes_step

__all__ = [
    "PESState", "antithetic_es_gradient", "antithetic_perturbations", "categorical_sample",
    "es_gradient_from_losses", "gaussian_reparameterize", "gumbel_softmax", "pes_init",
    "pes_reset", "pes_step", "score_function_surrogate", "update_baseline",
]
