"""G_ensemble: one network that reproduces an ensemble's predictive distribution.

G_ensemble outputs the concentration of a Dirichlet over class probabilities,
alpha(x) = exp(logits(x)). Its mean, softmax(logits), is the predictive
distribution; its precision sum(alpha) measures how much the members agree, so
one forward pass gives both the ensemble's average and its spread (Malinin,
Mlodozeniec and Gales, "Ensemble Distribution Distillation", 2020).

Training has two stages.
1. Distillation: the cross-entropy from the ensemble's mean to softmax(logits),
   plus `dirichlet_weight` times the Dirichlet negative log-likelihood of the
   individual members' predictions.
2. Adversarial: D_ensemble sees (input, class probabilities) pairs, where the
   real probabilities are one random member's and the fake ones a sample from
   G_ensemble's Dirichlet (reparameterized through the Gamma sampler). It tells
   G's distribution of member-like predictions from the ensemble's, input by input.

Distillation inputs are training images and mixtures of two of them with noise,
because on the training images alone the members agree and show no spread. For
token windows (the character model) the second half are training windows with
some tokens replaced at random (`draw_token_windows`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from autogan_jax import gan
from autogan_jax import optim
from autogan_jax.core import keys as keys_lib
from autogan_jax.core import validation

# Member probabilities are mixed with this share of the uniform distribution
# before the Dirichlet log-likelihood, which is -inf at an exact zero.
PROB_SMOOTHING = 1e-3
MAX_LOG_ALPHA = 12.0


def dirichlet_log_prob(log_alpha: jax.Array, probs: jax.Array) -> jax.Array:
  """Return log Dir(probs | exp(log_alpha)) over the last axis."""
  alpha = jnp.exp(log_alpha)
  log_norm = jax.scipy.special.gammaln(jnp.sum(alpha, -1)) - jnp.sum(
      jax.scipy.special.gammaln(alpha), -1)
  return log_norm + jnp.sum((alpha - 1.0) * jnp.log(probs), -1)


def augment_inputs(key: jax.Array, x: jax.Array, batch_size: int, noise: float = 0.1
                   ) -> jax.Array:
  """Draw a batch of half plain images and half noisy mixtures of two images, clipped to [0, 1]."""
  k_a, k_b, k_mix, k_noise, k_keep = jax.random.split(key, 5)
  a = x[jax.random.randint(k_a, (batch_size,), 0, x.shape[0])]
  b = x[jax.random.randint(k_b, (batch_size,), 0, x.shape[0])]
  weight = jax.random.uniform(k_mix, (batch_size, 1))
  mixed = weight * a + (1.0 - weight) * b + noise * jax.random.normal(k_noise, a.shape)
  keep = (jnp.arange(batch_size) < batch_size // 2)[:, None]
  return jnp.clip(jnp.where(keep, a, mixed), 0.0, 1.0)


def draw_token_windows(key: jax.Array, stream: jax.Array, context: int, batch_size: int,
                       vocab_size: int, corrupt_rate: float = 0.25) -> jax.Array:
  """Draw a batch of half plain training windows and half windows with corrupted tokens.

  Args:
    key: PRNG key.
    stream: the training token stream [T].
    context: tokens per window.
    batch_size: windows per batch.
    vocab_size: tokens are replaced by uniform draws from `range(vocab_size)`.
    corrupt_rate: chance that each token of the second half is replaced.

  Returns:
    Integer windows [batch_size, context].
  """
  k_start, k_mask, k_token = jax.random.split(key, 3)
  starts = jax.random.randint(k_start, (batch_size,), 0, stream.shape[0] - context)
  windows = stream[starts[:, None] + jnp.arange(context)[None, :]]
  replace = jax.random.bernoulli(k_mask, corrupt_rate, windows.shape)
  replace &= (jnp.arange(batch_size) >= batch_size // 2)[:, None]
  noise = jax.random.randint(k_token, windows.shape, 0, vocab_size)
  return jnp.where(replace, noise, windows)


def _smooth(probs: jax.Array) -> jax.Array:
  return (1.0 - PROB_SMOOTHING) * probs + PROB_SMOOTHING / probs.shape[-1]


def distill(apply: Callable, init_params, members_fn: Callable, x_pool: jax.Array | None,
            key: jax.Array, *, steps: int = 3000, batch_size: int = 128,
            dirichlet_weight: float = 0.1, tx: optax.GradientTransformation | None = None,
            draw_inputs: Callable | None = None, valid_loss: Callable | None = None,
            eval_every: int | None = None):
  """Fit G_ensemble to the ensemble by distillation (stage 1), with early stopping.

  Args:
    apply: `apply(params, x) -> logits` of G_ensemble's network.
    init_params: its initial parameters.
    members_fn: `members_fn(x) -> member probabilities [M, N, K]`.
    x_pool: images the distillation batches are drawn and mixed from by
      `augment_inputs`; unused when `draw_inputs` is given.
    key: PRNG key.
    steps: training steps.
    batch_size: inputs per step.
    dirichlet_weight: weight of the members' Dirichlet NLL, divided by the class count.
    tx: update rule; defaults to `optim.default_rule(3e-3)` (G*).
    draw_inputs: `draw_inputs(key, batch_size) -> inputs`, replacing the
      image mixtures drawn from `x_pool`.
    valid_loss: `valid_loss(params) -> scalar`, for example the NLL on a
      validation split, computed every `eval_every` steps. The parameters with
      the lowest value are returned. A NaN value never counts as lowest, and
      when no check is finite the final parameters are returned, as with None.
    eval_every: steps between validation checks; must divide `steps`. None
      checks once, after the last step.

  Returns:
    The parameters and a history: `loss` per step, `valid_loss` per check
    (zeros without `valid_loss`) and `best_step`, the step count of the
    returned parameters.
  """
  validation.check("steps", steps, validation.IntRange(1))
  eval_every = steps if eval_every is None else eval_every
  validation.check("eval_every", eval_every, validation.IntRange(1, steps))
  if steps % eval_every:
    raise validation.ConfigError(
        f"Invalid eval_every={eval_every}: it must divide steps={steps}.")
  validation.check("dirichlet_weight", dirichlet_weight, validation.FloatRange(0.0))
  tx = tx if tx is not None else optim.default_rule(3e-3)
  draw_inputs = _input_sampler(x_pool, draw_inputs)

  def loss_fn(params, x):
    member = jax.lax.stop_gradient(members_fn(x))
    mean = jnp.mean(member, axis=0)
    logits = jnp.clip(apply(params, x), -MAX_LOG_ALPHA, MAX_LOG_ALPHA)
    cross_entropy = -jnp.mean(jnp.sum(mean * jax.nn.log_softmax(logits), -1))
    dirichlet_nll = -jnp.mean(jax.vmap(lambda p: dirichlet_log_prob(logits, _smooth(p)))(member))
    return cross_entropy + dirichlet_weight * dirichlet_nll / logits.shape[-1]

  def step(carry, i):
    params, opt_state = carry
    x = draw_inputs(jax.random.fold_in(key, i), batch_size)
    loss, grads = jax.value_and_grad(loss_fn)(params, x)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  def chunk(carry, start):
    params, opt_state, best = carry
    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state),
                                               start + jnp.arange(eval_every))
    score = jnp.asarray(valid_loss(params) if valid_loss is not None else 0.0, jnp.float32)
    # Without a validation loss every check counts as better, so the final parameters win.
    better = score < best[1] if valid_loss is not None else jnp.array(True)
    best = jax.tree.map(lambda new, old: jnp.where(better, new, old),
                        (params, score, start + eval_every), best)
    return (params, opt_state, best), (losses, score)

  def run(params):
    best = (params, jnp.array(jnp.inf, jnp.float32), jnp.array(0, jnp.int32))
    carry = (params, tx.init(params), best)
    return jax.lax.scan(chunk, carry, jnp.arange(0, steps, eval_every))

  (final_params, _, best), (losses, scores) = jax.jit(run)(init_params)
  best_params, _, best_step = best
  if int(best_step) == 0:
    # No check gave a finite validation loss, so the final parameters are returned.
    best_params, best_step = final_params, jnp.array(steps, jnp.int32)
  history = {"loss": losses.reshape(steps), "valid_loss": scores, "best_step": best_step}
  return best_params, history


def _input_sampler(x_pool: jax.Array | None, draw_inputs: Callable | None) -> Callable:
  if draw_inputs is not None:
    return draw_inputs
  if x_pool is None:
    raise ValueError("Pass either x_pool (images to mix) or draw_inputs; both are None.")
  x_pool = jnp.asarray(x_pool)
  return lambda key, size: augment_inputs(key, x_pool, size)


def init_discriminator(key: jax.Array, num_inputs: int, num_classes: int, hidden: int = 64):
  k1, k2, k3 = jax.random.split(key, 3)
  fan_in = num_inputs + num_classes
  return {"w1": jax.random.normal(k1, (fan_in, hidden)) / jnp.sqrt(fan_in),
          "b1": jnp.zeros(hidden),
          "w2": jax.random.normal(k2, (hidden, hidden)) / jnp.sqrt(hidden),
          "b2": jnp.zeros(hidden),
          "w3": jax.random.normal(k3, (hidden,)) / jnp.sqrt(hidden), "b3": jnp.zeros(())}


def make_discriminate(num_inputs: int) -> Callable:
  """Return D_ensemble: samples [B, D + K] (input, then class probabilities) to logits [B]."""

  def discriminate(d_params, samples):
    x = samples[:, :num_inputs]
    log_p = jnp.log(_smooth(samples[:, num_inputs:]))
    h = jnp.concatenate([x, log_p / 5.0], axis=-1)
    h = jax.nn.leaky_relu(h @ d_params["w1"] + d_params["b1"], 0.2)
    h = jax.nn.leaky_relu(h @ d_params["w2"] + d_params["b2"], 0.2)
    return h @ d_params["w3"] + d_params["b3"]

  return discriminate


def adversarial_finetune(apply: Callable, g_params, members_fn: Callable,
                         x_pool: jax.Array | None, key: jax.Array, *, steps: int = 1000,
                         batch_size: int = 128, loss: str = "non_saturating",
                         g_tx: optax.GradientTransformation | None = None,
                         d_tx: optax.GradientTransformation | None = None,
                         draw_inputs: Callable | None = None,
                         features: Callable | None = None):
  """Train G_ensemble against D_ensemble with the shared GAN step (stage 2).

  `draw_inputs(key, batch_size)` replaces the image mixtures drawn from
  `x_pool`, and `features(x) -> float [B, F]` is what D_ensemble sees of an
  input (the input itself by default).

  Returns:
    G_ensemble's parameters and the per-step GAN metrics.
  """
  validation.check("steps", steps, validation.IntRange(1))
  g_tx = g_tx if g_tx is not None else optim.default_rule(1e-5)
  d_tx = d_tx if d_tx is not None else optim.default_rule(1e-3)
  draw_inputs = _input_sampler(x_pool, draw_inputs)
  features = features if features is not None else (lambda x: x)
  named = keys_lib.split_named(keys_lib.as_key(key), ("discriminator", "train"))
  example = jax.eval_shape(lambda k: draw_inputs(k, 1), named["train"])
  num_inputs = jax.eval_shape(features, example).shape[1]

  def generate(g_params, key, size):
    k_x, k_sample = jax.random.split(key)
    x = draw_inputs(k_x, size)
    log_alpha = jnp.clip(apply(g_params, x), -MAX_LOG_ALPHA, MAX_LOG_ALPHA)
    probs = jax.random.dirichlet(k_sample, jnp.exp(log_alpha))
    return jnp.concatenate([features(x), probs], axis=-1), None

  def real_samples(key):
    k_x, k_member = jax.random.split(key)
    x = draw_inputs(k_x, batch_size)
    member = members_fn(x)
    pick = jax.random.randint(k_member, (batch_size,), 0, member.shape[0])
    probs = member[pick, jnp.arange(batch_size)]
    return jax.lax.stop_gradient(jnp.concatenate([features(x), probs], axis=-1))

  num_classes = jax.eval_shape(apply, g_params, example).shape[-1]
  step_fn = gan.make_step(generate, make_discriminate(num_inputs), g_tx, d_tx, loss=loss)
  state = gan.init_state(g_params, init_discriminator(named["discriminator"], num_inputs,
                                                      num_classes), g_tx, d_tx)

  def body(state, step):
    k_real, k_step = jax.random.split(keys_lib.step_key(named["train"], step))
    return step_fn(state, real_samples(k_real), k_step)

  state, history = jax.jit(lambda s: jax.lax.scan(body, s, jnp.arange(steps)))(state)
  return state.g_params, jax.tree.map(np.asarray, history)


def dirichlet_spread(log_alpha: jax.Array) -> jax.Array:
  """Return the expected variance of one class probability under the Dirichlet, summed over classes.

  For Dir(alpha) with a0 = sum(alpha), Var(p_k) = m_k (1 - m_k) / (a0 + 1) with m = alpha / a0.
  """
  alpha = jnp.exp(jnp.clip(log_alpha, -MAX_LOG_ALPHA, MAX_LOG_ALPHA))
  a0 = jnp.sum(alpha, -1, keepdims=True)
  mean = alpha / a0
  return jnp.sum(mean * (1.0 - mean) / (a0 + 1.0), -1)
