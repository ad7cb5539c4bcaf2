"""Phases 2 and 3 of the bootstrap: population exploration and self-reference.

Both phases checkpoint their whole state after every generation or block into
`workdir/checkpoints/<phase>`, and every random draw comes from the run's key
folded with the generation or block index, so a killed run resumes where it
stopped and ends with the same rule as an uninterrupted one.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import struct

from autogan_jax import core
from autogan_jax import meta
from autogan_jax import optim
from autogan_jax import tasks
from autogan_jax.checkpoint import RunCheckpointer
from autogan_jax.core import tree as tree_lib
from autogan_jax.meta import exploration
from autogan_jax.meta import meta_opt
from experiments import common

PyTree = Any


@struct.dataclass
class ExplorationState:
  """Everything phase 2 needs to continue after a generation.

  Attributes:
    members: the members' meta-training states, stacked.
    settings: the meta-training settings G_meta drew for the next generation.
    scores: each member's latest validation score (lower is better).
    g_params, g_opt_state: G_meta and its optimizer state.
    d_params, d_opt_state: D_meta-opt and its optimizer state.
    archive_features: curve features of every segment so far (rows past
      `archive_count` are unused).
    archive_improvements: the validation-score drop of each of those segments.
    archive_count: segments in the archive.
    generation: generations done.
    replaced: members replaced because something in them was not finite.
  """

  members: exploration.MemberState
  settings: meta_opt.MetaSettings
  scores: jax.Array
  g_params: PyTree
  g_opt_state: PyTree
  d_params: PyTree
  d_opt_state: PyTree
  archive_features: jax.Array
  archive_improvements: jax.Array
  archive_count: jax.Array
  generation: jax.Array
  replaced: jax.Array


def make_trainer(config) -> meta.TruncatedTrainer:
  family = tasks.meta_train_family(config.family)
  return meta.TruncatedTrainer(lambda key: tasks.FlatTask(family.sample(key)),
                               num_tasks=config.meta.num_tasks,
                               unroll_length=config.meta.unroll_length)


def base_hyperparams(config) -> meta.MetaHyperparams:
  c = config.meta
  return meta.make_hyperparams(meta_learning_rate=c.learning_rate, clip_norm=c.clip_norm,
                               loss_floor=c.loss_floor, valid_weight=c.valid_weight,
                               horizon=c.horizon)


class Tools:
  """The compiled pieces shared by phases 2 and 3, and the counter of their traces."""

  def __init__(self, config, rule_hyper, key: jax.Array):
    self.config = config
    self.traces = core.TraceCounter()
    self.rule_hyper = rule_hyper
    self.trainer = make_trainer(config)
    c = config.meta
    validation_key, probe_key = jax.random.split(key)
    trainer = self.trainer

    def scores(stacked_meta_params):
      return jax.vmap(lambda mp: trainer.validation_score(
          mp, rule_hyper, validation_key, c.validation_tasks, c.horizon))(stacked_meta_params)

    self.scores = jax.jit(self.traces.wrap(scores, "validation_scores"))
    family = tasks.meta_train_family(config.family)
    probe_task = tasks.FlatTask(family.sample(jax.random.fold_in(probe_key, 0)))
    self.probe_point = jax.jit(lambda: exploration.probe(
        probe_task, rule_hyper, jax.random.fold_in(probe_key, 1)))()
    self.probe_updates = jax.jit(self.traces.wrap(
        lambda stacked: exploration.probe_updates(stacked, rule_hyper, self.probe_point),
        "probe_updates"))


def _stack_member(stacked, i, member):
  return jax.tree.map(lambda s, m: s.at[i].set(m), stacked, member)


def _ranking_accuracy(logits: np.ndarray, improvements: np.ndarray) -> float | None:
  """Fraction of member pairs that D_meta-opt orders as their validation drops are ordered."""
  right = total = 0
  for i in range(len(logits)):
    for j in range(i + 1, len(logits)):
      if not (np.isfinite(improvements[i]) and np.isfinite(improvements[j])):
        continue
      if improvements[i] == improvements[j]:
        continue
      total += 1
      right += (logits[i] > logits[j]) == (improvements[i] > improvements[j])
  return right / total if total else None


def run_exploration(workdir, config, tools: Tools, start_params, metrics_log: common.MetricsLog,
                    key: jax.Array) -> ExplorationState:
  """Phase 2; returns the final state. Members start as perturbed copies of `start_params`."""
  c = config.population
  trainer, rule_hyper = tools.trainer, tools.rule_hyper
  size, generations, length = c.size, c.generations, c.segment_steps
  total_steps = generations * length
  base_hyper = base_hyperparams(config)
  init_key, run_key = jax.random.split(key)

  keys = jax.random.split(init_key, 4)

  @jax.jit
  def init_members(start_params, keys):
    perturbed = jax.vmap(lambda k: exploration.perturb(k, start_params, c.perturb_scale))(
        jax.random.split(keys[0], size))
    first = jnp.arange(size) == 0
    starts = tree_lib.select_rows(first, jax.tree.map(
        lambda x: jnp.broadcast_to(x, (size,) + x.shape), start_params), perturbed)
    return jax.vmap(lambda p, k: exploration.init_member(trainer, p, rule_hyper, base_hyper, k))(
        starts, jax.random.split(keys[1], size))

  checkpointer = RunCheckpointer(workdir / "checkpoints" / "exploration")
  latest = checkpointer.latest_step()
  members = init_members(start_params, keys)
  g_params = meta_opt.init_generator(float(np.log10(config.meta.learning_rate)),
                                     tuple(c.estimators))
  g_tx = optax.adam(c.g_learning_rate)
  d_params = meta_opt.init_discriminator(keys[2])
  d_tx = optax.adam(c.d_learning_rate)
  archive_size = size * generations
  # With a checkpoint the restored scores replace these, so the template skips
  # compiling and running the validation runs.
  scores = (tools.scores(members.train.meta_params) if latest is None
            else jnp.zeros((size,), jnp.float32))
  state = ExplorationState(
      members=members, settings=meta_opt.sample_settings(g_params, keys[3], size),
      scores=scores, g_params=g_params,
      g_opt_state=g_tx.init(g_params), d_params=d_params, d_opt_state=d_tx.init(d_params),
      archive_features=jnp.zeros((archive_size, meta_opt.CURVE_POINTS + 4)),
      archive_improvements=jnp.zeros((archive_size,)), archive_count=jnp.zeros((), jnp.int32),
      generation=jnp.zeros((), jnp.int32), replaced=jnp.zeros((), jnp.int32))

  if latest is not None:
    state = checkpointer.restore(state, latest)
    logging.info("exploration: resumed from the checkpoint of generation %d.", latest)
  start = int(state.generation)
  metrics_log.truncate_after("exploration", start)
  if start >= generations:
    checkpointer.close()
    return state

  # Every jitted function of the generation loop counts its traces; each
  # generation's record carries the counts, which stay at one per function.
  traces = tools.traces
  segments = {name: jax.jit(traces.wrap(exploration.make_segment(trainer, name, length,
                                                                 total_steps, c.es_sigma),
                                        f"segment_{name}"))
              for name in c.estimators}
  keep_best = jax.jit(traces.wrap(jax.vmap(meta.keep_best), "keep_best"))
  features_fn = jax.jit(traces.wrap(jax.vmap(meta_opt.curve_features), "curve_features"))
  d_loss_grad = jax.jit(traces.wrap(
      jax.value_and_grad(lambda p, f, r, v: meta_opt.discriminator_loss(p, f, r, valid=v)),
      "d_meta_opt_loss"))
  g_loss_grad = jax.jit(traces.wrap(jax.grad(meta_opt.generator_loss), "g_meta_loss"))
  discriminate = jax.jit(traces.wrap(meta_opt.discriminate, "discriminate"))
  perturb = jax.jit(traces.wrap(exploration.perturb, "perturb"))
  progress = common.Progress("exploration", generations, start=start, every_s=0.0)

  for generation in range(start, generations):
    gen_key = jax.random.fold_in(run_key, generation)
    began = time.perf_counter()
    members = state.members
    settings = state.settings
    curves, described = [], []
    for i in range(size):
      member_settings = tree_lib.index(settings, i)
      estimator = meta_opt.ESTIMATORS[int(member_settings.estimator)]
      member, metrics = segments[estimator](tree_lib.index(members, i), member_settings,
                                            rule_hyper, base_hyper, jax.random.fold_in(gen_key, i))
      members = _stack_member(members, i, member)
      curves.append(metrics["meta_loss"])
      described.append(jax.device_get(member_settings).describe())
    curves = jnp.stack(curves)
    scores = tools.scores(members.train.meta_params)
    members = members.replace(train=keep_best(members.train, scores))
    improvements = state.scores - scores

    # D_meta-opt judges the new curves before it trains on them: a held-out check.
    features = features_fn(curves)
    logits_before = np.asarray(discriminate(state.d_params, features))
    count = int(state.archive_count)
    archive_features = state.archive_features.at[count:count + size].set(features)
    archive_improvements = state.archive_improvements.at[count:count + size].set(
        jnp.where(jnp.isfinite(improvements), improvements, -jnp.inf))
    count += size
    labels = np.zeros(archive_size, bool)
    labels[:count] = meta_opt.archive_labels(np.asarray(archive_improvements[:count]),
                                             c.top_fraction)
    filled = jnp.arange(archive_size) < count
    d_params, d_opt_state = state.d_params, state.d_opt_state
    for _ in range(c.d_steps):
      d_loss, d_grads = d_loss_grad(d_params, archive_features, jnp.asarray(labels), filled)
      d_updates, d_opt_state = d_tx.update(d_grads, d_opt_state, d_params)
      d_params = optax.apply_updates(d_params, d_updates)

    # G_meta: reward = validation-score drop plus D_meta-opt's log-probability of "converges".
    judged = jax.nn.log_sigmoid(discriminate(d_params, features))
    worst = jnp.nanmin(jnp.where(jnp.isfinite(improvements), improvements, jnp.nan))
    clean = jnp.where(jnp.isfinite(improvements), improvements, worst - 1.0)
    rewards = clean / (jnp.std(clean) + 1e-6) + c.d_weight * judged
    g_grads = g_loss_grad(state.g_params, settings, rewards)
    g_updates, g_opt_state = g_tx.update(g_grads, state.g_opt_state, state.g_params)
    g_params = optax.apply_updates(state.g_params, g_updates)

    # Diversity on the probe, then exploit and explore.
    spread = float(exploration.diversity(tools.probe_updates(members.train.meta_params)))
    scale = c.perturb_scale * (c.diversity_boost if spread < c.diversity_floor else 1.0)
    scores_host = np.asarray(scores)
    finite_params = np.asarray(jax.vmap(tree_lib.all_finite)(members.train.meta_params))
    scores_host = np.where(finite_params, scores_host, np.inf)
    selection = exploration.select_parents(scores_host, c.exploit_fraction)
    parents = np.asarray(selection.parents)
    copied = members
    new_scores = scores
    last = generation + 1 == generations
    if last:
      # After the last generation nothing would train the copies.
      parents = np.arange(size)
    for i, parent in enumerate(parents):
      if parent == i:
        continue
      source = tree_lib.index(members, int(parent))
      child = perturb(jax.random.fold_in(gen_key, 1000 + i), source.train.meta_params, scale)
      # The copy is a new rule: its best is validated from the next generation on.
      source = source.replace(train=source.train.replace(
          meta_params=child, best_meta_params=child, best_score=jnp.asarray(jnp.inf),
          best_step=source.train.step))
      copied = _stack_member(copied, i, source)
      new_scores = new_scores.at[i].set(scores[parent])
    next_settings = meta_opt.sample_settings(g_params, jax.random.fold_in(gen_key, 2000), size)

    state = ExplorationState(
        members=copied, settings=next_settings, scores=new_scores, g_params=g_params,
        g_opt_state=g_opt_state, d_params=d_params, d_opt_state=d_opt_state,
        archive_features=archive_features, archive_improvements=archive_improvements,
        archive_count=jnp.asarray(count, jnp.int32), generation=jnp.asarray(generation + 1),
        replaced=state.replaced + (0 if last else len(selection.replaced_nonfinite)))
    judged_prob = np.asarray(jax.nn.sigmoid(discriminate(d_params, features)))
    record = {
        "phase": "exploration", "step": generation + 1,
        "seconds": time.perf_counter() - began,
        "members": [{
            "settings": described[i],
            "validation_score": float(scores_host[i]),
            "improvement": float(improvements[i]),
            "d_meta_opt_converges": float(judged_prob[i]),
            "parent_next": int(parents[i]),
            "meta_loss_curve": [float(x) for x in np.asarray(curves[i])],
        } for i in range(size)],
        "diversity": spread,
        "perturb_scale": scale,
        "d_meta_opt_loss": float(d_loss) if c.d_steps else None,
        "d_meta_opt_heldout_ranking_accuracy": _ranking_accuracy(logits_before,
                                                                 np.asarray(improvements)),
        "g_meta": meta_opt.choice_probabilities(g_params),
        "replaced_nonfinite": [] if last else selection.replaced_nonfinite,
        "replaced_total": int(state.replaced),
        "best_score": float(np.min(np.asarray(members.train.best_score))),
        "traces": traces.as_dict(),
    }
    metrics_log.append(common.to_builtin(record))
    checkpointer.save(generation + 1, state)
    progress.update(generation + 1, diversity=spread, best=record["best_score"])
  checkpointer.close()
  return state


def best_members(state: ExplorationState, count: int):
  """Return the `count` best validated rules of phase 2, stacked, and their scores.

  Rules with the same score are the same rule kept by two members, so each
  score is taken once while there are enough distinct ones.
  """
  scores = np.asarray(state.members.train.best_score)
  order = [int(i) for i in np.argsort(scores)]
  distinct = [i for k, i in enumerate(order) if scores[i] not in scores[order[:k]]]
  chosen = (distinct + [i for i in order if i not in distinct])[:count]
  params = jax.tree.map(lambda x: x[np.asarray(chosen)], state.members.train.best_meta_params)
  return params, scores[np.asarray(chosen)]


@struct.dataclass
class SelfReferenceState:
  """Phase 3's state: the self-training rules (stacked) and the residual history.

  Attributes:
    train: the rules' meta-training states, stacked; `meta_opt_state` is each
      rule's own state for its meta-parameters.
    previous_params: the meta-parameters before the last block.
    calm_blocks: consecutive blocks whose probe residual stayed under tolerance.
    block: blocks done.
    reverts: times a rule went back to its best validated meta-parameters.
    coordinates: the units in which each rule reads its meta-parameters.
  """

  train: meta.MetaTrainState
  previous_params: PyTree
  calm_blocks: jax.Array
  block: jax.Array
  reverts: jax.Array
  coordinates: meta.SelfCoordinates


def self_rule_hyperparams(config) -> optim.RuleHyperparams:
  """Return the rule's settings for updating its own meta-parameters."""
  return optim.default_hyperparams(horizon=config.self_reference.steps, b1=config.rule.b1,
                                   b2=config.rule.b2)


