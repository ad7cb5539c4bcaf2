"""G_sampler, a learned sampling rule, and D_quality, a judge of whole sequences.

G_sampler rewrites each next-token logit with a small MLP that is shared across
tokens: new_logit_i = log p_i + MLP(features of token i, context). The token
features are its log-probability, its gap to the most likely token, the
distribution's entropy, its surprisal minus the entropy (the quantity typical
sampling thresholds), its rank, and a learned embedding of the token. The
context features are an embedding of the previous token, the position, and a
recurrent state that G_sampler updates from every token sampled so far, so it
can use more of the prefix than the language model's window. Every
fixed rule of `rules` is a function of such features, so G_sampler can express
temperature, truncation by probability or by typicality, or a mixture, and
choose per position how sharp to be. The MLP's output layer starts at zero, so
training starts from ancestral sampling (temperature 1).

D_quality embeds a sequence of one-hot tokens, runs a width-3 convolution over
positions, pools by mean and max, and returns one logit. Real sequences come from
the language itself, fake ones from the language model with G_sampler, so D's
signal is about whole sequences, not single tokens. G trains through
straight-through Gumbel-softmax draws or through score-function estimates
(`estimator`), both with the shared GAN step.
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
from autogan_jax.sampling import decoding

ESTIMATORS = ("straight_through", "score_function")
TOKEN_FEATURES = 5


def init_generator(key: jax.Array, vocab_size: int, input_vocab_size: int, hidden: int = 32,
                   embed_dim: int = 4, memory: int = 16) -> dict[str, jax.Array]:
  """Initialise G_sampler so that it leaves the model's distribution unchanged."""
  k_token, k_context, k_w1, k_input, k_recurrent = jax.random.split(key, 5)
  fan_in = TOKEN_FEATURES + 2 * embed_dim + 1 + memory
  return {
      "token_embed": jax.random.normal(k_token, (vocab_size, embed_dim)) * 0.1,
      "context_embed": jax.random.normal(k_context, (input_vocab_size, embed_dim)) * 0.1,
      "memory_input": jax.random.normal(k_input, (input_vocab_size, memory)),
      "memory_recurrent": jax.random.normal(k_recurrent, (memory, memory)) / jnp.sqrt(memory),
      "memory_bias": jnp.zeros(memory),
      "w1": jax.random.normal(k_w1, (fan_in, hidden)) / jnp.sqrt(fan_in),
      "b1": jnp.zeros(hidden),
      "w2": jnp.zeros(hidden),
  }


def token_features(logits: jax.Array) -> jax.Array:
  """Return the per-token features [B, V, 5] of next-token logits [B, V]."""
  log_p = jax.nn.log_softmax(logits)
  entropy = -jnp.sum(jnp.exp(log_p) * log_p, axis=-1, keepdims=True)
  gap = log_p - jnp.max(log_p, axis=-1, keepdims=True)
  rank = jnp.argsort(jnp.argsort(-log_p, axis=-1), axis=-1).astype(jnp.float32)
  features = [log_p / 5.0, gap / 5.0, jnp.broadcast_to(entropy, log_p.shape),
              (-log_p - entropy) / 5.0, jnp.log1p(rank) / 3.0]
  return jnp.stack(features, axis=-1)


def initial_state(g_params, batch_size: int) -> jax.Array:
  """Return G_sampler's memory before the first token, zeros of shape [B, memory]."""
  return jnp.zeros((batch_size, g_params["memory_bias"].shape[0]))


def make_transform(g_params, length: int) -> decoding.Transform:
  """Return G_sampler as a sampling rule for `decoding.generate`."""
  g_params = jax.tree.map(jnp.asarray, g_params)

  def transform(logits, windows, position, memory):
    # The memory reads the token sampled last, which is the window's final entry.
    memory = jnp.tanh(memory @ g_params["memory_recurrent"]
                      + g_params["memory_input"][windows[:, -1]] + g_params["memory_bias"])
    log_p = jax.nn.log_softmax(logits)
    batch, vocab = log_p.shape
    token = jnp.broadcast_to(g_params["token_embed"][None], (batch, vocab,
                                                              g_params["token_embed"].shape[1]))
    context = g_params["context_embed"][windows[:, -1]]
    context = jnp.broadcast_to(context[:, None, :], token.shape)
    where = jnp.full((batch, vocab, 1), position / length, log_p.dtype)
    shared = jnp.broadcast_to(memory[:, None, :], (batch, vocab, memory.shape[-1]))
    features = jnp.concatenate([token_features(logits), token, context, where, shared], axis=-1)
    hidden = jnp.tanh(features @ g_params["w1"] + g_params["b1"])
    return log_p + hidden @ g_params["w2"], memory

  return transform


def init_discriminator(key: jax.Array, vocab_size: int, embed_dim: int = 32, hidden: int = 64):
  k_embed, k_conv, k_out, k_head = jax.random.split(key, 4)
  return {
      "embed": jax.random.normal(k_embed, (vocab_size, embed_dim)) / jnp.sqrt(embed_dim),
      "conv": jax.random.normal(k_conv, (3 * embed_dim, hidden)) / jnp.sqrt(3 * embed_dim),
      "b_conv": jnp.zeros(hidden),
      "w_out": jax.random.normal(k_out, (2 * hidden, hidden)) / jnp.sqrt(2 * hidden),
      "b_out": jnp.zeros(hidden),
      "head": jax.random.normal(k_head, (hidden,)) / jnp.sqrt(hidden),
      "b_head": jnp.zeros(()),
  }


