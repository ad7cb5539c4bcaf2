"""Report and plots of the four-phase bootstrap run."""

from __future__ import annotations

import pathlib
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from autogan_jax.meta import evaluation  # noqa: E402
from experiments import bootstrap_components  # noqa: E402
from experiments import common  # noqa: E402

PHASE_RULES = (("phase1_imitation", "Phase 1: imitation of Adam"),
               ("phase2_population", "Phase 2: population exploration"),
               ("g_star", "Phase 4: G* (the best rule of phase 3, self-referential)"))


def _moving_mean(values, window):
  values = np.asarray(values, float)
  # At most half the curve, so a short curve keeps enough points to draw a line.
  window = max(1, min(window, len(values) // 2))
  filled = np.nan_to_num(values, nan=np.nanmean(values) if np.isfinite(values).any() else 0.0)
  return np.convolve(filled, np.ones(window) / window, mode="valid")


def _plot_meta_training(workdir, imitation, exploration, self_reference) -> None:
  fig, axes = plt.subplots(1, 3, figsize=(16, 4))
  if imitation:
    axes[0].semilogy([r["step"] for r in imitation],
                     [r["imitation_loss"] or np.nan for r in imitation])
  axes[0].set(title="Phase 1: imitation of Adam", xlabel="imitation step",
              ylabel="relative squared update error")
  if exploration:
    size = len(exploration[0]["members"])
    for i in range(size):
      curve = [x for r in exploration for x in r["members"][i]["meta_loss_curve"]]
      axes[1].plot(_moving_mean(curve, 10), label=f"slot {i}", alpha=0.8)
    length = len(exploration[0]["members"][0]["meta_loss_curve"])
    for g in range(1, len(exploration)):
      axes[1].axvline(g * length, color="grey", lw=0.5)
    axes[1].legend(fontsize=7)
  axes[1].set(title="Phase 2: members' meta-loss (moving mean of up to 10)",
              xlabel="meta-step (grey: exploit and explore)", ylabel="meta-loss")
  if self_reference:
    rows = np.concatenate([np.asarray(r["meta_loss"], float) for r in self_reference], axis=1)
    for i, row in enumerate(rows):
      axes[2].plot(_moving_mean(row, 10), label=f"rule {i}")
    axes[2].legend(fontsize=7)
  axes[2].set(title="Phase 3: meta-loss under self-training", xlabel="self-referential step",
              ylabel="meta-loss (moving mean of up to 10)")
  fig.tight_layout()
  fig.savefig(workdir / "meta_training.png", dpi=100)
  plt.close(fig)


def _plot_self_reference(workdir, self_reference, tolerance) -> None:
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  if self_reference:
    steps = [r["step"] for r in self_reference]
    function = np.asarray([r["function_residual"] for r in self_reference], float)
    params = np.asarray([r["param_residual"] for r in self_reference], float)
    for i in range(function.shape[1]):
      axes[0].semilogy(steps, function[:, i], marker="o", label=f"rule {i}: update on probe")
      axes[0].semilogy(steps, params[:, i], ls="--", label=f"rule {i}: meta-parameters")
    axes[0].axhline(tolerance, color="black", lw=0.8, label="tolerance")
    axes[0].legend(fontsize=7)
    mean_loss = np.asarray([np.mean(r["meta_loss"], axis=1) for r in self_reference], float)
    for i in range(mean_loss.shape[1]):
      axes[1].plot(steps, mean_loss[:, i], marker="o", label=f"rule {i}")
    axes[1].legend(fontsize=7)
  axes[0].set(title="Fixed-point residual ||G' - G|| / ||G|| per block", xlabel="step")
  axes[1].set(title="Meta-loss per block (mean)", xlabel="step", ylabel="meta-loss")
  fig.tight_layout()
  fig.savefig(workdir / "self_reference.png", dpi=100)
  plt.close(fig)


def _plot_exploration(workdir, exploration) -> None:
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  if exploration:
    gens = [r["step"] for r in exploration]
    axes[0].plot(gens, [r["diversity"] for r in exploration], marker="o")
    axes[1].plot(gens, [r["best_score"] for r in exploration], marker="o")
  axes[0].set(title="Diversity: spread of updates on the probe", xlabel="generation")
  axes[1].set(title="Best whole-run validation score", xlabel="generation",
              ylabel="mean log validation loss")
  fig.tight_layout()
  fig.savefig(workdir / "exploration.png", dpi=100)
  plt.close(fig)


def _plot_heldout(workdir: pathlib.Path, results: list[dict[str, Any]]) -> None:
  fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), squeeze=False)
  for ax, result in zip(axes[0], results):
    for name, curve in result["curves"].items():
      ax.semilogy(result["steps"], curve, label=name)
    ax.set(title=result["records"][0]["task"], xlabel="inner step",
           ylabel="train-split loss (mean of seeds)")
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(workdir / "heldout_curves.png", dpi=100)
  plt.close(fig)


