"""Learned alignment on digit strings and learned temporal structure on the pendulum and text.

Usage:
  python -m experiments.temporal --workdir=runs/temporal \
      --config=experiments/configs/temporal.py:smoke

Writes metrics.jsonl, report.json, report.md and PNG plots into the workdir.
Rerunning with the same workdir reuses finished alignment runs and resumes the
temporal searches from their last round checkpoint.
"""

from __future__ import annotations

import pathlib

import jax
import matplotlib
import numpy as np
from absl import flags
from absl import logging

from autogan_jax import optim
from autogan_jax.alignment import study as alignment_study
from autogan_jax.checkpoint import RunCheckpointer
from autogan_jax.core import validation
from autogan_jax.temporal import study as temporal_study
from experiments import common
from experiments.configs import temporal as temporal_config

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402  (the backend is chosen first)

_CONFIG, _WORKDIR = common.define_run_flags(
    "experiments/configs/temporal.py:default", None, "Experiment config file and preset.",
    "Folder for metrics, report, plots and checkpoints; rerunning with it resumes.")


def plot_alignment(workdir: pathlib.Path, name: str, example: dict) -> None:
  """Plot one test string's frames and a mechanism's alignment weights."""
  length = example["frame_length"]
  figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 4), sharex=True)
  top.imshow(example["frames"][:length].T, aspect="auto", cmap="gray_r")
  for start in example["starts"][example["starts"] >= 0]:
    top.axvline(start - 0.5, color="tab:red", linewidth=0.8)
  top.set_title(f"{name}: true {''.join(map(str, example['labels']))}, "
                f"predicted {''.join(map(str, example['predicted']))}")
  bottom.imshow(example["weights"][:, :length], aspect="auto", cmap="viridis")
  bottom.set_ylabel("output position")
  bottom.set_xlabel("frame (red lines: true digit starts)")
  figure.tight_layout()
  figure.savefig(workdir / f"alignment_{name.replace('(', '_').replace(')', '').replace('=', '')}"
                 ".png", dpi=80)
  plt.close(figure)


def plot_cer(workdir: pathlib.Path, report: dict) -> None:
  rows = report["rows"]
  figure, axis = plt.subplots(figsize=(8, 3.5))
  names = [r["config"] for r in rows]
  colors = ["tab:orange" if r["config"] == report["learned"]["config"] else "tab:blue"
            for r in rows]
  axis.bar(names, [r["test_cer"] for r in rows], color=colors)
  axis.set_ylabel("test character error rate")
  axis.set_title("Digit strings: fixed mechanisms (blue) and the learned choice (orange)")
  axis.tick_params(axis="x", rotation=30)
  figure.tight_layout()
  figure.savefig(workdir / "alignment_cer.png", dpi=80)
  plt.close(figure)


def plot_rollouts(workdir: pathlib.Path, name: str, report: dict, log_scale: bool) -> None:
  results = report["results"]
  figure, axis = plt.subplots(figsize=(6, 3.5))
  for label, row in results.items():
    axis.plot(np.arange(1, report["rollout_steps"] + 1), row["errors_by_step"],
              label=f"{label}: {row['structure']}" if label == "learned" else label)
  if log_scale:
    axis.set_yscale("log")
  axis.set_xlabel("rollout step")
  axis.set_ylabel("test error")
  axis.set_title(f"{name}: rollout error (mean over seeds {report['seeds']})")
  axis.legend(fontsize=6)
  figure.tight_layout()
  figure.savefig(workdir / f"{name}_rollout_error.png", dpi=80)
  plt.close(figure)


def plot_pendulum_example(workdir: pathlib.Path, report: dict) -> None:
  truth = np.asarray(report["example_truth"])
  figure, axes = plt.subplots(2, 2, figsize=(8, 5))
  for i, axis in enumerate(axes.flat[: len(truth)]):
    angle = np.arctan2(truth[i, :, 0], truth[i, :, 1])
    axis.plot(angle, color="black", label="true")
    for label, row in report["results"].items():
      rollout = np.asarray(row["example_rollouts"])[i]
      axis.plot(np.arctan2(rollout[:, 0], rollout[:, 1]), label=label)
    axis.set_ylabel("theta")
  axes.flat[0].legend(fontsize=6)
  figure.suptitle("Pendulum test trajectories: truth and 50-step rollouts (seed 0)")
  figure.tight_layout()
  figure.savefig(workdir / "pendulum_examples.png", dpi=80)
  plt.close(figure)


