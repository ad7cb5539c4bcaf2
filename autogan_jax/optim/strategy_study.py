"""The optimization-strategy study: learned gates against fixed strategies, judged by D_optim.

On the gated digits task (`autogan_jax.tasks.gated_digits`), whose loss is
differentiable in the weights only, the study

1. meta-trains G_optim's gates by antithetic ES on the validation loss after a
   short inner run, once with one bias row per group and, if configured, once
   with a bias shared by all groups. With a positive `judge_feedback_weight`,
   a D_optim trained on the archive of earlier candidates' curves scores each
   candidate's training curve, and the score enters the ES objective,
2. trains every strategy (the learned gates, the fixed strategies of
   `strategy.FIXED_STRATEGIES` and the per-group assignment that the task's
   construction suggests) for the same number of steps on several seeds,
   vmapped over seeds in one compiled run,
3. trains D_optim on an archive of runs with random gates (other seeds) and
   scores every strategy's training curves with it.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from autogan_jax.checkpoint import RunCheckpointer
from autogan_jax.core import keys as key_util
from autogan_jax.optim import curve_judge
from autogan_jax.optim import strategy
from autogan_jax.tasks import gated_digits

# The source each group of the gated digits task can use: the gradient reaches
# the weights only, the step function needs ES, and the sampled activation has
# log-probabilities for the score function.
EXPECTED_SOURCES = {"weights": "gradient", "thresholds": "es", "choice": "score_function"}


def _strategies(group_names, learned: Mapping[str, dict]) -> dict[str, dict]:
  named = dict(learned)
  for name in strategy.FIXED_STRATEGIES:
    named[name] = strategy.fixed_gate_params(name, group_names)
  named["hand_assigned"] = strategy.assigned_gate_params(EXPECTED_SOURCES, group_names)
  return named


def _batched_run(config: Mapping[str, Any], task, tx, num_steps: int) -> Callable:
  """Return `run(gate_params, key_data)` over a leading axis of both, compiled once.

  It trains and evaluates in one program and returns the trace with the test
  and validation metrics and a summary of the final task parameters. Keys
  enter as raw `uint32` key data so that the host can slice them with numpy.
  """
  run = strategy.make_inner_run(task, tx, num_steps=num_steps, es_sigma=config["es_sigma"],
                                es_pairs=config["es_pairs"])

  def run_and_evaluate(gate_params, key_data):
    params, trace = run(gate_params, jax.random.wrap_key_data(key_data))
    test, valid = task.evaluate(params, "test"), task.evaluate(params, "valid")
    return {**trace, "test_loss": test["loss"], "test_accuracy": test["accuracy"],
            "valid_loss": valid["loss"],
            "choice_probs": jax.nn.softmax(params["choice"]),
            "threshold_mean": jnp.mean(params["thresholds"])}

  # lax.map compiles the program of a single run, which keeps the compile
  # small, and runs the chunk's runs one after another.
  return jax.jit(lambda gate_params, key_data: jax.lax.map(
      lambda args: run_and_evaluate(*args), (gate_params, key_data)))


def _run_in_chunks(batched_run: Callable, gate_params: dict, key_data: np.ndarray,
                   chunk: int) -> dict[str, np.ndarray]:
  """Call `batched_run` on chunks of `chunk` runs, the batch size it was compiled for.

  Slicing happens in numpy on the host, so no slice compiles a program. The
  last chunk is padded with copies of the last run, and the padding is
  dropped from the result.
  """
  gate_params = jax.tree.map(np.asarray, gate_params)
  num_runs = key_data.shape[0]
  outputs = []
  for start in range(0, num_runs, chunk):
    index = np.minimum(np.arange(start, start + chunk), num_runs - 1)
    result = jax.device_get(batched_run(jax.tree.map(lambda leaf: leaf[index], gate_params),
                                        key_data[index]))
    keep = min(chunk, num_runs - start)
    outputs.append({name: value[:keep] for name, value in result.items()})
  return {name: np.concatenate([o[name] for o in outputs]) for name in outputs[0]}


def _key_data(key: jax.Array, num: int) -> np.ndarray:
  return np.asarray(jax.random.key_data(jax.random.split(key, num)))


@dataclasses.dataclass(frozen=True)
class Checkpointing:
  """Checkpoint settings of meta-training: folder, interval and the reading back of the log.

  Attributes:
    directory: parent folder. Each meta-training phase saves into a subfolder
      named after the phase.
    every: meta-steps between checkpoints. The last step is always saved.
    restore_records: `restore_records(phase, step)` drops the phase's logged
      records after `step` and returns the kept records of the phase in order.
  """
  directory: pathlib.Path
  every: int
  restore_records: Callable[[str, int], list[dict]]


def _judge_candidates(config: Mapping[str, Any]) -> Callable:
  """Return `score(key, curves, count, candidate_curves)`, compiled once.

  It trains D_optim on the first `count` curves of the archive buffer and
  returns its probability that each candidate curve is a top-of-archive curve.
  """

  @jax.jit
  def score(key, curves, count, candidate_curves):
    d_params, _ = curve_judge.train_curve_judge_on_prefix(
        key, curves, count, top_fraction=config["judge_top_fraction"],
        steps=config["judge_steps"], hidden=config["judge_hidden"])
    return curve_judge.score_curves(d_params, candidate_curves)

  return score


def _initial_archive(config: Mapping[str, Any], initial_curves: np.ndarray) -> dict:
  """Return the archive buffer of meta-training: the given curves, room for every candidate."""
  capacity = (initial_curves.shape[0]
              + config["meta_steps"] * 2 * config["meta_pairs"])
  curves = np.full((capacity, initial_curves.shape[1]), np.nan, np.float32)
  curves[:initial_curves.shape[0]] = initial_curves
  return {"curves": curves, "count": np.int32(initial_curves.shape[0])}


def meta_train(config: Mapping[str, Any], batched_run: Callable, chunk: int, group_names,
               key: jax.Array, log: Callable[[dict], None], shared_bias: bool = False,
               phase: str = "meta_train", feedback: Mapping[str, Any] | None = None,
               checkpointing: Checkpointing | None = None) -> tuple[dict, list[dict]]:
  """Meta-train the gate parameters by antithetic ES on the validation loss after an inner run.

  Both members of a pair train from the same task key (common random numbers).
  With `shared_bias` all groups keep one bias row (see `strategy.meta_candidates`).

  With `feedback` (keys "judge_key" and "initial_curves") and a positive
  `config["judge_feedback_weight"]` w, each meta-step first trains D_optim on
  the archive so far: the initial curves and the training curves of every
  earlier candidate. The ES objective of a candidate becomes
  `valid_loss + w * (1 - D_optim's score of its training curve)`, and the
  candidates' curves then join the archive.

  Meta-step i draws its keys as `fold_in(key, i)` and `fold_in(judge_key, i)`,
  so a run resumed from a checkpoint ends with the same gate parameters, bit
  for bit, as an uninterrupted one.
  """
  weight = float(config["judge_feedback_weight"])
  use_judge = weight > 0.0
  if use_judge and feedback is None:
    raise ValueError(f"Missing `feedback` (judge key and initial archive curves), which "
                     f"judge_feedback_weight={weight} needs. Pass it, or set the weight to 0.")
  meta_tx = optax.adam(config["meta_learning_rate"])
  gate_params = strategy.init_gate_params(group_names)
  state = {"gate_params": gate_params, "opt_state": meta_tx.init(gate_params),
           "step": np.int32(0)}
  if use_judge:
    state["archive"] = _initial_archive(config, np.asarray(feedback["initial_curves"]))
    score = _judge_candidates(config)
  num_pairs, sigma = config["meta_pairs"], config["meta_sigma"]

  @jax.jit
  def propose(gate_params, key):
    perturb_key, run_key = jax.random.split(key)
    candidates, eps = strategy.meta_candidates(gate_params, perturb_key, sigma, num_pairs,
                                               shared_bias)
    pair_keys = jax.random.key_data(jax.random.split(run_key, num_pairs))
    return candidates, eps, jnp.concatenate([pair_keys, pair_keys])

  @jax.jit
  def apply(gate_params, opt_state, eps, losses):
    grad, nonfinite = strategy.meta_gradient(eps, losses, sigma)
    updates, opt_state = meta_tx.update(grad, opt_state, gate_params)
    return optax.apply_updates(gate_params, updates), opt_state, nonfinite

  records, checkpointer = [], None
  if checkpointing is not None:
    checkpointer = RunCheckpointer(checkpointing.directory / phase)
    latest = checkpointer.latest_step()
    if latest is not None:
      state = checkpointer.restore(state, latest)
      logging.info("%s: resumed from the checkpoint of meta-step %d.", phase, latest)
    records = checkpointing.restore_records(phase, int(state["step"]))

  pending = []
  for i in range(int(state["step"]), config["meta_steps"]):
    candidates, eps, key_data = propose(state["gate_params"], jax.random.fold_in(key, i))
    runs = _run_in_chunks(batched_run, candidates, np.asarray(key_data), chunk)
    losses = runs["valid_loss"]
    record = {"phase": phase, "step": i + 1, "meta_loss": float(np.nanmean(losses))}
    objectives = losses
    if use_judge:
      archive = state["archive"]
      d_scores = np.asarray(score(jax.random.fold_in(feedback["judge_key"], i),
                                  archive["curves"], archive["count"], runs["loss"]))
      objectives = losses + weight * (1.0 - d_scores)
      count = int(archive["count"])
      curves = np.array(archive["curves"])
      curves[count:count + runs["loss"].shape[0]] = runs["loss"]
      state["archive"] = {"curves": curves, "count": np.int32(count + runs["loss"].shape[0])}
      record["d_optim_mean"] = float(np.nanmean(d_scores))
      record["meta_objective"] = float(np.nanmean(objectives))
    gate_params, opt_state, nonfinite = apply(state["gate_params"], state["opt_state"], eps,
                                              objectives)
    state.update(gate_params=gate_params, opt_state=opt_state, step=np.int32(i + 1))
    record["nonfinite_candidates"] = int(nonfinite)
    record["bias"] = np.asarray(gate_params["bias"]).tolist()
    records.append(record)
    pending.append(record)
    if checkpointer is None:
      log(record)
      pending = []
    elif (i + 1) % checkpointing.every == 0 or i + 1 == config["meta_steps"]:
      # Records reach the log right before the checkpoint of their last step. A run
      # killed in between finds them on resume, and `restore_records` drops them.
      for pending_record in pending:
        log(pending_record)
      pending = []
      checkpointer.save(i + 1, state)
  if checkpointer is not None:
    checkpointer.close()
  return state["gate_params"], records


def evaluate_strategies(batched_run: Callable, named: Mapping[str, dict],
                        seeds: list[int]) -> dict[str, dict[str, np.ndarray]]:
  """Train each strategy on every seed (vmapped) and return its traces and test metrics.

  Seed s trains from task key `jax.random.key(1000 + s)`.
  """
  key_data = np.stack([np.asarray(jax.random.key_data(jax.random.key(1000 + s)))
                       for s in seeds])
  results = {}
  for name, gate_params in named.items():
    stacked = jax.tree.map(lambda leaf: np.broadcast_to(np.asarray(leaf),
                                                        (len(seeds),) + leaf.shape),
                           gate_params)
    result = _run_in_chunks(batched_run, stacked, key_data, len(seeds))
    result["curves"] = result.pop("loss")
    results[name] = result
  return results


def archive_curves(config: Mapping[str, Any], group_names, batched_run: Callable, chunk: int,
                   key: jax.Array) -> np.ndarray:
  """Return training curves [runs, steps] of runs with random gate parameters.

  Each run draws its gate parameters with standard deviation
  `archive_gate_scale` and its own task key, different from the seeds of
  `evaluate_strategies`.
  """
  num_runs = config["archive_runs"]
  gate_key, run_key = jax.random.split(key)
  scale = config["archive_gate_scale"]
  draw = jax.jit(jax.vmap(lambda k: strategy.init_gate_params(group_names, k, scale)))
  gate_params = draw(jax.random.split(gate_key, num_runs))
  return _run_in_chunks(batched_run, gate_params, _key_data(run_key, num_runs), chunk)["loss"]


def _gate_summary(result: Mapping[str, np.ndarray], group_names) -> dict[str, dict]:
  """Average a learned strategy's gates and shares over seeds and steps, per group."""
  mean_gates = result["gates"].mean(axis=(0, 1))
  mean_shares = result["shares"].mean(axis=(0, 1))
  dominant = {group: strategy.SOURCES[int(np.argmax(mean_shares[g]))]
              for g, group in enumerate(group_names)}
  return {
      "gates": {group: dict(zip(strategy.SOURCES, mean_gates[g].tolist()))
                for g, group in enumerate(group_names)},
      "shares": {group: dict(zip(strategy.SOURCES, mean_shares[g].tolist()))
                 for g, group in enumerate(group_names)},
      "largest_share": dominant,
      "matches_expected": {g: dominant[g] == EXPECTED_SOURCES[g] for g in group_names},
  }


