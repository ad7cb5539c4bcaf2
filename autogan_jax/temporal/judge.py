"""D_temporal: a discriminator that judges whether rollouts follow the true dynamics.

D reads a window of `history_steps` true states followed by `rollout_steps`
states, and outputs a logit for "these continuations came from the true
system". Real windows are cut from true trajectories; fake windows continue a
true history with the model's rollout. The temporal model is G, and its
rollouts are differentiable in its parameters (continuous states only), so
`gan.make_step` trains both with the reparameterized gradient. Each member of
a population has its own D and trains in the same `vmap`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from autogan_jax import gan
from autogan_jax import optim
from autogan_jax.temporal import model as model_lib
from autogan_jax.temporal import structure as structure_lib
from autogan_jax.temporal import training


def init_discriminator(key: jax.Array, dim: int, steps: int, hidden: int = 64) -> dict:
  k1, k2, k3 = jax.random.split(key, 3)
  fan_in = dim * steps
  return {"w1": jax.random.normal(k1, (fan_in, hidden)) / jnp.sqrt(fan_in),
          "b1": jnp.zeros(hidden),
          "w2": jax.random.normal(k2, (hidden, hidden)) / jnp.sqrt(hidden),
          "b2": jnp.zeros(hidden),
          "w3": jax.random.normal(k3, (hidden,)) / jnp.sqrt(hidden), "b3": jnp.zeros(())}


def discriminate(d_params: dict, windows: jax.Array) -> jax.Array:
  """Return one logit per window [B, steps, dim]; the input is the window's first differences."""
  # Differences make D judge the motion; the first state anchors the absolute level.
  motion = jnp.concatenate([windows[:, :1], jnp.diff(windows, axis=1) * 10.0], axis=1)
  x = motion.reshape(windows.shape[0], -1)
  h = jax.nn.leaky_relu(x @ d_params["w1"] + d_params["b1"], 0.2)
  h = jax.nn.leaky_relu(h @ d_params["w2"] + d_params["b2"], 0.2)
  return h @ d_params["w3"] + d_params["b3"]


def _fake_windows(params, spec, structure, sequences, key, batch_size, history_steps,
                  rollout_steps):
  windows, _ = training.sample_windows(sequences, key, batch_size, 0)
  histories = windows[:, ::-1]
  rollouts, _ = jax.vmap(
      lambda h: model_lib.rollout(params, spec, structure, h, rollout_steps))(histories)
  return jnp.concatenate([histories[:, -history_steps:], rollouts], axis=1)


def _real_windows(sequences, key, batch_size, history_steps, rollout_steps):
  windows, future = training.sample_windows(sequences, key, batch_size, rollout_steps)
  return jnp.concatenate([windows[:, :history_steps][:, ::-1], future], axis=1)


@functools.partial(jax.jit, static_argnames=(
    "spec", "g_tx", "d_tx", "loss", "num_steps", "batch_size", "history_steps",
    "rollout_steps"))
def _adversarial(states, structures, sequences, key, *, spec, g_tx, d_tx, loss, num_steps,
                 batch_size, history_steps, rollout_steps):

  def member_step(state, structure, real, step_key):
    def generate(g_params, gen_key, count):
      fake = _fake_windows(g_params, spec, structure, sequences, gen_key, count, history_steps,
                           rollout_steps)
      return fake, None

    step = gan.make_step(generate, discriminate, g_tx, d_tx, loss=loss)
    return step(state, real, step_key)

  def body(states, index):
    step_key = jax.random.fold_in(key, index)
    real = _real_windows(sequences, jax.random.fold_in(step_key, 7), batch_size, history_steps,
                         rollout_steps)
    states, metrics = jax.vmap(member_step, in_axes=(0, 0, None, None))(
        states, structures, real, step_key)
    return states, metrics

  return jax.lax.scan(body, states, jnp.arange(num_steps))


def adversarial_finetune(spec: model_lib.ModelSpec, params, structures: structure_lib.Structure,
                         sequences: np.ndarray, key: jax.Array, *, num_steps: int,
                         batch_size: int = 32, history_steps: int = 4, rollout_steps: int = 16,
                         g_tx: optax.GradientTransformation | None = None,
                         d_tx: optax.GradientTransformation | None = None,
                         loss: str = "non_saturating"):
  """Fine-tune each member's model against its own D_temporal on `rollout_steps` rollouts.

  G's update rule `g_tx` defaults to `optim.default_rule(1e-4)` (G*), a tenth of the
  supervised rate, so that the adversarial signal adjusts a trained model
  rather than replacing its fit. `d_tx` defaults to
  `optim.default_rule(1e-3)`.

  Returns:
    `(params, d_params, metrics)`: fine-tuned models [P, ...], the members'
    discriminators and per-step metrics [num_steps, P] of `gan.make_step`.
  """
  if spec.kind != "continuous":
    raise ValueError("Adversarial rollouts need continuous states, because token rollouts are "
                     f"not differentiable; got spec.kind={spec.kind!r}.")
  g_tx = g_tx if g_tx is not None else optim.default_rule(1e-4)
  d_tx = d_tx if d_tx is not None else optim.default_rule(1e-3)
  population = int(structures.context.shape[0])
  init_key, run_key = jax.random.split(key)
  steps = history_steps + rollout_steps
  d_params = jax.vmap(lambda k: init_discriminator(k, spec.dim, steps))(
      jax.random.split(init_key, population))
  states = jax.vmap(lambda g, d: gan.init_state(g, d, g_tx, d_tx))(params, d_params)
  states, metrics = _adversarial(states, structures, jnp.asarray(sequences), run_key, spec=spec,
                                 g_tx=g_tx, d_tx=d_tx, loss=loss, num_steps=num_steps,
                                 batch_size=batch_size, history_steps=history_steps,
                                 rollout_steps=rollout_steps)
  return states.g_params, states.d_params, jax.tree.map(np.asarray, metrics)


@functools.partial(jax.jit, static_argnames=("spec", "batch_size", "history_steps",
                                             "rollout_steps"))
def realism(spec: model_lib.ModelSpec, params, d_params, structures: structure_lib.Structure,
            sequences: jax.Array, key: jax.Array, *, batch_size: int = 128,
            history_steps: int = 4, rollout_steps: int = 16) -> dict[str, jax.Array]:
  """Return each member's D_temporal mean probability of "real" on true and rolled-out windows."""
  def member(p, d, s):
    fake = _fake_windows(p, spec, s, sequences, key, batch_size, history_steps, rollout_steps)
    real = _real_windows(sequences, jax.random.fold_in(key, 1), batch_size, history_steps,
                         rollout_steps)
    return (jnp.mean(jax.nn.sigmoid(discriminate(d, real))),
            jnp.mean(jax.nn.sigmoid(discriminate(d, fake))))
  real, fake = jax.vmap(member)(params, d_params, structures)
  return {"real": real, "fake": fake}
