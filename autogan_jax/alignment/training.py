"""Training and character-error-rate evaluation of one alignment mechanism."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from autogan_jax import optim
from autogan_jax.alignment import mechanisms
from autogan_jax.core import tree
from autogan_jax.tasks import digit_strings

EVAL_BATCH = 256
# Built once so that the jitted segment, keyed on the transform, compiles once per config.


@functools.partial(jax.jit, static_argnames=("config", "tx", "num_steps", "batch_size"))
def _train_segment(params, opt_state, key, start, data_arrays, *, config, tx, num_steps,
                   batch_size):
  frames, frame_lengths, labels, label_lengths = data_arrays

  def step(carry, index):
    params, opt_state = carry
    step_key = jax.random.fold_in(key, index)
    pick = jax.random.randint(step_key, (batch_size,), 0, frames.shape[0])
    batch = digit_strings.batch_arrays(frames[pick], frame_lengths[pick], labels[pick],
                                       label_lengths[pick])
    (value, metrics), grads = jax.value_and_grad(mechanisms.loss, has_aux=True)(
        params, config, batch)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), (value, metrics["feasible"])

  (params, opt_state), (losses, feasible) = jax.lax.scan(
      step, (params, opt_state), start + jnp.arange(num_steps))
  return params, opt_state, losses, feasible


def train(config: mechanisms.AlignmentConfig, data: digit_strings.DigitStrings, key: jax.Array,
          *, num_steps: int, batch_size: int = 32, tx: optax.GradientTransformation | None = None,
          log_every: int = 250,
          on_progress: Callable[[int, float], None] | None = None) -> tuple[dict, dict]:
  """Train one mechanism on `data`; return its parameters and a training summary.

  The update rule `tx` defaults to `optim.default_rule(3e-3)` (G*). Training runs as jitted
  `lax.scan` segments of `log_every` steps, so one config compiles at most
  twice (a full segment and the last, shorter one).

  Returns:
    `(params, summary)` where the summary has the loss of each segment's last
    step, the mean share of feasible targets and whether the parameters are finite.
  """
  tx = tx if tx is not None else optim.default_rule(3e-3)
  init_key, data_key = jax.random.split(key)
  params = mechanisms.init(init_key, config)
  opt_state = tx.init(params)
  arrays = tuple(jnp.asarray(a) for a in (data.frames, data.frame_lengths, data.labels,
                                          data.label_lengths))
  losses, feasible = [], []
  done = 0
  while done < num_steps:
    length = min(log_every, num_steps - done)
    params, opt_state, segment_losses, segment_feasible = _train_segment(
        params, opt_state, data_key, done, arrays, config=config, tx=tx, num_steps=length,
        batch_size=batch_size)
    done += length
    losses.append(float(segment_losses[-1]))
    feasible.append(float(jnp.mean(segment_feasible)))
    if on_progress is not None:
      on_progress(done, losses[-1])
  summary = {"losses": losses, "feasible": float(np.mean(feasible)),
             "finite": bool(tree.all_finite(params))}
  return params, summary


@functools.partial(jax.jit, static_argnames=("config",))
def _predict(params, batch, *, config):
  return mechanisms.predict(params, config, batch)


def predict_batch(params: dict, config: mechanisms.AlignmentConfig,
                  batch: dict) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Run `mechanisms.predict` jitted, compiled once per config and batch shape."""
  return _predict(params, batch, config=config)


def transcribe(params: dict, config: mechanisms.AlignmentConfig,
               data: digit_strings.DigitStrings) -> tuple[np.ndarray, np.ndarray]:
  """Return predicted digits [N, MAX_DIGITS] and lengths [N] for every string of `data`."""
  digits, lengths = [], []
  for start in range(0, len(data), EVAL_BATCH):
    index = np.arange(start, min(start + EVAL_BATCH, len(data)))
    # Pad the last batch to a full one so that prediction compiles once.
    padded = np.resize(index, EVAL_BATCH)
    out_digits, out_lengths, _ = _predict(params, data.as_batch(padded), config=config)
    digits.append(np.asarray(out_digits)[: len(index)])
    lengths.append(np.asarray(out_lengths)[: len(index)])
  return np.concatenate(digits), np.concatenate(lengths)


def character_error_rate(params: dict, config: mechanisms.AlignmentConfig,
                         data: digit_strings.DigitStrings) -> float:
  """Return the character error rate of `params` on every string of `data`."""
  digits, lengths = transcribe(params, config, data)
  return digit_strings.character_error_rate(data.labels, data.label_lengths, digits, lengths)