def run_study(config: Mapping[str, Any], key: jax.Array,
              log: Callable[[dict], None] = lambda record: None,
              checkpointing: Checkpointing | None = None) -> tuple[dict, dict]:
  """Run the whole study; return a JSON-ready report and the arrays behind the plots.

  Args:
    config: flat settings, see `experiments/configs/optim_strategy.py`.
    key: PRNG key of the meta-training and the archive.
    log: called with every metrics record.
    checkpointing: when given, meta-training saves its state there and resumes
      from the newest checkpoint. The steps after meta-training are recomputed.
  """
  keys = key_util.split_named(key, ("meta", "archive", "judge"))
  task = gated_digits.gated_digits_task(
      hidden=config["hidden"], batch_size=config["batch_size"],
      threshold_low=config["threshold_low"], threshold_high=config["threshold_high"])
  tx = optax.adam(config["learning_rate"])

  seeds = list(range(config["num_seeds"]))
  chunk = len(seeds)
  batched_run = _batched_run(config, task, tx, config["inner_steps"])
  # With equal horizons, meta-training reuses the compiled evaluation run.
  meta_run = (batched_run if config["meta_inner_steps"] == config["inner_steps"]
              else _batched_run(config, task, tx, config["meta_inner_steps"]))

  feedback = None
  if config["judge_feedback_weight"] > 0:
    # Derived from the run key by fold_in, so the keys of a run without feedback stay as
    # they were.
    feedback_keys = key_util.split_named(jax.random.fold_in(key, 1), ("archive", "judge"))
    feedback = {"judge_key": feedback_keys["judge"],
                "initial_curves": archive_curves(config, task.groups, meta_run, chunk,
                                                 feedback_keys["archive"])}
  learned, meta_records = {}, {}
  learned["learned"], meta_records["learned"] = meta_train(
      config, meta_run, chunk, task.groups, keys["meta"], log, feedback=feedback,
      checkpointing=checkpointing)
  if config["shared_bias_variant"]:
    learned["learned_shared_bias"], meta_records["learned_shared_bias"] = meta_train(
        config, meta_run, chunk, task.groups, keys["meta"], log, shared_bias=True,
        phase="meta_train_shared_bias", feedback=feedback, checkpointing=checkpointing)
  named = _strategies(task.groups, learned)
  results = evaluate_strategies(batched_run, named, seeds)
  archive = archive_curves(config, task.groups, batched_run, chunk, keys["archive"])

  @jax.jit
  def judge(key, archive, evaluated):
    d_params, metrics = curve_judge.train_curve_judge(
        key, archive, top_fraction=config["judge_top_fraction"], steps=config["judge_steps"],
        hidden=config["judge_hidden"])
    return (curve_judge.score_curves(d_params, archive), curve_judge.curve_quality(archive),
            curve_judge.score_curves(d_params, evaluated), metrics)

  # One call scores the curves of all strategies, shape [strategies * seeds, steps].
  evaluated = np.concatenate([r["curves"] for r in results.values()])
  archive_scores, archive_quality, d_all, judge_metrics = jax.device_get(
      judge(keys["judge"], archive, evaluated))
  d_by_strategy = np.split(d_all, len(results))

  rows = []
  for (name, result), d_scores in zip(results.items(), d_by_strategy):
    result["d_optim"] = d_scores
    row = {"strategy": name,
           "test_loss": float(np.mean(result["test_loss"])),
           "test_loss_per_seed": result["test_loss"].tolist(),
           "test_accuracy": float(np.mean(result["test_accuracy"])),
           "test_accuracy_per_seed": result["test_accuracy"].tolist(),
           "valid_loss": float(np.mean(result["valid_loss"])),
           "valid_loss_per_seed": result["valid_loss"].tolist(),
           "final_train_loss": float(np.mean(result["curves"][:, -max(
               config["inner_steps"] // 10, 1):])),
           "d_optim": float(np.mean(d_scores)),
           "d_optim_per_seed": d_scores.tolist(),
           "quarantined_steps": int(np.sum(result["quarantined"])),
           "es_pairs_dropped": int(np.sum(result["es_dropped"])),
           "choice_probs": result["choice_probs"].mean(axis=0).tolist(),
           "threshold_mean": float(np.mean(result["threshold_mean"]))}
    rows.append(row)
    log({"phase": "evaluate", "step": 0, **row})

  gate_summaries = {name: _gate_summary(results[name], task.groups) for name in learned}
  by_loss = sorted(rows, key=lambda r: r["test_loss"])
  # Spearman rank correlation between D_optim's score and the archive ranking.
  finite = np.isfinite(archive_quality)
  rank_q = np.argsort(np.argsort(archive_quality[finite]))
  rank_d = np.argsort(np.argsort(archive_scores[finite]))
  spearman = float(np.corrcoef(rank_q, rank_d)[0, 1]) if finite.sum() > 2 else None

  report = {
      "config": dict(config),
      "seeds": seeds,
      "groups": list(task.groups),
      "sources": list(strategy.SOURCES),
      "rows": rows,
      "learned": gate_summaries,
      "expected_sources": EXPECTED_SOURCES,
      "learned_gate_params": {name: {k: np.asarray(v).tolist() for k, v in params.items()}
                              for name, params in learned.items()},
      "best_by_test_loss": by_loss[0]["strategy"],
      "rank_by_test_loss": {r["strategy"]: i + 1 for i, r in enumerate(by_loss)},
      "meta_train": meta_records,
      "judge": {"archive_runs": int(archive.shape[0]),
                "num_real": int(judge_metrics["num_real"]),
                "final_d_loss": float(judge_metrics["d_loss"][-1]),
                "spearman_score_vs_quality": spearman,
                "archive_nonfinite_runs": int(np.sum(~finite))},
  }
  arrays = {"results": results, "archive": archive, "archive_scores": archive_scores}
  return report, arrays
