"""The search loop that the weight-space G/D pairs share, built on `autogan_jax.gan`.

A problem supplies a generator of candidates (orders, hybrids, merges), the
features that D sees of a candidate, and an exact score (validation
accuracy). Each round runs `steps_per_round` adversarial steps with
`gan.make_step`, where "real" candidates are drawn from the top `top_k` of an
archive of scored candidates, then scores a fresh batch of G's candidates and
adds them to the archive. A candidate whose score is NaN or infinite is
quarantined (stored with score -inf) and counted. The generator's samples are
straight-through Gumbel-softmax one-hots and reparameterized Gaussians, so G
is trained by backpropagation through D, and `generate` returns no
log-probabilities.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from autogan_jax import checkpoint
from autogan_jax import gan
from autogan_jax import optim
from autogan_jax.weight_space import network as network_lib

PyTree = Any
# Per-round metrics of a search, in the column order of the checkpointed history table.
_HISTORY_FIELDS = ("d_loss", "g_loss", "d_real", "d_fake", "proposal_mean", "proposal_max",
                   "archive_best", "quarantined")


@struct.dataclass
class Archive:
  """A fixed-capacity store of scored candidates.

  Attributes:
    samples: candidates with a leading axis of the archive's capacity.
    scores: score of each slot; -inf for empty slots and quarantined candidates.
    size: number of filled slots.
    quarantined: number of candidates whose score was not finite.
  """

  samples: PyTree
  scores: jax.Array
  size: jax.Array
  quarantined: jax.Array


def new_archive(samples: PyTree, scores: jax.Array, capacity: int) -> Archive:
  """Return an archive of `capacity` slots whose first slots hold `samples`."""
  count = scores.shape[0]
  if count > capacity:
    raise ValueError(f"{count} initial candidates do not fit an archive of {capacity} slots.")
  pad = lambda leaf: jnp.concatenate(
      [leaf, jnp.zeros((capacity - count,) + leaf.shape[1:], leaf.dtype)])
  finite = jnp.isfinite(scores)
  return Archive(samples=jax.tree.map(pad, samples),
                 scores=jnp.concatenate([jnp.where(finite, scores, -jnp.inf),
                                         jnp.full((capacity - count,), -jnp.inf)]),
                 size=jnp.asarray(count, jnp.int32),
                 quarantined=jnp.sum(~finite).astype(jnp.int32))


def add_to_archive(archive: Archive, samples: PyTree, scores: jax.Array) -> Archive:
  """Write `samples` into the next free slots; non-finite scores are stored as -inf and counted.

  The caller sizes the archive so that it never overflows; at capacity the
  last slots are overwritten.
  """
  count = scores.shape[0]
  capacity = archive.scores.shape[0]
  start = jnp.minimum(archive.size, capacity - count)
  finite = jnp.isfinite(scores)
  write = lambda store, new: jax.lax.dynamic_update_slice_in_dim(store, new, start, axis=0)
  return Archive(samples=jax.tree.map(write, archive.samples, samples),
                 scores=write(archive.scores, jnp.where(finite, scores, -jnp.inf)),
                 size=jnp.minimum(archive.size + count, capacity),
                 quarantined=archive.quarantined + jnp.sum(~finite).astype(jnp.int32))


@dataclasses.dataclass(frozen=True)
class Problem:
  """The search space of one G/D pair.

  Attributes:
    init_generator: key -> G's params.
    sample: (g_params, key, batch_size) -> candidates, differentiable in g_params.
    featurize: candidates -> features [batch, feature_dim] that D judges.
    score: candidates -> exact scores [batch] (higher is better); jittable.
    feature_dim: width of the features.
  """

  init_generator: Callable[[jax.Array], PyTree]
  sample: Callable[[PyTree, jax.Array, int], PyTree]
  featurize: Callable[[PyTree], jax.Array]
  score: Callable[[PyTree], jax.Array]
  feature_dim: int


@dataclasses.dataclass(frozen=True)
class SearchSettings:
  """Sizes of one adversarial search.

  Attributes:
    rounds: propose-and-score rounds.
    steps_per_round: adversarial steps before each proposal.
    batch_size: candidates per step and per proposal.
    top_k: archive members that count as real.
    initial_candidates: candidates drawn from the untrained G to fill the archive first.
    d_hidden: width of D's two hidden layers.
    loss: one of `gan.LOSSES`.
  """

  rounds: int = 10
  steps_per_round: int = 20
  batch_size: int = 32
  top_k: int = 16
  initial_candidates: int = 64
  d_hidden: int = 64
  loss: str = "non_saturating"


@dataclasses.dataclass(frozen=True)
class SearchResult:
  """The outcome of a search.

  Attributes:
    state: the final `gan.GANState`.
    archive: every scored candidate.
    history: one metrics dict per round.
  """

  state: gan.GANState
  archive: Archive
  history: list[dict[str, float]]

  def best(self) -> tuple[PyTree, float]:
    """Return the archive's highest-scoring candidate and its score."""
    index = int(jnp.argmax(self.archive.scores))
    return jax.tree.map(lambda leaf: leaf[index], self.archive.samples), float(
        self.archive.scores[index])


def init_discriminator(key: jax.Array, feature_dim: int, hidden: int) -> network_lib.Network:
  """Return D: a dense network from features to one logit."""
  return network_lib.init_mlp(key, (feature_dim, hidden, hidden, 1), activation="relu")


