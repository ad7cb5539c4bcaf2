r"""How an update rule is meta-trained, proposed by G_meta and judged by D_meta-opt.

G_meta is a distribution over meta-training settings, sampled from noise:

- the meta-gradient estimator: truncated backpropagation (`tbptt`), antithetic
  truncated evolution strategies (`es`) or persistent evolution strategies (`pes`);
- the meta learning rate, log-normal;
- the number of tasks per meta-step, from `TASK_CHOICES` (shapes stay fixed:
  unused tasks are computed and weighted zero);
- the unroll-length schedule: the horizon of the inner runs grows linearly
  from a fraction `HORIZON_STARTS` of the full horizon to the full horizon over
  the phase (a curriculum over the length of the unrolled problem).

G_meta learns by the score-function estimator from the reward of each member it
configured: the drop of the member's whole-run validation score, plus D_meta-opt's
judgement of its meta-training curve.

D_meta-opt reads a meta-training curve (the meta-loss of each meta-step of a
segment) and scores whether that meta-training converges. "Real" are the
curves of the segments whose validation score dropped the most, the top of an
archive of every segment so far; "fake" are the rest.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from autogan_jax import estimators
from autogan_jax import gan

PyTree = Any

ESTIMATORS = ("tbptt", "es", "pes")
TASK_CHOICES = (2, 4, 8)
HORIZON_STARTS = (0.25, 0.5, 1.0)
CURVE_POINTS = 16
_LOG10_LR_RANGE = (-5.0, -2.0)


@struct.dataclass
class MetaSettings:
  """The settings G_meta proposes for one member (all arrays, so they can be stacked).

  Attributes:
    estimator: index into `ESTIMATORS`.
    log10_learning_rate: base-10 logarithm of the meta learning rate.
    tasks: index into `TASK_CHOICES`.
    horizon_start: index into `HORIZON_STARTS`.
  """

  estimator: jax.Array
  log10_learning_rate: jax.Array
  tasks: jax.Array
  horizon_start: jax.Array

  def describe(self) -> dict[str, Any]:
    """Return the settings of one member as plain Python values."""
    return {
        "estimator": ESTIMATORS[int(self.estimator)],
        "meta_learning_rate": float(10.0**float(self.log10_learning_rate)),
        "tasks_per_meta_step": TASK_CHOICES[int(self.tasks)],
        "horizon_start_fraction": HORIZON_STARTS[int(self.horizon_start)],
    }


def init_generator(log10_learning_rate: float = -3.5,
                   allowed_estimators: tuple[str, ...] = ESTIMATORS) -> dict[str, jax.Array]:
  """Return G_meta's parameters: uniform choices and a log-normal learning rate.

  Estimators outside `allowed_estimators` get a logit of -1e9, so they are
  never drawn and their gradient is zero.
  """
  unknown = set(allowed_estimators) - set(ESTIMATORS)
  if unknown or not allowed_estimators:
    raise ValueError(f"Invalid allowed_estimators={allowed_estimators}: expected a non-empty "
                     f"subset of {ESTIMATORS}.")
  allowed = jnp.asarray([name in allowed_estimators for name in ESTIMATORS])
  return {
      # An explicit dtype: a weakly typed leaf would turn strong after the
      # first update and make every jitted function of G_meta trace again.
      "estimator_logits": jnp.asarray(jnp.where(allowed, 0.0, -1e9), jnp.float32),
      "lr_mean": jnp.asarray(log10_learning_rate, jnp.float32),
      "lr_log_std": jnp.asarray(jnp.log(0.5), jnp.float32),
      "tasks_logits": jnp.zeros((len(TASK_CHOICES),)),
      "horizon_logits": jnp.zeros((len(HORIZON_STARTS),)),
  }


def sample_settings(params: PyTree, key: jax.Array, count: int) -> MetaSettings:
  """Draw `count` settings from G_meta; the leaves have a leading axis of `count`."""
  keys = jax.random.split(key, 4)
  shape = (count,)
  noise = jax.random.normal(keys[1], shape)
  log10_lr = params["lr_mean"] + jnp.exp(params["lr_log_std"]) * noise
  return MetaSettings(
      estimator=jax.random.categorical(keys[0], params["estimator_logits"], shape=shape),
      log10_learning_rate=jnp.clip(log10_lr, *_LOG10_LR_RANGE),
      tasks=jax.random.categorical(keys[2], params["tasks_logits"], shape=shape),
      horizon_start=jax.random.categorical(keys[3], params["horizon_logits"], shape=shape))


def log_prob(params: PyTree, settings: MetaSettings) -> jax.Array:
  """Log-probability of each of a batch of settings under G_meta (differentiable in `params`)."""

  def categorical(logits, index):
    return jnp.take(jax.nn.log_softmax(logits), index)

  std = jnp.exp(params["lr_log_std"])
  z = (settings.log10_learning_rate - params["lr_mean"]) / std
  gaussian = -0.5 * z * z - params["lr_log_std"]
  return (categorical(params["estimator_logits"], settings.estimator)
          + categorical(params["tasks_logits"], settings.tasks)
          + categorical(params["horizon_logits"], settings.horizon_start) + gaussian)


def generator_loss(params: PyTree, settings: MetaSettings, rewards: jax.Array) -> jax.Array:
  """Score-function surrogate whose gradient raises the expected reward of G_meta's settings."""
  return estimators.score_function_surrogate(log_prob(params, settings), rewards)


