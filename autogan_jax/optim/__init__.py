"""Learned update rules as optax gradient transformations, the default rule G*, G_optim and D_optim."""

from autogan_jax.optim import curve_judge
from autogan_jax.optim import strategy

from autogan_jax.optim.defaults import DEFAULT_RULES
from autogan_jax.optim.defaults import current_default
from autogan_jax.optim.defaults import default_rule
from autogan_jax.optim.defaults import default_rule_scope
from autogan_jax.optim.learned import BASIS
from autogan_jax.optim.learned import FEATURES
from autogan_jax.optim.learned import LearnedRuleState
from autogan_jax.optim.learned import RuleHyperparams
from autogan_jax.optim.learned import adam_meta_params
from autogan_jax.optim.learned import default_hyperparams
from autogan_jax.optim.learned import init_meta_params
from autogan_jax.optim.learned import learned_optimizer
from autogan_jax.optim.learned import UNROLLABLE_RULES
from autogan_jax.optim.learned import sgd_meta_params
from autogan_jax.optim.learned import unrollable_rule
from autogan_jax.optim.rules import g_star
from autogan_jax.optim.rules import load_rule
from autogan_jax.optim.rules import save_rule

__all__ = [
    "curve_judge", "strategy",
    "DEFAULT_RULES", "current_default", "default_rule", "default_rule_scope",
    "BASIS", "FEATURES", "LearnedRuleState", "RuleHyperparams", "adam_meta_params",
    "UNROLLABLE_RULES", "default_hyperparams", "init_meta_params", "learned_optimizer",
    "g_star", "load_rule", "save_rule", "sgd_meta_params", "unrollable_rule",
]
