"""Alignment of two networks by weight matching, and the loss barrier between them.

Weight matching (Ainsworth, Hayase and Srinivasa, "Git Re-Basin: Merging Models
modulo Permutation Symmetries", 2023) looks for permutations P of network B's
units that maximise sum over parameters of <W_A, P(W_B)>. It solves one
linear assignment problem per permutation with the others held fixed, in
random order, until a full sweep improves nothing.

The loss barrier of the linear path theta(t) = (1 - t) theta_A + t theta_B is
max over t of L(theta(t)) - ((1 - t) L(theta_A) + t L(theta_B)) (Frankle et
al., "Linear Mode Connectivity and the Lottery Ticket Hypothesis", 2020).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from scipy import optimize

from autogan_jax.weight_space import network as network_lib
from autogan_jax.weight_space import permutation

Network = network_lib.Network


def weight_matching(key: jax.Array, layers_a: Sequence[network_lib.Layer],
                    layers_b: Sequence[network_lib.Layer], spec: permutation.PermutationSpec,
                    max_sweeps: int = 100) -> tuple[dict[str, np.ndarray], int]:
  """Find permutations of B's units that align B's weights with A's.

  Args:
    key: sets the order in which permutations are visited in each sweep.
    layers_a: the reference network.
    layers_b: the network to permute; same structure as `layers_a`.
    spec: where each permutation acts.
    max_sweeps: upper bound on sweeps over all permutations.

  Returns:
    The permutations (apply them to B with `permutation.permute`) and the
    number of sweeps run.
  """
  a = [jax.tree.map(np.asarray, layer.params) for layer in layers_a]
  b_layers = tuple(layer.replace(params=jax.tree.map(np.asarray, layer.params))
                   for layer in layers_b)
  perms = permutation.identity_permutations(spec)
  names = sorted(spec.sizes)
  rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())
  sweeps = 0
  for sweeps in range(1, max_sweeps + 1):
    improved = False
    for index in rng.permutation(len(names)):
      name = names[index]
      size = spec.sizes[name]
      similarity = np.zeros((size, size))
      for layer, param, axis in spec.perm_to_axes[name]:
        w_a = np.moveaxis(a[layer][param], axis, 0).reshape(size, -1)
        w_b = np.asarray(permutation.permute_param(b_layers, spec, perms, layer, param,
                                                   except_axis=axis))
        w_b = np.moveaxis(w_b, axis, 0).reshape(size, -1)
        similarity += w_a @ w_b.T
      _, columns = optimize.linear_sum_assignment(similarity, maximize=True)
      old = similarity[np.arange(size), perms[name]].sum()
      new = similarity[np.arange(size), columns].sum()
      # A small tolerance stops float round-off from cycling between equal solutions.
      if new > old + 1e-9 * max(1.0, abs(old)):
        perms[name] = columns
        improved = True
    if not improved:
      break
  return perms, sweeps


def align(key: jax.Array, layers_a: Sequence[network_lib.Layer],
          layers_b: Sequence[network_lib.Layer], spec: permutation.PermutationSpec) -> Network:
  """Return network B permuted to match network A by weight matching."""
  perms, _ = weight_matching(key, layers_a, layers_b, spec)
  return permutation.permute(layers_b, spec, perms)


def lerp_networks(layers_a: Network, layers_b: Network, t: jax.Array | float) -> Network:
  """Return (1 - t) A + t B, parameter by parameter."""
  return jax.tree.map(lambda x, y: (1.0 - t) * x + t * y, layers_a, layers_b)


def interpolation_losses(layers_a: Network, layers_b: Network, ts: jax.Array,
                         loss_fn: Callable[[Network], jax.Array]) -> jax.Array:
  """Return `loss_fn` at each point `ts` of the linear path from A to B (one vmap)."""
  return jax.vmap(lambda t: loss_fn(lerp_networks(layers_a, layers_b, t)))(jnp.asarray(ts))


def loss_barrier(ts: jax.Array, losses: jax.Array) -> jax.Array:
  """Return max over t of losses(t) minus the straight line between the end losses.

  `ts` must start at 0 and end at 1. The result is 0 or more, because the
  end points contribute 0.
  """
  ts = jnp.asarray(ts)
  losses = jnp.asarray(losses)
  chord = (1.0 - ts) * losses[0] + ts * losses[-1]
  return jnp.max(losses - chord)
