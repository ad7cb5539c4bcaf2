"""Architecture search under a budget of trained models: adversarial, random and evolution.

Every method trains its candidates with the same `ZooTrainer` (same steps,
same data, same update rule) and starts from the same first round of random
specs, so the methods differ only in how they choose the later rounds.

- "random": every candidate is drawn uniformly from the search space.
- "evolution": regularized (aging) evolution (Real, Aggarwal, Huang and Le,
  "Regularized Evolution for Image Classifier Architecture Search", 2019). Each
  child mutates one slot of the best of a random tournament drawn from the
  `evolution_population` most recent models.
- "adversarial": G_model and D_model train with the generic adversarial step,
  where real is the top `top_fraction` of the archive by validation accuracy and
  the rest of the archive joins G's samples as fakes. G receives the task embedding
  and the mean rank of earlier candidates per option. Each round G proposes
  `candidates_per_model` times as many new specs as the round trains (drawing
  up to `generator_draws` batches, because G's samples often repeat specs
  already trained), and as many one-slot mutations of the archive's top
  `top_fraction` join them. D scores the unseen candidates (or, with
  `candidate_scorer="ranker"`, a spec-only ranking D_model trained on the
  archive does). The round trains the `explore_fraction` share best-scored G
  samples and fills the rest with the best-scored candidates of either source,
  so D decides between exploiting the archive's best region and
  G's proposals.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from autogan_jax import gan
from autogan_jax.core import validation
from autogan_jax.model_space import models_gan
from autogan_jax.model_space import ranking
from autogan_jax.model_space import space as space_lib
from autogan_jax.model_space import zoo as zoo_lib

METHODS = ("adversarial", "random", "evolution")
CANDIDATE_SCORERS = ("discriminator", "ranker")


@dataclasses.dataclass(frozen=True)
class SearchConfig:
  """Budget and settings of one search.

  Attributes:
    budget: models trained in total.
    round_size: models trained per round (the first round is random for all).
    evolution_population: models that regularized evolution keeps.
    tournament_size: models per tournament of regularized evolution.
    gan_steps: adversarial steps per round.
    gan_batch: real samples per adversarial step.
    candidates_per_model: G proposals per model trained, and as many mutations
      of the archive's top models.
    top_fraction: share of the archive that counts as real.
    explore_fraction: share of each adversarial round reserved for G samples.
      The rest goes to the best-scored candidates of G and mutations alike.
    mutation_candidates: whether mutations of the archive's top models join
      G's samples as candidates (False: G's samples only).
    generator_draws: batches of G samples drawn per round at most. Drawing
      stops once a batch's worth of specs that are neither trained nor
      already drawn is found.
    candidate_scorer: the score that orders a round's candidates.
      "discriminator" is the adversarial D's logit. "ranker" is a spec-only
      ranking D_model (`ranking.train_ranker`) trained each round on the
      archive's specs and validation accuracies.
    loss: adversarial loss, one of `gan.LOSSES`.
    g_learning_rate, d_learning_rate: Adam step sizes of G and D.
    temperature: Gumbel-softmax temperature while G and D train.
    proposal_temperature: G's slot logits are divided by it before the
      candidates of a round are drawn. Above 1 it spreads G's samples, which
      otherwise collapse onto the archive's top specs that count as real.
  """

  budget: int = 24
  round_size: int = 8
  evolution_population: int = 12
  tournament_size: int = 4
  gan_steps: int = 100
  gan_batch: int = 16
  candidates_per_model: int = 8
  top_fraction: float = 0.25
  explore_fraction: float = 0.25
  mutation_candidates: bool = True
  generator_draws: int = 8
  candidate_scorer: str = "discriminator"
  loss: str = "non_saturating"
  g_learning_rate: float = 3e-3
  d_learning_rate: float = 3e-3
  temperature: float = 1.0
  proposal_temperature: float = 2.0

  def __post_init__(self):
    validation.check("budget", self.budget, validation.IntRange(1))
    validation.check("round_size", self.round_size, validation.IntRange(1))
    validation.check("evolution_population", self.evolution_population, validation.IntRange(2))
    validation.check("tournament_size", self.tournament_size, validation.IntRange(1))
    validation.check("gan_steps", self.gan_steps, validation.IntRange(1))
    validation.check("gan_batch", self.gan_batch, validation.IntRange(1))
    validation.check("candidates_per_model", self.candidates_per_model, validation.IntRange(1))
    validation.check("top_fraction", self.top_fraction,
                     validation.FloatRange(0.0, 1.0, low_inclusive=False))
    validation.check("explore_fraction", self.explore_fraction, validation.FloatRange(0.0, 1.0))
    validation.check("generator_draws", self.generator_draws, validation.IntRange(1))
    validation.check_choice("candidate_scorer", self.candidate_scorer, CANDIDATE_SCORERS)
    validation.check_choice("loss", self.loss, gan.LOSSES)
    validation.check("g_learning_rate", self.g_learning_rate,
                     validation.FloatRange(0.0, low_inclusive=False))
    validation.check("d_learning_rate", self.d_learning_rate,
                     validation.FloatRange(0.0, low_inclusive=False))
    validation.check("temperature", self.temperature,
                     validation.FloatRange(0.0, low_inclusive=False))
    validation.check("proposal_temperature", self.proposal_temperature,
                     validation.FloatRange(0.0, low_inclusive=False))


@dataclasses.dataclass
class SearchResult:
  """The models that one search trained, in order.

  Attributes:
    method: the search method.
    choices: option indices of every trained spec.
    valid_accuracy, test_accuracy: held-out metrics of every trained spec.
    curves: training loss curve of every spec.
    quarantined: models whose training produced NaN or infinity.
    generator_picks: models of the adversarial rounds that came from G's
      samples (the rest came from mutations or random fill).
    records: the trained models themselves, kept when `run_search` is asked to.
  """

  method: str
  choices: list[np.ndarray]
  valid_accuracy: list[float]
  test_accuracy: list[float]
  curves: list[np.ndarray] = dataclasses.field(default_factory=list)
  quarantined: int = 0
  generator_picks: int = 0
  records: list[zoo_lib.ModelRecord] = dataclasses.field(default_factory=list)

  def best_so_far(self) -> np.ndarray:
    """Best validation accuracy after each trained model."""
    return np.maximum.accumulate(np.asarray(self.valid_accuracy))

  def best_test(self) -> float:
    """Test accuracy of the model with the best validation accuracy."""
    return float(self.test_accuracy[int(np.argmax(self.valid_accuracy))])


def history_features(space: space_lib.SearchSpace, choices: list[np.ndarray],
                     scores: list[float]) -> np.ndarray:
  """Mean rank (in [0, 1]) of the archive's candidates per option; 0.5 for unseen options."""
  features = np.stack([space.features(c) for c in choices])
  ranks = np.argsort(np.argsort(scores)) / max(len(scores) - 1, 1)
  counts = features.sum(0)
  sums = (features * ranks[:, None]).sum(0)
  return np.where(counts > 0, sums / np.maximum(counts, 1), 0.5).astype(np.float32)