def choice_probabilities(params: PyTree) -> dict[str, list[float]]:
  """Return G_meta's current probabilities of each discrete choice."""
  soft = lambda logits: [float(p) for p in jax.nn.softmax(logits)]  # noqa: E731
  return {"estimator": soft(params["estimator_logits"]),
          "tasks_per_meta_step": soft(params["tasks_logits"]),
          "horizon_start_fraction": soft(params["horizon_logits"]),
          "log10_meta_learning_rate_mean": float(params["lr_mean"]),
          "log10_meta_learning_rate_std": float(jnp.exp(params["lr_log_std"]))}


def curve_features(meta_losses: jax.Array) -> jax.Array:
  """Summarise one meta-training curve as a fixed-length vector for D_meta-opt.

  The curve is resampled to `CURVE_POINTS` points and centred on its first
  value; three statistics follow: the total change, the change over the last
  quarter, and the spread of step-to-step differences (instability). A curve
  with a non-finite value gets a flag of 1 and zeros elsewhere.
  """
  curve = jnp.asarray(meta_losses, jnp.float32)
  finite = jnp.all(jnp.isfinite(curve))
  curve = jnp.where(jnp.isfinite(curve), curve, 0.0)
  # A running mean over a tenth of the curve removes most of the minibatch noise.
  width = max(1, curve.shape[0] // 10)
  smooth = jnp.convolve(curve, jnp.ones(width) / width, mode="valid")
  positions = jnp.linspace(0.0, smooth.shape[0] - 1.0, CURVE_POINTS)
  resampled = jnp.interp(positions, jnp.arange(smooth.shape[0], dtype=jnp.float32), smooth)
  centred = resampled - resampled[0]
  quarter = max(1, CURVE_POINTS // 4)
  stats = jnp.stack([centred[-1], centred[-1] - centred[-quarter - 1],
                     jnp.std(jnp.diff(curve))])
  features = jnp.concatenate([centred, stats, jnp.zeros((1,))])
  return jnp.where(finite, features, jnp.zeros_like(features).at[-1].set(1.0))


def init_discriminator(key: jax.Array, hidden_size: int = 32) -> dict[str, jax.Array]:
  """Return D_meta-opt's parameters: a one-hidden-layer perceptron over `curve_features`."""
  num_features = CURVE_POINTS + 4
  k1, k2 = jax.random.split(key)
  return {
      "w1": jax.random.normal(k1, (num_features, hidden_size)) / np.sqrt(num_features),
      "b1": jnp.zeros((hidden_size,)),
      "w2": jax.random.normal(k2, (hidden_size,)) / np.sqrt(hidden_size),
      "b2": jnp.zeros(()),
  }


def discriminate(params: PyTree, features: jax.Array) -> jax.Array:
  """Return D_meta-opt's logit that each curve (rows of `features`) converges."""
  hidden = jax.nn.gelu(features @ params["w1"] + params["b1"])
  return hidden @ params["w2"] + params["b2"]


def discriminator_loss(params: PyTree, features: jax.Array, is_real: jax.Array,
                       kind: str = "non_saturating",
                       valid: jax.Array | None = None) -> jax.Array:
  """The generic adversarial loss of D_meta-opt on an archive of labelled curves.

  Every (real, fake) pair of the archive enters `gan.discriminator_loss`; the
  mean over pairs weighs the real and the fake side equally however many of
  each the archive holds. Rows where `valid` is False (the unfilled end of a
  fixed-size archive) take part in no pair, so the archive keeps one shape and
  the loss compiles once however full it is.
  """
  logits = discriminate(params, features)
  pair = jax.vmap(jax.vmap(lambda r, f: gan.discriminator_loss(kind, r[None], f[None]),
                           in_axes=(None, 0)), in_axes=(0, None))(logits, logits)
  valid = jnp.ones(is_real.shape, bool) if valid is None else valid
  weights = (is_real & valid)[:, None] & (~is_real & valid)[None, :]
  return jnp.sum(jnp.where(weights, pair, 0.0)) / jnp.maximum(jnp.sum(weights), 1)


def archive_labels(improvements: np.ndarray, top_fraction: float) -> np.ndarray:
  """Mark the top `top_fraction` of the archive by improvement as real (at least one)."""
  improvements = np.asarray(improvements, float)
  count = max(1, int(round(top_fraction * improvements.size)))
  order = np.argsort(-np.where(np.isfinite(improvements), improvements, -np.inf))
  labels = np.zeros(improvements.size, bool)
  labels[order[:count]] = True
  return labels
