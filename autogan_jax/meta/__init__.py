"""Meta-training of learned update rules: imitation of Adam, truncated backpropagation,
and held-out evaluation against tuned baselines."""

from autogan_jax.meta import evaluation
from autogan_jax.meta import inner
from autogan_jax.meta.imitation import Imitation
from autogan_jax.meta.imitation import ImitationState
from autogan_jax.meta.truncated import MetaHyperparams
from autogan_jax.meta.truncated import MetaTrainState
from autogan_jax.meta.truncated import SelfCoordinates
from autogan_jax.meta.truncated import TruncatedTrainer
from autogan_jax.meta.truncated import keep_best
from autogan_jax.meta.truncated import make_hyperparams

__all__ = [
    "Imitation", "ImitationState", "MetaHyperparams", "MetaTrainState", "SelfCoordinates", "TruncatedTrainer",
    "evaluation", "inner", "keep_best", "make_hyperparams",
]
