"""D_model as a ranker of trained models from their spec and early training curve.

D's loss has two terms. The adversarial term is the discriminator loss where,
at each step, the training models above a random accuracy quantile count as
real and the rest as fake, so D's logit grows with the chance that a model
beats a random threshold. The pairwise term is the RankNet loss (Burges et al.,
"Learning to Rank using Gradient Descent", 2005) on random pairs of training
models, weighted by their rank gap, which rewards the order of the logits
directly. Inputs are standardised with the training models' mean and standard
deviation, and the score of a model is the mean logit of `members`
independently initialised copies of D. Spearman's correlation on held-out
models judges the ranking.

A ranker may be given a prior: one score per model that already ranks models
on its own, such as minus the early training loss (`early_loss_score`). D's
logit is then `exp(log_prior_scale) * standardised prior + MLP(features)`, so
the MLP learns a correction to the prior's ranking instead of the whole
ranking, which about a hundred training models cannot pin down.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import stats

from autogan_jax import gan
from autogan_jax.core import validation
from autogan_jax.model_space import models_gan


@dataclasses.dataclass(frozen=True)
class RankingConfig:
  """Training of the ranking D_model.

  Attributes:
    steps: Adam steps.
    batch: real and fake samples per step; the pairwise term draws 4 * batch pairs.
    learning_rate: Adam step size.
    weight_decay: decoupled weight decay.
    min_quantile, max_quantile: range of the random accuracy quantile that
      separates real from fake.
    adversarial_weight: weight of the real/fake discriminator loss.
    pairwise_weight: weight of the pairwise ranking loss.
    members: independently initialised copies of D whose logits are averaged.
    hidden: hidden layer sizes of D.
  """

  steps: int = 300
  batch: int = 32
  learning_rate: float = 1e-3
  weight_decay: float = 1e-4
  min_quantile: float = 0.1
  max_quantile: float = 0.9
  adversarial_weight: float = 1.0
  pairwise_weight: float = 1.0
  members: int = 4
  hidden: tuple[int, ...] = (32, 32)

  def __post_init__(self):
    validation.check("steps", self.steps, validation.IntRange(1))
    validation.check("batch", self.batch, validation.IntRange(1))
    validation.check("min_quantile", self.min_quantile,
                     validation.FloatRange(0.0, 1.0, high_inclusive=False))
    validation.check("max_quantile", self.max_quantile,
                     validation.FloatRange(self.min_quantile, 1.0, high_inclusive=False))
    validation.check("adversarial_weight", self.adversarial_weight, validation.FloatRange(0.0))
    validation.check("pairwise_weight", self.pairwise_weight, validation.FloatRange(0.0))
    if self.adversarial_weight + self.pairwise_weight <= 0.0:
      raise validation.ConfigError(
          "Invalid ranking config: adversarial_weight and pairwise_weight are both 0. "
          "Set at least one of them above 0.")
    validation.check("members", self.members, validation.IntRange(1))


def pairwise_loss(scores_i: jax.Array, scores_j: jax.Array, ranks_i: jax.Array,
                  ranks_j: jax.Array) -> jax.Array:
  """Return the RankNet loss of score pairs, weighted by the absolute rank gap.

  Pairs of equal rank have weight 0.
  """
  sign = jnp.sign(ranks_i - ranks_j)
  weight = jnp.abs(ranks_i - ranks_j)
  losses = jax.nn.softplus(-sign * (scores_i - scores_j))
  return jnp.sum(weight * losses) / (jnp.sum(weight) + 1e-6)


@functools.lru_cache(maxsize=16)
def _make_ranker_training(config: RankingConfig, num_features: int):
  d_config = models_gan.DModelConfig(spec_features=num_features, hidden=config.hidden)
  tx = optax.adamw(config.learning_rate, weight_decay=config.weight_decay)

  def apply(params, x, prior):
    return (models_gan.d_model_apply(params["d"], x)
            + jnp.exp(params["log_prior_scale"]) * prior)

  def loss_fn(params, x, prior, r, key):
    k_q, k_real, k_fake, k_i, k_j = jax.random.split(key, 5)
    loss = 0.0
    if config.adversarial_weight > 0.0:
      quantile = jax.random.uniform(k_q, (), minval=config.min_quantile,
                                    maxval=config.max_quantile)
      above = (r > quantile).astype(jnp.float32)
      real = jax.random.choice(k_real, x.shape[0], (config.batch,), p=above / jnp.sum(above))
      fake = jax.random.choice(k_fake, x.shape[0], (config.batch,),
                               p=(1.0 - above) / jnp.sum(1.0 - above))
      loss += config.adversarial_weight * gan.discriminator_loss(
          "non_saturating", apply(params, x[real], prior[real]),
          apply(params, x[fake], prior[fake]))
    if config.pairwise_weight > 0.0:
      i = jax.random.randint(k_i, (4 * config.batch,), 0, x.shape[0])
      j = jax.random.randint(k_j, (4 * config.batch,), 0, x.shape[0])
      loss += config.pairwise_weight * pairwise_loss(
          apply(params, x[i], prior[i]), apply(params, x[j], prior[j]), r[i], r[j])
    return loss

  def train_member(key, x, prior, r):
    k_init, k_train = jax.random.split(key)
    params = {"d": models_gan.d_model_init(k_init, d_config), "log_prior_scale": jnp.zeros(())}

    def step(carry, index):
      params, opt_state = carry
      loss, grads = jax.value_and_grad(loss_fn)(params, x, prior, r,
                                                jax.random.fold_in(k_train, index))
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss

    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), jnp.arange(config.steps))
    return params

  def train(key, x, prior, r):
    keys = jax.random.split(key, config.members)
    return jax.vmap(train_member, in_axes=(0, None, None, None))(keys, x, prior, r)

  return jax.jit(train)


def early_loss_score(curve: np.ndarray, early_steps: int, num_classes: int,
                     window: int = 5) -> float:
  """Return minus the mean training loss of the last `window` of the first `early_steps` steps.

  The loss is divided by log(num_classes), the loss of a uniform prediction.
  NaN, infinity and losses above 10 read as 10, so a diverged model scores -10.
  Higher is better, as for a ranker's score.
  """
  if early_steps < 1 or window < 1:
    raise ValueError(f"early_steps and window must be at least 1, got {early_steps} and "
                     f"{window}.")
  early = np.asarray(curve[:early_steps], np.float64) / np.log(num_classes)
  early = np.where(np.isfinite(early), np.minimum(early, 10.0), 10.0)
  return -float(early[-window:].mean())


def train_ranker(features: np.ndarray, accuracy: np.ndarray, key: jax.Array,
                 config: RankingConfig = RankingConfig(),
                 prior: np.ndarray | None = None) -> dict:
  """Train D_model on `features` [models, F] against `accuracy` [models].

  Args:
    features: one row of input features per training model.
    accuracy: the metric to rank by, higher is better.
    key: PRNG key of D's initialisation and batches.
    config: training settings.
    prior: optional score per model [models], higher is better, that D
      corrects (see the module docstring). `score` then needs the prior of the
      models it scores.

  Returns:
    A dict with "members" (D's parameters with a leading member axis), the
    input standardisation "mean" and "scale" [F], and, with a prior, its
    standardisation "prior_mean" and "prior_scale".
  """
  features = np.asarray(features, np.float32)
  if features.shape[0] < 4:
    raise ValueError(f"Ranking needs at least 4 training models, got {features.shape[0]}.")
  mean = features.mean(0)
  # A feature that is constant in training keeps scale 1, so that a scored
  # model with another value there is not multiplied by a million.
  std = features.std(0)
  scale = np.where(std > 1e-6, std, 1.0)
  ranks = np.argsort(np.argsort(accuracy)) / (len(accuracy) - 1)
  ranker = {"mean": jnp.asarray(mean), "scale": jnp.asarray(scale)}
  if prior is None:
    prior_z = np.zeros(len(features), np.float32)
  else:
    prior = _check_prior(prior, len(features))
    ranker["prior_mean"] = jnp.asarray(prior.mean())
    ranker["prior_scale"] = jnp.asarray(prior.std() + 1e-6)
    prior_z = (prior - prior.mean()) / (prior.std() + 1e-6)
  train = _make_ranker_training(config, features.shape[1])
  ranker["members"] = train(key, jnp.asarray((features - mean) / scale),
                            jnp.asarray(prior_z, jnp.float32), jnp.asarray(ranks, jnp.float32))
  return ranker


def _check_prior(prior: np.ndarray, models: int) -> np.ndarray:
  prior = np.asarray(prior, np.float32)
  if prior.shape != (models,):
    raise ValueError(f"Expected one prior score per model, shape ({models},), got "
                     f"{prior.shape}.")
  if not np.all(np.isfinite(prior)):
    raise ValueError("Prior scores must be finite; map NaN or infinity to a low score first.")
  return prior


def score(ranker: dict, features: np.ndarray, prior: np.ndarray | None = None) -> np.ndarray:
  """Return the ranker's score of every row of `features`: its members' mean logit.

  Raises:
    ValueError: if `prior` is given to a ranker trained without one, or missing
      for a ranker trained with one.
  """
  x = (jnp.asarray(features, jnp.float32) - ranker["mean"]) / ranker["scale"]
  if ("prior_mean" in ranker) != (prior is not None):
    raise ValueError("Pass `prior` to `score` exactly when the ranker was trained with one.")
  if prior is None:
    prior_z = jnp.zeros(x.shape[0])
  else:
    prior_z = (jnp.asarray(_check_prior(prior, x.shape[0])) - ranker["prior_mean"]) / (
        ranker["prior_scale"])

  def member_logits(params):
    return (models_gan.d_model_apply(params["d"], x)
            + jnp.exp(params["log_prior_scale"]) * prior_z)

  logits = jax.vmap(member_logits)(ranker["members"])
  return np.asarray(logits.mean(0))


def rank_average(*scores: np.ndarray) -> np.ndarray:
  """Return the mean over `scores` of each model's rank among the scored models, in [0, 1].

  Tied scores share their mean rank. Averaging ranks instead of raw scores
  lets scores of different scales (D's logits, an early loss) vote equally.
  """
  if not scores:
    raise ValueError("rank_average needs at least one score array.")
  ranks = [(stats.rankdata(np.asarray(s)) - 1.0) / max(len(s) - 1, 1) for s in scores]
  if len({len(r) for r in ranks}) != 1:
    raise ValueError(f"Score arrays differ in length: {[len(r) for r in ranks]}.")
  return np.mean(ranks, axis=0)


def spearman(ranker: dict, features: np.ndarray, accuracy: np.ndarray,
             prior: np.ndarray | None = None) -> float:
  """Return Spearman's rank correlation between the ranker's scores and `accuracy`."""
  return float(stats.spearmanr(score(ranker, features, prior), accuracy).statistic)
