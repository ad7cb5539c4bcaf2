"""Temporal-structure studies on the driven pendulum and on the character model.

Each study runs the G_temporal search on training and validation data. It then
trains G's most probable structure and the fixed next-step autoregressive
model (identical parameter shapes) with the same seeds, and scores both on
test data that the search never used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from autogan_jax import optim
from autogan_jax.checkpoint import RunCheckpointer
from autogan_jax.gan import choices
from autogan_jax.tasks import datasets
from autogan_jax.tasks import pendulum
from autogan_jax.temporal import model as model_lib
from autogan_jax.temporal import search
from autogan_jax.temporal import structure as structure_lib

EXAMPLE_ROLLOUTS = search.EXAMPLE_ROLLOUTS


def _search_and_compare(spec: model_lib.ModelSpec, train: np.ndarray, valid: np.ndarray,
                        test: np.ndarray, settings: Mapping[str, Any], key: jax.Array,
                        train_settings: search.TrainSettings, checkpointer, log,
                        phase: str, baselines: dict[str, np.ndarray]) -> dict[str, Any]:
  k_search, k_final = jax.random.split(key)
  state = None
  if checkpointer is not None and checkpointer.latest_step() is not None:
    like = choices.init_search(
        search.SPACE, k_search, settings["search_rounds"] * settings["search_population"],
        optim.default_rule(0.1), optim.default_rule(1e-2))
    state = checkpointer.restore(like)

  def on_round(new_state, record):
    if checkpointer is not None:
      checkpointer.save(int(new_state["round"]), new_state)
    if log is not None:
      log({"phase": phase, "step": record["round"] + 1,
           "candidates": [structure_lib.describe(i) for i in record["indices"]],
           "fitness": record["fitness"], "error_at_end": record["error_at_end"],
           "next_step": record["next_step"], "quarantined": record["quarantined"],
           "d_loss": record["d_loss"], "g_loss": record["g_loss"]})

  state, _ = search.run_search(
      spec, train, valid, k_search, rounds=settings["search_rounds"],
      population=settings["search_population"], top_k=settings["search_top_k"],
      gan_steps=settings["search_gan_steps"], settings=train_settings, state=state,
      on_round=on_round)
  learned = choices.mode(search.SPACE, state["gan"].g_params)
  archive_fitness = np.asarray(state["archive_fitness"])
  best_archived = np.asarray(state["archive_indices"])[int(np.argmax(archive_fitness))]

  # Final comparison: every structure with the same seeds, scored on test data.
  named = {"learned": learned, **baselines}
  seeds = np.arange(settings["num_seeds"])
  indices = np.concatenate([np.repeat(v[None], len(seeds), axis=0) for v in named.values()])
  scores = search.train_and_score(spec, indices, train, test, k_final, train_settings,
                                  seeds=np.tile(seeds, len(named)))
  results = {}
  for position, (name, choice) in enumerate(named.items()):
    rows = slice(position * len(seeds), (position + 1) * len(seeds))
    results[name] = {
        "structure": structure_lib.describe(choice),
        "error_at_end_per_seed": scores["error_at_end"][rows].tolist(),
        "error_at_end": float(np.mean(scores["error_at_end"][rows])),
        "error_mean": float(np.mean(scores["error_mean"][rows])),
        "next_step": float(np.mean(scores["next_step"][rows])),
        "calls": float(np.mean(scores["calls"][rows])),
        "errors_by_step": scores["errors"][rows].mean(axis=0).tolist(),
    }
    results[name]["example_rollouts"] = scores["example_rollouts"][position * len(seeds)]
    for extra in ("d_real", "d_fake", "error_at_end_supervised"):
      if extra in scores:
        results[name][extra] = float(np.mean(scores[extra][rows]))
  probabilities = choices.probabilities(search.SPACE, state["gan"].g_params)
  return {
      "results": results,
      "best_archived_on_valid": structure_lib.describe(best_archived),
      "g_probabilities": {name: dict(zip(map(str, options), probabilities[name].tolist()))
                          for name, options in structure_lib.CHOICES},
      "seeds": seeds.tolist(),
      "rollout_steps": train_settings.rollout_steps,
      "num_test_sequences": int(test.shape[0]),
      "example_truth": test[:EXAMPLE_ROLLOUTS, structure_lib.MAX_CONTEXT:
                            structure_lib.MAX_CONTEXT + train_settings.rollout_steps],
      "quarantined_final": int(np.sum(~scores["finite"])),
  }


def run_pendulum_study(settings: Mapping[str, Any], key: jax.Array, *,
                       checkpointer: RunCheckpointer | None = None,
                       log: Callable[[dict], None] | None = None) -> dict[str, Any]:
  """Search temporal structures on the pendulum and compare with the next-step baseline.

  The figure of merit is the mean squared error of (sin theta, cos theta,
  theta') at rollout step `rollout_steps` from a history of MAX_CONTEXT true
  states, averaged over test trajectories (disjoint initial conditions).
  """
  rollout = settings["rollout_steps"]
  if settings["length"] < structure_lib.MAX_CONTEXT + rollout:
    raise ValueError(f"pendulum.length={settings['length']} must be at least "
                     f"{structure_lib.MAX_CONTEXT + rollout} (history plus rollout).")
  physics = pendulum.PendulumConfig(observe_phase=settings["observe_phase"])
  data = pendulum.load_pendulum(settings["num_train"], settings["num_eval"], settings["length"],
                                config=physics)
  spec = model_lib.ModelSpec(kind="continuous", dim=physics.observation_dim,
                             hidden=settings["hidden"])
  train_settings = search.TrainSettings(
      train_steps=settings["train_steps"], batch_size=settings["batch_size"],
      learning_rate=settings["learning_rate"], adversarial_steps=settings["adversarial_steps"],
      rollout_steps=rollout)
  report = _search_and_compare(spec, data.train, data.valid, data.test, settings, key,
                               train_settings, checkpointer, log, "pendulum_search",
                               {"next_step_baseline": structure_lib.next_step_baseline()})
  learned = report["results"]["learned"]["error_at_end"]
  baseline = report["results"]["next_step_baseline"]["error_at_end"]
  report["goal_met"] = learned < baseline
  report["parameter_count"] = int(sum(
      x.size for x in jax.tree.leaves(model_lib.init(jax.random.key(0), spec))))
  report["physics"] = {name: getattr(physics, name) for name in (
      "damping", "natural_frequency", "drive_amplitude", "drive_frequency", "dt", "substeps",
      "observe_phase")}
  return report


def text_windows(stream: np.ndarray, count: int, length: int) -> np.ndarray:
  """Cut `count` evenly spaced windows of `length` characters from one stream."""
  if len(stream) < length + count:
    raise ValueError(f"A stream of {len(stream)} characters is too short for {count} windows "
                     f"of {length}.")
  starts = np.linspace(0, len(stream) - length, count).astype(int)
  return np.stack([stream[s:s + length] for s in starts])


def run_char_study(settings: Mapping[str, Any], key: jax.Array, *,
                   checkpointer: RunCheckpointer | None = None,
                   log: Callable[[dict], None] | None = None) -> dict[str, Any]:
  """Search temporal structures of the character model of the standard library's source.

  The search scores structures by validation next-character loss. The report
  gives the test next-character loss (nats) and the greedy rollout error rate
  of three models: the learned structure, the next-step baseline (one
  character of context) and a fixed next-character model over 16 characters.
  """
  text = datasets.load_stdlib_text(settings["max_chars"], settings["max_eval_chars"])
  length = structure_lib.MAX_CONTEXT + settings["rollout_steps"]
  valid = text_windows(text.valid, settings["num_eval"], length)
  test = text_windows(text.test, settings["num_eval"], length)
  spec = model_lib.ModelSpec(kind="discrete", dim=datasets.CHAR_VOCAB_SIZE,
                             hidden=settings["hidden"], embed=settings["embed"])
  # Token-level commits: commit a step when its negative log-likelihood is below 0.5 nats.
  train_settings = search.TrainSettings(
      train_steps=settings["train_steps"], batch_size=settings["batch_size"],
      learning_rate=settings["learning_rate"], commit_tolerance=0.5,
      rollout_steps=settings["rollout_steps"])
  window_16 = structure_lib.indices_of(context=16, attention="uniform", horizon="next",
                                       representation="raw", segment=1)
  report = _search_and_compare(
      spec, text.train[None, :], valid, test, settings, key, train_settings, checkpointer, log,
      "char_search", {"next_step_baseline": structure_lib.next_step_baseline(),
                      "fixed_context16": window_16})
  learned = report["results"]["learned"]["next_step"]
  report["goal_met"] = learned < report["results"]["next_step_baseline"]["next_step"]
  return report