# Cached so that searches of every seed and task with one space and config share compiled code.
@functools.lru_cache(maxsize=8)
def _adversarial_functions(space: space_lib.SearchSpace, config: SearchConfig,
                           embedding_size: int):
  g_config = models_gan.GModelConfig(slot_sizes=space.slot_sizes(),
                                     context_size=space.num_features + embedding_size)
  d_config = models_gan.DModelConfig(spec_features=space.num_features)
  g_tx = optax.adam(config.g_learning_rate, b1=0.5)
  d_tx = optax.adam(config.d_learning_rate, b1=0.5)

  def train(state, context, archive, real_weight, fake_weight, key):
    def generate(g_params, k, batch_size):
      features, _ = models_gan.g_model_sample(g_params, g_config, k, batch_size, context,
                                              config.temperature)
      return features, None

    step = gan.make_step(generate, models_gan.d_model_apply, g_tx, d_tx, loss=config.loss)

    def body(state, index):
      k_real, k_fake, k_step = jax.random.split(jax.random.fold_in(key, index), 3)
      real = archive[jax.random.choice(k_real, archive.shape[0], (config.gan_batch,),
                                       p=real_weight)]
      negatives = archive[jax.random.choice(k_fake, archive.shape[0], (config.gan_batch,),
                                            p=fake_weight)]
      return step(state, real, k_step, negatives)

    return jax.lax.scan(body, state, jnp.arange(config.gan_steps))

  candidates = config.round_size * config.candidates_per_model
  def sample(g_params, key, context):
    # Gumbel-max noise on the scaled logits: the argmax of each slot is a draw from
    # softmax(logits / proposal_temperature).
    k_noise, k_gumbel = jax.random.split(key)
    logits = models_gan.slot_logits(g_params, g_config, k_noise, candidates, context)
    logits = logits / config.proposal_temperature
    return logits + jax.random.gumbel(k_gumbel, logits.shape)

  return (g_config, d_config, g_tx, d_tx, jax.jit(train), jax.jit(sample),
          jax.jit(models_gan.d_model_apply))


