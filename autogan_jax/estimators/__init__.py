"""Pluggable gradient estimators: reparameterization, Gumbel-softmax, score function."""

from autogan_jax.estimators.discrete import categorical_sample
from autogan_jax.estimators.discrete import gaussian_reparameterize
from autogan_jax.estimators.discrete import gumbel_softmax
from autogan_jax.estimators.discrete import score_function_surrogate
from autogan_jax.estimators.discrete import update_baseline

__all__ = [
    "categorical_sample", "gaussian_reparameterize", "gumbel_softmax",
    "score_function_surrogate", "update_baseline",
]
