r"""Meta-training of the learned rule by truncated backpropagation through time.

A batch of `num_tasks` inner runs, each drawn from a task family, is trained by
the learned rule. Every meta-step unrolls each run for `unroll_length` steps
from where it stopped and differentiates the meta-loss with respect to the
meta-parameters through that unroll only (the incoming state is a constant).
A run that reaches the horizon restarts on a new task.

The meta-loss of one unroll with batch losses L_1..L_K and final validation loss V is

  (1 - w) * mean_k log(L_k + floor) + w * log(V + floor).

The floor bounds it below: log(L) alone rewards driving a minibatch loss to
exactly zero, where it reaches minus infinity in float32 and the meta-gradients
stop being finite. The validation term counters overfitting of the inner runs.

Runs whose loss, state or meta-gradient is not finite are quarantined: left out
of the mean meta-gradient, counted, and restarted on a new task.

Truncated unrolls cannot see what the rule does to a whole run: a rule that
speeds up every 20-step window can still diverge late in the run. So every few
meta-steps `validation_score` trains fresh tasks for the whole horizon, and the
state keeps the meta-parameters with the best score (early stopping on
meta-validation).
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
class MetaHyperparams:
  """Traced settings of meta-training; changing them never recompiles.

  Attributes:
    meta_learning_rate: step size of the Adam meta-optimizer.
    clip_norm: the mean meta-gradient is clipped to this global norm.
    loss_floor: added to losses inside the logarithm of the meta-loss.
    valid_weight: weight w of the validation term of the meta-loss.
    horizon: inner steps after which a run restarts on a new task.
    active_tasks: runs whose index is below this count into the meta-gradient;
      the others are computed (shapes stay fixed) and weighted zero.
  """

  meta_learning_rate: jax.Array
  clip_norm: jax.Array
  loss_floor: jax.Array
  valid_weight: jax.Array
  horizon: jax.Array
  active_tasks: jax.Array


def make_hyperparams(*, meta_learning_rate: float, clip_norm: float, loss_floor: float,
                     valid_weight: float, horizon: int,
                     active_tasks: int = 2**30) -> MetaHyperparams:
  return MetaHyperparams(meta_learning_rate=jnp.float32(meta_learning_rate),
                         clip_norm=jnp.float32(clip_norm), loss_floor=jnp.float32(loss_floor),
                         valid_weight=jnp.float32(valid_weight),
                         horizon=jnp.int32(horizon), active_tasks=jnp.int32(active_tasks))


@struct.dataclass
class MetaTrainState:
  """Everything meta-training needs to continue; checkpointed whole.

  Attributes:
    meta_params: the learned rule's meta-parameters.
    meta_opt_state: the meta-optimizer's state.
    tasks: the current task of each run, stacked along a leading axis.
    inner: the inner run of each task, stacked.
    step: meta-steps taken.
    quarantined: runs left out because something in them was not finite.
    best_meta_params: the meta-parameters with the lowest validation score so far.
    best_score: that score; infinite before the first validation.
    best_step: the meta-step at which they were validated.
  """

  meta_params: PyTree
  meta_opt_state: PyTree
  tasks: PyTree
  inner: inner.InnerState
  step: jax.Array
  quarantined: jax.Array
  best_meta_params: PyTree
  best_score: jax.Array
  best_step: jax.Array


@struct.dataclass
class SelfCoordinates:
  """The units in which a rule reads its own meta-parameters when it updates them.

  The rule updates local coordinates `phi = (theta - center) / scale`, with
  gradient `scale * dL/dtheta`, and its update `u` moves theta by `scale * u`.
  This is a fixed change of units, not an optimizer: the rule's own update
  still decides every step. It lets a rule whose step size suits the
  parameters of small networks act on meta-parameters, which need smaller
  steps. `center` starts phi at zero, as a fresh network's parameters start
  near zero.
  """

  center: PyTree
  scale: jax.Array

  @classmethod
  def identity(cls, like: PyTree) -> "SelfCoordinates":
    return cls(center=jax.tree.map(jnp.zeros_like, like), scale=jnp.ones((), jnp.float32))

  def to_local(self, theta: PyTree, grads: PyTree) -> tuple[PyTree, PyTree]:
    local = jax.tree.map(lambda t, c: (t - c) / self.scale, theta, self.center)
    return local, jax.tree.map(lambda g: self.scale * g, grads)


def meta_optimizer(hyper: MetaHyperparams) -> optax.GradientTransformation:
  """Adam on the clipped meta-gradient; the hyperparameters may be traced."""
  return optax.chain(optax.clip_by_global_norm(hyper.clip_norm), optax.scale_by_adam(),
                     optax.scale_by_learning_rate(hyper.meta_learning_rate))


@dataclasses.dataclass(frozen=True)
class TruncatedTrainer:
  """Static settings of truncated meta-training and its pure functions.

  Attributes:
    sample_task: jittable `key -> task`; all tasks it returns share one structure.
    num_tasks: inner runs per meta-step, vmapped.
    unroll_length: inner steps per meta-step.
  """

  sample_task: Callable[[jax.Array], Any]
  num_tasks: int
  unroll_length: int

  def fresh_runs(self, meta_params, rule_hyper, key):
    """Draw `num_tasks` tasks and start a run of the rule on each, stacked on a leading axis."""
    keys = jax.random.split(key, self.num_tasks)

    def one(k):
      k_task, k_run = jax.random.split(k)
      task = self.sample_task(k_task)
      tx = learned.learned_optimizer(meta_params, rule_hyper)
      return task, inner.start(task, tx, k_run)

    return jax.vmap(one)(keys)

  def init(self, meta_params: PyTree, rule_hyper: learned.RuleHyperparams,
           hyper: MetaHyperparams, key: jax.Array,
           self_rule_hyper: learned.RuleHyperparams | None = None) -> MetaTrainState:
    """Start `num_tasks` fresh runs.

    With `self_rule_hyper`, the meta-optimizer state is the learned rule's own
    state for the meta-parameters (see `step`); otherwise it is Adam's.
    """
    tasks, runs = self.fresh_runs(meta_params, rule_hyper, key)
    if self_rule_hyper is None:
      meta_opt_state = meta_optimizer(hyper).init(meta_params)
    else:
      meta_opt_state = learned.learned_optimizer(meta_params, self_rule_hyper).init(meta_params)
    return MetaTrainState(meta_params=meta_params, meta_opt_state=meta_opt_state,
                          tasks=tasks, inner=runs, step=jnp.zeros((), jnp.int32),
                          quarantined=jnp.zeros((), jnp.int32), best_meta_params=meta_params,
                          best_score=jnp.asarray(jnp.inf, jnp.float32),
                          best_step=jnp.zeros((), jnp.int32))

  def meta_loss(self, meta_params, rule_hyper, hyper: MetaHyperparams, task,
                run: inner.InnerState):
    """Return the meta-loss of one unroll, and the new run state, batch losses and validation loss."""
    tx = learned.learned_optimizer(meta_params, rule_hyper)
    run = jax.lax.stop_gradient(run)
    new_run, losses = inner.unroll(task, tx, run, self.unroll_length)
    valid_loss = task.evaluate(new_run.params, "valid")["loss"]
    train_term = jnp.mean(jnp.log(losses + hyper.loss_floor))
    valid_term = jnp.log(valid_loss + hyper.loss_floor)
    value = (1.0 - hyper.valid_weight) * train_term + hyper.valid_weight * valid_term
    return value, (new_run, losses, valid_loss)

  def restart_finished(self, meta_params, rule_hyper: learned.RuleHyperparams,
                       hyper: MetaHyperparams, tasks, runs: inner.InnerState, key: jax.Array):
    """Put runs that reached the horizon on fresh tasks; return (tasks, runs, finished)."""
    finished = runs.step >= hyper.horizon
    fresh_tasks, fresh_runs = self.fresh_runs(meta_params, rule_hyper, key)
    return (tree_lib.select_rows(finished, fresh_tasks, tasks),
            tree_lib.select_rows(finished, fresh_runs, runs), finished)

  def apply_meta_gradients(self, state: MetaTrainState, grads: PyTree, healthy: jax.Array,
                           hyper: MetaHyperparams,
                           self_rule_hyper: learned.RuleHyperparams | None = None,
                           self_coordinates: SelfCoordinates | None = None):
    """Average the per-run meta-gradients of healthy active runs and take one meta-update.

    Without `self_rule_hyper` the update is Adam on the clipped mean. With it,
    the learned rule set by the current meta-parameters updates those same
    meta-parameters, `update(meta_grads, state, meta_params)`, and no other
    optimizer takes part. `self_coordinates` lets the rule see its
    meta-parameters in shifted and scaled units (see `SelfCoordinates`).

    Returns:
      `(meta_params, meta_opt_state, mean_grads, used)`, where `used` marks the
      runs that entered the mean.
    """
    used = healthy & (jnp.arange(self.num_tasks) < hyper.active_tasks)
    num_used = jnp.sum(used)
    weights = used.astype(jnp.float32) / jnp.maximum(num_used, 1).astype(jnp.float32)

    def weighted_mean(g):
      clean = jnp.where(used.reshape((-1,) + (1,) * (g.ndim - 1)), g, 0.0)
      return jnp.tensordot(weights, clean, axes=1)

    mean_grads = jax.tree.map(weighted_mean, grads)
    if self_rule_hyper is None:
      updates, meta_opt_state = meta_optimizer(hyper).update(mean_grads, state.meta_opt_state,
                                                             state.meta_params)
    else:
      coords = self_coordinates or SelfCoordinates.identity(state.meta_params)
      rule = learned.learned_optimizer(state.meta_params, self_rule_hyper)
      local, local_grads = coords.to_local(state.meta_params, mean_grads)
      local_updates, meta_opt_state = rule.update(local_grads, state.meta_opt_state, local)
      updates = jax.tree.map(lambda u: coords.scale * u, local_updates)
    new_params = optax.apply_updates(state.meta_params, updates)
    ok = (num_used > 0) & tree_lib.all_finite(new_params)
    meta_params = tree_lib.select(ok, new_params, state.meta_params)
    meta_opt_state = tree_lib.select(ok, meta_opt_state, state.meta_opt_state)
    return meta_params, meta_opt_state, mean_grads, used

  def step(self, state: MetaTrainState, rule_hyper: learned.RuleHyperparams,
           hyper: MetaHyperparams, key: jax.Array,
           self_rule_hyper: learned.RuleHyperparams | None = None,
           self_coordinates: SelfCoordinates | None = None):
    """Take one meta-step; return the new state and a dict of scalar metrics.

    `self_rule_hyper` makes the step self-referential (see
    `apply_meta_gradients`); the state must come from `init` with the same
    argument.
    """
    tasks, runs, _ = self.restart_finished(state.meta_params, rule_hyper, hyper, state.tasks,
                                           state.inner, jax.random.fold_in(key, 0))

    grad_fn = jax.value_and_grad(self.meta_loss, has_aux=True)
    (losses, (new_runs, batch_losses, valid_losses)), grads = jax.vmap(
        grad_fn, in_axes=(None, None, None, 0, 0))(state.meta_params, rule_hyper, hyper, tasks,
                                                  runs)

    healthy = jax.vmap(lambda g, r: tree_lib.all_finite(g) & tree_lib.all_finite(r.params))(
        grads, new_runs)
    healthy = healthy & jnp.isfinite(losses)
    meta_params, meta_opt_state, mean_grads, used = self.apply_meta_gradients(
        state, grads, healthy, hyper, self_rule_hyper, self_coordinates)

    # A quarantined run is marked finished so that it restarts on the next step.
    restart = runs.replace(step=jnp.full_like(runs.step, hyper.horizon))
    new_runs = tree_lib.select_rows(healthy, new_runs, restart)
    num_sick = self.num_tasks - jnp.sum(healthy)
    new_state = state.replace(meta_params=meta_params, meta_opt_state=meta_opt_state,
                              tasks=tasks, inner=new_runs, step=state.step + 1,
                              quarantined=state.quarantined + num_sick)
    metrics = self.step_metrics(losses, batch_losses, valid_losses, used, mean_grads,
                                meta_params)
    metrics.update(quarantined_now=num_sick, quarantined_total=new_state.quarantined)
    return new_state, metrics

  @staticmethod
  def step_metrics(losses, batch_losses, valid_losses, used, mean_grads, meta_params):
    safe = lambda x: jnp.where(used, x, jnp.nan)  # noqa: E731
    return {
        "meta_loss": jnp.nanmean(safe(losses)),
        "train_loss": jnp.nanmean(safe(jnp.mean(batch_losses, axis=1))),
        "valid_loss": jnp.nanmean(safe(valid_losses)),
        "meta_grad_norm": optax.tree.norm(mean_grads),
        "learning_rate": jnp.exp(meta_params["log_lr"]),
    }

  def validation_score(self, meta_params, rule_hyper: learned.RuleHyperparams, key: jax.Array,
                       num_tasks: int, horizon: int) -> jax.Array:
    """Return the mean log final validation loss of `num_tasks` fresh runs of `horizon` steps.

    A run that ends non-finite scores infinity, so a rule that diverges is never kept.
    """

    def one(k):
      k_task, k_run = jax.random.split(k)
      task = self.sample_task(k_task)
      tx = learned.learned_optimizer(meta_params, rule_hyper)
      run, _ = inner.unroll(task, tx, inner.start(task, tx, k_run), horizon)
      return jnp.log(task.evaluate(run.params, "valid")["loss"])

    scores = jax.vmap(one)(jax.random.split(key, num_tasks))
    return jnp.mean(jnp.where(jnp.isfinite(scores), scores, jnp.inf))


def keep_best(state: MetaTrainState, score: jax.Array) -> MetaTrainState:
  """Record the current meta-parameters as the best when `score` is lower than the best so far."""
  better = score < state.best_score
  return state.replace(
      best_meta_params=tree_lib.select(better, state.meta_params, state.best_meta_params),
      best_score=jnp.where(better, score, state.best_score),
      best_step=jnp.where(better, state.step, state.best_step))
