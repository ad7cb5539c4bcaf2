"""The alignment study: every fixed mechanism against G_alignment's learned choice.

Every config is trained with each seed on training strings and scored by
character error rate on validation and test strings (held-out images). Several
searches with independent seeds read only validation error rates, and the
learned choice is the config that most of them end on. The report compares
test error rates.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import numpy as np
from absl import logging

from autogan_jax import optim
from autogan_jax.alignment import mechanisms
from autogan_jax.alignment import search
from autogan_jax.alignment import training
from autogan_jax.gan import choices
from autogan_jax.tasks import digit_strings


def example_alignment(params, config: mechanisms.AlignmentConfig,
                      strings: digit_strings.DigitStrings, index: int = 0) -> dict[str, Any]:
  """Return one string's frames, its true starts, the prediction and the alignment weights."""
  # A full evaluation batch reuses the compiled prediction of `training.transcribe`.
  batch = strings.as_batch(np.full(training.EVAL_BATCH, index))
  digits, lengths, weights = training.predict_batch(params, config, batch)
  return {"frames": strings.frames[index], "starts": strings.starts[index],
          "labels": strings.labels[index, :strings.label_lengths[index]],
          "predicted": np.asarray(digits[0, :int(lengths[0])]),
          "weights": np.asarray(weights[0]), "frame_length": int(strings.frame_lengths[index])}


def run_study(settings: Mapping[str, Any], key: jax.Array, *,
              done: Iterable[Mapping[str, Any]] = (),
              log: Callable[[dict], None] | None = None,
              on_example: Callable[[str, dict], None] | None = None) -> dict[str, Any]:
  """Train and score every config, run the G/D search, and return the report.

  Args:
    settings: the `alignment` section of the experiment config.
    key: the study's PRNG key.
    done: records of (config, seed) runs finished before a restart; they are
      reused, not retrained.
    log: called with each new run's record.
    on_example: called with a config name and `example_alignment` on test
      string 0 after each new run with seed 0, for plots.
  """
  strings = digit_strings.load_digit_strings(settings["num_train_strings"],
                                             settings["num_eval_strings"])
  base = mechanisms.AlignmentConfig(hidden=settings["hidden"])
  tx = optim.default_rule(settings["learning_rate"])
  finished = {(r["config"], r["seed"]): r for r in done}
  runs = []
  for config in search.all_configs(base):
    for seed in range(settings["num_seeds"]):
      name = config.describe()
      if (name, seed) in finished:
        runs.append(finished[(name, seed)])
        continue
      params, summary = training.train(config, strings.train, jax.random.fold_in(key, seed),
                                       num_steps=settings["train_steps"],
                                       batch_size=settings["batch_size"], tx=tx)
      record = {"phase": "alignment", "step": len(runs), "config": name, "seed": seed,
                "finite": summary["finite"], "feasible": summary["feasible"],
                "final_loss": summary["losses"][-1]}
      if summary["finite"]:
        record["valid_cer"] = training.character_error_rate(params, config, strings.valid)
        record["test_cer"] = training.character_error_rate(params, config, strings.test)
        if seed == 0 and on_example is not None:
          on_example(name, example_alignment(params, config, strings.test))
      else:
        # A non-finite run is quarantined: it scores as all wrong and is counted.
        record["valid_cer"] = record["test_cer"] = 1.0
      logging.info("alignment %s seed %d: valid CER %.4f, test CER %.4f", name, seed,
                   record["valid_cer"], record["test_cer"])
      if log is not None:
        log(record)
      runs.append(record)

  table = {}
  for config in search.all_configs(base):
    mine = [r for r in runs if r["config"] == config.describe()]
    table[config] = {
        "config": config.describe(), "mechanism": config.mechanism,
        "valid_cer": float(np.mean([r["valid_cer"] for r in mine])),
        "test_cer": float(np.mean([r["test_cer"] for r in mine])),
        "test_cer_per_seed": [r["test_cer"] for r in mine],
        "feasible": float(np.mean([r["feasible"] for r in mine])),
        "quarantined": int(sum(not r["finite"] for r in mine)),
    }

  # Independent searches; the learned choice is the config most of them end on.
  modes, states, all_records = [], [], []
  for search_seed in range(settings["search_seeds"]):
    state, records = search.run_search(
        {c: row["valid_cer"] for c, row in table.items()},
        jax.random.fold_in(key, 10_000 + search_seed), base=base,
        rounds=settings["search_rounds"], population=settings["search_population"],
        top_k=settings["search_top_k"], gan_steps=settings["search_gan_steps"])
    modes.append(search.config_of(choices.mode(search.SPACE, state["gan"].g_params), base))
    states.append(state)
    all_records.append(records)
  learned = collections.Counter(modes).most_common(1)[0][0]
  state, records = states[modes.index(learned)], all_records[modes.index(learned)]
  best_fixed = min(table.values(), key=lambda row: row["test_cer"])
  best_valid = min(table.values(), key=lambda row: row["valid_cer"])
  probabilities = choices.probabilities(search.SPACE, state["gan"].g_params)
  return {
      "rows": list(table.values()),
      "learned": table[learned],
      "best_fixed_by_test": best_fixed,
      "best_fixed_by_valid": best_valid,
      "goal_met": table[learned]["test_cer"] <= best_fixed["test_cer"],
      "learned_by_search_seed": [config.describe() for config in modes],
      "g_probabilities": dict(zip([c.describe() for c in search.all_configs(base)],
                                  probabilities["config"].tolist())),
      "search": [{"round": r["round"], "mean_valid_cer": -float(np.mean(r["fitness"])),
                  "d_loss": r["d_loss"], "g_loss": r["g_loss"]} for r in records],
      "seeds": list(range(settings["num_seeds"])),
      "num_test_strings": len(strings.test),
      "num_valid_strings": len(strings.valid),
  }

