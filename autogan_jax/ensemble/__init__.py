"""Ensembles as vmapped populations, the MIMO baseline and G_ensemble, their one-pass imitation."""

from autogan_jax.ensemble.distillation import adversarial_finetune
from autogan_jax.ensemble.distillation import augment_inputs
from autogan_jax.ensemble.distillation import dirichlet_log_prob
from autogan_jax.ensemble.distillation import dirichlet_spread
from autogan_jax.ensemble.distillation import distill
from autogan_jax.ensemble.distillation import draw_token_windows
from autogan_jax.ensemble.mimo import mimo_probs
from autogan_jax.ensemble.mimo import train_mimo
from autogan_jax.ensemble.population import EnsembleSpec
from autogan_jax.ensemble.population import build_char_members
from autogan_jax.ensemble.population import build_members
from autogan_jax.ensemble.population import member_probs
from autogan_jax.ensemble.population import train_population

__all__ = [
    "EnsembleSpec", "adversarial_finetune", "augment_inputs", "build_char_members",
    "build_members", "dirichlet_log_prob", "dirichlet_spread", "distill", "draw_token_windows",
    "member_probs", "mimo_probs", "train_mimo", "train_population",
]
