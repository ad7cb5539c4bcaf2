"""AutoGAN-JAX: generators propose and discriminators judge every level of a learning system."""

__version__ = "0.1.0"
