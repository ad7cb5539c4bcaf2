"""Inner training runs: a task trained by an optax transformation inside `lax.scan`."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

PyTree = Any


@struct.dataclass
class InnerState:
  """One inner run in progress.

  Attributes:
    params: the task's parameters.
    opt_state: the update rule's state.
    step: inner steps taken since the run started, an int32.
    data_key: key of the run's batch order; the batch of step t is
      `task.batch(data_key, t)`.
  """

  params: PyTree
  opt_state: PyTree
  step: jax.Array
  data_key: jax.Array


def start(task, tx: optax.GradientTransformation, key: jax.Array) -> InnerState:
  """Initialise the task's parameters and the rule's state for a fresh run."""
  k_init, k_data = jax.random.split(key)
  params = task.init(k_init)
  return InnerState(params=params, opt_state=tx.init(params), step=jnp.zeros((), jnp.int32),
                    data_key=k_data)


def train_step(task, tx: optax.GradientTransformation, state: InnerState):
  """Take one step on the batch of `state.step`; return the new state, the loss and the grads."""
  batch = task.batch(state.data_key, state.step)
  loss, grads = jax.value_and_grad(task.loss)(state.params, batch, None)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_state = InnerState(params=params, opt_state=opt_state, step=state.step + 1,
                         data_key=state.data_key)
  return new_state, loss, grads


def unroll(task, tx: optax.GradientTransformation, state: InnerState, length: int):
  """Run `length` steps in one scan; return the final state and each step's batch loss."""

  def body(carry, _):
    new_state, loss, _ = train_step(task, tx, carry)
    return new_state, loss

  return jax.lax.scan(body, state, None, length=length)


def train_curve(task, tx: optax.GradientTransformation, key: jax.Array, num_steps: int,
                eval_every: int):
  """Train from scratch for `num_steps`, scoring the whole train split every `eval_every` steps.

  Returns:
    A dict with `train_loss` of shape [num_steps // eval_every + 1] (the first
    entry is at step 0), `batch_loss` of shape [num_steps], and the final
    parameters' `test_loss`, `test_accuracy` (NaN where the task has none) and
    `valid_loss`.
  """
  if num_steps % eval_every:
    raise ValueError(f"num_steps={num_steps} must be a multiple of eval_every={eval_every}.")
  state = start(task, tx, key)

  def chunk(carry, _):
    carry, losses = unroll(task, tx, carry, eval_every)
    return carry, (task.evaluate(carry.params, "train")["loss"], losses)

  first = task.evaluate(state.params, "train")["loss"]
  state, (train_losses, batch_losses) = jax.lax.scan(chunk, state, None,
                                                     length=num_steps // eval_every)
  test = task.evaluate(state.params, "test")
  valid = task.evaluate(state.params, "valid")
  return {
      "train_loss": jnp.concatenate([first[None], train_losses]),
      "batch_loss": batch_losses.reshape(-1),
      "test_loss": test["loss"],
      "test_accuracy": test.get("accuracy", jnp.nan),
      "valid_loss": valid["loss"],
  }
