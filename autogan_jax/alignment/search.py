"""G_alignment chooses and parameterises the mechanism; D_alignment judges the mappings.

G is one categorical distribution over the distinct configs, so it chooses the
mechanism and its chunk size (frames per chunk for "chunked", per coarse
segment for "hierarchical") jointly. A factorized choice of the two fails
here, because the chunk size matters for two mechanisms only and its best
value differs between them. Every distinct config
is trained once per seed and scored by its validation character error rate,
so a search round costs table look-ups. G samples configs. D learns to tell
G's samples from the configs whose trained mappings made the fewest errors on
validation strings (the top of the archive). `gan.make_step` updates both,
and G follows D's logit by the score function. The learned choice is G's
most probable config. Test strings are never seen by the search.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import numpy as np
import optax
from absl import logging

from autogan_jax import optim
from autogan_jax.alignment import mechanisms
from autogan_jax.gan import choices

# Distinct configs: ctc, attention, boundaries, and chunked and hierarchical per chunk size.
NUM_CONFIGS = 3 + 2 * len(mechanisms.CHUNK_SIZES)
SPACE = choices.ChoiceSpace(names=("config",), sizes=(NUM_CONFIGS,))
# Built once so that the jitted search step, keyed on the transforms, compiles once.


def all_configs(base: mechanisms.AlignmentConfig) -> list[mechanisms.AlignmentConfig]:
  """Return every distinct config of the space, in a fixed order, with other settings from `base`."""
  seen = []
  for mechanism in mechanisms.MECHANISMS:
    for chunk_size in mechanisms.CHUNK_SIZES:
      config = dataclasses.replace(base, mechanism=mechanism, chunk_size=chunk_size).canonical()
      if config not in seen:
        seen.append(config)
  return seen


def config_of(indices, base: mechanisms.AlignmentConfig) -> mechanisms.AlignmentConfig:
  """Return the config of choice indices [1] (a position in `all_configs(base)`)."""
  return all_configs(base)[int(indices[0])]


def run_search(valid_cer: Mapping[mechanisms.AlignmentConfig, float], key: jax.Array, *,
               base: mechanisms.AlignmentConfig, rounds: int, population: int, top_k: int,
               gan_steps: int, g_tx: optax.GradientTransformation | None = None,
               d_tx: optax.GradientTransformation | None = None,
               state: dict | None = None) -> tuple[dict, list[dict]]:
  """Run the G/D search over configs scored by `valid_cer` (lower is better).

  Returns:
    `(state, records)`; `choices.mode(SPACE, state["gan"].g_params)` is the learned choice.
  """
  missing = [c.describe() for c in all_configs(base) if c not in valid_cer]
  if missing:
    raise ValueError(f"Validation error rates are missing for {missing}; train every config "
                     "before the search.")
  g_tx = g_tx if g_tx is not None else optim.default_rule(0.1)
  d_tx = d_tx if d_tx is not None else optim.default_rule(1e-2)
  init_key, run_key = jax.random.split(key)
  if state is None:
    state = choices.init_search(SPACE, init_key, rounds * population, g_tx, d_tx)
  step_fn = jax.jit(choices.make_search_step(SPACE, g_tx, d_tx))

  def evaluate(indices):
    return np.asarray([-valid_cer[config_of(row, base)] for row in indices])

  records = []
  while int(state["round"]) < rounds:
    round_index = int(state["round"])
    state, record = choices.search_round(SPACE, state, jax.random.fold_in(run_key, round_index),
                                         evaluate, population=population, top_k=top_k,
                                         gan_steps=gan_steps, step_fn=step_fn)
    record["round"] = round_index
    records.append(record)
    logging.info("alignment search round %d/%d: mean sampled CER %.4f, G mode %s",
                 round_index + 1, rounds, -float(np.mean(record["fitness"])),
                 config_of(choices.mode(SPACE, state["gan"].g_params), base).describe())
  return state, records
