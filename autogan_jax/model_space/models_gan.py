"""G_model and D_model: a generator of specs and initial weights, and a judge of models.

G_model maps noise, a task embedding and a summary of earlier candidates'
performance to a spec, as one straight-through Gumbel-softmax one-hot vector
per slot of a `SearchSpace` (Jang, Gu and Poole, 2017), and, when it has a
weight head, to initial weights of one fixed envelope: a learned mean plus a
learned linear map of the noise (and of the spec features).

D_model maps a candidate's feature vector to one logit: high for real
(high-performing) candidates, low for fake (low-performing or generated) ones.
The feature vector concatenates spec features, weight statistics and training
metrics, each preceded by nothing and multiplied by a presence flag, so that
a candidate without metrics (a generated one) reads as zeros there.

Both are pure `init` and `apply` functions on dicts of arrays.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from autogan_jax.estimators import discrete
from autogan_jax.model_space import network

Params = dict


def _dense_init(key: jax.Array, fan_in: int, fan_out: int, scale: float = 1.0) -> dict:
  w = jax.random.normal(key, (fan_in, fan_out)) * scale / math.sqrt(fan_in)
  return {"w": w, "b": jnp.zeros(fan_out)}


def _mlp_init(key: jax.Array, sizes: tuple[int, ...], last_scale: float = 1.0) -> list[dict]:
  keys = jax.random.split(key, len(sizes) - 1)
  layers = []
  for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
    layers.append(_dense_init(keys[i], a, b, last_scale if i == len(sizes) - 2 else 1.0))
  return layers


def _mlp_apply(layers: list[dict], x: jax.Array) -> jax.Array:
  for i, layer in enumerate(layers):
    x = x @ layer["w"] + layer["b"]
    if i < len(layers) - 1:
      x = jax.nn.leaky_relu(x, 0.2)
  return x


# D_model.


@dataclasses.dataclass(frozen=True)
class DModelConfig:
  """Sizes of D_model's input parts and of its hidden layers."""

  spec_features: int
  weight_features: int = 0
  metric_features: int = 0
  hidden: tuple[int, ...] = (64, 64)

  @property
  def input_size(self) -> int:
    return self.spec_features + self.weight_features + self.metric_features


def d_model_init(key: jax.Array, config: DModelConfig) -> Params:
  return {"layers": _mlp_init(key, (config.input_size, *config.hidden, 1))}


def d_model_apply(params: Params, features: jax.Array) -> jax.Array:
  """Return one logit per row of `features` [batch, input_size]."""
  return _mlp_apply(params["layers"], features)[:, 0]


def d_model_features(spec_features: jax.Array, weight_stats: jax.Array | None = None,
                     metrics: jax.Array | None = None) -> jax.Array:
  """Concatenate a candidate's feature parts along the last axis, skipping absent ones."""
  parts = [spec_features] + [p for p in (weight_stats, metrics) if p is not None]
  return jnp.concatenate(parts, axis=-1)


def weight_statistics(params: network.Params) -> jax.Array:
  """Permutation-invariant statistics of a parameter dict, float32 [4 * leaves].

  For each leaf (in sorted name order): log of the root mean square, the mean,
  the standard deviation and the log of the largest absolute value.
  """
  stats = []
  for name in sorted(params):
    leaf = params[name].reshape(-1)
    stats += [jnp.log(jnp.sqrt(jnp.mean(leaf**2)) + 1e-6), jnp.mean(leaf), jnp.std(leaf),
              jnp.log(jnp.max(jnp.abs(leaf)) + 1e-6)]
  return jnp.stack(stats)


