"""The population axis on several devices: a one-axis mesh, padding and `NamedSharding`.

XLA's SPMD partitioner splits a `jit(vmap(...))` whose inputs are sharded
along the leading axis, so the same program runs on one CPU, on the simulated
devices of `XLA_FLAGS=--xla_force_host_platform_device_count=8`, or on the
chips of a GPU or TPU slice. A population whose size does not divide the
device count is padded with copies of member 0; the caller masks them out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

PyTree = Any
AXIS = "pop"


def population_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """Return a one-axis mesh named `pop` over `devices` (default: all devices, all hosts)."""
  devices = jax.devices() if devices is None else list(devices)
  if not devices:
    raise ValueError("population_mesh needs at least one device, got an empty list.")
  return Mesh(np.asarray(devices), (AXIS,))


def padded_size(size: int, multiple: int) -> int:
  """Return the smallest multiple of `multiple` that is at least `size`."""
  if size < 1 or multiple < 1:
    raise ValueError(f"Sizes must be positive, got size={size} and multiple={multiple}.")
  return -(-size // multiple) * multiple


def leading_size(tree: PyTree) -> int:
  """Return the shared leading-axis size of the leaves of a population pytree.

  Raises:
    ValueError: when the tree has no array leaves or the leading sizes differ.
  """
  sizes = {int(np.shape(leaf)[0]) for leaf in jax.tree.leaves(tree) if np.ndim(leaf) > 0}
  if len(sizes) != 1:
    raise ValueError(
        f"Expected every leaf of a population to share one leading axis, got sizes {sorted(sizes)}.")
  return sizes.pop()


def pad_leading(tree: PyTree, size: int) -> PyTree:
  """Pad every leaf along axis 0 to `size` rows with copies of row 0.

  Copies of a real member keep the padded rows numerically harmless (no
  division by a zero hyperparameter, no empty batch), so their results can be
  computed and then ignored. Leaves without a leading axis are returned as-is.
  """

  def pad(leaf):
    leaf = jnp.asarray(leaf)
    if leaf.ndim == 0:
      return leaf
    extra = size - leaf.shape[0]
    if extra < 0:
      raise ValueError(f"Invalid padded size {size}: it is smaller than the leading axis "
                       f"{leaf.shape[0]}. Pass a size of at least {leaf.shape[0]}.")
    if extra == 0:
      return leaf
    filler = jnp.broadcast_to(leaf[:1], (extra,) + leaf.shape[1:])
    return jnp.concatenate([leaf, filler], axis=0)

  return jax.tree.map(pad, tree)


def unpad_leading(tree: PyTree, size: int) -> PyTree:
  """Keep the first `size` rows of every leaf that has a leading axis."""
  return jax.tree.map(lambda leaf: leaf if np.ndim(leaf) == 0 else leaf[:size], tree)


def shard_leading(tree: PyTree, mesh: Mesh) -> PyTree:
  """Place `tree` on `mesh`: leading axes split over `pop`, scalars replicated.

  Raises:
    ValueError: when a leading axis does not divide the number of devices;
      pad first with `pad_leading`.
  """
  split = NamedSharding(mesh, PartitionSpec(AXIS))
  replicated = NamedSharding(mesh, PartitionSpec())
  devices = mesh.shape[AXIS]

  def place(leaf):
    if np.ndim(leaf) == 0:
      return jax.device_put(leaf, replicated)
    if np.shape(leaf)[0] % devices:
      raise ValueError(
          f"A leading axis of {np.shape(leaf)[0]} does not divide over {devices} devices; "
          "pad the population with pad_leading first.")
    return jax.device_put(leaf, split)

  return jax.tree.map(place, tree)
