"""D_combine as a judge of whether a hybrid beats its parents, and G_combine trained on its judgement.

The evidence is a table of scored hybrids of one or more parent pairs. Each
row contains the features that D sees and the hybrid's margin: its validation
score minus the better parent's. D_combine has two outputs, the logit that
the margin is positive ("the hybrid beats its parents") and the margin itself.
It is trained on the evidence with binary cross-entropy plus `margin_weight`
times the squared error of the margin. G_combine proposes hybrids of the
target pair and is trained by backpropagation through D to maximise
log sigmoid(logit) + margin. Every round G's proposals are scored exactly and
added to the evidence, so D learns most where G is proposing.

The features of a hybrid are its mixing configuration and a summary of its
predictions on an unlabelled probe batch, next to the same summary of each
parent, the parents' validation scores and the hybrid's expected agreement
with each parent on the probe batch. So one D judges hybrids of several
parent pairs.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import stats

from autogan_jax import checkpoint
from autogan_jax import gan
from autogan_jax import optim
from autogan_jax.weight_space import adversarial
from autogan_jax.weight_space import combination
from autogan_jax.weight_space import combine_search
from autogan_jax.weight_space import network as network_lib

PyTree = Any
# Per-round metrics of a judged search, in the column order of the checkpointed history table.
HISTORY_FIELDS = ("d_loss", "g_loss", "proposal_beats_fraction", "proposal_margin_mean",
                  "proposal_margin_max", "quarantined")


@dataclasses.dataclass(frozen=True)
class ParentPair:
  """The hybrids of one pair of parents: how to sample, describe and score them.

  Attributes:
    init_generator: key -> G_combine's params for this pair.
    sample: (g_params, key, batch_size) -> hybrids {"choice", "weights"},
      differentiable in g_params.
    featurize: hybrids -> features [batch, feature_dim] that D judges.
    margin: hybrids -> validation score minus the better parent's [batch];
      NaN when a hybrid's logits are not finite.
    parent_scores: validation scores of parent A and parent B.
    feature_dim: width of the features.
  """

  init_generator: Callable[[jax.Array], PyTree]
  sample: Callable[[PyTree, jax.Array, int], PyTree]
  featurize: Callable[[PyTree], jax.Array]
  margin: Callable[[PyTree], jax.Array]
  parent_scores: jax.Array
  feature_dim: int


def make_pair(parent_a: network_lib.Network, parent_b: network_lib.Network,
              x_probe: jax.Array, x_valid: jax.Array, y_valid: jax.Array, *,
              objective: str = "accuracy", temperature: float = 1.0) -> ParentPair:
  """Build the hybrids of `parent_a` and `parent_b`, scored on (x_valid, y_valid) by `objective`."""
  problem = combine_search.make_problem(parent_a, parent_b, x_probe, x_valid, y_valid,
                                        temperature=temperature, objective=objective)
  parent_scores = jnp.stack([
      adversarial.score_logits(network_lib.apply_network(parent, x_valid), y_valid, objective)
      for parent in (parent_a, parent_b)])
  parent_logits = [network_lib.apply_network(parent, x_probe) for parent in (parent_a, parent_b)]
  parent_probs = [jax.nn.softmax(logits, axis=-1) for logits in parent_logits]
  context = jnp.concatenate([adversarial.probe_features(logits) for logits in parent_logits]
                            + [parent_scores])

  def featurize(candidates):

    def one(weights):
      logits = network_lib.apply_network(
          combination.mix_modules(parent_a, parent_b, weights), x_probe)
      probs = jax.nn.softmax(logits, axis=-1)
      agreement = jnp.stack([jnp.mean(jnp.sum(probs * p, axis=-1)) for p in parent_probs])
      return jnp.concatenate([weights, adversarial.probe_features(logits), agreement])

    batch = candidates["weights"].shape[0]
    hybrid = jax.vmap(one)(candidates["weights"])
    return jnp.concatenate([candidates["choice"].reshape(batch, -1), hybrid,
                            jnp.broadcast_to(context, (batch, context.shape[0]))], axis=-1)

  def margin(candidates):
    # The parents are scored as the hybrids with weights 0 and 1 in the same
    # batch, so a hybrid that copies a parent has a margin of exactly 0 even
    # where compiled and eager arithmetic round differently.
    weights = candidates["weights"]
    ends = jnp.stack([jnp.zeros_like(weights[0]), jnp.ones_like(weights[0])])
    scores = combine_search.hybrid_scores(parent_a, parent_b,
                                          jnp.concatenate([weights, ends]), x_valid, y_valid,
                                          objective)
    return scores[:-2] - jnp.max(scores[-2:])

  num_modules = len(parent_a)
  num_classes = network_lib.signature(parent_a[-1])[1][1]
  probe_dim = num_classes + 2
  feature_dim = num_modules * (len(combine_search.CHOICES) + 1) + 3 * probe_dim + 4
  return ParentPair(init_generator=problem.init_generator, sample=problem.sample,
                    featurize=featurize, margin=margin, parent_scores=parent_scores,
                    feature_dim=feature_dim)


def init_judge(key: jax.Array, feature_dim: int, hidden: int) -> network_lib.Network:
  """Return D_combine: a dense network from features to (beat logit, margin)."""
  return network_lib.init_mlp(key, (feature_dim, hidden, hidden, 2), activation="relu")


def judge(d_params: network_lib.Network, features: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Return D's logit that each hybrid beats its parents and its predicted margin, each [batch]."""
  out = network_lib.apply_network(d_params, features)
  return out[:, 0], out[:, 1]


