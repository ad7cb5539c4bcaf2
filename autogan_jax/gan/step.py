"""The generic adversarial training step that every G/D pair of the framework uses.

A component supplies:
- `generate(g_params, key, batch_size) -> (samples, log_probs)`: samples are
  arrays with a leading batch axis. `log_probs` is None when the samples are
  differentiable in `g_params` (reparameterized or straight-through), or the
  log-probability of each sample when G is trained by the score function.
- `discriminate(d_params, samples) -> logits` of shape [batch].
- the real samples of each step: data, or the top of an archive of
  high-performing candidates (`top_of_archive`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from autogan_jax.core import validation
from autogan_jax.estimators import discrete
from autogan_jax.gan import losses

PyTree = Any


@struct.dataclass
class GANState:
  """Parameters and optimizer states of G and D, and the score-function baseline."""

  g_params: PyTree
  d_params: PyTree
  g_opt_state: PyTree
  d_opt_state: PyTree
  baseline: jax.Array
  step: jax.Array


def init_state(g_params: PyTree, d_params: PyTree, g_tx: optax.GradientTransformation,
               d_tx: optax.GradientTransformation) -> GANState:
  return GANState(g_params=g_params, d_params=d_params, g_opt_state=g_tx.init(g_params),
                  d_opt_state=d_tx.init(d_params), baseline=jnp.zeros(()),
                  step=jnp.zeros((), jnp.int32))


def top_of_archive(items: PyTree, scores: jax.Array, k: int) -> PyTree:
  """Return the `k` archive members with the highest scores (leading axis), best first."""
  order = jnp.argsort(-scores)[:k]
  return jax.tree.map(lambda leaf: leaf[order], items)


def make_step(generate: Callable, discriminate: Callable, g_tx: optax.GradientTransformation,
              d_tx: optax.GradientTransformation, loss: str = "non_saturating",
              gp_weight: float = 10.0, d_steps: int = 1, gp_center: float = 0.0,
              drift_weight: float = 0.0) -> Callable:
  """Build `step(state, real, key, negatives=None) -> (state, metrics)`.

  Each step makes `d_steps` D updates, then one G update. The returned function
  is pure and jittable; `loss` is one of `losses.LOSSES`. `negatives`, when
  given, are extra fake samples for D (for example the low-performing end of
  an archive); they must have the structure of G's samples.

  The gradient penalty applies to the "wasserstein" loss only and needs the
  samples to be one array. It pulls the critic's gradient norm at interpolates
  towards `gp_center`. The default of zero (Thanh-Tung, Tran and Venkatesh,
  "Improving Generalization and Stability of Generative Adversarial Networks",
  2019) converges where the one-centred penalty of Gulrajani et al. keeps the
  critic's slope at one around the equilibrium, so that G keeps being pushed
  and oscillates (Mescheder, Geiger and Nowozin, "Which Training Methods for
  GANs do actually Converge?", 2018). `drift_weight` adds `mean(D(real)^2)`,
  which keeps critic scores near zero (Karras et al., "Progressive Growing of
  GANs", 2018).
  """
  validation.check_choice("loss", loss, losses.LOSSES)
  validation.check("d_steps", d_steps, validation.IntRange(1))
  validation.check("gp_weight", gp_weight, validation.FloatRange(0.0))
  validation.check("gp_center", gp_center, validation.FloatRange(0.0))
  validation.check("drift_weight", drift_weight, validation.FloatRange(0.0))

  def d_loss_fn(d_params, real, fake, key):
    real_logits = discriminate(d_params, real)
    fake_logits = discriminate(d_params, fake)
    value = losses.discriminator_loss(loss, real_logits, fake_logits)
    if loss == "wasserstein":
      # Interpolates pair each real sample with one generated sample; negatives come after them.
      penalty = losses.gradient_penalty(lambda x: discriminate(d_params, x), real,
                                        fake[:real.shape[0]], key, gp_center)
      value = value + gp_weight * penalty + drift_weight * jnp.mean(real_logits**2)
    return value, (real_logits, fake_logits)

  def g_loss_fn(g_params, d_params, key, batch_size, baseline):
    samples, log_probs = generate(g_params, key, batch_size)
    per_sample = losses.generator_loss(loss, discriminate(d_params, samples))
    if log_probs is None:
      return jnp.mean(per_sample), per_sample
    rewards = -per_sample
    return discrete.score_function_surrogate(log_probs, rewards, baseline), per_sample

  def step(state: GANState, real: PyTree, key: jax.Array, negatives: PyTree | None = None):
    batch_size = jax.tree.leaves(real)[0].shape[0]
    d_params, d_opt_state = state.d_params, state.d_opt_state
    d_keys = jax.random.split(jax.random.fold_in(key, 0), d_steps)
    for i in range(d_steps):
      k_gen, k_gp = jax.random.split(d_keys[i])
      fake, _ = generate(state.g_params, k_gen, batch_size)
      fake = jax.lax.stop_gradient(fake)
      if negatives is not None:
        fake = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), fake, negatives)
      (d_loss, (real_logits, fake_logits)), d_grads = jax.value_and_grad(
          d_loss_fn, has_aux=True)(d_params, real, fake, k_gp)
      d_updates, d_opt_state = d_tx.update(d_grads, d_opt_state, d_params)
      d_params = optax.apply_updates(d_params, d_updates)

    (g_loss, per_sample), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
        state.g_params, d_params, jax.random.fold_in(key, 1), batch_size, state.baseline)
    g_updates, g_opt_state = g_tx.update(g_grads, state.g_opt_state, state.g_params)
    g_params = optax.apply_updates(state.g_params, g_updates)
    new_state = GANState(g_params=g_params, d_params=d_params, g_opt_state=g_opt_state,
                         d_opt_state=d_opt_state,
                         baseline=discrete.update_baseline(state.baseline, -per_sample),
                         step=state.step + 1)
    metrics = {"d_loss": d_loss, "g_loss": g_loss,
               "d_real": jnp.mean(real_logits), "d_fake": jnp.mean(fake_logits)}
    return new_state, metrics

  return step
