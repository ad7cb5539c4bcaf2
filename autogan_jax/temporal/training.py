"""Training and rollout evaluation of a population of temporal structures in one `vmap`."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from autogan_jax import optim
from autogan_jax.temporal import model as model_lib
from autogan_jax.temporal import structure as structure_lib

# Built once so that the jitted segment, keyed on the transform, compiles once.


def sample_windows(sequences: jax.Array, key: jax.Array, batch_size: int,
                   future: int) -> tuple[jax.Array, jax.Array]:
  """Draw windows of MAX_CONTEXT past states (newest first) and the `future` states after each.

  Args:
    sequences: [N, L, ...] states; every window lies inside one sequence.
    key: PRNG key.
    batch_size: windows to draw.
    future: states after the newest one to return as targets.
  """
  context = structure_lib.MAX_CONTEXT
  k_seq, k_time = jax.random.split(key)
  seq = jax.random.randint(k_seq, (batch_size,), 0, sequences.shape[0])
  newest = jax.random.randint(k_time, (batch_size,), context - 1,
                              sequences.shape[1] - future)
  past = newest[:, None] - jnp.arange(context)[None, :]
  ahead = newest[:, None] + 1 + jnp.arange(future)[None, :]
  return sequences[seq[:, None], past], sequences[seq[:, None], ahead]


@functools.partial(jax.jit, static_argnames=("spec", "tx", "num_steps", "batch_size",
                                             "commit_tolerance"))
def _train_segment(params, opt_state, structures, sequences, key, start, *, spec, tx, num_steps,
                   batch_size, commit_tolerance):

  def member_update(p, s, o, windows, targets):
    value, grads = jax.value_and_grad(model_lib.loss)(p, spec, s, windows, targets,
                                                      commit_tolerance)
    updates, o = tx.update(grads, o, p)
    return optax.apply_updates(p, updates), o, value

  def step(carry, index):
    params, opt_state = carry
    # Every member trains on the same batch, so members differ only by structure and init.
    windows, targets = sample_windows(sequences, jax.random.fold_in(key, index), batch_size,
                                      structure_lib.MAX_HORIZON)
    params, opt_state, values = jax.vmap(member_update, in_axes=(0, 0, 0, None, None))(
        params, structures, opt_state, windows, targets)
    return (params, opt_state), values

  (params, opt_state), values = jax.lax.scan(step, (params, opt_state),
                                             start + jnp.arange(num_steps))
  return params, opt_state, values


def train_population(spec: model_lib.ModelSpec, structures: structure_lib.Structure,
                     sequences: np.ndarray, key: jax.Array, *, num_steps: int,
                     batch_size: int = 64, tx: optax.GradientTransformation | None = None,
                     commit_tolerance: float = 1e-3, seeds: np.ndarray | None = None,
                     log_every: int = 200,
                     on_progress: Callable[[int, np.ndarray], None] | None = None):
  """Train one model per structure of the population `structures` (leading axis P).

  Member i is initialised from `seeds[i]` folded into a subkey of `key` (`seeds` defaults to
  0..P-1), so repeating a structure with other seeds gives independent runs.
  The update rule `tx` defaults to `optim.default_rule(1e-3)` (G*).

  Returns:
    `(params, losses)`: stacked parameters [P, ...] and the training loss of
    each member at the end of each segment, [segments, P].
  """
  tx = tx if tx is not None else optim.default_rule(1e-3)
  population = int(structures.context.shape[0])
  seeds = np.arange(population) if seeds is None else np.asarray(seeds)
  init_key, data_key = jax.random.split(key)
  init_keys = jax.vmap(lambda s: jax.random.fold_in(init_key, s))(jnp.asarray(seeds))
  params = jax.vmap(lambda k: model_lib.init(k, spec))(init_keys)
  opt_state = jax.vmap(tx.init)(params)
  sequences = jnp.asarray(sequences)
  losses = []
  done = 0
  while done < num_steps:
    length = min(log_every, num_steps - done)
    params, opt_state, values = _train_segment(
        params, opt_state, structures, sequences, data_key, done, spec=spec, tx=tx,
        num_steps=length, batch_size=batch_size, commit_tolerance=commit_tolerance)
    done += length
    losses.append(np.asarray(values[-1]))
    if on_progress is not None:
      on_progress(done, losses[-1])
  return params, np.stack(losses)


@functools.partial(jax.jit, static_argnames=("spec", "num_steps"))
def _rollouts(params, structures, histories, *, spec, num_steps):
  def member(p, s):
    return jax.vmap(lambda h: model_lib.rollout(p, spec, s, h, num_steps))(histories)
  return jax.vmap(member)(params, structures)


def rollout_errors(spec: model_lib.ModelSpec, params, structures: structure_lib.Structure,
                   sequences: np.ndarray, num_steps: int) -> dict[str, np.ndarray]:
  """Roll every member out from the start of every sequence and score it against the truth.

  The first MAX_CONTEXT states of each sequence are the history; the next
  `num_steps` are the truth.

  Returns:
    "errors" [P, num_steps] is the per-step mean squared error (continuous) or
    token error rate (discrete), averaged over sequences. "calls" [P] is the
    mean number of model calls per rollout, and "rollouts" [P, N, num_steps, ...]
    contains the predictions.
  """
  context = structure_lib.MAX_CONTEXT
  sequences = jnp.asarray(sequences)
  if sequences.shape[1] < context + num_steps:
    raise ValueError(f"Sequences of length {sequences.shape[1]} are too short for a history "
                     f"of {context} states and {num_steps} rollout steps.")
  histories = sequences[:, :context]
  truth = sequences[:, context:context + num_steps]
  predicted, calls = _rollouts(params, structures, histories, spec=spec, num_steps=num_steps)
  if spec.kind == "continuous":
    per_step = jnp.mean((predicted - truth[None]) ** 2, axis=(1, 3))
  else:
    per_step = jnp.mean((predicted != truth[None]).astype(jnp.float32), axis=1)
  return {"errors": np.asarray(per_step), "calls": np.asarray(jnp.mean(calls, axis=1)),
          "rollouts": np.asarray(predicted)}


@functools.partial(jax.jit, static_argnames=("spec",))
def next_step_loss(spec: model_lib.ModelSpec, params, structures: structure_lib.Structure,
                   windows: jax.Array, targets: jax.Array) -> jax.Array:
  """Return each member's mean error of its first predicted step, [P]."""
  def member(p, s):
    outputs, _ = jax.vmap(lambda w: model_lib.apply(p, spec, s, w))(windows)
    return jnp.mean(jax.vmap(lambda o, t: model_lib.step_errors(spec, o, t)[0])(outputs,
                                                                                targets))
  return jax.vmap(member)(params, structures)