def alignment_markdown(report: dict) -> str:
  rows = [[r["config"], r["valid_cer"], r["test_cer"],
           ", ".join(f"{v:.4f}" for v in r["test_cer_per_seed"]), r["feasible"], r["quarantined"]]
          for r in report["rows"]]
  learned, best = report["learned"], report["best_fixed_by_test"]
  lines = [
      "## Alignment: character error rate on held-out digit strings\n",
      f"Seeds {report['seeds']} (one training run per config and seed); CER is the mean over "
      f"seeds on {report['num_test_strings']} test strings made only of test-split images "
      f"(validation: {report['num_valid_strings']} strings of validation images). "
      "'feasible' is the share of training targets CTC could emit in the available frames.\n",
      common.markdown_table(["config", "valid CER", "test CER", "test CER per seed", "feasible",
                             "quarantined"], rows),
      f"Learned choice (the config that G_alignment makes most probable after "
      f"{len(report['search'])} search rounds, in most of "
      f"{len(report['learned_by_search_seed'])} searches with seeds "
      f"0-{len(report['learned_by_search_seed']) - 1}; per search: "
      f"{', '.join(report['learned_by_search_seed'])}): **{learned['config']}**, test CER "
      f"{learned['test_cer']:.4f}. Best fixed config on test: {best['config']}, "
      f"{best['test_cer']:.4f}. Best fixed config on validation: "
      f"{report['best_fixed_by_valid']['config']}.\n",
      f"Goal (learned choice at least as good as the best fixed mechanism): "
      f"**{'met' if report['goal_met'] else 'not met'}**.\n",
      f"G's final probabilities: {report['g_probabilities']}\n",
  ]
  return "\n".join(lines)


def temporal_markdown(title: str, report: dict, metric: str) -> str:
  rows = []
  for name, row in report["results"].items():
    rows.append([name, row["structure"], row["error_at_end"],
                 ", ".join(f"{v:.4g}" for v in row["error_at_end_per_seed"]), row["error_mean"],
                 row["next_step"], row["calls"], row.get("d_fake")])
  lines = [
      f"## {title}\n",
      f"Seeds {report['seeds']}; {report['num_test_sequences']} test sequences; each figure is "
      f"the mean over seeds. Rollouts start from {16} true states and run "
      f"{report['rollout_steps']} steps. {metric}\n",
      common.markdown_table(["model", "structure", f"error at step {report['rollout_steps']}",
                             "per seed", "mean error over rollout", "next-step error",
                             "model calls", "D_temporal P(real) on rollouts"], rows),
      f"Best structure in the search archive (validation): {report['best_archived_on_valid']}.\n",
      f"Goal: **{'met' if report['goal_met'] else 'not met'}**.\n",
  ]
  return "\n".join(lines)


def main(argv):
  del argv
  config = _CONFIG.value
  validation.validate(config, temporal_config.schema())
  temporal_config.check_lengths(config)
  workdir = common.start_run(_WORKDIR.value, config)
  with optim.default_rule_scope(config.update_rule):
    run(config, workdir)


def run(config, workdir: pathlib.Path) -> None:
  """Run or resume the alignment and temporal-structure studies; write the report and plots."""
  metrics = common.MetricsLog(workdir)
  key = jax.random.key(config.seed)
  k_align, k_pendulum, k_char = jax.random.split(key, 3)

  done = [r for r in metrics.read() if r.get("phase") == "alignment"]
  logging.info("alignment study: %d runs already finished", len(done))
  alignment = alignment_study.run_study(
      config.alignment.to_dict(), k_align, done=done, log=metrics.append,
      on_example=lambda name, example: plot_alignment(workdir, name, example))
  plot_cer(workdir, alignment)

  pendulum_ckpt = RunCheckpointer(workdir / "checkpoints" / "pendulum")
  # Records past the last checkpoint (all of them without one) are rewritten on resume.
  metrics.truncate_after("pendulum_search", pendulum_ckpt.latest_step() or 0)
  pendulum = temporal_study.run_pendulum_study(config.pendulum.to_dict(), k_pendulum,
                                               checkpointer=pendulum_ckpt, log=metrics.append)
  plot_rollouts(workdir, "pendulum", pendulum, log_scale=True)
  plot_pendulum_example(workdir, pendulum)

  report = {"config": config.to_dict(), "alignment": alignment, "pendulum": pendulum}
  markdown = ["# Temporal structure and learned alignment\n", alignment_markdown(alignment),
              temporal_markdown(
                  "Temporal structure: damped driven pendulum", pendulum,
                  "Error: mean squared error of (sin theta, cos theta, theta'). "
                  f"Both models have {pendulum['parameter_count']} parameters. "
                  f"Physics: {pendulum['physics']}.")]
  if config.char.enabled:
    char_ckpt = RunCheckpointer(workdir / "checkpoints" / "char")
    metrics.truncate_after("char_search", char_ckpt.latest_step() or 0)
    char = temporal_study.run_char_study(config.char.to_dict(), k_char, checkpointer=char_ckpt,
                                         log=metrics.append)
    plot_rollouts(workdir, "char", char, log_scale=False)
    report["char"] = char
    markdown.append(temporal_markdown(
        "Temporal structure: character model of the standard library's source", char,
        "Error at a step: share of wrong greedy characters. Next-step error: test "
        "next-character loss in nats. The goal here is a lower next-character loss than the "
        "next-step baseline."))
  common.write_report(workdir, report, "\n".join(markdown))
  logging.info("report written to %s", workdir / "report.md")


if __name__ == "__main__":
  flags.mark_flag_as_required("workdir")
  common.run_main(main)
