"""The calibration GAN: G_cal maps logits to calibrated confidence, D_cal judges calibration.

G_cal divides each example's logits by a temperature that depends on the logits
themselves: T(x) = exp(log_t0 + MLP(features of x)). A positive per-example
temperature never changes the argmax, so accuracy is unchanged by construction.
The features are the gap between the two largest logits, the entropy of the
softmax and the norm of the centred logits, the quantities that tell a sure
prediction from a doubtful one. With the MLP's output layer at zero G_cal is
temperature scaling with T = exp(log_t0), which is where training starts.

D_cal takes (confidence, outcome) pairs as input. A perfectly calibrated predictor with
confidence c is correct with probability c, so the "real" pairs are
(c, y') with y' ~ Bernoulli(c) and c from G_cal on calibration examples, and the
"fake" pairs are (c, y) with the observed correctness y. The two joint
distributions match exactly when P(correct | c) = c, and D_cal finds the
confidence ranges where they differ. G_cal gets gradients through c
(reparameterized); the real pairs carry no gradient.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from autogan_jax import gan
from autogan_jax import optim
from autogan_jax.core import keys as keys_lib
from autogan_jax.core import validation

NUM_FEATURES = 3


def logit_features(logits: jax.Array) -> jax.Array:
  """Return [log1p(top-1 minus top-2 logit), softmax entropy, log1p(centred norm)], shape [N, 3]."""
  top2 = jax.lax.top_k(logits, 2)[0]
  gap = top2[:, 0] - top2[:, 1]
  log_probs = jax.nn.log_softmax(logits)
  entropy = -jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1)
  centred = logits - jnp.mean(logits, axis=-1, keepdims=True)
  norm = jnp.sqrt(jnp.sum(centred**2, axis=-1))
  return jnp.stack([jnp.log1p(gap), entropy, jnp.log1p(norm)], axis=-1)


def init_generator(key: jax.Array, temperature: float = 1.0, hidden: int = 16
                   ) -> dict[str, jax.Array]:
  """Initialise G_cal as temperature scaling with `temperature`."""
  validation.check("temperature", temperature, validation.FloatRange(0.0, low_inclusive=False))
  return {
      "log_t0": jnp.log(jnp.asarray(temperature, jnp.float32)),
      "w1": jax.random.normal(key, (NUM_FEATURES, hidden)) / jnp.sqrt(NUM_FEATURES),
      "b1": jnp.zeros(hidden),
      "w2": jnp.zeros(hidden),
  }


def generator_temperature(g_params, logits: jax.Array) -> jax.Array:
  """Return G_cal's temperature of each example, shape [N]."""
  hidden = jnp.tanh(logit_features(logits) @ g_params["w1"] + g_params["b1"])
  return jnp.exp(g_params["log_t0"] + hidden @ g_params["w2"])


def generator_probs(g_params, logits: jax.Array) -> jax.Array:
  """Return G_cal's calibrated probabilities, softmax(logits / T(logits))."""
  return jax.nn.softmax(logits / generator_temperature(g_params, logits)[:, None])


def init_discriminator(key: jax.Array, hidden: int = 32) -> dict[str, jax.Array]:
  k1, k2 = jax.random.split(key)
  return {"w1": jax.random.normal(k1, (4, hidden)) * 0.5, "b1": jnp.zeros(hidden),
          "w2": jax.random.normal(k2, (hidden,)) / jnp.sqrt(hidden), "b2": jnp.zeros(())}


def discriminate(d_params, pairs: jax.Array) -> jax.Array:
  """Return D_cal's logit that each (confidence, outcome) pair, shape [B, 2], is calibrated."""
  confidence = jnp.clip(pairs[:, 0], 1e-6, 1.0 - 1e-6)
  outcome = pairs[:, 1]
  logit = jnp.log(confidence) - jnp.log1p(-confidence)
  features = jnp.stack([logit, outcome, outcome * logit, confidence], axis=-1)
  hidden = jax.nn.leaky_relu(features @ d_params["w1"] + d_params["b1"], 0.2)
  return hidden @ d_params["w2"] + d_params["b2"]


