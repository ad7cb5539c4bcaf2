"""D_optim: a discriminator that judges an update rule by its training curves.

A curve is summarised by `CURVE_FEATURES`, computed on log(loss) so that they
do not depend on the loss's units:

- "final": mean of the last tenth of the curve.
- "slope": final minus the mean of the first tenth (negative when it converges).
- "area": mean of the whole curve minus the first tenth's mean.
- "noise": log10 of the standard deviation of step-to-step changes.
- "rise": the curve's maximum minus the first tenth's mean (divergence).
- "nonfinite": share of steps whose loss is NaN or infinite.

D_optim is a small perceptron on these features, trained with the generic
adversarial step of `autogan_jax.gan`. "Real" curves are the top of an archive
of runs ranked by `curve_quality`, and "fake" ones are drawn from the rest of
the archive by a fixed sampler. The generator's parameters are the pool of the
remaining curves, and `optax.set_to_zero` keeps them unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from autogan_jax.core import validation
from autogan_jax.gan import step as gan_step
from autogan_jax.optim import defaults

CURVE_FEATURES = ("final", "slope", "area", "noise", "rise", "nonfinite")
# Losses are clipped to [1e-4, 1e4] before the log, and a non-finite loss counts as 1e4.
_LOG_CEILING = float(jnp.log(1e4))


def curve_features(curves: jax.Array) -> jax.Array:
  """Return the `CURVE_FEATURES` of curves [..., steps] as [..., features]."""
  steps = curves.shape[-1]
  if steps < 2:
    raise ValueError(f"A curve needs at least 2 steps, got {steps}.")
  k = max(steps // 10, 1)
  finite = jnp.isfinite(curves)
  logs = jnp.where(finite, jnp.log(jnp.clip(curves, 1e-4, 1e4)), _LOG_CEILING)
  start = jnp.mean(logs[..., :k], axis=-1)
  final = jnp.mean(logs[..., -k:], axis=-1)
  noise = jnp.log10(jnp.std(jnp.diff(logs, axis=-1), axis=-1) + 1e-4)
  return jnp.stack([final, final - start, jnp.mean(logs, axis=-1) - start, noise,
                    jnp.max(logs, axis=-1) - start, jnp.mean(~finite, axis=-1)], axis=-1)


def curve_quality(curves: jax.Array, tail_fraction: float = 0.2) -> jax.Array:
  """Rank curves for the archive: -(mean + standard deviation) of the last part.

  A low and steady end scores high. A curve with any non-finite loss scores -inf.
  """
  validation.check("tail_fraction", tail_fraction,
                   validation.FloatRange(0.0, 1.0, low_inclusive=False))
  k = max(int(curves.shape[-1] * tail_fraction), 1)
  tail = curves[..., -k:]
  score = -(jnp.mean(tail, axis=-1) + jnp.std(tail, axis=-1))
  return jnp.where(jnp.all(jnp.isfinite(curves), axis=-1), score, -jnp.inf)


def init_curve_judge(key: jax.Array, hidden: int = 16) -> dict[str, jax.Array]:
  """Return D_optim's parameters: one tanh hidden layer and a linear output."""
  validation.check("hidden", hidden, validation.IntRange(1))
  k1, k2 = jax.random.split(key)
  num_features = len(CURVE_FEATURES)
  return {"w1": jax.random.normal(k1, (num_features, hidden)) / jnp.sqrt(num_features),
          "b1": jnp.zeros(hidden),
          "w2": jax.random.normal(k2, (hidden,)) / jnp.sqrt(hidden),
          "b2": jnp.zeros(())}


def judge_logits(d_params: dict[str, jax.Array], features: jax.Array) -> jax.Array:
  """Return D_optim's logit per row of `features` [batch, features]."""
  hidden = jnp.tanh(features @ d_params["w1"] + d_params["b1"])
  return hidden @ d_params["w2"] + d_params["b2"]


def score_curves(d_params: dict[str, jax.Array], curves: jax.Array) -> jax.Array:
  """Return D_optim's probability that each curve [batch, steps] is a top-of-archive curve."""
  return jax.nn.sigmoid(judge_logits(d_params, curve_features(curves)))


def _check_training_settings(top_fraction, steps, batch_size, learning_rate):
  validation.check("top_fraction", top_fraction,
                   validation.FloatRange(0.0, 1.0, low_inclusive=False, high_inclusive=False))
  validation.check("steps", steps, validation.IntRange(1))
  validation.check("batch_size", batch_size, validation.IntRange(1))
  validation.check("learning_rate", learning_rate,
                   validation.FloatRange(0.0, low_inclusive=False))


