"""Spec to a Flax NNX model, and spec populations to one padded state pytree."""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx

from autogan_jax.core import tree as tree_lib
from autogan_jax.model_space import encoding
from autogan_jax.model_space import network
from autogan_jax.model_space import spec as spec_lib


class Network(nnx.Module):
  """A network built from a spec at its own sizes; every parameter is an `nnx.Param`.

  Attributes:
    spec: the spec it was built from.
    io: the task interface.
  """

  def __init__(self, spec: spec_lib.ModelSpec, io: spec_lib.ModelIO, *, rngs: nnx.Rngs):
    self.spec = spec
    self.io = io
    for name, value in network.init_params(spec, io, rngs.params()).items():
      setattr(self, name, nnx.Param(value))

  @property
  def envelope(self) -> encoding.Envelope:
    return encoding.Envelope.covering([self.spec], self.io)

  def __call__(self, x: jax.Array) -> jax.Array:
    """Return logits [batch, num_classes] for inputs `x` [batch, length, ...]."""
    envelope = self.envelope
    params = nnx.state(self, nnx.Param).to_pure_dict()
    return network.apply(params, x, encoding.encode(self.spec, envelope), envelope)


def build(spec: spec_lib.ModelSpec, io: spec_lib.ModelIO, key: jax.Array) -> Network:
  """Build the NNX model of `spec`; `nnx.split(model)` gives its graph and state pytree."""
  return Network(spec, io, rngs=nnx.Rngs(params=key))


def params_of(model: Network) -> network.Params:
  """Return the model's parameters as a flat dict of arrays."""
  return nnx.state(model, nnx.Param).to_pure_dict()


def build_population(specs: Sequence[spec_lib.ModelSpec], io: spec_lib.ModelIO,
                     keys: jax.Array, envelope: encoding.Envelope | None = None,
                     ) -> tuple[encoding.Envelope, network.Params, encoding.SpecArrays]:
  """Build each spec alone, pad it to one envelope and stack the population.

  Args:
    specs: specs of one family.
    io: the task interface.
    keys: one PRNG key per spec, stacked.
    envelope: the shared padded shape; the smallest covering one when None.

  Returns:
    The envelope, the stacked padded parameters and the stacked spec arrays.
  """
  envelope = envelope or encoding.Envelope.covering(specs, io)
  params = [network.embed_params(params_of(build(s, io, keys[i])), envelope)
            for i, s in enumerate(specs)]
  return envelope, tree_lib.stack(params), encoding.encode_population(specs, envelope)