def steps_ratio(results: list[dict[str, Any]], rule: str) -> dict[str, float]:
  """Mean steps of `rule` to reach tuned Adam's final train loss, over tuned Adam's, per task.

  A seed that never reaches it counts as the whole run, so a ratio from such
  seeds is a lower bound.
  """
  out = {}
  for result in results:
    budget = result["steps"][-1]

    def mean_steps(name):
      values = [r["steps_to_adam_final_loss"] for r in result["records"] if r["optimizer"] == name]
      return float(np.mean([budget if v is None else v for v in values]))

    out[result["records"][0]["task"]] = mean_steps(rule) / max(mean_steps("adam_tuned"), 1.0)
  return out


def _heldout_table(summary, rule):
  rows = [[r["task"], r["optimizer"], r["final_train_loss"], r["test_loss"], r["test_accuracy"],
           r["steps_to_adam_final_loss"], f"{r['runs_reaching_adam_final_loss']}/{r['seeds']}"]
          for r in summary if r["optimizer"] in (rule, "adam_tuned", "sgd_momentum")]
  return common.markdown_table(
      ["task", "optimizer", "final train loss", "test loss", "test accuracy",
       "steps to Adam's final loss", "seeds reaching it"], rows)


def write(workdir: pathlib.Path, config, records: list[dict[str, Any]],
          imitation_errors: dict[str, float], results: list[dict[str, Any]],
          g_star_params: dict[str, Any], phase2_scores, g_star_score: float,
          phase_seconds: dict[str, dict[str, float]] | None = None,
          components: list[dict[str, Any]] | None = None) -> None:
  """Write report.json, report.md and the PNG plots."""
  heldout = [r for result in results for r in result["records"]]
  summary = evaluation.summarize(heldout)
  tuned = {result["records"][0]["task"]: {
      "adam_learning_rate": result["adam_learning_rate"],
      "sgd_learning_rate": result["sgd_learning_rate"],
      "adam_final_train_loss": result["adam_final_train_loss"],
      "tuning_runs": result["tuning_runs"]} for result in results}
  imitation = [r for r in records if r.get("phase") == "imitation"]
  exploration = [r for r in records if r.get("phase") == "exploration"]
  self_reference = [r for r in records if r.get("phase") == "self_reference"]

  test_loss_ratio = {}
  for result in results:
    task = result["records"][0]["task"]
    by_opt = {r["optimizer"]: r for r in summary if r["task"] == task}
    test_loss_ratio[task] = by_opt["g_star"]["test_loss"] / by_opt["adam_tuned"]["test_loss"]
  ratios = {rule: steps_ratio(results, rule) for rule, _ in PHASE_RULES}

  phase_meta_loss = {
      "phase1_imitation": imitation[-1]["imitation_loss"] if imitation else None,
      "phase2_population": float(np.mean([np.mean(m["meta_loss_curve"][-10:])
                                          for m in exploration[-1]["members"]]))
      if exploration else None,
      "g_star": float(np.mean(np.asarray(self_reference[-1]["meta_loss"])[:, -10:]))
      if self_reference else None,
  }
  chosen = [{"generation": r["step"], "slot": i, **m["settings"],
             "improvement": m["improvement"], "d_meta_opt_converges": m["d_meta_opt_converges"],
             "validation_score": m["validation_score"]}
            for r in exploration for i, m in enumerate(r["members"])]
  accuracies = [r["d_meta_opt_heldout_ranking_accuracy"] for r in exploration
                if r["d_meta_opt_heldout_ranking_accuracy"] is not None]

  report = {
      "preset": config.preset,
      "seed": config.seed,
      "eval_seeds": list(config.eval.seeds),
      "heldout": heldout,
      "summary": summary,
      "tuned": tuned,
      "tuned_adam_learning_rate": {k: v["adam_learning_rate"] for k, v in tuned.items()},
      "tuning_runs_total": sum(v["tuning_runs"] for v in tuned.values()),
      "imitation_relative_error": imitation_errors,
      "phase_meta_loss": phase_meta_loss,
      "steps_to_adam_final_loss_ratio": ratios,
      "g_star_over_adam_test_loss": test_loss_ratio,
      "g_star_validation_score": g_star_score,
      "phase2_best_validation_scores": [float(s) for s in np.asarray(phase2_scores)],
      "g_meta_choices": chosen,
      "g_meta_final": exploration[-1]["g_meta"] if exploration else None,
      "d_meta_opt_heldout_ranking_accuracy": float(np.mean(accuracies)) if accuracies else None,
      "diversity": [r["diversity"] for r in exploration],
      "members_replaced_nonfinite": exploration[-1]["replaced_total"] if exploration else 0,
      "self_reference": {
          "steps": self_reference[-1]["step"] if self_reference else 0,
          "function_residual": [r["function_residual"] for r in self_reference],
          "param_residual": [r["param_residual"] for r in self_reference],
          "reverts": int(sum(sum(r.get("reverted", [])) for r in self_reference)),
          "fixed_point_reached": bool(self_reference
                                      and self_reference[-1]["calm_blocks"]
                                      >= config.self_reference.patience),
      },
      "phase_seconds": phase_seconds or {},
      "components": components or [],
      "components_summary": bootstrap_components.summarize(components) if components else [],
      "g_star_learning_rate": float(np.exp(g_star_params["log_lr"])),
      "g_star_basis_coefficients": g_star_params["basis"],
  }

  reaching = {result["records"][0]["task"]: sum(
      r["steps_to_adam_final_loss"] is not None for r in result["records"]
      if r["optimizer"] == "g_star") for result in results}

  def goal_line(prefix, goal):
    parts = []
    for task, value in ratios["g_star"].items():
      if task.startswith(prefix):
        verdict = "met" if value <= goal and reaching[task] == len(config.eval.seeds) else "missed"
        parts.append(f"{task}: {value:.2f} ({verdict}; {reaching[task]}/{len(config.eval.seeds)} "
                     "seeds reach it)")
    return ", ".join(parts)

  digits_goal = goal_line("digits", 0.8)
  chars_goal = goal_line("stdlib", 1.0)
  c2, c3 = config.population, config.self_reference
  lines = [
      "# Bootstrap report", "",
      f"Preset `{config.preset}`, run seed {config.seed}, meta-training family "
      f"`{config.family}`. Every held-out figure is a mean over seeds "
      f"{list(config.eval.seeds)} ({len(config.eval.seeds)} runs per optimizer and task); "
      "training loss on the whole train split, test figures on the test split. Adam and SGD "
      f"with momentum ({config.eval.sgd_momentum}) are tuned per task on the validation split "
      f"over {len(config.eval.adam_learning_rates)} and {len(config.eval.sgd_learning_rates)} "
      f"learning rates ({report['tuning_runs_total']} tuning runs); learned rules are not "
      "tuned. Steps to tuned Adam's final training loss are averaged over the seeds that reach "
      "it. Validation scores are the mean log validation loss after whole "
      f"{config.meta.horizon}-step runs on {config.meta.validation_tasks} fixed tasks of the "
      "meta-training family.", "",
      "## Meta-loss at the end of each phase", "",
      common.markdown_table(["phase", "meta-loss", "what it measures"], [
          ["1 imitation", phase_meta_loss["phase1_imitation"],
           "relative squared error of the rule's updates to Adam's"],
          ["2 population", phase_meta_loss["phase2_population"],
           "mean over members of the last (up to) 10 meta-steps' truncated meta-loss"],
          ["3 self-reference", phase_meta_loss["g_star"],
           "mean over rules of the last (up to) 10 self-referential meta-steps' meta-loss"]]),
      "## Phase 1: imitation of Adam", "",
      f"{config.imitation.steps} steps. Relative error ||u_rule - u_adam|| / ||u_adam|| of the "
      f"updates over one whole held-out run of {config.imitation.eval_steps} steps (Adam at "
      f"learning rate {config.imitation.adam_learning_rate}, seed {config.seed}):", "",
      common.markdown_table(["held-out task", "relative error"],
                            [[k, v] for k, v in imitation_errors.items()]),
      "Held-out tasks, the imitating rule against tuned baselines:", "",
      _heldout_table(summary, "phase1_imitation"),
      "## Phase 2: population exploration", "",
      f"{c2.size} members, {c2.generations} generations of {c2.segment_steps} meta-steps each; "
      f"after each generation the worst {c2.exploit_fraction:.0%} copy the best and are "
      f"perturbed (scale {c2.perturb_scale}, times {c2.diversity_boost} while diversity is "
      f"under {c2.diversity_floor}). G_meta draws every member's meta-training settings each "
      "generation; D_meta-opt judges each meta-training curve. Diversity is the mean distance "
      "of the members' updates on a fixed probe from their mean, over the mean update norm.", "",
      common.markdown_table(
          ["generation", "diversity", "best validation score", "D_meta-opt held-out pair order",
           "G_meta P(tbptt, es, pes)", "replaced (non-finite)"],
          [[r["step"], r["diversity"], r["best_score"], r["d_meta_opt_heldout_ranking_accuracy"],
            ", ".join(f"{p:.2f}" for p in r["g_meta"]["estimator"]), len(r["replaced_nonfinite"])]
           for r in exploration]),
      "What G_meta chose for each member (improvement = drop of the validation score over the "
      "generation; D = D_meta-opt's probability that the curve converges):", "",
      common.markdown_table(
          ["gen", "slot", "estimator", "meta lr", "tasks", "horizon start", "improvement", "D",
           "score"],
          [[c["generation"], c["slot"], c["estimator"], c["meta_learning_rate"],
            c["tasks_per_meta_step"], c["horizon_start_fraction"], c["improvement"],
            c["d_meta_opt_converges"], c["validation_score"]] for c in chosen]),
      "D_meta-opt's held-out pair order is the fraction of member pairs of a generation that it "
      "ranks in the order of their improvements before it trains on them (0.5 is chance); mean "
      + (f"{report['d_meta_opt_heldout_ranking_accuracy']:.3f}."
         if report["d_meta_opt_heldout_ranking_accuracy"] is not None else "not measured.")
      + "", "",
      "Held-out tasks, the best rule of phase 2 against tuned baselines:", "",
      _heldout_table(summary, "phase2_population"),
      "## Phase 3: self-reference", "",
      f"The best {c3.members} rules of phase 2 each update their own meta-parameters with their "
      f"own update, in blocks of {c3.block_steps} meta-steps ({c3.num_tasks} tasks each), up "
      f"to {c3.steps} steps. Each rule reads its meta-parameters in units of "
      f"{c3.coordinate_scale}, centred on where the phase starts (a fixed change of units, so "
      "its own step size moves them by that fraction); otherwise its update is applied as it "
      "is. The residual is the relative change over a block of the rule's "
      "update on the probe (and of its meta-parameters); the phase stops when every rule's "
      f"probe residual stays under {c3.tolerance} for {c3.patience} blocks. A rule whose "
      f"validation score falls more than {c3.revert_margin} behind its best returns to its best "
      "meta-parameters with a fresh state (selection; the updates themselves stay the rule's "
      f"own): {report['self_reference']['reverts']} reverts.", "",
      common.markdown_table(
          ["step", "probe residual", "meta-parameter residual", "mean meta-loss",
           "validation score", "rule step size"],
          [[r["step"], ", ".join(f"{x:.3g}" for x in r["function_residual"]),
            ", ".join(f"{x:.3g}" for x in r["param_residual"]),
            ", ".join(f"{np.mean(x):.4g}" for x in r["meta_loss"]),
            ", ".join(f"{x:.4g}" for x in r["validation_score"]),
            ", ".join(f"{x:.3g}" for x in r["learning_rate"])] for r in self_reference]),
      f"Fixed point reached: {report['self_reference']['fixed_point_reached']}. G* is the best "
      f"validated rule of this phase (score {g_star_score:.4f}; the best of phase 2 scored "
      f"{float(np.min(np.asarray(phase2_scores))):.4f}).", "",
      "## Phase 4: G* on held-out tasks", "",
      _heldout_table(summary, "g_star"),
      "Tuned learning rates: " + "; ".join(
          f"{k}: Adam {v['adam_learning_rate']:g}, SGD {v['sgd_learning_rate']:g}"
          for k, v in tuned.items()) + ".", "",
      "Steps to reach tuned Adam's final training loss, G* over tuned Adam (a seed that never "
      "reaches it counts as the whole run, so a ratio over such seeds is a lower bound and the "
      "goal counts as missed): digits (goal at most 0.8) "
      f"{digits_goal}; character model (goal at most 1.0) {chars_goal}.", "",
      "The same ratio for every phase's rule:", "",
      common.markdown_table(["rule"] + [result["records"][0]["task"] for result in results],
                            [[rule] + [ratios[rule][result["records"][0]["task"]]
                                       for result in results] for rule, _ in PHASE_RULES]),
      "G* test loss over tuned Adam's: " + ", ".join(
          f"{k}: {v:.3f}" for k, v in sorted(test_loss_ratio.items())) + ".", "",
      "### G* trains other components", "",
      "The same training with Adam and with this run's G*, on the digits "
      f"splits, seeds {list(config.eval.component_seeds)} (means of "
      f"{len(config.eval.component_seeds)} runs): a deep "
      f"ensemble of 8 differently shaped members ({config.eval.component_steps} steps; G* at its "
      "own step size), and the calibration GAN on the first member's validation logits "
      f"({config.eval.calibration_steps} steps; G* at Adam's step sizes 1e-3 for G_cal and 3e-3 "
      "for D_cal). Test split figures.", "",
      common.markdown_table(
          ["rule", "member test NLL", "member test accuracy", "ensemble test NLL",
           "ensemble test accuracy", "calibrated test ECE", "uncalibrated test ECE"],
          [[r["rule"], r["member_test_nll"], r["member_test_accuracy"], r["ensemble_test_nll"],
            r["ensemble_test_accuracy"], r["calibrated_test_ece"], r["uncalibrated_test_ece"]]
           for r in report["components_summary"]]) if components else
      "Not run (eval.components=False).\n",
      "G* is saved as `g_star.json`; `autogan_jax.optim.g_star(path=...)` turns it into an "
      "optax transformation.", "",
      "Time of each phase in this process (a resumed run counts only what it ran): " + "; ".join(
          f"{k} {v['wall_s']:.0f} s wall, {v['cpu_s']:.0f} s CPU"
          for k, v in (phase_seconds or {}).items()) + ".", "",
      "Plots: `meta_training.png` (meta-loss of every phase), `exploration.png` (diversity and "
      "best score per generation), `self_reference.png` (fixed-point residual and meta-loss of "
      "phase 3) and `heldout_curves.png` (held-out training curves).", "",
  ]
  common.write_report(workdir, report, "\n".join(lines))
  _plot_meta_training(workdir, imitation, exploration, self_reference)
  _plot_self_reference(workdir, self_reference, config.self_reference.tolerance)
  _plot_exploration(workdir, exploration)
  _plot_heldout(workdir, results)
