"""Orbax checkpoints of a whole run state, with typed PRNG keys handled, and resumable rounds."""

from autogan_jax.checkpoint.manager import RunCheckpointer
from autogan_jax.checkpoint.rounds import run_rounds

__all__ = ["RunCheckpointer", "run_rounds"]
