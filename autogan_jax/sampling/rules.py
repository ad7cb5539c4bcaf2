"""Fixed sampling rules: each maps next-token logits to the logits of the distribution sampled.

Tokens a rule removes get a logit of -inf. Every rule keeps at least the most
likely token, so the result is always a distribution. The parameter may be a
traced array, so one compiled generator serves a whole parameter sweep.

- temperature: logits / t.
- top_k: the k most likely tokens (Fan, Lewis and Dauphin, "Hierarchical Neural
  Story Generation", 2018).
- top_p: the smallest set of most likely tokens with mass >= p (Holtzman et al.,
  "The Curious Case of Neural Text Degeneration", 2020).
- min_p: tokens with probability >= p times the largest probability (Nguyen et
  al., "Turning Up the Heat: Min-p Sampling for Creative and Coherent LLM
  Outputs", 2024).
- typical: the tokens whose surprisal is closest to the entropy, up to mass p
  (Meister et al., "Locally Typical Sampling", 2023).
- epsilon: tokens with probability >= epsilon; eta: tokens with probability >
  min(eta, sqrt(eta) * exp(-entropy)) (Hewitt, Manning and Liang, "Truncation
  Sampling as Language Model Desmoothing", 2022).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from autogan_jax.core import validation

# The valid range of each rule's parameter. top_k's upper bound is the vocabulary
# size and is checked in `validate_rule`.
PARAMETER_RULES = {
    "temperature": validation.FloatRange(0.0, low_inclusive=False),
    "top_k": validation.IntRange(1),
    "top_p": validation.FloatRange(0.0, 1.0, low_inclusive=False),
    "min_p": validation.FloatRange(0.0, 1.0),
    "typical": validation.FloatRange(0.0, 1.0, low_inclusive=False),
    "epsilon": validation.FloatRange(0.0, 1.0, high_inclusive=False),
    "eta": validation.FloatRange(0.0, 1.0, high_inclusive=False),
}
RULES = tuple(PARAMETER_RULES)


def validate_rule(name: str, parameter: float | int, vocab_size: int | None = None) -> None:
  """Raise `ConfigError` when `name` is not a rule or `parameter` is outside its range."""
  validation.check_choice("sampling rule", name, RULES)
  validation.check(f"{name} parameter", parameter, PARAMETER_RULES[name])
  if name == "top_k" and vocab_size is not None and parameter > vocab_size:
    raise validation.ConfigError(
        f"Invalid value top_k parameter={parameter}: expected at most the vocabulary size "
        f"{vocab_size}.")


def _keep(logits: jax.Array, keep: jax.Array) -> jax.Array:
  # The most likely token always stays, so no row is all -inf.
  top = jax.nn.one_hot(jnp.argmax(logits, -1), logits.shape[-1], dtype=bool)
  return jnp.where(keep | top, logits, -jnp.inf)


def _keep_sorted_prefix(logits: jax.Array, order_key: jax.Array, mass: jax.Array) -> jax.Array:
  """Keep tokens in ascending `order_key` up to and including the one that reaches `mass`."""
  probs = jax.nn.softmax(logits)
  order = jnp.argsort(order_key, axis=-1, stable=True)
  sorted_probs = jnp.take_along_axis(probs, order, axis=-1)
  mass_before = jnp.cumsum(sorted_probs, axis=-1) - sorted_probs
  keep_sorted = mass_before < mass
  keep = jnp.zeros_like(keep_sorted).at[
      jnp.arange(logits.shape[0])[:, None], order].set(keep_sorted)
  return _keep(logits, keep)


def _entropy(log_probs: jax.Array) -> jax.Array:
  return -jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1, keepdims=True)


def apply_rule(name: str, parameter: jax.Array | float, logits: jax.Array) -> jax.Array:
  """Return the logits of rule `name` with `parameter` applied to `logits` [B, V]."""
  parameter = jnp.asarray(parameter, jnp.float32)
  log_probs = jax.nn.log_softmax(logits)
  probs = jnp.exp(log_probs)
  if name == "temperature":
    return log_probs / parameter
  if name == "top_k":
    descending = -jnp.sort(-log_probs, axis=-1)
    k = jnp.clip(jnp.round(parameter).astype(jnp.int32), 1, logits.shape[-1])
    threshold = descending[:, k - 1][:, None]
    # Ties at the k-th value are all kept.
    return _keep(log_probs, log_probs >= threshold)
  if name == "top_p":
    return _keep_sorted_prefix(log_probs, -log_probs, parameter)
  if name == "min_p":
    return _keep(log_probs, probs >= parameter * jnp.max(probs, -1, keepdims=True))
  if name == "typical":
    deviation = jnp.abs(-log_probs - _entropy(log_probs))
    return _keep_sorted_prefix(log_probs, deviation, parameter)
  if name == "epsilon":
    return _keep(log_probs, probs >= parameter)
  if name == "eta":
    threshold = jnp.minimum(parameter, jnp.sqrt(parameter) * jnp.exp(-_entropy(log_probs)))
    return _keep(log_probs, probs > threshold)
  raise ValueError(f"Unknown sampling rule {name!r}; expected one of {RULES}.")


def apply_rule_by_index(index: jax.Array, parameter: jax.Array, logits: jax.Array) -> jax.Array:
  """Apply rule number `index` of `RULES`; both arguments may be traced, so one compile serves all.
  """
  branches = [lambda p, x, name=name: apply_rule(name, p, x) for name in RULES]
  return jax.lax.switch(index, branches, jnp.asarray(parameter, jnp.float32), logits)


def default_sweep(name: str, vocab_size: int) -> tuple[float, ...]:
  """Return the parameter values swept for rule `name`, from least to most truncating."""
  sweeps = {
      "temperature": (1.5, 1.25, 1.0, 0.85, 0.7, 0.55, 0.4, 0.25),
      "top_k": tuple(k for k in (vocab_size, 32, 16, 8, 5, 3, 2, 1) if k <= vocab_size),
      "top_p": (1.0, 0.95, 0.9, 0.8, 0.7, 0.5, 0.3),
      "min_p": (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5),
      "typical": (1.0, 0.95, 0.9, 0.8, 0.6, 0.4, 0.2),
      "epsilon": (0.0, 0.001, 0.003, 0.01, 0.03, 0.06, 0.1),
      "eta": (0.0, 0.001, 0.003, 0.01, 0.03, 0.06, 0.1),
  }
  validation.check_choice("sampling rule", name, RULES)
  return sweeps[name]
