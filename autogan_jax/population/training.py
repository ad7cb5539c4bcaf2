"""Training of all members of a population in one `jit(vmap(scan(step)))` call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Union

import jax
import jax.numpy as jnp
import optax

from autogan_jax.core import keys as keys_lib

PyTree = Any
# An update rule is an optax transform, or a function from a member's
# meta-parameters to the transform that those meta-parameters define.
UpdateRule = Union[optax.GradientTransformation, Callable[[PyTree], optax.GradientTransformation]]


def resolve_update_rule(update_rule: UpdateRule, meta_params: PyTree) -> optax.GradientTransformation:
  """Return the transform of one member: `update_rule` itself, or `update_rule(meta_params)`."""
  if isinstance(update_rule, optax.GradientTransformation):
    return update_rule
  if callable(update_rule):
    return update_rule(meta_params)
  raise TypeError(
      f"Expected an optax.GradientTransformation or a function of meta-parameters that returns "
      f"one, got {type(update_rule).__name__}.")


def make_member_trainer(update_rule: UpdateRule, num_steps: int,
                        eval_split: str = "valid") -> Callable:
  """Build `train(params, opt_state, meta_params, task, key, start_step)` for one member.

  The function runs `num_steps` updates in a `lax.scan` and evaluates the
  result on `eval_split`. Step `t` draws the batch `task.batch(data_key,
  start_step + t)`, so consecutive calls continue the batch sequence.
  A `GradientTransformationExtraArgs` also receives the batch loss as `value`.

  Returns:
    `(params, opt_state, losses, eval_metrics)` where `losses` has shape
    [num_steps] and `eval_metrics` is `task.evaluate(params, eval_split)`.
  """
  if num_steps < 1:
    raise ValueError(f"num_steps must be at least 1, got {num_steps}.")

  def train(params, opt_state, meta_params, task, key, start_step):
    tx = resolve_update_rule(update_rule, meta_params)
    named = keys_lib.split_named(key, ("data", "loss"))

    def step(carry, t):
      params, opt_state = carry
      batch = task.batch(named["data"], t)
      loss, grads = jax.value_and_grad(task.loss)(params, batch,
                                                 keys_lib.step_key(named["loss"], t))
      if isinstance(tx, optax.GradientTransformationExtraArgs):
        updates, opt_state = tx.update(grads, opt_state, params, value=loss)
      else:
        updates, opt_state = tx.update(grads, opt_state, params)
      params = optax.apply_updates(params, updates)
      return (params, opt_state), loss

    steps = jnp.asarray(start_step, jnp.int32) + jnp.arange(num_steps, dtype=jnp.int32)
    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), steps)
    return params, opt_state, losses, task.evaluate(params, eval_split)

  return train


def make_population_trainer(update_rule: UpdateRule, num_steps: int, eval_split: str = "valid",
                            tasks_batched: bool = False) -> Callable:
  """Build the vmapped trainer `train(params, opt_state, meta_params, tasks, keys, start_step)`.

  Every argument except `tasks` (when `tasks_batched` is False) and
  `start_step` carries the population axis. The result is not jitted, so it
  can be composed into a larger jitted function; wrap it in `jax.jit` to call
  it alone.
  """
  member = make_member_trainer(update_rule, num_steps, eval_split)
  task_axis = 0 if tasks_batched else None
  return jax.vmap(member, in_axes=(0, 0, 0, task_axis, 0, None))


def init_members(key: jax.Array, tasks: PyTree, update_rule: UpdateRule, population_size: int,
                 meta_params: PyTree = None, tasks_batched: bool = False) -> tuple[PyTree, PyTree]:
  """Initialise the params and optimizer states of `population_size` members.

  Member `i` draws its params from `fold_in(key, i)`. `meta_params`, when
  given, carries the population axis.

  Returns:
    `(params, opt_state)`, each with leading axis `population_size`.
  """
  member_keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(population_size))

  def init_one(member_key, task, member_meta_params):
    params = task.init(member_key)
    return params, resolve_update_rule(update_rule, member_meta_params).init(params)

  task_axis = 0 if tasks_batched else None
  return jax.jit(jax.vmap(init_one, in_axes=(0, task_axis, 0)))(member_keys, tasks, meta_params)
