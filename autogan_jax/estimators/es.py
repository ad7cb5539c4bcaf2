"""Antithetic evolution strategies: a gradient estimate from loss values alone.

For Gaussian smoothing `J(theta) = E_eps[L(theta + eps)]` with
`eps ~ N(0, sigma^2 I)`, the antithetic estimator over `N` mirrored pairs is

    g = 1 / (2 N sigma^2) * sum_i eps_i * (L(theta + eps_i) - L(theta - eps_i)),

an unbiased estimate of `grad J(theta)` (Salimans, Ho, Chen, Sidor and
Sutskever, "Evolution Strategies as a Scalable Alternative to Reinforcement
Learning", 2017). For a quadratic `L`, `grad J = grad L`. `L` need not be
differentiable, which is how a step function or a sampled discrete choice gets
a gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any


def antithetic_perturbations(key: jax.Array, theta: PyTree, num_pairs: int,
                             sigma: float | jax.Array) -> PyTree:
  """Draw `num_pairs` perturbations `eps_i ~ N(0, sigma^2 I)` shaped like `theta`, stacked on axis 0."""
  if num_pairs < 1:
    raise ValueError(f"num_pairs must be at least 1, got {num_pairs}.")
  leaves, treedef = jax.tree.flatten(theta)
  leaf_keys = jax.random.split(key, len(leaves))
  eps = [sigma * jax.random.normal(k, (num_pairs,) + jnp.shape(leaf), jnp.result_type(leaf))
         for k, leaf in zip(leaf_keys, leaves)]
  return jax.tree.unflatten(treedef, eps)


def es_gradient_from_losses(eps: PyTree, losses_plus: jax.Array, losses_minus: jax.Array,
                            sigma: float | jax.Array) -> PyTree:
  """Combine the losses of mirrored pairs into the antithetic estimate `g` above.

  Args:
    eps: perturbations with a leading pair axis N.
    losses_plus: shape [N], losses at `theta + eps_i`.
    losses_minus: shape [N], losses at `theta - eps_i`.
    sigma: the standard deviation the perturbations were drawn with.
  """
  differences = losses_plus - losses_minus
  num_pairs = differences.shape[0]
  scale = 1.0 / (2.0 * num_pairs * jnp.square(sigma))
  return jax.tree.map(lambda e: scale * jnp.tensordot(differences, e, axes=1), eps)


def antithetic_es_gradient(key: jax.Array, loss_fn: Callable[[PyTree, jax.Array], jax.Array],
                           theta: PyTree, sigma: float | jax.Array,
                           num_pairs: int) -> tuple[PyTree, dict[str, jax.Array]]:
  """Estimate the gradient of the Gaussian-smoothed `loss_fn` at `theta`.

  Both members of a pair evaluate `loss_fn(theta +- eps_i, key_i)` with the
  same key (common random numbers), so noise inside the loss cancels in their
  difference. The evaluations of all `2 * num_pairs` candidates are vmapped.

  Returns:
    `(grad, metrics)` with `grad` shaped like `theta` and `metrics["loss"]`
    the mean loss over all candidates.
  """
  perturb_key, loss_key = jax.random.split(key)
  eps = antithetic_perturbations(perturb_key, theta, num_pairs, sigma)
  pair_keys = jax.random.split(loss_key, num_pairs)
  evaluate = jax.vmap(loss_fn, in_axes=(0, 0))
  losses_plus = evaluate(jax.tree.map(jnp.add, theta, eps), pair_keys)
  losses_minus = evaluate(jax.tree.map(jnp.subtract, theta, eps), pair_keys)
  grad = es_gradient_from_losses(eps, losses_plus, losses_minus, sigma)
  return grad, {"loss": 0.5 * (jnp.mean(losses_plus) + jnp.mean(losses_minus))}
