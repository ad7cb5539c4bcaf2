"""Phase 2 of the bootstrap: a population of update rules explores under selection.

Each member is a learned rule with its own meta-training state. A generation
meta-trains every member for a segment of meta-steps with the settings G_meta
drew for it (estimator, meta learning rate, tasks per meta-step, horizon
schedule), scores all members at once by whole-run validation, and then applies
population-based training: the worst members copy the meta-parameters and
meta-optimizer state of the best and perturb them.

Members that use different estimators run different programs, so a segment is
one jitted `lax.scan` per estimator, called member by member; each of the three
compiles once and serves every later generation. Scoring and the diversity
probe are vmapped over the whole population.

Diversity is the spread of the members' updates on one fixed probe: a digits
network after some Adam steps, its gradient and its moments. It is reported
every generation; when it falls below a floor, the perturbation of copied
members grows, so that selection cannot collapse the population onto one rule.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from autogan_jax import estimators
from autogan_jax.core import tree as tree_lib
from autogan_jax.meta import inner
from autogan_jax.meta import meta_opt
from autogan_jax.meta import truncated
from autogan_jax.optim import learned

PyTree = Any


@struct.dataclass
class MemberState:
  """The meta-training state of one member, for every estimator it may be given.

  Attributes:
    train: truncated backpropagation's state; it also contains the meta-parameters,
      the meta-optimizer state and the best validated meta-parameters for all
      estimators.
    particle_tasks: the task of each antithetic pair of the ES estimators.
    particles: the inner runs of each pair, leading axes [tasks, 2]; index 0
      runs with theta + eps, index 1 with theta - eps.
    noise: the perturbation accumulated by each pair since its run began
      (persistent ES) or in this truncation only (truncated ES).
  """

  train: truncated.MetaTrainState
  particle_tasks: PyTree
  particles: inner.InnerState
  noise: PyTree


def _pairs(tree: PyTree) -> PyTree:
  return jax.tree.map(lambda x: jnp.stack([x, x], axis=1), tree)


def init_member(trainer: truncated.TruncatedTrainer, meta_params: PyTree,
                rule_hyper: learned.RuleHyperparams, hyper: truncated.MetaHyperparams,
                key: jax.Array) -> MemberState:
  k_train, k_particles = jax.random.split(key)
  train = trainer.init(meta_params, rule_hyper, hyper, k_train)
  tasks, runs = trainer.fresh_runs(meta_params, rule_hyper, k_particles)
  noise = jax.tree.map(lambda t: jnp.zeros((trainer.num_tasks,) + t.shape, t.dtype), meta_params)
  return MemberState(train=train, particle_tasks=tasks, particles=_pairs(runs), noise=noise)


def particle_step(trainer: truncated.TruncatedTrainer, member: MemberState,
                  rule_hyper: learned.RuleHyperparams, hyper: truncated.MetaHyperparams,
                  key: jax.Array, sigma: float, persistent: bool):
  """Take one meta-step with antithetic ES (`persistent=False`) or PES (`persistent=True`).

  Task i carries one mirrored pair of inner runs. Each pair unrolls with
  theta + eps_i and theta - eps_i, and the meta-loss difference, times the
  perturbation accumulated since the pair's run started (PES) or the current one
  (truncated ES), gives that task's estimate. No gradient flows through the
  unroll, so a non-differentiable meta-loss works as well.
  """
  theta = member.train.meta_params
  k_reset, k_eps = jax.random.split(key)
  finished = member.particles.step[:, 0] >= hyper.horizon
  fresh_tasks, fresh_runs = trainer.fresh_runs(theta, rule_hyper, k_reset)
  tasks = tree_lib.select_rows(finished, fresh_tasks, member.particle_tasks)
  particles = tree_lib.select_rows(finished, _pairs(fresh_runs), member.particles)
  keep = ~finished & persistent
  noise = tree_lib.select_rows(keep, member.noise, jax.tree.map(jnp.zeros_like, member.noise))
  eps = estimators.antithetic_perturbations(k_eps, theta, trainer.num_tasks, sigma)
  noise = jax.tree.map(jnp.add, noise, eps)

  def pair(task, runs, e, xi):
    plus = jax.tree.map(jnp.add, theta, e)
    minus = jax.tree.map(jnp.subtract, theta, e)
    run_plus = jax.tree.map(lambda x: x[0], runs)
    run_minus = jax.tree.map(lambda x: x[1], runs)
    value_plus, (new_plus, losses_plus, valid_plus) = trainer.meta_loss(
        plus, rule_hyper, hyper, task, run_plus)
    value_minus, (new_minus, losses_minus, valid_minus) = trainer.meta_loss(
        minus, rule_hyper, hyper, task, run_minus)
    grad = estimators.es_gradient_from_losses(
        jax.tree.map(lambda x: x[None], xi), value_plus[None], value_minus[None], sigma)
    new_runs = jax.tree.map(lambda a, b: jnp.stack([a, b]), new_plus, new_minus)
    value = 0.5 * (value_plus + value_minus)
    losses = 0.5 * (losses_plus + losses_minus)
    valid = 0.5 * (valid_plus + valid_minus)
    healthy = (jnp.isfinite(value_plus) & jnp.isfinite(value_minus)
               & tree_lib.all_finite(new_runs.params) & tree_lib.all_finite(grad))
    return grad, new_runs, value, losses, valid, healthy

  grads, new_particles, values, batch_losses, valid_losses, healthy = jax.vmap(pair)(
      tasks, particles, eps, noise)
  meta_params, meta_opt_state, mean_grads, used = trainer.apply_meta_gradients(
      member.train, grads, healthy, hyper)
  restart = particles.replace(step=jnp.full_like(particles.step, hyper.horizon))
  new_particles = tree_lib.select_rows(healthy, new_particles, restart)
  num_sick = trainer.num_tasks - jnp.sum(healthy)
  train = member.train.replace(meta_params=meta_params, meta_opt_state=meta_opt_state,
                               step=member.train.step + 1,
                               quarantined=member.train.quarantined + num_sick)
  metrics = trainer.step_metrics(values, batch_losses, valid_losses, used, mean_grads,
                                 meta_params)
  metrics.update(quarantined_now=num_sick, quarantined_total=train.quarantined)
  return MemberState(train=train, particle_tasks=tasks, particles=new_particles,
                     noise=noise), metrics


def scheduled_hyperparams(base: truncated.MetaHyperparams, settings: meta_opt.MetaSettings,
                          step: jax.Array, total_steps: int,
                          min_horizon: int) -> truncated.MetaHyperparams:
  """Apply one member's settings and its horizon schedule at meta-step `step`."""
  start = jnp.asarray(meta_opt.HORIZON_STARTS, jnp.float32)[settings.horizon_start]
  progress = jnp.minimum(step.astype(jnp.float32) / max(total_steps, 1), 1.0)
  horizon = jnp.round(base.horizon.astype(jnp.float32) * (start + (1.0 - start) * progress))
  return base.replace(
      meta_learning_rate=jnp.power(10.0, settings.log10_learning_rate).astype(jnp.float32),
      active_tasks=jnp.asarray(meta_opt.TASK_CHOICES, jnp.int32)[settings.tasks],
      horizon=jnp.maximum(horizon.astype(jnp.int32), min_horizon))


