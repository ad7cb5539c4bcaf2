"""Autoregressive generation with any sampling rule, as one `lax.scan` over positions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from autogan_jax.estimators import discrete

# transform(logits [B, V], windows [B, C], position [], state) -> (logits of the sampled
# distribution, next state). The state is the sampler's own memory of the prefix (any
# pytree, or None for a memoryless rule); `windows[:, -1]` is the token sampled last.
Transform = Callable[[jax.Array, jax.Array, jax.Array, Any], tuple[jax.Array, Any]]


def memoryless(rule: Callable[[jax.Array], jax.Array]) -> Transform:
  """Wrap a map from logits to logits as a `Transform` without state."""
  return lambda logits, windows, position, state: (rule(logits), state)


def _entropy(log_q: jax.Array) -> jax.Array:
  terms = jnp.where(jnp.isfinite(log_q), jnp.exp(log_q) * log_q, 0.0)
  return -jnp.sum(terms, axis=-1)


def generate(next_logits: Callable[[jax.Array], jax.Array], transform: Transform,
             key: jax.Array, windows: jax.Array, length: int, *, initial_state: Any = None,
             straight_through: bool = False, gumbel_temperature: float = 1.0
             ) -> dict[str, jax.Array]:
  """Sample `length` tokens after the context `windows` [B, C].

  Args:
    next_logits: the language model, integer windows [B, C] to logits [B, V].
      Its output is treated as a constant (no gradient into the model).
    transform: the sampling rule.
    key: PRNG key.
    windows: the starting context of each sequence.
    length: tokens to sample.
    initial_state: the transform's state before the first token.
    straight_through: draw with straight-through Gumbel-softmax, so `one_hot`
      carries gradients into `transform`'s parameters. Otherwise the draw is
      categorical and gradients come from `log_prob` (score function).
    gumbel_temperature: relaxation temperature of the straight-through draw.

  Returns:
    `tokens` [B, L] int32, `one_hot` [B, L, V], `log_prob` [B] (log q of each
    sequence under the sampling rule) and `entropy` [B, L] (entropy of the
    sampling distribution at each position, in nats).
  """

  def step(carry, inputs):
    windows, state = carry
    step_key, position = inputs
    logits = jax.lax.stop_gradient(next_logits(windows))
    new_logits, state = transform(logits, windows, position, state)
    log_q = jax.nn.log_softmax(new_logits)
    if straight_through:
      one_hot = discrete.gumbel_softmax(step_key, log_q, gumbel_temperature, hard=True)
      token = jnp.argmax(one_hot, axis=-1)
    else:
      token = jax.random.categorical(step_key, log_q)
      one_hot = jax.nn.one_hot(token, log_q.shape[-1], dtype=log_q.dtype)
    log_prob = jnp.take_along_axis(log_q, token[:, None], axis=-1)[:, 0]
    windows = jnp.concatenate([windows[:, 1:], token[:, None].astype(windows.dtype)], axis=1)
    return (windows, state), (token, one_hot, log_prob, _entropy(log_q))

  keys = jax.random.split(key, length)
  _, (tokens, one_hot, log_prob, entropy) = jax.lax.scan(
      step, (windows, initial_state), (keys, jnp.arange(length)))
  return {"tokens": tokens.T.astype(jnp.int32), "one_hot": jnp.swapaxes(one_hot, 0, 1),
          "log_prob": jnp.sum(log_prob, axis=0), "entropy": entropy.T}
