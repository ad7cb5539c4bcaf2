"""Orbax checkpoints of a whole run state, with typed PRNG keys handled."""

from autogan_jax.checkpoint.manager import RunCheckpointer

__all__ = ["RunCheckpointer"]
