"""Permutations of a network: layer orders, repeated layers and neuron permutations.

Layer orders. `reorder` builds a new network from a pool of layers and a
sequence of pool indices, after checking that the shapes chain. A repeated
index repeats the layer; `apply_ordered` applies such an order to the pool
itself, so a repeated layer shares its weights and its gradient is the sum
over its uses. `apply_module_sequence` does the same for a traced sequence of
residual modules, so that many orders run in one `vmap` without recompiling.

Neuron permutations. Hidden units of a layer can be permuted together with
the matching rows of the next layer without changing the function.
A `PermutationSpec` lists, for every named permutation, the parameter axes it
acts on (the layout of Ainsworth, Hayase and Srinivasa, "Git Re-Basin: Merging
Models modulo Permutation Symmetries", 2023). `permute` applies permutations
by that spec.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from autogan_jax.weight_space import network as network_lib

Layer = network_lib.Layer
Network = network_lib.Network
# A parameter axis: (layer position, parameter name, axis).
Axis = tuple[int, str, int]


# Layer orders.


def reorder(pool: Sequence[Layer], order: Sequence[int], *, input_dim: int | None = None,
            num_classes: int | None = None) -> Network:
  """Return the network `pool[order[0]], pool[order[1]], ...` after checking it.

  Args:
    pool: the layers to draw from.
    order: pool indices; an index may repeat, which repeats the layer with the same weights.
    input_dim: when given, the flat input width the network must accept.
    num_classes: when given, the number of logits the network must return.

  Raises:
    ValueError: when an index is out of range, the order is empty, or the
      shapes of neighbouring layers do not chain.
  """
  order = [int(i) for i in order]
  if not order:
    raise ValueError("A layer order needs at least one index, got an empty order.")
  bad = [i for i in order if i < 0 or i >= len(pool)]
  if bad:
    raise ValueError(f"Layer order {order} has indices {bad} outside the pool of "
                     f"{len(pool)} layers; use indices in [0, {len(pool)}).")
  layers = tuple(pool[i] for i in order)
  network_lib.check_network(layers, input_dim=input_dim, num_classes=num_classes)
  return layers


def apply_ordered(pool: Sequence[Layer], x: jax.Array, order: Sequence[int]) -> jax.Array:
  """Apply `pool[order[0]]`, then `pool[order[1]]`, ... to `x`; repeated layers share weights.

  The gradient with respect to a pool layer sums over every position where it
  is used. `order` must be static (a Python sequence); check it with `reorder`.
  """
  for i in order:
    x = network_lib.apply_layer(pool[int(i)], x)
  return x


@dataclasses.dataclass(frozen=True)
class ModulePool:
  """The residual modules of a transformer-like network, stacked by kind.

  Module ids: `0 .. num_attention - 1` are attention modules, the next
  `num_feed_forward` ids are feed-forward modules and the last id,
  `skip_id`, is the identity, so a sequence can be shorter than its slots.

  Attributes:
    embed: the first layer.
    attention: the attention layers' params stacked on a leading axis.
    feed_forward: the feed-forward layers' params stacked on a leading axis.
    readout: the last layer.
    num_attention: number of attention modules.
    num_feed_forward: number of feed-forward modules.
    activation: of the feed-forward modules.
  """

  embed: Layer
  attention: dict[str, jax.Array]
  feed_forward: dict[str, jax.Array]
  readout: Layer
  num_attention: int
  num_feed_forward: int
  activation: str

  @property
  def skip_id(self) -> int:
    return self.num_attention + self.num_feed_forward

  @property
  def num_choices(self) -> int:
    return self.skip_id + 1


def module_pool(layers: Sequence[Layer]) -> ModulePool:
  """Collect the residual modules of an embed, residual blocks, readout network.

  Raises:
    ValueError: when the first layer is not "embed", the last is not
      "readout", or a middle layer is not a residual kind.
  """
  if len(layers) < 2 or layers[0].kind != "embed" or layers[-1].kind != "readout":
    raise ValueError("A module pool needs an 'embed' first layer and a 'readout' last layer, "
                     f"got kinds {[layer.kind for layer in layers]}.")
  middle = layers[1:-1]
  bad = [layer.kind for layer in middle if layer.kind not in network_lib.RESIDUAL_KINDS]
  if bad:
    raise ValueError(f"Middle layers must be of kinds {network_lib.RESIDUAL_KINDS}, got {bad}.")
  attention = [layer.params for layer in middle if layer.kind == "attention"]
  feed_forward = [layer for layer in middle if layer.kind == "feed_forward"]
  if not attention or not feed_forward:
    raise ValueError("A module pool needs at least one attention and one feed-forward layer.")
  stack = lambda trees: jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)
  return ModulePool(embed=layers[0], attention=stack(attention),
                    feed_forward=stack([layer.params for layer in feed_forward]),
                    readout=layers[-1], num_attention=len(attention),
                    num_feed_forward=len(feed_forward), activation=feed_forward[0].activation)


def apply_module_sequence(pool: ModulePool, modules: jax.Array, x: jax.Array) -> jax.Array:
  """Apply embed, the residual modules with ids `modules` [slots] in order, then readout.

  `modules` may be traced, so every sequence of one length shares one
  compilation and sequences `vmap`. A repeated id reuses the same weights.
  """
  h = network_lib.apply_layer(pool.embed, x)

  def attention_branch(module_id, h):
    params = jax.tree.map(lambda leaf: leaf[module_id], pool.attention)
    return network_lib.apply_layer(Layer(params=params, kind="attention"), h)

  def feed_forward_branch(module_id, h):
    params = jax.tree.map(lambda leaf: leaf[module_id - pool.num_attention], pool.feed_forward)
    return network_lib.apply_layer(
        Layer(params=params, kind="feed_forward", activation=pool.activation), h)

  def skip_branch(module_id, h):
    del module_id
    return h

  def body(h, module_id):
    branch = jnp.where(module_id < pool.num_attention, 0,
                       jnp.where(module_id < pool.skip_id, 1, 2))
    # Clipping keeps the unused branches' gathers in range; the chosen branch sees a valid id.
    safe_id = jnp.clip(module_id, 0, pool.skip_id - 1)
    h = jax.lax.switch(branch, [attention_branch, feed_forward_branch, skip_branch], safe_id, h)
    return h, None

  h, _ = jax.lax.scan(body, h, modules)
  return network_lib.apply_layer(pool.readout, h)


def apply_module_mixture(pool: ModulePool, choices: jax.Array, x: jax.Array) -> jax.Array:
  """Apply embed, then per slot the `choices` [slots, num_choices]-weighted sum of modules, then readout.

  With one-hot rows this equals `apply_module_sequence` on their argmax ids,
  and it is differentiable in `choices`, which straight-through Gumbel-softmax
  samples need. Every module runs at every slot, so it costs num_choices
  times a single sequence.
  """
  if choices.shape[-1] != pool.num_choices:
    raise ValueError(f"Expected {pool.num_choices} choices per slot, got {choices.shape[-1]}.")
  h = network_lib.apply_layer(pool.embed, x)

  def all_modules(h):
    outputs = []
    for i in range(pool.num_attention):
      params = jax.tree.map(lambda leaf, i=i: leaf[i], pool.attention)
      outputs.append(network_lib.apply_layer(Layer(params=params, kind="attention"), h))
    for i in range(pool.num_feed_forward):
      params = jax.tree.map(lambda leaf, i=i: leaf[i], pool.feed_forward)
      outputs.append(network_lib.apply_layer(
          Layer(params=params, kind="feed_forward", activation=pool.activation), h))
    outputs.append(h)
    return jnp.stack(outputs)

  def body(h, weights):
    return jnp.tensordot(weights, all_modules(h), axes=1), None

  h, _ = jax.lax.scan(body, h, choices)
  return network_lib.apply_layer(pool.readout, h)


def module_sequence_to_order(pool: ModulePool, modules: Sequence[int]) -> list[int]:
  """Translate module ids into indices of the layer list [embed, attention..., ff..., readout].

  Skips are dropped. The result, used with `reorder` on `pool_layers(pool)`,
  builds the same network as `apply_module_sequence`.
  """
  order = [0]
  for module_id in modules:
    module_id = int(module_id)
    if module_id < 0 or module_id > pool.skip_id:
      raise ValueError(f"Module id {module_id} is outside [0, {pool.skip_id}].")
    if module_id != pool.skip_id:
      order.append(1 + module_id)
  order.append(1 + pool.skip_id)
  return order


def pool_layers(pool: ModulePool) -> Network:
  """Return the pool as a layer list: embed, attention modules, feed-forward modules, readout."""
  layers = [pool.embed]
  for i in range(pool.num_attention):
    layers.append(Layer(params=jax.tree.map(lambda leaf: leaf[i], pool.attention),
                        kind="attention"))
  for i in range(pool.num_feed_forward):
    layers.append(Layer(params=jax.tree.map(lambda leaf: leaf[i], pool.feed_forward),
                        kind="feed_forward", activation=pool.activation))
  layers.append(pool.readout)
  return tuple(layers)


# Neuron permutations.


@dataclasses.dataclass(frozen=True)
class PermutationSpec:
  """Which parameter axes each named permutation acts on.

  Attributes:
    perm_to_axes: permutation name to the (layer, parameter, axis) triples it reorders.
    sizes: permutation name to its number of units.
  """

  perm_to_axes: Mapping[str, tuple[Axis, ...]]
  sizes: Mapping[str, int]

  def axes_of(self, layer: int, name: str) -> dict[int, str]:
    """Return axis to permutation name for one parameter."""
    return {axis: perm for perm, triples in self.perm_to_axes.items()
            for (l, n, axis) in triples if l == layer and n == name}


def _spec(perm_to_axes: dict[str, list[Axis]], layers: Sequence[Layer]) -> PermutationSpec:
  sizes = {}
  for perm, triples in perm_to_axes.items():
    lengths = {layers[l].params[n].shape[axis] for (l, n, axis) in triples}
    if len(lengths) != 1:
      raise ValueError(f"Permutation {perm!r} acts on axes of different lengths {lengths}.")
    sizes[perm] = lengths.pop()
  return PermutationSpec({p: tuple(t) for p, t in perm_to_axes.items()}, sizes)


def mlp_permutation_spec(layers: Sequence[Layer]) -> PermutationSpec:
  """Return the spec of a dense network: one permutation per hidden layer's units."""
  if any(layer.kind != "dense" for layer in layers):
    raise ValueError("mlp_permutation_spec needs only 'dense' layers, got kinds "
                     f"{[layer.kind for layer in layers]}.")
  perm_to_axes = {}
  for i in range(len(layers) - 1):
    perm_to_axes[f"hidden_{i}"] = [(i, "w", 1), (i, "b", 0), (i + 1, "w", 0)]
  return _spec(perm_to_axes, layers)


