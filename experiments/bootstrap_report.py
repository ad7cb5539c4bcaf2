"""Report and plots of the bootstrap run."""

from __future__ import annotations

import pathlib
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from autogan_jax.meta import evaluation  # noqa: E402
from experiments import common  # noqa: E402


def _plot_meta_training(workdir: pathlib.Path, records: list[dict[str, Any]]) -> None:
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  imitation = [r for r in records if r.get("phase") == "imitation"]
  meta_train = [r for r in records if r.get("phase") == "meta_train"]
  if imitation:
    axes[0].semilogy([r["step"] for r in imitation],
                     [r["imitation_loss"] or np.nan for r in imitation])
  axes[0].set(title="Imitation of Adam", xlabel="imitation step",
              ylabel="relative squared update error")
  if meta_train:
    steps = [r["step"] for r in meta_train]
    axes[1].plot(steps, [r["meta_loss"] if r["meta_loss"] is not None else np.nan
                         for r in meta_train], label="meta-loss", alpha=0.5)
    values = np.array([r["meta_loss"] if r["meta_loss"] is not None else np.nan
                       for r in meta_train], dtype=float)
    window = max(1, len(values) // 30)
    smooth = np.convolve(np.nan_to_num(values, nan=np.nanmean(values)), np.ones(window) / window,
                         mode="valid")
    axes[1].plot(steps[window - 1:], smooth, label=f"moving mean of {window}")
    axes[1].legend()
  axes[1].set(title="Truncated meta-training", xlabel="meta-step", ylabel="meta-loss")
  fig.tight_layout()
  fig.savefig(workdir / "meta_training.png", dpi=100)
  plt.close(fig)


def _plot_heldout(workdir: pathlib.Path, results: list[dict[str, Any]]) -> None:
  fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), squeeze=False)
  for ax, result in zip(axes[0], results):
    for name, curve in result["curves"].items():
      ax.semilogy(result["steps"], curve, label=name)
    ax.set(title=result["records"][0]["task"], xlabel="inner step",
           ylabel="train-split loss (mean of seeds)")
    ax.legend()
  fig.tight_layout()
  fig.savefig(workdir / "heldout_curves.png", dpi=100)
  plt.close(fig)


def write(workdir: pathlib.Path, config, records: list[dict[str, Any]],
          imitation_errors: dict[str, float], results: list[dict[str, Any]],
          meta_params: dict[str, Any], quarantined: int, best_step: int) -> None:
  """Write report.json, report.md and the PNG plots."""
  heldout = [r for result in results for r in result["records"]]
  summary = evaluation.summarize(heldout)
  tuned = {result["records"][0]["task"]: {
      "adam_learning_rate": result["adam_learning_rate"],
      "sgd_learning_rate": result["sgd_learning_rate"],
      "adam_final_train_loss": result["adam_final_train_loss"],
      "tuning_runs": result["tuning_runs"]} for result in results}

  digits_rows = [(t, r) for t, r in
                 ((row["task"], row) for row in summary) if t.startswith("digits")]
  test_loss_ratio = {}
  for task in {t for t, _ in digits_rows}:
    by_opt = {r["optimizer"]: r for t, r in digits_rows if t == task}
    test_loss_ratio[task] = by_opt["learned"]["test_loss"] / by_opt["adam_tuned"]["test_loss"]
  meta_train = [r for r in records if r.get("phase") == "meta_train"]

  report = {
      "preset": config.preset,
      "seeds": list(config.eval.seeds),
      "heldout": heldout,
      "summary": summary,
      "tuned": tuned,
      "tuned_adam_learning_rate": {k: v["adam_learning_rate"] for k, v in tuned.items()},
      "tuning_runs_total": sum(v["tuning_runs"] for v in tuned.values()),
      "imitation_relative_error": imitation_errors,
      "learned_over_adam_test_loss": test_loss_ratio,
      "quarantined_inner_runs": quarantined,
      "kept_meta_step": best_step,
      "final_meta_loss": meta_train[-1]["meta_loss"] if meta_train else None,
      "learned_learning_rate": float(np.exp(meta_params["log_lr"])),
      "basis_coefficients": meta_params["basis"],
  }

  lines = [
      "# Bootstrap report", "",
      f"Preset `{config.preset}`, seed {config.seed}. Meta-training family: "
      f"`{config.family}` ({config.imitation.steps} imitation steps, {config.meta.steps} "
      f"meta-steps of {config.meta.num_tasks} tasks x {config.meta.unroll_length} inner steps, "
      f"horizon {config.meta.horizon}). The evaluated rule is the meta-parameters of meta-step "
      f"{best_step}, the best of the validations every {config.meta.validate_every} meta-steps "
      f"(mean log validation loss after whole {config.meta.horizon}-step runs on "
      f"{config.meta.validation_tasks} fixed tasks of the meta-training family).", "",
      "## Imitation of Adam", "",
      "Relative error ||u_rule - u_adam|| / ||u_adam|| of the updates over one whole held-out "
      f"run of {config.imitation.eval_steps} steps (Adam at learning rate "
      f"{config.imitation.adam_learning_rate}, seed {config.seed}, following Adam's trajectory):",
      "",
      common.markdown_table(["held-out task", "relative error"],
                            [[k, v] for k, v in imitation_errors.items()]),
      "## Held-out tasks against tuned baselines", "",
      f"Means over seeds {list(config.eval.seeds)}; the training loss is on the whole train "
      "split, test figures on the test split. Adam and SGD with momentum "
      f"({config.eval.sgd_momentum}) are tuned per task on the validation split over "
      f"{len(config.eval.adam_learning_rates)} and {len(config.eval.sgd_learning_rates)} "
      f"learning rates ({report['tuning_runs_total']} tuning runs in all); the learned rule is "
      "not tuned. Steps to reach tuned Adam's final training loss are averaged over the seeds "
      "that reach it.", "",
      common.markdown_table(
          ["task", "optimizer", "final train loss", "test loss", "test accuracy",
           "steps to Adam's final loss", "seeds reaching it"],
          [[r["task"], r["optimizer"], r["final_train_loss"], r["test_loss"], r["test_accuracy"],
            r["steps_to_adam_final_loss"], f"{r['runs_reaching_adam_final_loss']}/{r['seeds']}"]
           for r in summary]),
      "Tuned learning rates: " + "; ".join(
          f"{k}: Adam {v['adam_learning_rate']:g}, SGD {v['sgd_learning_rate']:g}"
          for k, v in tuned.items()) + ".", "",
      "Learned test loss over tuned Adam's on digits (goal: at most 1.10): " + ", ".join(
          f"{k}: {v:.3f}" for k, v in sorted(test_loss_ratio.items())) + ".", "",
      f"Inner runs quarantined for non-finite values during meta-training: {quarantined}.", "",
      "Plots: `meta_training.png` (imitation and meta-training curves) and "
      "`heldout_curves.png` (held-out training curves of each optimizer).", "",
  ]
  common.write_report(workdir, report, "\n".join(lines))
  _plot_meta_training(workdir, records)
  _plot_heldout(workdir, results)