def discriminate(d_params: network_lib.Network, features: jax.Array) -> jax.Array:
  return network_lib.apply_network(d_params, features)[:, 0]


def probe_features(logits: jax.Array) -> jax.Array:
  """Summarise a network's logits on a probe batch [probe, classes] for D.

  Returns the mean predicted distribution [classes], the mean entropy and the
  mean maximum probability, which together tell D whether the network
  predicts every class confidently or has collapsed.
  """
  probs = jax.nn.softmax(logits, axis=-1)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  entropy = -jnp.sum(probs * log_probs, axis=-1)
  return jnp.concatenate([jnp.mean(probs, axis=0), jnp.mean(entropy)[None],
                          jnp.mean(jnp.max(probs, axis=-1))[None]])


OBJECTIVES = ("accuracy", "neg_loss")


def score_logits(logits: jax.Array, labels: jax.Array, objective: str = "accuracy") -> jax.Array:
  """Score a candidate's logits [examples, classes], where higher is better.

  "accuracy" is the share of correct argmax predictions. "neg_loss" is minus
  the mean cross-entropy, which also ranks candidates of equal accuracy. The
  score is NaN when any logit is not finite, which marks the candidate for
  quarantine in the archive.
  """
  if objective not in OBJECTIVES:
    raise ValueError(f"Unknown objective {objective!r}; expected one of {OBJECTIVES}.")
  if objective == "accuracy":
    value = jnp.mean(jnp.argmax(logits, axis=-1) == labels)
  else:
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    value = jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=-1))
  return jnp.where(jnp.all(jnp.isfinite(logits)), value, jnp.nan)


def run_search(problem: Problem, key: jax.Array, settings: SearchSettings, *,
               g_tx: optax.GradientTransformation | None = None,
               d_tx: optax.GradientTransformation | None = None,
               checkpoint_dir: str | pathlib.Path | None = None,
               on_round: Callable[[int, dict[str, float]], None] | None = None) -> SearchResult:
  """Train G and D adversarially while G's scored proposals grow the archive.

  Args:
    problem: the candidates, their features and their scores.
    key: the run's PRNG key. Round r draws keys folded from r alone, so a
      resumed search draws the same keys as an uninterrupted one.
    settings: sizes.
    g_tx: G's update rule; default `optim.default_rule(3e-3)` (G*).
    d_tx: D's update rule; default `optim.default_rule(1e-3)` (G*).
    checkpoint_dir: when given, the state is saved after every round and a
      rerun resumes from the newest save.
    on_round: called on the host after each round with the round number and its metrics.
  """
  g_tx = g_tx if g_tx is not None else optim.default_rule(3e-3)
  d_tx = d_tx if d_tx is not None else optim.default_rule(1e-3)
  if settings.top_k > settings.initial_candidates:
    raise ValueError(f"top_k={settings.top_k} exceeds initial_candidates="
                     f"{settings.initial_candidates}; the archive needs top_k candidates "
                     "before the first step.")
  keys = jax.random.split(key, 4)
  k_g, k_d, k_initial, k_rounds = keys[0], keys[1], keys[2], keys[3]
  g_params = problem.init_generator(k_g)
  d_params = init_discriminator(k_d, problem.feature_dim, settings.d_hidden)
  state = gan.init_state(g_params, d_params, g_tx, d_tx)

  def generate(g_params, key, batch_size):
    return problem.featurize(problem.sample(g_params, key, batch_size)), None

  step = gan.make_step(generate, discriminate, g_tx, d_tx, loss=settings.loss)

  @jax.jit
  def score_batch(samples):
    return problem.score(samples)

  @jax.jit
  def run_round(carry, round_key):
    state, archive = carry["state"], carry["archive"]
    k_steps, k_propose = jax.random.split(round_key)
    top = gan.top_of_archive(archive.samples, archive.scores, settings.top_k)

    def body(state, step_index):
      k_real, k_step = jax.random.split(jax.random.fold_in(k_steps, step_index))
      picks = jax.random.randint(k_real, (settings.batch_size,), 0, settings.top_k)
      real = problem.featurize(jax.tree.map(lambda leaf: leaf[picks], top))
      return step(state, real, k_step)

    state, metrics = jax.lax.scan(body, state, jnp.arange(settings.steps_per_round))
    proposals = problem.sample(state.g_params, k_propose, settings.batch_size)
    scores = problem.score(jax.lax.stop_gradient(proposals))
    archive = add_to_archive(archive, proposals, scores)
    finite_scores = jnp.where(jnp.isfinite(scores), scores, jnp.nan)
    round_metrics = {name: jnp.mean(value) for name, value in metrics.items()}
    round_metrics.update(proposal_mean=jnp.nanmean(finite_scores),
                         proposal_max=jnp.nanmax(finite_scores),
                         archive_best=jnp.max(archive.scores),
                         quarantined=archive.quarantined)
    return {"state": state, "archive": archive}, round_metrics

  initial = problem.sample(g_params, k_initial, settings.initial_candidates)
  capacity = settings.initial_candidates + settings.rounds * settings.batch_size
  archive = new_archive(initial, score_batch(initial), capacity)

  carry, history = checkpoint.run_rounds(
      run_round, {"state": state, "archive": archive}, k_rounds, rounds=settings.rounds,
      fields=_HISTORY_FIELDS, checkpoint_dir=checkpoint_dir, on_round=on_round)
  return SearchResult(state=carry["state"], archive=carry["archive"], history=history)


