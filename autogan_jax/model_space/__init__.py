"""Models as data: specs, their array encodings, builders, padded populations and zoos."""

from autogan_jax.model_space import data
from autogan_jax.model_space import encoding
from autogan_jax.model_space import network
from autogan_jax.model_space import population
from autogan_jax.model_space.builder import Network
from autogan_jax.model_space.builder import build
from autogan_jax.model_space.builder import build_population
from autogan_jax.model_space.builder import params_of
from autogan_jax.model_space.encoding import Envelope
from autogan_jax.model_space.encoding import SpecArrays
from autogan_jax.model_space.encoding import encode
from autogan_jax.model_space.encoding import encode_population
from autogan_jax.model_space.spec import AttentionSpec
from autogan_jax.model_space.spec import ModelIO
from autogan_jax.model_space.spec import ModelSpec

__all__ = [
    "AttentionSpec", "Envelope", "ModelIO", "ModelSpec", "Network", "SpecArrays", "build",
    "build_population", "data", "encode", "encode_population", "encoding", "network",
    "params_of", "population",
]
