r"""Imitation: fit the learned rule to reproduce Adam's updates.

Inner runs follow Adam's trajectory. At every step the learned rule receives the
same gradient and parameters, keeps its own statistics, and proposes an update
u_rule. The loss is the relative squared error over an unroll of K steps,

  sum_t ||u_rule_t - u_adam_t||^2 / sum_t ||u_adam_t||^2,

the square of the relative error that the report gives on held-out tasks.

Runs continue across imitation steps, like truncated meta-training, so that the
rule is also fitted on late steps where the bias corrections have worn off.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from autogan_jax.core import tree as tree_lib
from autogan_jax.meta import inner
from autogan_jax.optim import learned

PyTree = Any


@struct.dataclass
class ImitationState:
  """Imitation in progress; checkpointed whole.

  Attributes:
    meta_params: the learned rule's meta-parameters.
    opt_state: the optimizer state of the imitation fit.
    tasks: the current task of each run, stacked.
    runs: the Adam runs being imitated; `opt_state` is (Adam's state, the rule's state).
    step: imitation steps taken.
  """

  meta_params: PyTree
  opt_state: PyTree
  tasks: PyTree
  runs: inner.InnerState
  step: jax.Array


def _squared(tree):
  return sum(jnp.sum(x * x) for x in jax.tree.leaves(tree))


@dataclasses.dataclass(frozen=True)
class Imitation:
  """Static settings of imitation and its pure functions.

  Attributes:
    sample_task: jittable `key -> task`.
    num_tasks: runs per step, vmapped.
    unroll_length: steps of each run per imitation step.
    adam_learning_rate: learning rate of the Adam being imitated.
  """

  sample_task: Callable[[jax.Array], Any]
  num_tasks: int
  unroll_length: int
  adam_learning_rate: float

  def _adam(self) -> optax.GradientTransformation:
    return optax.adam(self.adam_learning_rate)

  def start(self, meta_params, rule_hyper, task, key) -> inner.InnerState:
    """Start an Adam run on `task` with the rule's statistics beside Adam's."""
    run = inner.start(task, self._adam(), key)
    rule_state = learned.learned_optimizer(meta_params, rule_hyper).init(run.params)
    return run.replace(opt_state=(run.opt_state, rule_state))

  def _fresh_runs(self, meta_params, rule_hyper, key):

    def one(k):
      k_task, k_run = jax.random.split(k)
      task = self.sample_task(k_task)
      return task, self.start(meta_params, rule_hyper, task, k_run)

    return jax.vmap(one)(jax.random.split(key, self.num_tasks))

  def init(self, meta_params, rule_hyper, fit_tx: optax.GradientTransformation,
           key) -> ImitationState:
    tasks, runs = self._fresh_runs(meta_params, rule_hyper, key)
    return ImitationState(meta_params=meta_params, opt_state=fit_tx.init(meta_params),
                          tasks=tasks, runs=runs, step=jnp.zeros((), jnp.int32))

  def errors(self, meta_params, rule_hyper, task, run: inner.InnerState, length: int):
    """Follow Adam for `length` steps; return the new run, squared errors and Adam's squared norms."""
    adam = self._adam()
    rule = learned.learned_optimizer(meta_params, rule_hyper)

    def body(carry, _):
      batch = task.batch(carry.data_key, carry.step)
      grads = jax.grad(task.loss)(carry.params, batch, None)
      adam_state, rule_state = carry.opt_state
      adam_updates, adam_state = adam.update(grads, adam_state, carry.params)
      rule_updates, rule_state = rule.update(grads, rule_state, carry.params)
      error = _squared(jax.tree.map(jnp.subtract, rule_updates, adam_updates))
      reference = _squared(adam_updates)
      params = optax.apply_updates(carry.params, adam_updates)
      new = carry.replace(params=params, opt_state=(adam_state, rule_state), step=carry.step + 1)
      return new, (error, reference)

    return jax.lax.scan(body, jax.lax.stop_gradient(run), None, length=length)

  def loss(self, meta_params, rule_hyper, task, run):
    new_run, (errors, references) = self.errors(meta_params, rule_hyper, task, run,
                                                self.unroll_length)
    return jnp.sum(errors) / (jnp.sum(references) + 1e-30), new_run

  def step(self, state: ImitationState, rule_hyper, fit_tx, horizon: jax.Array, key):
    """Take one fitting step; runs past `horizon` restart on new tasks first."""
    finished = state.runs.step >= horizon
    fresh_tasks, fresh_runs = self._fresh_runs(state.meta_params, rule_hyper, key)
    tasks = tree_lib.select_rows(finished, fresh_tasks, state.tasks)
    runs = tree_lib.select_rows(finished, fresh_runs, state.runs)

    def mean_loss(meta_params):
      losses, new_runs = jax.vmap(self.loss, in_axes=(None, None, 0, 0))(
          meta_params, rule_hyper, tasks, runs)
      return jnp.mean(losses), new_runs

    (loss, new_runs), grads = jax.value_and_grad(mean_loss, has_aux=True)(state.meta_params)
    updates, opt_state = fit_tx.update(grads, state.opt_state, state.meta_params)
    meta_params = optax.apply_updates(state.meta_params, updates)
    new_state = ImitationState(meta_params=meta_params, opt_state=opt_state, tasks=tasks,
                               runs=new_runs, step=state.step + 1)
    return new_state, {"imitation_loss": loss}

  def relative_error(self, meta_params, rule_hyper, task, key, num_steps: int) -> jax.Array:
    """Return ||u_rule - u_adam|| / ||u_adam|| over a whole run of `num_steps` on `task`."""
    run = self.start(meta_params, rule_hyper, task, key)
    _, (errors, references) = self.errors(meta_params, rule_hyper, task, run, num_steps)
    return jnp.sqrt(jnp.sum(errors) / jnp.sum(references))
