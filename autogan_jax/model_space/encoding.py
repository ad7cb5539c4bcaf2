"""Specs as arrays: a padded envelope shared by a population and each member's encoding.

An `Envelope` fixes the largest shapes of a population of one family. Each
member's `SpecArrays` holds its own sizes and choices as integer and float
arrays, so members of different architectures share one set of padded shapes
and train in one `vmap`: units, layers and heads past a member's own sizes are
masked out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from autogan_jax.core import validation
from autogan_jax.model_space import spec as spec_lib


@dataclasses.dataclass(frozen=True)
class Envelope:
  """The padded shapes that a population of one family shares.

  Attributes:
    family: the family of every member.
    io: the task interface.
    max_depth: layers of the padded network.
    max_width: units per padded layer.
    max_model_dim: width of the padded input projection or embedding.
    max_heads: attention heads of the padded Transformer (1 for other families).
    max_head_dim: query and key features per padded head.
    max_batch_size: rows of a padded training batch.
  """

  family: str
  io: spec_lib.ModelIO
  max_depth: int
  max_width: int
  max_model_dim: int
  max_heads: int = 1
  max_head_dim: int = 1
  max_batch_size: int = 1

  def __post_init__(self):
    validation.check_choice("family", self.family, spec_lib.FAMILIES)
    for name in ("max_depth", "max_width", "max_model_dim", "max_heads", "max_head_dim",
                 "max_batch_size"):
      validation.check(name, getattr(self, name), validation.IntRange(1))

  @classmethod
  def covering(cls, specs: Sequence[spec_lib.ModelSpec], io: spec_lib.ModelIO) -> Envelope:
    """Return the smallest envelope that holds every spec; all must share one family."""
    if not specs:
      raise ValueError("Envelope.covering needs at least one spec, got none.")
    families = sorted({s.family for s in specs})
    if len(families) > 1:
      raise validation.ConfigError(
          f"Invalid population: specs of families {families} cannot share one padded shape; "
          "group the specs by family first.")
    attention = [s for s in specs if s.attention is not None]
    return cls(
        family=families[0], io=io,
        max_depth=max(s.depth for s in specs),
        max_width=max(max(s.widths) for s in specs),
        max_model_dim=max(s.model_dim for s in specs),
        max_heads=max([s.attention.num_heads for s in attention], default=1),
        max_head_dim=max([s.head_dim for s in attention], default=1),
        max_batch_size=max(s.batch_size for s in specs))

  def holds(self, spec: spec_lib.ModelSpec) -> bool:
    """Return whether `spec` fits in this envelope."""
    fits = (spec.family == self.family and spec.depth <= self.max_depth
            and max(spec.widths) <= self.max_width and spec.model_dim <= self.max_model_dim
            and spec.batch_size <= self.max_batch_size)
    if spec.attention is not None:
      fits = fits and spec.attention.num_heads <= self.max_heads
      fits = fits and spec.head_dim <= self.max_head_dim
    return fits


@struct.dataclass
class SpecArrays:
  """One spec (or, with a leading axis, a population of specs) as arrays.

  Attributes:
    depth: layers in use.
    widths: units of each layer, zero past `depth`; shape [max_depth].
    activation, norm, connectivity: indices into `spec.ACTIVATIONS`,
      `spec.NORMS` and `spec.CONNECTIVITY`.
    model_dim: width of the input projection in use.
    learning_rate, weight_decay: float hyperparameters.
    batch_size: rows of each training batch in use.
    pattern, window, combine, num_heads, head_combine, shared, position:
      attention choices as indices and sizes (zeros for families without attention).
  """

  depth: jax.Array
  widths: jax.Array
  activation: jax.Array
  norm: jax.Array
  connectivity: jax.Array
  model_dim: jax.Array
  learning_rate: jax.Array
  weight_decay: jax.Array
  batch_size: jax.Array
  pattern: jax.Array
  window: jax.Array
  combine: jax.Array
  num_heads: jax.Array
  head_combine: jax.Array
  shared: jax.Array
  position: jax.Array


def encode(spec: spec_lib.ModelSpec, envelope: Envelope) -> SpecArrays:
  """Encode `spec` as arrays padded to `envelope`; raise ConfigError if it does not fit."""
  if not envelope.holds(spec):
    raise validation.ConfigError(
        f"Invalid spec {spec.describe()}: it does not fit the envelope {envelope}.")
  widths = np.zeros(envelope.max_depth, np.int32)
  widths[:spec.depth] = spec.widths
  a = spec.attention
  i32 = lambda v: jnp.asarray(v, jnp.int32)  # noqa: E731
  return SpecArrays(
      depth=i32(spec.depth), widths=jnp.asarray(widths),
      activation=i32(spec_lib.ACTIVATIONS.index(spec.activation)),
      norm=i32(spec_lib.NORMS.index(spec.norm)),
      connectivity=i32(spec_lib.CONNECTIVITY.index(spec.connectivity)),
      model_dim=i32(spec.model_dim),
      learning_rate=jnp.asarray(spec.learning_rate, jnp.float32),
      weight_decay=jnp.asarray(spec.weight_decay, jnp.float32),
      batch_size=i32(spec.batch_size),
      pattern=i32(spec_lib.ATTENTION_PATTERNS.index(a.pattern) if a else 0),
      window=i32(a.window if a else 1),
      combine=i32(spec_lib.ATTENTION_COMBINES.index(a.combine) if a else 0),
      num_heads=i32(a.num_heads if a else 1),
      head_combine=i32(spec_lib.HEAD_COMBINES.index(a.head_combine) if a else 0),
      shared=i32(int(a.shared) if a else 0),
      position=i32(spec_lib.POSITIONS.index(a.position) if a else 0))


def encode_population(specs: Sequence[spec_lib.ModelSpec], envelope: Envelope) -> SpecArrays:
  """Encode specs of one family and stack them along a leading population axis."""
  codes = [encode(s, envelope) for s in specs]
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *codes)