def judge_loss(d_params: network_lib.Network, features: jax.Array, margins: jax.Array,
               mask: jax.Array, margin_weight: float) -> jax.Array:
  """Return the mean over rows where `mask` holds of BCE(margin > 0) + margin_weight * squared error.

  A row whose margin is not finite counts as a hybrid that does not beat its
  parents and is left out of the squared error.
  """
  logits, predicted = judge(d_params, features)
  labels = (margins > 0).astype(jnp.float32)
  bce = optax.sigmoid_binary_cross_entropy(logits, labels)
  finite = jnp.isfinite(margins)
  squared = jnp.where(finite, jnp.square(predicted - jnp.where(finite, margins, 0.0)), 0.0)
  weight = mask.astype(jnp.float32)
  return jnp.sum(weight * (bce + margin_weight * squared)) / jnp.maximum(jnp.sum(weight), 1.0)


@dataclasses.dataclass(frozen=True)
class JudgeSettings:
  """Sizes of one judged search.

  Attributes:
    rounds: train-and-propose rounds.
    d_steps: D updates per round, each on `minibatch_size` evidence rows.
    g_steps: G updates per round, each on `batch_size` samples.
    batch_size: G's proposals per round, scored and added to the evidence.
    minibatch_size: evidence rows per D update.
    initial_per_pair: hybrids of each pair drawn from its untrained G as the first evidence.
    d_hidden: width of D's two hidden layers.
    margin_weight: weight of the margin's squared error in D's loss.
  """

  rounds: int = 10
  d_steps: int = 50
  g_steps: int = 10
  batch_size: int = 32
  minibatch_size: int = 64
  initial_per_pair: int = 64
  d_hidden: int = 64
  margin_weight: float = 1.0


@dataclasses.dataclass(frozen=True)
class JudgedResult:
  """The outcome of a judged search.

  Attributes:
    state: the final `gan.GANState` of G_combine and D_combine.
    evidence: every scored hybrid; `samples` holds "features", "weights" and
      "pair" (the index of its parent pair), `scores` holds the margins.
    history: one metrics dict per round.
  """

  state: gan.GANState
  evidence: adversarial.Archive
  history: list[dict[str, float]]


