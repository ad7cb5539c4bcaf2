"""Hybrids of two parent networks of one structure: by module kind, by layer range, by mixture.

Each layer is a module. Every hybrid here is a per-layer mixing weight w in
[0, 1] applied by `mix_modules`: layer i of the child is (1 - w_i) A_i + w_i
B_i, so w_i = 0 takes the module of parent A and w_i = 1 that of parent B.
The weights may be traced, so a generator can propose them inside `jit`.
Module swaps only make sense between parents whose layers share a
coordinate system, for example two fine-tunes of one base, or parents
aligned with `alignment.align` first.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from autogan_jax.weight_space import network as network_lib

Network = network_lib.Network


def check_same_structure(parent_a: Sequence[network_lib.Layer],
                         parent_b: Sequence[network_lib.Layer]) -> None:
  """Raise ValueError unless both parents have the same kinds, names and shapes per layer."""
  if len(parent_a) != len(parent_b):
    raise ValueError(f"Parents have {len(parent_a)} and {len(parent_b)} layers; hybrids need "
                     "parents with the same layers.")
  for i, (a, b) in enumerate(zip(parent_a, parent_b)):
    shapes_a = {name: np.shape(v) for name, v in a.params.items()}
    shapes_b = {name: np.shape(v) for name, v in b.params.items()}
    if a.kind != b.kind or a.activation != b.activation or shapes_a != shapes_b:
      raise ValueError(f"Layer {i} differs between the parents: {a.kind}/{a.activation} "
                       f"{shapes_a} versus {b.kind}/{b.activation} {shapes_b}.")


def mix_modules(parent_a: Network, parent_b: Network, weights: jax.typing.ArrayLike) -> Network:
  """Return the child whose layer i is (1 - weights[i]) A_i + weights[i] B_i."""
  check_same_structure(parent_a, parent_b)
  weights = jnp.asarray(weights)
  if weights.shape != (len(parent_a),):
    raise ValueError(f"Expected one mixing weight per layer, shape ({len(parent_a)},), got "
                     f"{weights.shape}.")
  return tuple(
      a.replace(params=jax.tree.map(lambda x, y, w=weights[i]: (1.0 - w) * x + w * y,
                                    a.params, b.params))
      for i, (a, b) in enumerate(zip(parent_a, parent_b)))


def kind_weights(layers: Sequence[network_lib.Layer], kinds_from_b: Collection[str]) -> np.ndarray:
  """Return mixing weights that take the layers of `kinds_from_b` from parent B, the rest from A."""
  unknown = set(kinds_from_b) - set(network_lib.KINDS)
  if unknown:
    raise ValueError(f"Unknown layer kinds {sorted(unknown)}; expected some of "
                     f"{network_lib.KINDS}.")
  return np.array([float(layer.kind in kinds_from_b) for layer in layers], np.float32)


def range_weights(num_layers: int, start: int, stop: int) -> np.ndarray:
  """Return mixing weights that take layers [start, stop) from parent B, the rest from A."""
  if not 0 <= start <= stop <= num_layers:
    raise ValueError(f"Invalid layer range [{start}, {stop}) for {num_layers} layers; expected "
                     f"0 <= start <= stop <= {num_layers}.")
  weights = np.zeros(num_layers, np.float32)
  weights[start:stop] = 1.0
  return weights


def module_hybrid(parent_a: Network, parent_b: Network, kinds_from_b: Collection[str]) -> Network:
  """Return parent A with its layers of `kinds_from_b` replaced by parent B's.

  For example `kinds_from_b={"attention"}` gives the attention of B with the
  feed-forward blocks, embedding and readout of A.
  """
  return mix_modules(parent_a, parent_b, kind_weights(parent_a, kinds_from_b))


def layer_range_hybrid(parent_a: Network, parent_b: Network, start: int, stop: int) -> Network:
  """Return parent A with layers [start, stop) replaced by parent B's."""
  return mix_modules(parent_a, parent_b, range_weights(len(parent_a), start, stop))