_RESIDUAL_AXES = {
    "embed": (("w", 1), ("pos", 1)),
    "attention": (("ln_scale", 0), ("ln_bias", 0), ("wq", 0), ("wk", 0), ("wv", 0), ("wo", 2)),
    "feed_forward": (("ln_scale", 0), ("ln_bias", 0), ("w1", 0), ("w2", 1), ("b2", 0)),
    "readout": (("ln_scale", 0), ("ln_bias", 0), ("w", 0)),
}


def transformer_permutation_spec(layers: Sequence[Layer]) -> PermutationSpec:
  """Return the spec of an embed, residual blocks, readout network.

  Permutations: "residual" (the channels of the residual stream, shared by
  every layer; layer normalisation is equivariant to it), "heads_i" (the
  heads of attention layer i) and "hidden_i" (the units of feed-forward layer i).
  """
  perm_to_axes: dict[str, list[Axis]] = {"residual": []}
  for i, layer in enumerate(layers):
    if layer.kind not in _RESIDUAL_AXES:
      raise ValueError(f"transformer_permutation_spec got layer {i} of kind {layer.kind!r}; "
                       f"expected one of {tuple(_RESIDUAL_AXES)}.")
    perm_to_axes["residual"] += [(i, name, axis) for name, axis in _RESIDUAL_AXES[layer.kind]]
    if layer.kind == "attention":
      perm_to_axes[f"heads_{i}"] = [(i, "wq", 1), (i, "wk", 1), (i, "wv", 1), (i, "wo", 0)]
    if layer.kind == "feed_forward":
      perm_to_axes[f"hidden_{i}"] = [(i, "w1", 1), (i, "b1", 0), (i, "w2", 0)]
  return _spec(perm_to_axes, layers)


