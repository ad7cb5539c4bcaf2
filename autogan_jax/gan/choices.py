"""A G/D pair over discrete design choices, with "real" taken from the top of an archive.

G is a factorized categorical distribution: one vector of logits per choice.
It samples choice indices and returns their one-hot encoding with the
log-probability of the sample, so `make_step` trains it by the score
function. D is a small perceptron over the one-hot encoding that learns to
tell the best archived candidates from G's samples; G's reward is D's logit,
so G moves towards choices that look like the best ones found so far.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from autogan_jax.core import validation
from autogan_jax.gan import step as gan_step


@dataclasses.dataclass(frozen=True)
class ChoiceSpace:
  """Names and option counts of independent discrete choices."""

  names: tuple[str, ...]
  sizes: tuple[int, ...]

  def __post_init__(self):
    if len(self.names) != len(self.sizes) or not self.names:
      raise validation.ConfigError(
          f"A choice space needs one size per name, got names={self.names} and "
          f"sizes={self.sizes}.")
    for name, size in zip(self.names, self.sizes):
      validation.check(f"sizes[{name}]", size, validation.IntRange(1))

  @property
  def encoding_dim(self) -> int:
    return sum(self.sizes)

  def encode(self, indices: jax.Array) -> jax.Array:
    """Map choice indices [..., num_choices] to concatenated one-hot vectors [..., encoding_dim]."""
    parts = [jax.nn.one_hot(indices[..., i], size) for i, size in enumerate(self.sizes)]
    return jnp.concatenate(parts, axis=-1)

  def decode(self, encodings: jax.Array) -> jax.Array:
    """Map one-hot encodings back to choice indices."""
    out, start = [], 0
    for size in self.sizes:
      out.append(jnp.argmax(encodings[..., start:start + size], axis=-1))
      start += size
    return jnp.stack(out, axis=-1).astype(jnp.int32)


def init_generator(space: ChoiceSpace) -> dict[str, jax.Array]:
  """Return uniform logits for every choice."""
  return {name: jnp.zeros(size) for name, size in zip(space.names, space.sizes)}


def sample(space: ChoiceSpace, g_params: dict, key: jax.Array,
           batch_size: int) -> tuple[jax.Array, jax.Array]:
  """Draw choice indices [batch_size, num_choices] and their log-probabilities [batch_size]."""
  keys = jax.random.split(key, len(space.names))
  indices, log_probs = [], jnp.zeros(batch_size)
  for name, k in zip(space.names, keys):
    logits = jnp.broadcast_to(g_params[name], (batch_size, g_params[name].shape[0]))
    index = jax.random.categorical(k, logits)
    log_probs = log_probs + jnp.take_along_axis(
        jax.nn.log_softmax(logits), index[:, None], axis=1)[:, 0]
    indices.append(index)
  return jnp.stack(indices, axis=1).astype(jnp.int32), log_probs


def mode(space: ChoiceSpace, g_params: dict) -> np.ndarray:
  """Return the most probable option of every choice, as indices [num_choices]."""
  return np.asarray([int(jnp.argmax(g_params[name])) for name in space.names], np.int32)


def probabilities(space: ChoiceSpace, g_params: dict) -> dict[str, np.ndarray]:
  """Return G's probability of each option, per choice."""
  return {name: np.asarray(jax.nn.softmax(g_params[name])) for name in space.names}


def init_discriminator(key: jax.Array, space: ChoiceSpace, hidden: int = 32) -> dict:
  k_hidden, k_out = jax.random.split(key)
  dim = space.encoding_dim
  return {"w1": jax.random.normal(k_hidden, (dim, hidden)) / jnp.sqrt(dim),
          "b1": jnp.zeros(hidden),
          "w2": jax.random.normal(k_out, (hidden,)) / jnp.sqrt(hidden), "b2": jnp.zeros(())}


def discriminate(d_params: dict, encodings: jax.Array) -> jax.Array:
  """Return one logit per encoding: high means "like the best archived candidates"."""
  h = jax.nn.relu(encodings @ d_params["w1"] + d_params["b1"])
  return h @ d_params["w2"] + d_params["b2"]


def make_search_step(space: ChoiceSpace, g_tx: optax.GradientTransformation,
                     d_tx: optax.GradientTransformation, loss: str = "non_saturating"):
  """Build the `gan.make_step` step of this pair; `real` is a batch of one-hot encodings."""

  def generate(g_params, key, batch_size):
    indices, log_probs = sample(space, g_params, key, batch_size)
    return space.encode(indices), log_probs

  return gan_step.make_step(generate, discriminate, g_tx, d_tx, loss=loss)


def init_search(space: ChoiceSpace, key: jax.Array, archive_size: int,
                g_tx: optax.GradientTransformation, d_tx: optax.GradientTransformation) -> dict:
  """Return the state of a search: the G/D state and an empty archive of `archive_size` slots.

  Empty archive slots have fitness -inf and are never chosen as real while
  enough filled slots exist.
  """
  state = gan_step.init_state(init_generator(space), init_discriminator(key, space), g_tx, d_tx)
  return {"gan": state,
          "archive_indices": jnp.zeros((archive_size, len(space.sizes)), jnp.int32),
          "archive_fitness": jnp.full((archive_size,), -jnp.inf),
          "round": jnp.zeros((), jnp.int32)}


def search_round(space: ChoiceSpace, state: dict, key: jax.Array, evaluate, *, population: int,
                 top_k: int, gan_steps: int, step_fn) -> tuple[dict, dict]:
  """Run one round: G proposes `population` candidates, `evaluate` scores them, G and D update.

  Args:
    space: the choice space.
    state: from `init_search` or an earlier round.
    key: the round's PRNG key.
    evaluate: maps choice indices [population, num_choices] (numpy) to fitness
      [population] (higher is better; non-finite fitness is stored as -inf and
      so never becomes real).
    population: candidates per round.
    top_k: archive members used as the real batch.
    gan_steps: `make_search_step` updates per round.
    step_fn: the jitted step from `make_search_step`.

  Returns:
    `(state, record)`: the new state and this round's candidates, fitness and
    the mean G/D metrics.
  """
  k_sample, k_steps = jax.random.split(key)
  indices, _ = sample(space, state["gan"].g_params, k_sample, population)
  fitness = np.asarray(evaluate(np.asarray(indices)), np.float32)
  fitness = np.where(np.isfinite(fitness), fitness, -np.inf)
  start = int(state["round"]) * population
  archive_indices = state["archive_indices"].at[start:start + population].set(indices)
  archive_fitness = state["archive_fitness"].at[start:start + population].set(fitness)
  filled = start + population
  real = space.encode(gan_step.top_of_archive(archive_indices, archive_fitness,
                                              min(top_k, filled)))
  gan_state = state["gan"]
  metrics = []
  for i in range(gan_steps):
    gan_state, step_metrics = step_fn(gan_state, real, jax.random.fold_in(k_steps, i))
    metrics.append(step_metrics)
  mean_metrics = {name: float(np.mean([float(m[name]) for m in metrics])) for name in metrics[0]}
  new_state = {"gan": gan_state, "archive_indices": archive_indices,
               "archive_fitness": archive_fitness, "round": state["round"] + 1}
  record = {"indices": np.asarray(indices), "fitness": fitness, **mean_metrics}
  return new_state, record
