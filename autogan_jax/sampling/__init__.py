"""Sampling: fixed rules, the learned sampler G_sampler with D_quality, and their evaluation."""

from autogan_jax.sampling import evaluation
from autogan_jax.sampling import rules
from autogan_jax.sampling.decoding import generate
from autogan_jax.sampling.decoding import memoryless
from autogan_jax.sampling.learned import ESTIMATORS
from autogan_jax.sampling.learned import make_transform
from autogan_jax.sampling.learned import train_sampler
from autogan_jax.sampling.rules import RULES
from autogan_jax.sampling.rules import apply_rule
from autogan_jax.sampling.rules import validate_rule

__all__ = [
    "ESTIMATORS", "RULES", "apply_rule", "evaluation", "generate", "make_transform", "memoryless",
    "rules", "train_sampler", "validate_rule",
]
