"""Learned temporal structure: segmentation, memory, horizon and when to predict."""

from autogan_jax.temporal import judge
from autogan_jax.temporal import model
from autogan_jax.temporal import search
from autogan_jax.temporal import structure
from autogan_jax.temporal import study
from autogan_jax.temporal import training
from autogan_jax.temporal.model import ModelSpec
from autogan_jax.temporal.structure import Structure

__all__ = ["ModelSpec", "Structure", "judge", "model", "search", "structure", "study",
           "training"]