def make_segment(trainer: truncated.TruncatedTrainer, estimator: str, length: int,
                 total_steps: int, sigma: float):
  """Return `segment(member, settings, rule_hyper, base_hyper, key) -> (member, metrics)`.

  It takes `length` meta-steps with the named estimator in one `lax.scan`;
  `total_steps` is the length of the whole phase, over which the horizon
  schedule runs. Metrics have a leading axis of `length`.
  """
  if estimator not in meta_opt.ESTIMATORS:
    raise ValueError(f"Unknown estimator {estimator!r}; expected one of {meta_opt.ESTIMATORS}.")

  def segment(member: MemberState, settings: meta_opt.MetaSettings,
              rule_hyper: learned.RuleHyperparams, base_hyper: truncated.MetaHyperparams,
              key: jax.Array):

    def body(member, index):
      hyper = scheduled_hyperparams(base_hyper, settings, member.train.step, total_steps,
                                    trainer.unroll_length)
      step_key = jax.random.fold_in(key, index)
      if estimator == "tbptt":
        train, metrics = trainer.step(member.train, rule_hyper, hyper, step_key)
        member = member.replace(train=train)
      else:
        member, metrics = particle_step(trainer, member, rule_hyper, hyper, step_key, sigma,
                                        persistent=estimator == "pes")
      metrics["horizon"] = hyper.horizon
      return member, metrics

    return jax.lax.scan(body, member, jnp.arange(length))

  return segment


