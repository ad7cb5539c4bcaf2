"""G_combine and D_combine: a generator of module hybrids and a discriminator that judges them.

For each layer (module) of two parents of one structure, G has a
categorical over {parent A, parent B, mixture} and a Gaussian over the
mixture weight's logit. A sample is the straight-through one-hot choice and
the mixing weights it implies (0 for A, 1 for B, a sigmoid draw for a
mixture), which `combination.mix_modules` turns into a child. D sees the
choices, the weights and the child's predictions on a probe batch. "Real"
hybrids are the archive's best by their score (accuracy or minus the loss) on
validation data of all ten digits, so this D learns what the best hybrids
look like. `hybrid_judge` uses the same generator with a D_combine that is
trained on whether each hybrid beats its parents.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from autogan_jax.estimators import discrete
from autogan_jax.weight_space import adversarial
from autogan_jax.weight_space import combination
from autogan_jax.weight_space import network as network_lib

CHOICES = ("parent_a", "parent_b", "mixture")


def make_problem(parent_a: network_lib.Network, parent_b: network_lib.Network,
                 x_probe: jax.Array, x_valid: jax.Array, y_valid: jax.Array, *,
                 temperature: float = 1.0, objective: str = "accuracy") -> adversarial.Problem:
  """Build the search over per-module hybrids of `parent_a` and `parent_b`.

  `objective` (one of `adversarial.OBJECTIVES`) scores a hybrid on the validation data.
  """
  combination.check_same_structure(parent_a, parent_b)
  num_modules = len(parent_a)
  num_classes = network_lib.signature(parent_a[-1])[1][1]

  def init_generator(key):
    return {"logits": 0.01 * jax.random.normal(key, (num_modules, len(CHOICES))),
            "mix_mean": jnp.zeros(num_modules),
            "mix_log_std": jnp.full(num_modules, jnp.log(0.5))}

  def sample(g_params, key, batch_size):
    k_choice, k_mix = jax.random.split(key)
    logits = jnp.broadcast_to(g_params["logits"], (batch_size, num_modules, len(CHOICES)))
    choice = discrete.gumbel_softmax(k_choice, logits, temperature, hard=True)
    mix_logit = discrete.gaussian_reparameterize(
        k_mix, jnp.broadcast_to(g_params["mix_mean"], (batch_size, num_modules)),
        jnp.broadcast_to(g_params["mix_log_std"], (batch_size, num_modules)))
    weights = choice[..., 1] + choice[..., 2] * jax.nn.sigmoid(mix_logit)
    return {"choice": choice, "weights": weights}

  def featurize(candidates):
    logits = jax.vmap(lambda w: network_lib.apply_network(
        combination.mix_modules(parent_a, parent_b, w), x_probe))(candidates["weights"])
    probes = jax.vmap(adversarial.probe_features)(logits)
    batch = candidates["weights"].shape[0]
    return jnp.concatenate([candidates["choice"].reshape(batch, -1), candidates["weights"],
                            probes], axis=-1)

  def score(candidates):
    return hybrid_scores(parent_a, parent_b, candidates["weights"], x_valid, y_valid, objective)

  return adversarial.Problem(
      init_generator=init_generator, sample=sample, featurize=featurize, score=score,
      feature_dim=num_modules * (len(CHOICES) + 1) + num_classes + 2)


def hybrid_scores(parent_a: network_lib.Network, parent_b: network_lib.Network,
                  weights: jax.Array, x: jax.Array, y: jax.Array,
                  objective: str = "accuracy") -> jax.Array:
  """Return the score on (x, y) of each hybrid given by mixing weights [count, layers]."""

  def one(w):
    logits = network_lib.apply_network(combination.mix_modules(parent_a, parent_b, w), x)
    return adversarial.score_logits(logits, y, objective)

  return jax.vmap(one)(weights)
