"""The one adversarial protocol: losses and the generic G/D training step."""

from autogan_jax.gan.losses import LOSSES
from autogan_jax.gan.losses import discriminator_loss
from autogan_jax.gan.losses import generator_loss
from autogan_jax.gan.losses import gradient_penalty
from autogan_jax.gan.step import GANState
from autogan_jax.gan.step import init_state
from autogan_jax.gan.step import make_step
from autogan_jax.gan.step import top_of_archive

__all__ = [
    "GANState", "LOSSES", "discriminator_loss", "generator_loss", "gradient_penalty",
    "init_state", "make_step", "top_of_archive",
]