class AdversarialProposer:
  """G_model and D_model for one search, kept across rounds."""

  def __init__(self, space: space_lib.SearchSpace, task_embedding: np.ndarray,
               config: SearchConfig, key: jax.Array):
    self.space = space
    self.config = config
    self.task_embedding = np.asarray(task_embedding, np.float32)
    k_g, k_d, self._key = jax.random.split(key, 3)
    # The host-side pick settings do not enter compiled code, so configs that differ
    # only there share one cache entry.
    compiled_config = dataclasses.replace(config, explore_fraction=0.0,
                                          mutation_candidates=False, generator_draws=1,
                                          candidate_scorer="discriminator")
    self.g_config, d_config, g_tx, d_tx, self._train, self._sample, self._score = (
        _adversarial_functions(space, compiled_config, self.task_embedding.shape[0]))
    self.state = gan.init_state(models_gan.g_model_init(k_g, self.g_config),
                                models_gan.d_model_init(k_d, d_config), g_tx, d_tx)
    self.metrics: list[dict] = []
    self.picked_from_generator: list[int] = []

  def propose(self, choices: list[np.ndarray], scores: list[float], count: int,
              rng: np.random.Generator, round_index: int) -> list[np.ndarray]:
    """Train G and D on the archive, then return `count` new unseen choices picked by D."""
    budget = self.config.budget
    features = np.zeros((budget, self.space.num_features), np.float32)
    features[:len(choices)] = np.stack([self.space.features(c) for c in choices])
    order = np.argsort(-np.asarray(scores))
    top = max(2, int(round(self.config.top_fraction * len(scores))))
    real_weight = np.zeros(budget, np.float32)
    fake_weight = np.zeros(budget, np.float32)
    real_weight[order[:top]] = 1.0
    fake_weight[order[top:]] = 1.0
    if fake_weight.sum() == 0:
      fake_weight[order[-1]] = 1.0
    context = np.concatenate([self.task_embedding,
                              history_features(self.space, choices, scores)])
    key = jax.random.fold_in(self._key, round_index)
    self.state, metrics = self._train(self.state, jnp.asarray(context), jnp.asarray(features),
                                      jnp.asarray(real_weight / real_weight.sum()),
                                      jnp.asarray(fake_weight / fake_weight.sum()), key)
    self.metrics.append({k: float(v[-1]) for k, v in metrics.items()})

    seen = {tuple(c) for c in choices}
    pool = self.config.round_size * self.config.candidates_per_model
    generated = []
    for draw in range(self.config.generator_draws):
      sampled = np.asarray(self._sample(self.state.g_params,
                                        jax.random.fold_in(key, 10**6 + draw),
                                        jnp.asarray(context)))
      generated += self._unseen(
          [self.space.canonical(self._argmax_slots(row)) for row in sampled], seen)
      if len(generated) >= pool:
        break
    generated = generated[:pool]
    mutants = []
    if self.config.mutation_candidates:
      parents = [choices[i] for i in order[:top]]
      mutants = self._unseen([self.space.mutate(parents[i % len(parents)], rng)
                              for i in range(pool)], seen)
    ranker = None
    if self.config.candidate_scorer == "ranker":
      ranker = ranking.train_ranker(features[:len(choices)], np.asarray(scores),
                                    jax.random.fold_in(key, 2 * 10**6))
    generated = self._ranked(generated, "generator", pool, ranker)
    mutants = self._ranked(mutants, "mutation", pool, ranker)
    explore = min(len(generated), int(round(self.config.explore_fraction * count)))
    chosen = generated[:explore]
    rest = sorted(generated[explore:] + mutants, key=lambda entry: -entry[0])
    chosen += rest[:count - len(chosen)]
    self.picked_from_generator.append(sum(source == "generator" for _, source, _ in chosen))
    picked = [choice for _, _, choice in chosen]
    # G may collapse onto specs already trained; the rest of the round is random.
    while len(picked) < count:
      choice = self.space.sample(rng)
      if tuple(choice) not in seen:
        seen.add(tuple(choice))
        picked.append(choice)
    return picked

  @staticmethod
  def _unseen(candidates: list[np.ndarray], seen: set) -> list[np.ndarray]:
    """Keep the first copy of every candidate not in `seen`, and add it to `seen`."""
    new_choices = []
    for choice in candidates:
      if tuple(choice) not in seen:
        seen.add(tuple(choice))
        new_choices.append(choice)
    return new_choices

  def _ranked(self, candidates: list[np.ndarray], source: str, pool: int,
              ranker: dict | None = None) -> list[tuple[float, str, np.ndarray]]:
    """Return (score, source, choice) triples, best first.

    The score is the ranker's when one is given, else the adversarial D's
    logit. Features are padded to `pool` rows so that D's scorer compiles for
    one shape.
    """
    if not candidates:
      return []
    features = np.zeros((max(pool, len(candidates)), self.space.num_features), np.float32)
    features[:len(candidates)] = np.stack([self.space.features(c) for c in candidates])
    if ranker is not None:
      scores = ranking.score(ranker, features)[:len(candidates)]
    else:
      scores = np.asarray(self._score(self.state.d_params,
                                      jnp.asarray(features)))[:len(candidates)]
    return [(float(scores[i]), source, candidates[i]) for i in np.argsort(-scores)]

  def _argmax_slots(self, row: np.ndarray) -> np.ndarray:
    choice, start = [], 0
    for size in self.space.slot_sizes():
      choice.append(int(np.argmax(row[start:start + size])))
      start += size
    return np.asarray(choice)


