"""Gradient estimators for discrete and stochastic choices.

- Straight-through Gumbel-softmax (Jang, Gu and Poole, "Categorical
  Reparameterization with Gumbel-Softmax", 2017; Maddison, Mnih and Teh, "The
  Concrete Distribution", 2017): a hard one-hot sample in the forward pass and
  the gradient of the relaxed sample in the backward pass.
- Score function (REINFORCE; Williams, "Simple statistical gradient-following
  algorithms for connectionist reinforcement learning", 1992), with a baseline
  that lowers the variance without biasing the estimate.
- Reparameterization of a Gaussian sample.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def gumbel_softmax(key: jax.Array, logits: jax.Array, temperature: float | jax.Array = 1.0,
                   hard: bool = True) -> jax.Array:
  """Draw a relaxed one-hot sample over the last axis of `logits`.

  With `hard=True` the forward value is exactly one-hot (the argmax of the
  perturbed logits) and the gradient is that of the relaxed sample.
  """
  gumbel = jax.random.gumbel(key, logits.shape, dtype=logits.dtype)
  soft = jax.nn.softmax((logits + gumbel) / temperature, axis=-1)
  if not hard:
    return soft
  one_hot = jax.nn.one_hot(jnp.argmax(soft, axis=-1), logits.shape[-1], dtype=soft.dtype)
  return soft + jax.lax.stop_gradient(one_hot - soft)


def categorical_sample(key: jax.Array, logits: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Sample indices from `logits` over the last axis; return them and their log-probabilities."""
  index = jax.random.categorical(key, logits, axis=-1)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  return index, jnp.take_along_axis(log_probs, index[..., None], axis=-1)[..., 0]


def score_function_surrogate(log_probs: jax.Array, rewards: jax.Array,
                             baseline: jax.Array | float | None = None) -> jax.Array:
  """Return a surrogate loss whose gradient is the REINFORCE estimate of -d E[reward].

  Args:
    log_probs: log-probability of each sample, shape [batch], differentiable.
    rewards: reward of each sample, shape [batch]; gradients are stopped.
    baseline: subtracted from the rewards. None uses the leave-one-out mean of
      the batch, which keeps the estimate unbiased.
  """
  rewards = jax.lax.stop_gradient(rewards)
  if baseline is None:
    n = rewards.shape[0]
    if n < 2:
      baseline = 0.0
    else:
      baseline = (jnp.sum(rewards) - rewards) / (n - 1)
  advantage = jax.lax.stop_gradient(rewards - baseline)
  return -jnp.mean(advantage * log_probs)


def update_baseline(baseline: jax.Array, rewards: jax.Array, decay: float = 0.9) -> jax.Array:
  """Return the exponential moving average of the mean reward."""
  return decay * baseline + (1.0 - decay) * jnp.mean(rewards)


def gaussian_reparameterize(key: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
  """Return `mean + exp(log_std) * noise`, differentiable in both arguments."""
  return mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape, mean.dtype)