def identity_permutations(spec: PermutationSpec) -> dict[str, np.ndarray]:
  return {perm: np.arange(size) for perm, size in spec.sizes.items()}


def random_permutations(key: jax.Array, spec: PermutationSpec) -> dict[str, jax.Array]:
  """Draw one uniform permutation per name of `spec`."""
  keys = jax.random.split(key, len(spec.sizes))
  return {perm: jax.random.permutation(keys[i], size)
          for i, (perm, size) in enumerate(sorted(spec.sizes.items()))}


def permute_param(layers: Sequence[Layer], spec: PermutationSpec, perms: Mapping[str, jax.Array],
                  layer: int, name: str, except_axis: int | None = None) -> jax.Array:
  """Return one parameter with every permuted axis reordered, except `except_axis`."""
  value = layers[layer].params[name]
  for axis, perm in spec.axes_of(layer, name).items():
    if axis != except_axis:
      value = jnp.take(value, jnp.asarray(perms[perm]), axis=axis)
  return value


def permute(layers: Sequence[Layer], spec: PermutationSpec,
            perms: Mapping[str, jax.Array]) -> Network:
  """Apply neuron permutations: unit i of each permuted axis becomes old unit `perm[i]`.

  The permuted network computes the same function as `layers`.
  """
  missing = set(spec.sizes) - set(perms)
  if missing:
    raise ValueError(f"Missing permutations {sorted(missing)}; pass one per name in the spec.")
  permuted = []
  for i, layer in enumerate(layers):
    params = {name: permute_param(layers, spec, perms, i, name) for name in layer.params}
    permuted.append(layer.replace(params=params))
  return tuple(permuted)