def _evolve(space: space_lib.SearchSpace, choices: list[np.ndarray], scores: list[float],
            count: int, config: SearchConfig, rng: np.random.Generator) -> list[np.ndarray]:
  population = list(range(max(0, len(choices) - config.evolution_population), len(choices)))
  children = []
  for _ in range(count):
    size = min(config.tournament_size, len(population))
    contestants = rng.choice(population, size=size, replace=False)
    parent = max(contestants, key=lambda i: scores[i])
    children.append(space.mutate(choices[parent], rng))
    # Aging: each child pushes the oldest member out when it is trained.
  return children


def run_search(method: str, trainer: zoo_lib.ZooTrainer, task_embedding: np.ndarray,
               config: SearchConfig, seed: int, keep_records: bool = False) -> SearchResult:
  """Run one search of `config.budget` trained models and return what it trained."""
  validation.check_choice("method", method, METHODS)
  space = trainer.space
  rng = np.random.default_rng(seed)
  train_key = jax.random.key(seed)
  first = [space.sample(rng) for _ in range(min(config.round_size, config.budget))]
  # The methods share the first round; later draws use a method-specific stream.
  rng = np.random.default_rng([seed, METHODS.index(method)])
  proposer = None
  if method == "adversarial":
    proposer = AdversarialProposer(space, task_embedding, config,
                                   jax.random.fold_in(jax.random.key(seed), 1))
  result = SearchResult(method=method, choices=[], valid_accuracy=[], test_accuracy=[])
  round_index = 0
  batch = first
  while True:
    specs = [space.to_spec(c) for c in batch]
    offset = len(result.choices)
    records = trainer.train(specs, jax.random.fold_in(train_key, offset))
    for c, r in zip(batch, records):
      result.choices.append(c)
      result.valid_accuracy.append(r.metrics["valid_accuracy"])
      result.test_accuracy.append(r.metrics["test_accuracy"])
      result.curves.append(r.curve)
      if keep_records:
        result.records.append(r)
      result.quarantined += int(r.metrics["finite"] == 0.0)
    logging.info("%s seed %d: %d/%d models, best valid accuracy %.4f", method, seed,
                 len(result.choices), config.budget, max(result.valid_accuracy))
    count = min(config.round_size, config.budget - len(result.choices))
    if count <= 0:
      return result
    round_index += 1
    if method == "random":
      batch = [space.sample(rng) for _ in range(count)]
    elif method == "evolution":
      batch = _evolve(space, result.choices, result.valid_accuracy, count, config, rng)
    else:
      batch = proposer.propose(result.choices, result.valid_accuracy, count, rng, round_index)
      result.generator_picks += proposer.picked_from_generator[-1]