def discriminate(d_params, one_hot: jax.Array) -> jax.Array:
  """Return D_quality's logit that each one-hot sequence [B, L, V] is from the language."""
  embedded = one_hot @ d_params["embed"]
  padded = jnp.pad(embedded, ((0, 0), (1, 1), (0, 0)))
  windows = jnp.concatenate([padded[:, :-2], padded[:, 1:-1], padded[:, 2:]], axis=-1)
  h = jax.nn.leaky_relu(windows @ d_params["conv"] + d_params["b_conv"], 0.2)
  pooled = jnp.concatenate([jnp.mean(h, axis=1), jnp.max(h, axis=1)], axis=-1)
  h = jax.nn.leaky_relu(pooled @ d_params["w_out"] + d_params["b_out"], 0.2)
  return h @ d_params["head"] + d_params["b_head"]


def train_sampler(next_logits: Callable, prompts_fn: Callable, real_fn: Callable,
                  key: jax.Array, *, vocab_size: int, input_vocab_size: int, length: int,
                  steps: int = 500, batch_size: int = 64, estimator: str = "straight_through",
                  loss: str = "non_saturating", d_steps: int = 1,
                  g_tx: optax.GradientTransformation | None = None,
                  d_tx: optax.GradientTransformation | None = None,
                  snapshot_every: int | None = None):
  """Train G_sampler against D_quality, keeping its parameters every `snapshot_every` steps.

  Args:
    next_logits: the language model, integer windows [B, C] to logits [B, V].
    prompts_fn: `prompts_fn(key, batch_size)` -> starting windows [B, C].
    real_fn: `real_fn(key, batch_size)` -> real token sequences [B, L] of the language.
    key: PRNG key.
    vocab_size: output vocabulary V.
    input_vocab_size: vocabulary of the windows (V, or V + 1 with a BOS token).
    length: generated tokens per sequence.
    steps: adversarial steps.
    batch_size: sequences per real and per fake batch.
    estimator: "straight_through" (Gumbel-softmax) or "score_function".
    loss: adversarial loss, one of `gan.LOSSES`.
    d_steps: D updates per G update.
    g_tx: G_sampler's update rule; defaults to `optim.default_rule(1e-3)` (G*).
    d_tx: D_quality's update rule; defaults to `optim.default_rule(1e-3)` (G*).
    snapshot_every: steps between kept copies of G_sampler's parameters; must
      divide `steps`. None keeps only the final parameters.

  Returns:
    G_sampler's parameters after each `snapshot_every` steps, stacked on a
    leading axis of size `steps // snapshot_every` (size 1, the final
    parameters, when `snapshot_every` is None), and the per-step GAN metrics.
  """
  validation.check_choice("estimator", estimator, ESTIMATORS)
  validation.check("steps", steps, validation.IntRange(1))
  validation.check("batch_size", batch_size, validation.IntRange(2))
  validation.check("length", length, validation.IntRange(1))
  snapshot_every = steps if snapshot_every is None else snapshot_every
  validation.check("snapshot_every", snapshot_every, validation.IntRange(1, steps))
  if steps % snapshot_every:
    raise validation.ConfigError(f"Invalid snapshot_every={snapshot_every}: it must divide "
                     f"steps={steps}.")
  g_tx = g_tx if g_tx is not None else optim.default_rule(1e-3)
  d_tx = d_tx if d_tx is not None else optim.default_rule(1e-3)
  named = keys_lib.split_named(keys_lib.as_key(key), ("generator", "discriminator", "train"))
  straight_through = estimator == "straight_through"

  def generate(g_params, key, size):
    k_prompt, k_sample = jax.random.split(key)
    out = decoding.generate(next_logits, make_transform(g_params, length), k_sample,
                            prompts_fn(k_prompt, size), length,
                            initial_state=initial_state(g_params, size),
                            straight_through=straight_through)
    if straight_through:
      return out["one_hot"], None
    return jax.lax.stop_gradient(out["one_hot"]), out["log_prob"]

  step_fn = gan.make_step(generate, discriminate, g_tx, d_tx, loss=loss, d_steps=d_steps)
  state = gan.init_state(
      init_generator(named["generator"], vocab_size, input_vocab_size),
      init_discriminator(named["discriminator"], vocab_size), g_tx, d_tx)

  def body(state, step):
    k_real, k_step = jax.random.split(keys_lib.step_key(named["train"], step))
    real = jax.nn.one_hot(real_fn(k_real, batch_size), vocab_size)
    return step_fn(state, real, k_step)

  def chunk(state, start):
    state, history = jax.lax.scan(body, state, start + jnp.arange(snapshot_every))
    return state, (state.g_params, history)

  starts = jnp.arange(0, steps, snapshot_every)
  _, (snapshots, history) = jax.jit(lambda s: jax.lax.scan(chunk, s, starts))(state)
  history = jax.tree.map(lambda leaf: np.asarray(leaf).reshape(steps, *leaf.shape[2:]), history)
  return jax.device_get(snapshots), history
