"""Aggregation over seeds of the output-level experiment's headline figures.

Each seed is one full run of every part. The summary gives, per figure, the
mean, the sample standard deviation (zero for one run), the range and the
number of runs, and counts the seeds on which each goal holds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from experiments import common

ENSEMBLE_METHODS = ("ensemble", "g_ensemble", "g_ensemble_distilled_only", "mimo",
                    "single_member", "member_mean")


def aggregate(values: Sequence[float | None]) -> dict:
  """Return mean, sample standard deviation, min, max and run count of the finite values."""
  finite = [float(v) for v in values if v is not None and np.isfinite(v)]
  if not finite:
    return {"mean": None, "std": None, "min": None, "max": None, "runs": 0}
  array = np.asarray(finite)
  std = float(np.std(array, ddof=1)) if len(array) > 1 else 0.0
  return {"mean": float(np.mean(array)), "std": std, "min": float(np.min(array)),
          "max": float(np.max(array)), "runs": len(finite)}


def ensemble_goals(results: dict) -> dict[str, bool]:
  """Return the ensemble goals for one run's (or the mean's) NLL per method."""
  g_nll = results["g_ensemble"]["nll"]
  return {"within_5_percent": g_nll <= 1.05 * results["ensemble"]["nll"],
          "better_than_single": g_nll < results["single_member"]["nll"],
          "better_than_mimo": g_nll < results["mimo"]["nll"]}


def summarize(per_seed: dict[int, dict]) -> dict:
  """Aggregate the per-seed reports of `output_level.run_seed` into one summary."""
  reports = list(per_seed.values())
  summary: dict = {"seeds": list(per_seed), "runs": len(reports)}

  if all("sampling" in r for r in reports):
    summary["sampling"] = {}
    for language in reports[0]["sampling"]:
      results = [r["sampling"][language] for r in reports]
      summary["sampling"][language] = {
          "g_sampler_quality": aggregate([x["learned"]["quality"] for x in results]),
          "g_sampler_entropy": aggregate([x["learned"]["entropy"] for x in results]),
          "front_quality_at_entropy": aggregate(
              [x["comparison"]["front_quality_at_entropy"] for x in results]),
          "margin": aggregate([x["comparison"]["margin"] for x in results]),
          "margin_in_stderr": aggregate(
              [x["comparison"]["margin"] / max(x["learned"]["quality_stderr"], 1e-12)
               for x in results]),
          "dominated_by": aggregate([x["comparison"]["dominated_by"] for x in results]),
          "seeds_on_or_beyond_front": sum(bool(x["comparison"]["on_or_beyond_front"])
                                          for x in results),
          "per_seed": [{"seed": seed, "margin": x["comparison"]["margin"],
                        "dominated_by": x["comparison"]["dominated_by"],
                        "chosen_step": x.get("selection", {}).get("chosen_step")}
                       for seed, x in zip(per_seed, results)],
      }

  if all("calibration" in r for r in reports):
    summary["calibration"] = {}
    for data in reports[0]["calibration"]:
      results = [r["calibration"][data]["metrics"] for r in reports]
      methods = {method: {field: aggregate([x[method][field] for x in results])
                          for field in ("ece", "accuracy", "nll")}
                 for method in results[0]}
      summary["calibration"][data] = {
          "methods": methods,
          "seeds_g_cal_ece_at_most_temperature": sum(
              x["g_cal"]["ece"] <= x["temperature"]["ece"] for x in results),
          "seeds_accuracy_unchanged": sum(
              x["g_cal"]["accuracy"] == x["uncalibrated"]["accuracy"] for x in results),
      }

  if all("ensemble" in r for r in reports):
    summary["ensemble"] = {}
    for data in reports[0]["ensemble"]:
      results = [r["ensemble"][data] for r in reports]
      methods = {method: {field: aggregate([x["results"][method][field] for x in results])
                          for field in ("nll", "accuracy", "ece")}
                 for method in ENSEMBLE_METHODS}
      per_seed_goals = [ensemble_goals(x["results"]) for x in results]
      mean_results = {m: {"nll": methods[m]["nll"]["mean"]} for m in methods}
      summary["ensemble"][data] = {
          "methods": methods,
          "cost_ratio": {field: aggregate([x["cost_ratios"]["g_ensemble"][field]
                                           for x in results])
                         for field in ("multiply_adds", "xla_flops", "seconds")},
          "disagreement_correlation": aggregate([x["disagreement_correlation"]
                                                 for x in results]),
          "goals_on_mean": ensemble_goals(mean_results),
          "seeds_meeting": {goal: sum(g[goal] for g in per_seed_goals)
                            for goal in per_seed_goals[0]},
          "test_set": results[0]["test_set"],
          "per_seed": [{"seed": seed,
                        **{m: x["results"][m]["nll"]
                           for m in ("ensemble", "g_ensemble", "single_member", "mimo")},
                        "best_distill_step": x.get("distill_validation", {}).get("best_step")}
                       for seed, x in zip(per_seed, results)],
      }
  return summary


def format_aggregate(value: dict) -> str:
  """Format an aggregate as `mean ± std` with four significant digits."""
  if value["mean"] is None:
    return "—"
  return f"{value['mean']:.4g} ± {value['std']:.2g}"


def summary_markdown(summary: dict) -> str:
  """Render the summary's tables; each cell is the mean ± sample standard deviation."""
  runs = summary["runs"]
  seeds = ", ".join(str(s) for s in summary["seeds"])
  parts = [f"## Summary over seeds {seeds}\n\n"
           f"Each figure is the mean ± sample standard deviation over {runs} runs, one per "
           "seed; a seed changes every key, the members' data order and the hidden Markov "
           "language itself. Test split unless stated.\n"]

  if "sampling" in summary:
    rows = [[language, format_aggregate(s["g_sampler_entropy"]),
             format_aggregate(s["g_sampler_quality"]),
             format_aggregate(s["front_quality_at_entropy"]), format_aggregate(s["margin"]),
             format_aggregate(s["margin_in_stderr"]), format_aggregate(s["dominated_by"]),
             f"{s['seeds_on_or_beyond_front']} of {runs}"]
            for language, s in summary["sampling"].items()]
    parts.append("### Learned sampling\n\nMargin: G_sampler's quality minus the front of the "
                 "fixed rules at G_sampler's entropy, in nats per token (judges as in the "
                 "detail section).\n\n" + common.markdown_table(
                     ["language", "G_sampler entropy", "G_sampler quality",
                      "front quality there", "margin", "margin / stderr",
                      "fixed points dominating", "on or beyond front"], rows))
    rows = [[language, r["seed"], r["margin"], r["dominated_by"], r["chosen_step"]]
            for language, s in summary["sampling"].items() for r in s["per_seed"]]
    parts.append("\nPer seed (chosen step: the G_sampler snapshot picked on validation draws; "
                 "None where the final parameters are used):\n\n" + common.markdown_table(
                     ["language", "seed", "margin", "fixed points dominating", "chosen step"],
                     rows))

  if "calibration" in summary:
    parts.append("### Calibration\n")
    for data, s in summary["calibration"].items():
      rows = [[method, format_aggregate(m["ece"]), format_aggregate(m["accuracy"]),
               format_aggregate(m["nll"])] for method, m in s["methods"].items()]
      ece_g = s["methods"]["g_cal"]["ece"]["mean"]
      ece_t = s["methods"]["temperature"]["ece"]["mean"]
      parts.append(
          f"**{data}: mean G_cal ECE {ece_g:.4f} vs temperature scaling {ece_t:.4f}; goal met "
          f"on the mean: {ece_g <= ece_t}; on {s['seeds_g_cal_ece_at_most_temperature']} of "
          f"{runs} seeds. Accuracy unchanged on {s['seeds_accuracy_unchanged']} of {runs} "
          "seeds.**\n\n" + common.markdown_table(
              ["method", "ECE (15 bins)", "accuracy", "NLL"], rows))

  if "ensemble" in summary:
    parts.append("### Ensemble in one pass\n")
    for data, s in summary["ensemble"].items():
      rows = [[method, format_aggregate(m["nll"]), format_aggregate(m["accuracy"]),
               format_aggregate(m["ece"])] for method, m in s["methods"].items()]
      goals = s["goals_on_mean"]
      meeting = s["seeds_meeting"]
      parts.append(
          f"**{data} ({s['test_set']}): on the mean NLL, G_ensemble within 5% of the ensemble: "
          f"{goals['within_5_percent']} ({meeting['within_5_percent']} of {runs} seeds); "
          f"better than a single member: {goals['better_than_single']} "
          f"({meeting['better_than_single']} of {runs}); better than MIMO: "
          f"{goals['better_than_mimo']} ({meeting['better_than_mimo']} of {runs}). Cost "
          "ratio G_ensemble / ensemble: multiply-adds "
          f"{format_aggregate(s['cost_ratio']['multiply_adds'])}, XLA FLOPs "
          f"{format_aggregate(s['cost_ratio']['xla_flops'])}, wall time "
          f"{format_aggregate(s['cost_ratio']['seconds'])}.**\n\n" + common.markdown_table(
              ["method", "NLL", "accuracy", "ECE (15 bins)"], rows))
      rows = [[r["seed"], r["ensemble"], r["g_ensemble"], r["single_member"], r["mimo"],
               r["best_distill_step"]] for r in s["per_seed"]]
      parts.append(f"\n{data}, test NLL per seed (distillation step kept: lowest "
                   "validation NLL):\n\n" + common.markdown_table(
                       ["seed", "ensemble", "G_ensemble", "single member", "MIMO",
                        "distillation step kept"], rows))
  return "\n".join(parts) + "\n"