def _fit_judge(key: jax.Array, sample_real: Callable, fake_pool: jax.Array,
               sample_fake_index: Callable, *, steps: int, batch_size: int,
               learning_rate: float, hidden: int, loss: str) -> tuple[dict, jax.Array]:
  """Run the `lax.scan` of `gan.make_step` and return D's parameters and per-step loss.

  `sample_real(key, batch)` returns real feature rows. The fixed generator
  returns `fake_pool[sample_fake_index(key, batch, pool_size)]`.
  """

  def generate(g_params, key, batch):
    index = sample_fake_index(key, batch, g_params["pool"].shape[0])
    return jax.lax.stop_gradient(g_params["pool"][index]), None

  g_tx = optax.set_to_zero()
  d_tx = defaults.default_rule(learning_rate)
  step = gan_step.make_step(generate, judge_logits, g_tx, d_tx, loss=loss)
  init_key, train_key = jax.random.split(key)
  state = gan_step.init_state({"pool": fake_pool}, init_curve_judge(init_key, hidden), g_tx,
                              d_tx)

  def body(state, step_key):
    real_key, gan_key = jax.random.split(step_key)
    state, metrics = step(state, sample_real(real_key, batch_size), gan_key)
    return state, metrics["d_loss"]

  state, d_losses = jax.lax.scan(body, state, jax.random.split(train_key, steps))
  return state.d_params, d_losses


def train_curve_judge(key: jax.Array, curves: jax.Array, *, top_fraction: float = 0.25,
                      steps: int = 300, batch_size: int = 32, learning_rate: float = 1e-2,
                      hidden: int = 16,
                      loss: str = "non_saturating") -> tuple[dict[str, jax.Array], dict]:
  """Train D_optim on an archive of curves [runs, steps].

  The `top_fraction` of runs by `curve_quality` are "real"; the others are
  "fake". Training is one `lax.scan` of `gan.make_step`.

  Returns:
    `(d_params, metrics)` with per-step "d_loss" and the real and fake counts.
  """
  _check_training_settings(top_fraction, steps, batch_size, learning_rate)
  num_runs = curves.shape[0]
  num_real = max(int(round(num_runs * top_fraction)), 1)
  if num_real >= num_runs:
    raise validation.ConfigError(
        f"The archive of {num_runs} curves leaves no fake curves at top_fraction="
        f"{top_fraction}; add runs or lower top_fraction.")

  quality = curve_quality(curves)
  features = curve_features(curves)
  order = jnp.argsort(-quality)
  real_pool = gan_step.top_of_archive(features, quality, num_real)
  fake_pool = features[order[num_real:]]

  def sample_real(key, batch):
    return real_pool[jax.random.randint(key, (batch,), 0, num_real)]

  def sample_fake_index(key, batch, pool_size):
    return jax.random.randint(key, (batch,), 0, pool_size)

  d_params, d_losses = _fit_judge(key, sample_real, fake_pool, sample_fake_index, steps=steps,
                                  batch_size=batch_size, learning_rate=learning_rate,
                                  hidden=hidden, loss=loss)
  return d_params, {"d_loss": d_losses, "num_real": num_real,
                    "num_fake": num_runs - num_real}


def train_curve_judge_on_prefix(key: jax.Array, curves: jax.Array, num_valid: jax.Array, *,
                                top_fraction: float = 0.25, steps: int = 300,
                                batch_size: int = 32, learning_rate: float = 1e-2,
                                hidden: int = 16, loss: str = "non_saturating"
                                ) -> tuple[dict[str, jax.Array], dict]:
  """Train D_optim on the first `num_valid` rows of a fixed-size archive buffer [capacity, steps].

  The rows from `num_valid` on are ignored, so an archive that grows inside
  a fixed buffer trains with one compiled program. `num_valid` may be traced.
  The real curves are the top `max(round(num_valid * top_fraction), 1)` rows by
  `curve_quality`, and the fakes are the other valid rows. The caller must keep
  at least one fake row: `train_curve_judge` checks this, this function cannot
  when `num_valid` is traced.

  Returns:
    `(d_params, metrics)` with per-step "d_loss" and the real and fake counts.
  """
  _check_training_settings(top_fraction, steps, batch_size, learning_rate)
  num_valid = jnp.asarray(num_valid, jnp.int32)
  num_real = jnp.maximum(jnp.round(num_valid * top_fraction).astype(jnp.int32), 1)
  valid = jnp.arange(curves.shape[0]) < num_valid
  # Valid rows first, each part sorted by quality, best first. Curves with a
  # non-finite loss have quality -inf and end the valid part.
  order = jnp.lexsort((-curve_quality(curves), ~valid))
  features = curve_features(curves)[order]

  def sample_real(key, batch):
    return features[jax.random.randint(key, (batch,), 0, num_real)]

  def sample_fake_index(key, batch, pool_size):
    del pool_size
    return jax.random.randint(key, (batch,), num_real, num_valid)

  d_params, d_losses = _fit_judge(key, sample_real, features, sample_fake_index, steps=steps,
                                  batch_size=batch_size, learning_rate=learning_rate,
                                  hidden=hidden, loss=loss)
  return d_params, {"d_loss": d_losses, "num_real": num_real,
                    "num_fake": num_valid - num_real}