def probe(task, rule_hyper: learned.RuleHyperparams, key: jax.Array, steps: int = 20,
          learning_rate: float = 3e-3):
  """Return a fixed probe (params, grads, rule state) after `steps` Adam steps on `task`.

  The learned rule keeps Adam's two moments, so the state reached by running
  the rule at its exact Adam point is a valid state for every member.
  """
  adam_rule = learned.learned_optimizer(learned.adam_meta_params(learning_rate), rule_hyper)
  run, _ = inner.unroll(task, adam_rule, inner.start(task, adam_rule, key), steps)
  batch = task.batch(run.data_key, run.step)
  grads = jax.grad(task.loss)(run.params, batch, None)
  return run.params, grads, run.opt_state


def probe_updates(meta_params: PyTree, rule_hyper: learned.RuleHyperparams, probe_point):
  """Return each member's update on the probe, flattened; `meta_params` is stacked."""
  params, grads, state = probe_point

  def one(mp):
    # The hidden size comes from the stacked leaves, which vmap has already unstacked.
    updates, _ = learned.learned_optimizer(mp, rule_hyper).update(grads, state, params)
    return jnp.concatenate([jnp.ravel(u) for u in jax.tree.leaves(updates)])

  return jax.vmap(one)(meta_params)


def diversity(updates: jax.Array) -> jax.Array:
  """Mean distance of each member's probe update from the population mean, over the mean norm."""
  centre = jnp.mean(updates, axis=0)
  spread = jnp.mean(jnp.linalg.norm(updates - centre, axis=1))
  return spread / jnp.maximum(jnp.mean(jnp.linalg.norm(updates, axis=1)), 1e-12)


def perturb(key: jax.Array, meta_params: PyTree, scale: float | jax.Array) -> PyTree:
  """Multiply each meta-parameter by a log-normal factor and add small Gaussian noise.

  Relative noise keeps the perturbation meaningful for both the learning rate's
  logarithm and the small output weights of the perceptron.
  """
  leaves, treedef = jax.tree.flatten(meta_params)
  keys = jax.random.split(key, 2 * len(leaves))
  out = []
  for i, leaf in enumerate(leaves):
    factor = jnp.exp(scale * jax.random.normal(keys[2 * i], leaf.shape))
    shift = 0.1 * scale * jax.random.normal(keys[2 * i + 1], leaf.shape)
    out.append(leaf * factor + shift)
  return jax.tree.unflatten(treedef, out)


@dataclasses.dataclass(frozen=True)
class SelectionResult:
  """The parent each member copies after a generation.

  Attributes:
    parents: parent of each member (itself when it did not copy).
    replaced_nonfinite: members replaced because their score or state was not finite.
  """

  parents: list[int]
  replaced_nonfinite: list[int]


def select_parents(scores, exploit_fraction: float) -> SelectionResult:
  """Truncation selection on validation scores (lower is better).

  Members with a non-finite score always copy a healthy one. Of the rest, the
  worst `exploit_fraction` copy, in turn, the best members.
  """
  scores = np.asarray(scores, float)
  size = scores.size
  healthy = np.isfinite(scores)
  order = [int(i) for i in np.argsort(np.where(healthy, scores, np.inf))]
  parents = list(range(size))
  sick = [i for i in range(size) if not healthy[i]]
  if not healthy.any():
    return SelectionResult(parents=parents, replaced_nonfinite=[])
  best = [i for i in order if healthy[i]]
  count = int(np.floor(exploit_fraction * size))
  worst_healthy = [i for i in reversed(order) if healthy[i]][:max(0, count - len(sick))]
  for rank, member in enumerate(sick + worst_healthy):
    parents[member] = best[rank % max(1, len(best) - len(worst_healthy))]
  return SelectionResult(parents=parents, replaced_nonfinite=sick)

