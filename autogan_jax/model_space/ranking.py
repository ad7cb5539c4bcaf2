"""D_model as a ranker of trained models from their spec and early training curve.

D is trained with the adversarial discriminator loss where, at each step, a
random share of the training zoo counts as real (the models above a random
accuracy quantile) and the rest as fake. Its logit therefore grows with the
chance that a model beats a random threshold, so it orders models by final
accuracy. Spearman's correlation on held-out models judges the ranking.
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
    batch: real and fake samples per step.
    learning_rate: Adam step size.
    weight_decay: decoupled weight decay.
    min_quantile, max_quantile: range of the random accuracy quantile that
      separates real from fake.
  """

  steps: int = 2000
  batch: int = 32
  learning_rate: float = 1e-3
  weight_decay: float = 1e-4
  min_quantile: float = 0.1
  max_quantile: float = 0.9

  def __post_init__(self):
    validation.check("steps", self.steps, validation.IntRange(1))
    validation.check("batch", self.batch, validation.IntRange(1))
    validation.check("min_quantile", self.min_quantile,
                     validation.FloatRange(0.0, 1.0, high_inclusive=False))
    validation.check("max_quantile", self.max_quantile,
                     validation.FloatRange(self.min_quantile, 1.0, high_inclusive=False))


@functools.lru_cache(maxsize=16)
def _make_ranker_training(config: RankingConfig, num_features: int):
  d_config = models_gan.DModelConfig(spec_features=num_features)
  tx = optax.adamw(config.learning_rate, weight_decay=config.weight_decay)

  def loss_fn(params, x, r, key):
    k_q, k_real, k_fake = jax.random.split(key, 3)
    quantile = jax.random.uniform(k_q, (), minval=config.min_quantile,
                                  maxval=config.max_quantile)
    above = (r > quantile).astype(jnp.float32)
    real = jax.random.choice(k_real, x.shape[0], (config.batch,), p=above / jnp.sum(above))
    fake = jax.random.choice(k_fake, x.shape[0], (config.batch,),
                             p=(1.0 - above) / jnp.sum(1.0 - above))
    return gan.discriminator_loss("non_saturating", models_gan.d_model_apply(params, x[real]),
                                  models_gan.d_model_apply(params, x[fake]))

  def train(key, x, r):
    k_init, k_train = jax.random.split(key)
    params = models_gan.d_model_init(k_init, d_config)

    def step(carry, index):
      params, opt_state = carry
      loss, grads = jax.value_and_grad(loss_fn)(params, x, r, jax.random.fold_in(k_train, index))
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss

    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), jnp.arange(config.steps))
    return params

  return jax.jit(train)


def train_ranker(features: np.ndarray, accuracy: np.ndarray, key: jax.Array,
                 config: RankingConfig = RankingConfig()) -> dict:
  """Train D_model on `features` [models, F] against `accuracy` [models]; return its params."""
  if features.shape[0] < 4:
    raise ValueError(f"Ranking needs at least 4 training models, got {features.shape[0]}.")
  ranks = np.argsort(np.argsort(accuracy)) / (len(accuracy) - 1)
  train = _make_ranker_training(config, features.shape[1])
  return train(key, jnp.asarray(features, jnp.float32), jnp.asarray(ranks, jnp.float32))


def spearman(params: dict, features: np.ndarray, accuracy: np.ndarray) -> float:
  """Return Spearman's rank correlation between D's logits and `accuracy`."""
  scores = np.asarray(models_gan.d_model_apply(params, jnp.asarray(features)))
  return float(stats.spearmanr(scores, accuracy).statistic)
