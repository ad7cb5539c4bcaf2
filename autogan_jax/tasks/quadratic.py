"""Random quadratic problems, for fast unit tests only (not real data)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


@struct.dataclass
class QuadraticTask:
  """Minimise 0.5 * sum(scale * (params - target)**2) plus minibatch noise.

  `nan_after` makes the loss NaN from that step on (a negative value never
  does), which tests use to inject a failing inner run.
  """

  scale: jax.Array
  target: jax.Array
  noise: jax.Array
  nan_after: jax.Array
  dim: int = struct.field(pytree_node=False, default=8)
  name: str = struct.field(pytree_node=False, default="quadratic")

  def describe(self) -> str:
    return f"{self.name}[d{self.dim}]"

  def init(self, key):
    return {"x": jax.random.normal(key, (self.dim,))}

  def batch(self, key, step):
    step = jnp.asarray(step, jnp.int32)
    shift = self.noise * jax.random.normal(jax.random.fold_in(key, step), (self.dim,))
    poison = (self.nan_after >= 0) & (step >= self.nan_after)
    return {"shift": shift, "poison": poison}

  def loss(self, params, batch, key=None):
    del key
    diff = params["x"] - self.target - batch["shift"]
    value = 0.5 * jnp.sum(self.scale * diff**2)
    return jnp.where(batch["poison"], jnp.nan, value)

  def evaluate(self, params, split="test"):
    del split
    diff = params["x"] - self.target
    return {"loss": 0.5 * jnp.sum(self.scale * diff**2)}


def quadratic_task(key: jax.Array, dim: int = 8, noise: float = 0.1,
                   nan_after: int = -1) -> QuadraticTask:
  """Sample a quadratic with log-uniform curvatures in [0.1, 10]."""
  k_scale, k_target = jax.random.split(key)
  scale = jnp.exp(jax.random.uniform(k_scale, (dim,), minval=np.log(0.1), maxval=np.log(10.0)))
  return QuadraticTask(scale=scale, target=jax.random.normal(k_target, (dim,)),
                       noise=jnp.asarray(noise, jnp.float32),
                       nan_after=jnp.asarray(nan_after, jnp.int32), dim=dim)