def run_judged_search(pairs: list[ParentPair], key: jax.Array, settings: JudgeSettings, *,
                      g_tx: optax.GradientTransformation | None = None,
                      d_tx: optax.GradientTransformation | None = None,
                      checkpoint_dir: str | pathlib.Path | None = None,
                      on_round: Callable[[int, dict[str, float]], None] | None = None
                      ) -> JudgedResult:
  """Train D_combine on scored hybrids and G_combine on D's judgement of its hybrids of `pairs[0]`.

  Args:
    pairs: the parent pairs whose hybrids are evidence; G proposes hybrids of
      the first. All pairs need the same feature width.
    key: the run's PRNG key. Round r draws keys folded from r alone, so a
      resumed search draws the same keys as an uninterrupted one.
    settings: sizes.
    g_tx: G's update rule; default `optim.default_rule(3e-3)` (G*).
    d_tx: D's update rule; default `optim.default_rule(1e-3)` (G*).
    checkpoint_dir: when given, the state is saved after every round and a
      rerun resumes from the newest save.
    on_round: called on the host after each round with the round number and its metrics.
  """
  if not pairs:
    raise ValueError("run_judged_search needs at least one parent pair, got none.")
  widths = {pair.feature_dim for pair in pairs}
  if len(widths) != 1:
    raise ValueError(f"All parent pairs need one feature width, got {sorted(widths)}.")
  g_tx = g_tx if g_tx is not None else optim.default_rule(3e-3)
  d_tx = d_tx if d_tx is not None else optim.default_rule(1e-3)
  target = pairs[0]
  k_g, k_d, k_initial, k_rounds = jax.random.split(key, 4)
  state = gan.init_state(target.init_generator(k_g),
                         init_judge(k_d, target.feature_dim, settings.d_hidden), g_tx, d_tx)

  # The first evidence: hybrids of every pair from its untrained, nearly uniform G.
  features, weights, pair_ids, margins = [], [], [], []
  for index, pair in enumerate(pairs):
    k_pair = jax.random.fold_in(k_initial, index)
    hybrids = pair.sample(pair.init_generator(k_pair), jax.random.fold_in(k_pair, 1),
                          settings.initial_per_pair)
    features.append(jax.jit(pair.featurize)(hybrids))
    margins.append(jax.jit(pair.margin)(hybrids))
    weights.append(hybrids["weights"])
    pair_ids.append(jnp.full((settings.initial_per_pair,), index, jnp.int32))
  capacity = len(pairs) * settings.initial_per_pair + settings.rounds * settings.batch_size
  evidence = adversarial.new_archive(
      {"features": jnp.concatenate(features), "weights": jnp.concatenate(weights),
       "pair": jnp.concatenate(pair_ids)}, jnp.concatenate(margins), capacity)

  def d_step(state, evidence, key):
    rows = jax.random.randint(key, (settings.minibatch_size,), 0, evidence.size)
    loss, grads = jax.value_and_grad(judge_loss)(
        state.d_params, evidence.samples["features"][rows], evidence.scores[rows],
        jnp.ones(settings.minibatch_size, bool), settings.margin_weight)
    updates, d_opt_state = d_tx.update(grads, state.d_opt_state, state.d_params)
    return state.replace(d_params=optax.apply_updates(state.d_params, updates),
                         d_opt_state=d_opt_state), loss

  def g_loss_fn(g_params, d_params, key):
    logits, predicted = judge(d_params, target.featurize(
        target.sample(g_params, key, settings.batch_size)))
    return -jnp.mean(jax.nn.log_sigmoid(logits) + predicted)

  def g_step(state, key):
    loss, grads = jax.value_and_grad(g_loss_fn)(state.g_params, state.d_params, key)
    updates, g_opt_state = g_tx.update(grads, state.g_opt_state, state.g_params)
    return state.replace(g_params=optax.apply_updates(state.g_params, updates),
                         g_opt_state=g_opt_state, step=state.step + 1), loss

  @jax.jit
  def run_round(carry, round_key):
    state, evidence = carry["state"], carry["evidence"]
    k_d, k_g, k_propose = jax.random.split(round_key, 3)
    state, d_losses = jax.lax.scan(
        lambda s, i: d_step(s, evidence, jax.random.fold_in(k_d, i)), state,
        jnp.arange(settings.d_steps))
    state, g_losses = jax.lax.scan(
        lambda s, i: g_step(s, jax.random.fold_in(k_g, i)), state, jnp.arange(settings.g_steps))
    proposals = jax.lax.stop_gradient(target.sample(state.g_params, k_propose,
                                                    settings.batch_size))
    margins = target.margin(proposals)
    evidence = adversarial.add_to_archive(
        evidence, {"features": target.featurize(proposals), "weights": proposals["weights"],
                   "pair": jnp.zeros((settings.batch_size,), jnp.int32)}, margins)
    finite = jnp.where(jnp.isfinite(margins), margins, jnp.nan)
    metrics = {"d_loss": jnp.mean(d_losses), "g_loss": jnp.mean(g_losses),
               "proposal_beats_fraction": jnp.mean(margins > 0),
               "proposal_margin_mean": jnp.nanmean(finite),
               "proposal_margin_max": jnp.nanmax(finite),
               "quarantined": evidence.quarantined}
    return {"state": state, "evidence": evidence}, metrics

  carry, history = checkpoint.run_rounds(
      run_round, {"state": state, "evidence": evidence}, k_rounds, rounds=settings.rounds,
      fields=HISTORY_FIELDS, checkpoint_dir=checkpoint_dir, on_round=on_round)
  return JudgedResult(state=carry["state"], evidence=carry["evidence"], history=history)


def judge_accuracy(d_params: network_lib.Network, features: jax.Array, margins: jax.Array,
                   majority_label: bool | np.ndarray) -> dict[str, float]:
  """Score D's "beats its parents" predictions on held-out hybrids against the majority class.

  Args:
    d_params: D_combine.
    features: held-out hybrids' features [count, feature_dim].
    margins: their exact margins [count].
    majority_label: the more common label of D's training evidence, which the
      trivial baseline predicts; a bool for every hybrid, or one bool per
      hybrid (for example the majority of the hybrid's own parent pair).

  Returns:
    D's accuracy, the baseline's accuracy, D's balanced accuracy (the mean of
    its recall on each class present), the share of hybrids that beat their
    parents, and the Spearman correlation between D's predicted margin and the
    exact one (NaN when either is constant).
  """
  logits, predicted = (np.asarray(v) for v in judge(d_params, features))
  margins = np.asarray(margins)
  labels = margins > 0
  guesses = logits > 0
  recalls = [np.mean(guesses[labels == value] == value) for value in (False, True)
             if np.any(labels == value)]
  finite = np.isfinite(margins)
  if np.ptp(predicted[finite]) > 0 and np.ptp(margins[finite]) > 0:
    correlation = float(stats.spearmanr(predicted[finite], margins[finite]).statistic)
  else:
    correlation = float("nan")
  return {"accuracy": float(np.mean(guesses == labels)),
          "majority_accuracy": float(np.mean(labels == majority_label)),
          "balanced_accuracy": float(np.mean(recalls)),
          "beats_fraction": float(np.mean(labels)),
          "margin_spearman": correlation,
          "count": int(labels.size)}
