"""G_temporal: a generator of temporal structures, trained against the archive of the best.

Each round G samples a population of structures. The models of all of them
train in one `vmap`, are optionally fine-tuned against their D_temporal, and
are scored on validation sequences. G and its discriminator then take
`gan.make_step` steps with "real" = the top of the archive of every structure
scored so far (`autogan_jax.gan.choices`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from autogan_jax import optim
from autogan_jax.gan import choices
from autogan_jax.temporal import judge
from autogan_jax.temporal import model as model_lib
from autogan_jax.temporal import structure as structure_lib
from autogan_jax.temporal import training

# Rollouts per member returned for plots.
EXAMPLE_ROLLOUTS = 4

SPACE = choices.ChoiceSpace(names=tuple(name for name, _ in structure_lib.CHOICES),
                            sizes=tuple(len(options) for _, options in structure_lib.CHOICES))


@dataclasses.dataclass(frozen=True)
class TrainSettings:
  """Training and scoring settings shared by every candidate structure.

  Attributes:
    train_steps: supervised steps per candidate.
    batch_size: windows per supervised step.
    learning_rate: Adam rate of the supervised steps (when no `tx` is given).
    commit_tolerance: per-step error below which a variable horizon should commit.
    adversarial_steps: `gan.make_step` steps against D_temporal after the
      supervised ones (continuous states only; 0 skips them).
    adversarial_rollout: rollout steps D_temporal judges.
    rollout_steps: steps of the scored rollouts.
  """

  train_steps: int = 2000
  batch_size: int = 64
  learning_rate: float = 1e-3
  commit_tolerance: float = 1e-3
  adversarial_steps: int = 0
  adversarial_rollout: int = 16
  rollout_steps: int = 50


def train_and_score(spec: model_lib.ModelSpec, indices: np.ndarray, train: np.ndarray,
                    evaluation: np.ndarray, key: jax.Array, settings: TrainSettings,
                    tx: optax.GradientTransformation | None = None,
                    seeds: np.ndarray | None = None) -> dict[str, np.ndarray]:
  """Train one model per row of choice `indices` [P, num_choices] and score it on `evaluation`.

  Returns:
    Per-member arrays: "errors" [P, rollout_steps] per rollout step,
    "error_at_end" at the last step, "error_mean" over the rollout,
    "next_step" (first-step error on evaluation windows), "calls" and
    "example_rollouts" (the first EXAMPLE_ROLLOUTS rollouts). After
    adversarial steps there are also "d_real" and "d_fake" (D_temporal's mean
    probability of "real" on true and rolled-out windows) and
    "error_at_end_supervised" (before the adversarial steps).
  """
  structures = structure_lib.from_indices(indices)
  tx = tx if tx is not None else optim.default_rule(settings.learning_rate)
  k_train, k_adv, k_eval = jax.random.split(key, 3)
  params, _ = training.train_population(
      spec, structures, train, k_train, num_steps=settings.train_steps,
      batch_size=settings.batch_size, tx=tx, commit_tolerance=settings.commit_tolerance,
      seeds=seeds)
  out = {}
  if settings.adversarial_steps > 0 and spec.kind == "continuous":
    before = training.rollout_errors(spec, params, structures, evaluation, settings.rollout_steps)
    out["error_at_end_supervised"] = before["errors"][:, -1]
    params, d_params, _ = judge.adversarial_finetune(
        spec, params, structures, train, k_adv, num_steps=settings.adversarial_steps,
        rollout_steps=settings.adversarial_rollout)
    scores = judge.realism(spec, params, d_params, structures, jnp.asarray(evaluation), k_eval,
                           rollout_steps=settings.adversarial_rollout)
    out["d_real"] = np.asarray(scores["real"])
    out["d_fake"] = np.asarray(scores["fake"])
  rolled = training.rollout_errors(spec, params, structures, evaluation, settings.rollout_steps)
  windows, targets = training.sample_windows(jnp.asarray(evaluation), jax.random.key(0), 512,
                                             structure_lib.MAX_HORIZON)
  out.update({
      "errors": rolled["errors"], "error_at_end": rolled["errors"][:, -1],
      "error_mean": rolled["errors"].mean(axis=1), "calls": rolled["calls"],
      "example_rollouts": rolled["rollouts"][:, :EXAMPLE_ROLLOUTS],
      "next_step": np.asarray(training.next_step_loss(spec, params, structures, windows,
                                                      targets)),
  })
  out["finite"] = np.isfinite(out["error_at_end"]) & np.isfinite(out["next_step"])
  return out


def fitness_of(spec: model_lib.ModelSpec, scores: dict[str, np.ndarray]) -> np.ndarray:
  """Fitness for the archive (higher is better).

  Continuous models: -log of the validation rollout error at the last step,
  the quantity the structure should lower. Token models: -(validation
  next-token negative log-likelihood), because greedy token rollouts drift
  into repeats and score every model alike.
  """
  if spec.kind == "continuous":
    return -np.log(np.maximum(scores["error_at_end"], 1e-12))
  return -scores["next_step"]


def run_search(spec: model_lib.ModelSpec, train: np.ndarray, valid: np.ndarray, key: jax.Array,
               *, rounds: int, population: int, top_k: int, gan_steps: int,
               settings: TrainSettings, g_tx: optax.GradientTransformation | None = None,
               d_tx: optax.GradientTransformation | None = None,
               tx: optax.GradientTransformation | None = None, state: dict | None = None,
               on_round=None) -> tuple[dict, list[dict]]:
  """Run `rounds` rounds of G_temporal against the archive, resuming from `state` if given.

  `on_round(state, record)` runs after every round (for checkpoints and
  logs). Non-finite candidates get fitness -inf, are counted in the record,
  and never become "real".

  Returns:
    `(state, records)`; `choices.mode(SPACE, state["gan"].g_params)` is the learned structure.
  """
  g_tx = g_tx if g_tx is not None else optim.default_rule(0.1)
  d_tx = d_tx if d_tx is not None else optim.default_rule(1e-2)
  keys = jax.random.split(key, 2)
  if state is None:
    state = choices.init_search(SPACE, keys[0], rounds * population, g_tx, d_tx)
  step_fn = jax.jit(choices.make_search_step(SPACE, g_tx, d_tx))
  records = []
  while int(state["round"]) < rounds:
    round_index = int(state["round"])
    round_key = jax.random.fold_in(keys[1], round_index)
    scores_box = {}

    def evaluate(indices, round_key=round_key, scores_box=scores_box):
      scores = train_and_score(spec, indices, train, valid, jax.random.fold_in(round_key, 1),
                               settings, tx=tx)
      scores_box.update(scores)
      fitness = fitness_of(spec, scores)
      return np.where(scores["finite"], fitness, -np.inf)

    state, record = choices.search_round(SPACE, state, round_key, evaluate,
                                         population=population, top_k=top_k,
                                         gan_steps=gan_steps, step_fn=step_fn)
    record.update({"round": round_index, "error_at_end": scores_box["error_at_end"],
                   "next_step": scores_box["next_step"],
                   "quarantined": int(np.sum(~scores_box["finite"]))})
    best = int(np.argmax(record["fitness"]))
    logging.info("temporal search round %d/%d: best %s fitness %.4g, quarantined %d",
                 round_index + 1, rounds, structure_lib.describe(record["indices"][best]),
                 record["fitness"][best], record["quarantined"])
    records.append(record)
    if on_round is not None:
      on_round(state, record)
  return state, records