def make_self_block(trainer: meta.TruncatedTrainer, length: int):
  """Return `block(train, rule_hyper, hyper, self_hyper, coordinates, key)`.

  It takes `length` self-referential meta-steps of every rule, vmapped over the rules.
  """

  def block(train, rule_hyper, hyper, self_hyper, coordinates, key):

    def body(train, index):
      size = train.step.shape[0]
      keys = jax.random.split(jax.random.fold_in(key, index), size)
      return jax.vmap(trainer.step, in_axes=(0, None, None, 0, None, 0))(
          train, rule_hyper, hyper, keys, self_hyper, coordinates)

    return jax.lax.scan(body, train, jnp.arange(length))

  return block


def _relative_change(new: jax.Array, old: jax.Array) -> np.ndarray:
  return np.asarray(jnp.linalg.norm(new - old, axis=-1)
                    / jnp.maximum(jnp.linalg.norm(old, axis=-1), 1e-12))


def _flat(stacked: PyTree) -> jax.Array:
  return jnp.concatenate([x.reshape(x.shape[0], -1) for x in jax.tree.leaves(stacked)], axis=1)


def run_self_reference(workdir, config, tools: Tools, start_params, metrics_log: common.MetricsLog,
                       key: jax.Array) -> SelfReferenceState:
  """Phase 3: each of the stacked `start_params` trains itself until a fixed point or the budget.

  One block is `block_steps` self-referential meta-steps. After each block the
  fixed-point residual is the relative change of the rule over the block, both
  of its meta-parameters and of its update on the probe (the distance between G
  and G after G trained itself for one block). The phase stops when the probe
  residual of every rule stays under `tolerance` for `patience` blocks, or when
  `steps` meta-steps are spent.
  """
  c = config.self_reference
  trainer = tools.trainer
  self_hyper = self_rule_hyperparams(config)
  hyper = base_hyperparams(config).replace(active_tasks=jnp.int32(c.num_tasks))
  init_key, run_key = jax.random.split(key)
  size = jax.tree.leaves(start_params)[0].shape[0]
  train = jax.jit(jax.vmap(lambda p, k: trainer.init(p, tools.rule_hyper, hyper, k, self_hyper)))(
      start_params, jax.random.split(init_key, size))
  train = jax.vmap(meta.keep_best)(train, tools.scores(start_params))
  state = SelfReferenceState(train=train, previous_params=start_params,
                             calm_blocks=jnp.zeros((), jnp.int32), block=jnp.zeros((), jnp.int32),
                             reverts=jnp.zeros((), jnp.int32),
                             coordinates=meta.SelfCoordinates(
                                 center=start_params,
                                 scale=jnp.full((size,), c.coordinate_scale, jnp.float32)))

  checkpointer = RunCheckpointer(workdir / "checkpoints" / "self_reference")
  latest = checkpointer.latest_step()
  if latest is not None:
    state = checkpointer.restore(state, latest)
    logging.info("self_reference: resumed from the checkpoint of step %d.", latest)
  blocks = c.steps // c.block_steps
  start = int(state.block)
  metrics_log.truncate_after("self_reference", start * c.block_steps)
  if start >= blocks or int(state.calm_blocks) >= c.patience:
    checkpointer.close()
    return state

  block_fn = jax.jit(make_self_block(trainer, c.block_steps))
  reinit = jax.jit(jax.vmap(lambda p: optim.learned_optimizer(p, self_hyper).init(p)))
  keep_best = jax.jit(jax.vmap(meta.keep_best))
  progress = common.Progress("self_reference", c.steps, start=start * c.block_steps,
                             every_s=0.0)
  for index in range(start, blocks):
    before = state.train.meta_params
    train, metrics = block_fn(state.train, tools.rule_hyper, hyper, self_hyper,
                              state.coordinates, jax.random.fold_in(run_key, index))
    scores = tools.scores(train.meta_params)
    train = keep_best(train, scores)
    param_residual = _relative_change(_flat(train.meta_params), _flat(before))
    function_residual = _relative_change(tools.probe_updates(train.meta_params),
                                         tools.probe_updates(before))
    calm = bool(np.all(function_residual < c.tolerance))
    # A rule whose score fell behind its best by more than the margin restarts from
    # its best meta-parameters with a fresh state of its own update.
    worse = np.asarray(scores) > np.asarray(train.best_score) + c.revert_margin
    if worse.any():
      fresh = reinit(train.best_meta_params)
      train = train.replace(
          meta_params=tree_lib.select_rows(jnp.asarray(worse), train.best_meta_params,
                                           train.meta_params),
          meta_opt_state=tree_lib.select_rows(jnp.asarray(worse), fresh, train.meta_opt_state))
    state = SelfReferenceState(
        train=train, previous_params=before,
        calm_blocks=jnp.where(calm, state.calm_blocks + 1, 0).astype(jnp.int32),
        block=jnp.asarray(index + 1, jnp.int32), reverts=state.reverts + int(worse.sum()),
        coordinates=state.coordinates)
    done = (index + 1) * c.block_steps
    metrics = jax.device_get(metrics)
    record = {
        "phase": "self_reference", "step": done,
        "meta_loss": [[float(x) for x in row] for row in np.asarray(metrics["meta_loss"]).T],
        "param_residual": param_residual.tolist(),
        "function_residual": function_residual.tolist(),
        "validation_score": np.asarray(scores).tolist(),
        "learning_rate": np.asarray(metrics["learning_rate"][-1]).tolist(),
        "quarantined_total": np.asarray(train.quarantined).tolist(),
        "calm_blocks": int(state.calm_blocks),
        "reverted": worse.astype(int).tolist(),
    }
    metrics_log.append(common.to_builtin(record))
    checkpointer.save(done, state)
    progress.update(done, residual=float(np.max(function_residual)),
                    score=float(np.min(np.asarray(scores))))
    if int(state.calm_blocks) >= c.patience:
      logging.info("self_reference: fixed point reached at step %d (probe residual %.4g < %g "
                   "for %d blocks).", done, float(np.max(function_residual)), c.tolerance,
                   c.patience)
      break
  checkpointer.close()
  return state


def g_star(state: SelfReferenceState):
  """Return G*: the best validated meta-parameters of phase 3, its score and the rule index."""
  scores = np.asarray(state.train.best_score)
  best = int(np.argmin(scores))
  return tree_lib.index(state.train.best_meta_params, best), float(scores[best]), best
