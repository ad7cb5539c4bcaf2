"""Alignment between input frames and output characters: CTC and learned alternatives."""

from autogan_jax.alignment import ctc
from autogan_jax.alignment import mechanisms
from autogan_jax.alignment import search
from autogan_jax.alignment import study
from autogan_jax.alignment import training
from autogan_jax.alignment.mechanisms import MECHANISMS
from autogan_jax.alignment.mechanisms import AlignmentConfig

__all__ = ["MECHANISMS", "AlignmentConfig", "ctc", "mechanisms", "search", "study", "training"]
