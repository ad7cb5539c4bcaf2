"""Core machinery shared by every package: keys, config validation, trace counting, pytrees."""

from autogan_jax.core import tree
from autogan_jax.core.keys import as_key
from autogan_jax.core.keys import split_named
from autogan_jax.core.keys import step_key
from autogan_jax.core.tracing import TraceCounter
from autogan_jax.core.validation import ConfigError
from autogan_jax.core.validation import FloatRange
from autogan_jax.core.validation import IntRange
from autogan_jax.core.validation import OneOf
from autogan_jax.core.validation import Rule
from autogan_jax.core.validation import SequenceOf
from autogan_jax.core.validation import check
from autogan_jax.core.validation import check_choice
from autogan_jax.core.validation import validate

__all__ = [
    "ConfigError", "FloatRange", "IntRange", "OneOf", "Rule", "SequenceOf", "TraceCounter",
    "as_key", "check", "check_choice", "split_named", "step_key", "tree", "validate",
]
