"""G_permute and D_permute: a generator of module orders and a discriminator that judges them.

The pool is the residual modules of a trained transformer-like network (its
attention and feed-forward layers, and a skip). G has one categorical
distribution per slot over the pool; a sample is one straight-through
Gumbel-softmax one-hot per slot, so a module may repeat (shared weights) and
a skip shortens the network. D sees the one-hots and the network's
predictions on a probe batch, and "real" orders are the archive's best by
their score (accuracy or minus the loss) on validation data of all ten digits.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from autogan_jax.estimators import discrete
from autogan_jax.weight_space import adversarial
from autogan_jax.weight_space import permutation


def make_problem(pool: permutation.ModulePool, x_probe: jax.Array, x_valid: jax.Array,
                 y_valid: jax.Array, *, slots: int, temperature: float = 1.0,
                 objective: str = "accuracy") -> adversarial.Problem:
  """Build the search over module sequences of length `slots`.

  Args:
    pool: the modules to order.
    x_probe: inputs whose predictions D sees, [probe, input_dim].
    x_valid: inputs that score an order, [examples, input_dim].
    y_valid: their labels.
    slots: length of every sequence, skips included.
    temperature: of the Gumbel-softmax relaxation.
    objective: how an order is scored on the validation data; one of
      `adversarial.OBJECTIVES`.
  """
  choices = pool.num_choices
  num_classes = pool.readout.params["w"].shape[1]

  def init_generator(key):
    return {"logits": 0.01 * jax.random.normal(key, (slots, choices))}

  def sample(g_params, key, batch_size):
    logits = jnp.broadcast_to(g_params["logits"], (batch_size, slots, choices))
    return discrete.gumbel_softmax(key, logits, temperature, hard=True)

  def featurize(one_hot):
    logits = jax.vmap(lambda c: permutation.apply_module_mixture(pool, c, x_probe))(one_hot)
    probes = jax.vmap(adversarial.probe_features)(logits)
    return jnp.concatenate([one_hot.reshape(one_hot.shape[0], -1), probes], axis=-1)

  def score(one_hot):
    return sequence_scores(pool, jnp.argmax(one_hot, axis=-1), x_valid, y_valid, objective)

  return adversarial.Problem(init_generator=init_generator, sample=sample, featurize=featurize,
                             score=score, feature_dim=slots * choices + num_classes + 2)


def sequence_scores(pool: permutation.ModulePool, sequences: jax.Array, x: jax.Array,
                    y: jax.Array, objective: str = "accuracy") -> jax.Array:
  """Return the score of each module sequence [count, slots] on (x, y)."""

  def one(ids):
    logits = permutation.apply_module_sequence(pool, ids, x)
    return adversarial.score_logits(logits, y, objective)

  return jax.vmap(one)(sequences)


def all_sequences(num_choices: int, slots: int) -> np.ndarray:
  """Return every sequence of `slots` module ids from `num_choices`, [num_choices**slots, slots]."""
  return np.array(list(itertools.product(range(num_choices), repeat=slots)), np.int32)