@dataclasses.dataclass(frozen=True)
class CalibrationGAN:
  """A trained G_cal: a map from logits to calibrated probabilities."""

  g_params: dict

  def __call__(self, logits: jax.Array) -> jax.Array:
    return generator_probs(self.g_params, jnp.asarray(logits))


def train_calibration_gan(logits: jax.Array, labels: jax.Array, key: jax.Array, *,
                          steps: int = 2000, batch_size: int = 4096,
                          init_temperature: float = 1.0,
                          g_tx: optax.GradientTransformation | None = None,
                          d_tx: optax.GradientTransformation | None = None,
                          loss: str = "non_saturating", d_steps: int = 2,
                          ) -> tuple[CalibrationGAN, dict[str, np.ndarray]]:
  """Train G_cal and D_cal adversarially on calibration-set logits and labels.

  Args:
    logits: held-out logits [N, K] of the classifier to calibrate.
    labels: their labels [N].
    key: PRNG key.
    steps: adversarial steps, each `d_steps` D updates then one G update.
    batch_size: pairs per real and per fake batch; at least N uses all N examples.
    init_temperature: G_cal's starting temperature, usually the temperature-scaling fit.
    g_tx: G_cal's update rule; defaults to `optim.default_rule(1e-3)` (G*).
    d_tx: D_cal's update rule; defaults to `optim.default_rule(3e-3)` (G*).
    loss: adversarial loss, one of `gan.LOSSES`.
    d_steps: D updates per G update.

  Returns:
    The trained G_cal and a history of per-step GAN metrics (arrays of length `steps`).
  """
  validation.check("steps", steps, validation.IntRange(1))
  validation.check("batch_size", batch_size, validation.IntRange(1))
  logits = jnp.asarray(logits, jnp.float32)
  labels = jnp.asarray(labels, jnp.int32)
  g_tx = g_tx if g_tx is not None else optim.default_rule(1e-3)
  d_tx = d_tx if d_tx is not None else optim.default_rule(3e-3)
  named = keys_lib.split_named(keys_lib.as_key(key), ("generator", "discriminator", "train"))
  n = logits.shape[0]

  state = gan.init_state(init_generator(named["generator"], init_temperature),
                         init_discriminator(named["discriminator"]), g_tx, d_tx)

  # The data enter as arguments, not closure constants, so XLA does not spend
  # compile time folding `top_k` over them.
  def train(state, logits, labels):
    def pairs_of(g_params, index, outcome_fn):
      probs = generator_probs(g_params, logits[index])
      confidence = jnp.max(probs, axis=-1)
      return jnp.stack([confidence, outcome_fn(probs, confidence)], axis=-1)

    def draw_index(key):
      # A batch as large as the calibration set uses every example once, which
      # leaves the Bernoulli outcomes of the real pairs as the only noise.
      if batch_size >= n:
        return jnp.arange(n)
      return jax.random.randint(key, (batch_size,), 0, n)

    def generate(g_params, key, size):
      del size  # Always `batch_size` pairs, or the whole set.
      index = draw_index(key)
      observed = lambda probs, _: (jnp.argmax(probs, -1) == labels[index]).astype(jnp.float32)
      return pairs_of(g_params, index, observed), None

    def real_pairs(g_params, key):
      k_index, k_outcome = jax.random.split(key)
      index = draw_index(k_index)
      def ideal(_, confidence):
        return jax.random.bernoulli(k_outcome, confidence).astype(jnp.float32)

      return jax.lax.stop_gradient(pairs_of(g_params, index, ideal))

    step_fn = gan.make_step(generate, discriminate, g_tx, d_tx, loss=loss, d_steps=d_steps)

    def body(state, step):
      step_key = keys_lib.step_key(named["train"], step)
      k_real, k_step = jax.random.split(step_key)
      return step_fn(state, real_pairs(state.g_params, k_real), k_step)

    return jax.lax.scan(body, state, jnp.arange(steps))

  state, history = jax.jit(train)(state, logits, labels)
  return CalibrationGAN(jax.device_get(state.g_params)), jax.tree.map(np.asarray, history)
