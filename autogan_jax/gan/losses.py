"""Adversarial losses. D outputs one real-valued logit (or critic score) per sample.

- "non_saturating": D minimises softplus(-D(real)) + softplus(D(fake)); G
  minimises softplus(-D(fake)) (Goodfellow et al., "Generative Adversarial
  Nets", 2014).
- "hinge": D minimises relu(1 - D(real)) + relu(1 + D(fake)); G minimises -D(fake)
  (Lim and Ye, "Geometric GAN", 2017).
- "wasserstein": D minimises D(fake) - D(real) plus a gradient penalty on
  interpolates; G minimises -D(fake) (Gulrajani et al., "Improved Training of
  Wasserstein GANs", 2017).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

LOSSES = ("non_saturating", "hinge", "wasserstein")


def discriminator_loss(kind: str, real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """Return D's loss, without a gradient penalty, averaged over the batch."""
  if kind == "non_saturating":
    return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))
  if kind == "hinge":
    return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))
  if kind == "wasserstein":
    return jnp.mean(fake_logits) - jnp.mean(real_logits)
  raise ValueError(f"Unknown adversarial loss {kind!r}; expected one of {LOSSES}.")


def generator_loss(kind: str, fake_logits: jax.Array) -> jax.Array:
  """Return G's per-sample loss (shape of `fake_logits`)."""
  if kind == "non_saturating":
    return jax.nn.softplus(-fake_logits)
  if kind in ("hinge", "wasserstein"):
    return -fake_logits
  raise ValueError(f"Unknown adversarial loss {kind!r}; expected one of {LOSSES}.")


def gradient_penalty(critic: Callable[[jax.Array], jax.Array], real: jax.Array,
                     fake: jax.Array, key: jax.Array, center: float = 1.0) -> jax.Array:
  """Return mean((||d critic / d x|| - center)^2) at random interpolates of real and fake.

  `real` and `fake` are arrays with a leading batch axis; `critic` maps such a
  batch to one score per sample.
  """
  shape = (real.shape[0],) + (1,) * (real.ndim - 1)
  alpha = jax.random.uniform(key, shape, dtype=real.dtype)
  mixed = alpha * real + (1.0 - alpha) * fake
  grads = jax.grad(lambda x: jnp.sum(critic(x)))(mixed)
  norms = jnp.sqrt(jnp.sum(grads.reshape(grads.shape[0], -1) ** 2, axis=1) + 1e-12)
  return jnp.mean((norms - center) ** 2)