def curve_features(curve: np.ndarray, early_steps: int, points: int,
                   num_classes: int) -> np.ndarray:
  """Summarise the first `early_steps` training losses, float32 [points + 4].

  Losses are divided by log(num_classes), the loss of a uniform prediction, so
  that tasks share one scale; NaN and infinity read as 10. The features are
  `points` chunk means, the last minus the first chunk mean, the mean of the
  last quarter of the early steps, the minimum and the log of that last mean.
  """
  early = np.asarray(curve[:early_steps], np.float64) / math.log(num_classes)
  early = np.where(np.isfinite(early), early, 10.0)
  chunks = np.array_split(early, min(points, len(early)))
  means = np.array([c.mean() for c in chunks])
  means = np.pad(means, (0, points - len(means)), mode="edge")
  slope = means[-1] - means[0]
  tail = early[-max(1, len(early) // 4):].mean()
  return np.concatenate([means, [slope, tail, early.min(), np.log(tail + 1e-3)]]).astype(
      np.float32)


# G_model.


@dataclasses.dataclass(frozen=True)
class GModelConfig:
  """Sizes of G_model.

  Attributes:
    slot_sizes: options per slot of the search space.
    context_size: task embedding plus history features.
    noise_size: dimension of the Gaussian noise.
    hidden: hidden layer sizes of the spec head.
    weight_shapes: name to shape of the generated initial weights; empty for
      a G_model that emits specs only.
    weight_rank: dimension of the noise that drives the weight head.
  """

  slot_sizes: tuple[int, ...]
  context_size: int
  noise_size: int = 16
  hidden: tuple[int, ...] = (64, 64)
  weight_shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()
  weight_rank: int = 8

  @property
  def num_features(self) -> int:
    return sum(self.slot_sizes)


def g_model_init(key: jax.Array, config: GModelConfig,
                 weight_mean: network.Params | None = None) -> Params:
  """Initialise G_model; `weight_mean` seeds the weight head's mean (zeros when None)."""
  k_spec, k_weights = jax.random.split(key)
  params = {"spec": _mlp_init(k_spec, (config.noise_size + config.context_size,
                                       *config.hidden, config.num_features), last_scale=0.1)}
  if config.weight_shapes:
    keys = jax.random.split(k_weights, len(config.weight_shapes))
    mean, basis, log_scale = {}, {}, {}
    for i, (name, shape) in enumerate(config.weight_shapes):
      size = int(np.prod(shape))
      mean[name] = (jnp.zeros(shape) if weight_mean is None
                    else jnp.asarray(weight_mean[name], jnp.float32).reshape(shape))
      basis[name] = jax.random.normal(keys[i], (config.weight_rank, size)) / math.sqrt(size)
      log_scale[name] = jnp.zeros(())
    params["weights"] = {"mean": mean, "basis": basis, "log_scale": log_scale}
  return params


def g_model_sample(params: Params, config: GModelConfig, key: jax.Array, batch_size: int,
                   context: jax.Array, temperature: float = 1.0,
                   ) -> tuple[jax.Array, network.Params | None]:
  """Sample candidates.

  Args:
    params: G_model parameters.
    config: its sizes.
    key: PRNG key.
    batch_size: number of candidates.
    context: task embedding and history features [context_size].
    temperature: Gumbel-softmax temperature.

  Returns:
    Spec features [batch, num_features] (one hot per slot, straight-through
    gradients) and, with a weight head, a dict of weights with a leading batch
    axis (None otherwise).
  """
  k_noise, k_gumbel, k_weights = jax.random.split(key, 3)
  noise = jax.random.normal(k_noise, (batch_size, config.noise_size))
  inputs = jnp.concatenate([noise, jnp.broadcast_to(context, (batch_size, context.shape[-1]))],
                           axis=-1)
  logits = _mlp_apply(params["spec"], inputs)
  parts = []
  start = 0
  slot_keys = jax.random.split(k_gumbel, len(config.slot_sizes))
  for i, size in enumerate(config.slot_sizes):
    parts.append(discrete.gumbel_softmax(slot_keys[i], logits[:, start:start + size],
                                         temperature, hard=True))
    start += size
  features = jnp.concatenate(parts, axis=-1)
  if "weights" not in params:
    return features, None
  head = params["weights"]
  z = jax.random.normal(k_weights, (batch_size, config.weight_rank))
  weights = {}
  for name, shape in config.weight_shapes:
    offset = (z @ head["basis"][name]) * jnp.exp(head["log_scale"][name])
    weights[name] = head["mean"][name][None] + offset.reshape((batch_size, *shape))
  return features, weights


def slot_logits(params: Params, config: GModelConfig, key: jax.Array, batch_size: int,
                context: jax.Array) -> jax.Array:
  """Return G_model's slot logits [batch, num_features] for fresh noise (for diagnostics)."""
  noise = jax.random.normal(key, (batch_size, config.noise_size))
  inputs = jnp.concatenate([noise, jnp.broadcast_to(context, (batch_size, context.shape[-1]))],
                           axis=-1)
  return _mlp_apply(params["spec"], inputs)
