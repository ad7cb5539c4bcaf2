"""Attention as generatable structure: the attention choices and G_attn's search space.

The attention layer itself is `autogan_jax.model_space.network.attend`, because
the builder in `model_space` must run it. G_attn is G_model over
`attention_space()`, a search space in which only Transformers exist, so every
slot G_attn fills is an attention or Transformer choice.
"""

from __future__ import annotations

from autogan_jax.model_space import space as space_lib
from autogan_jax.model_space import spec as spec_lib
from autogan_jax.model_space.network import attend
from autogan_jax.model_space.spec import AttentionSpec

PATTERNS = spec_lib.ATTENTION_PATTERNS
COMBINES = spec_lib.ATTENTION_COMBINES
HEAD_COMBINES = spec_lib.HEAD_COMBINES
POSITIONS = spec_lib.POSITIONS
QKV_INITS = spec_lib.QKV_INITS


def attention_space(**changes) -> space_lib.SearchSpace:
  """Return a search space of Transformers only; `changes` override its option tuples."""
  return space_lib.SearchSpace(families=("transformer",), **changes)


__all__ = ["AttentionSpec", "COMBINES", "HEAD_COMBINES", "PATTERNS", "POSITIONS", "QKV_INITS",
           "attend", "attention_space"]
