"""Learned choice of update mode (gradient, ES, score function) on a partly non-differentiable task.

Usage:
  python -m experiments.optim_strategy --workdir=runs/optim_strategy \
      --config=experiments/configs/optim_strategy.py:smoke

Writes metrics.jsonl, report.json, report.md, curves.png and gates.png (and
gates_shared_bias.png for the shared-bias variant) into the workdir.

Meta-training saves its state (gate parameters, optimizer state, step and
D_optim's archive) under workdir/checkpoints every `checkpoint_every`
meta-steps. Rerunning with the same workdir and config resumes from the newest
checkpoint and ends with the same gate parameters, bit for bit, as an
uninterrupted run. The evaluation after meta-training is recomputed, and its
files are overwritten. A workdir that contains a run of another config is
rejected.
"""

from __future__ import annotations

import pathlib

import jax
import matplotlib
import numpy as np
from absl import flags
from absl import logging

from autogan_jax import optim
from autogan_jax.core import validation
from autogan_jax.optim import strategy_study
from experiments import common
from experiments.configs import optim_strategy as optim_strategy_config

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402  (the backend is chosen first)

_CONFIG, _WORKDIR = common.define_run_flags(
    "experiments/configs/optim_strategy.py:default", None, "Experiment config file and preset.",
    "Folder for checkpoints, metrics, report and plots; a rerun with the same config resumes "
    "there.")


def plot_curves(workdir: pathlib.Path, arrays: dict) -> None:
  """Plot each strategy's training loss, mean over seeds with the seeds' range shaded."""
  figure, axis = plt.subplots(figsize=(7, 4))
  for name, result in arrays["results"].items():
    curves = result["curves"]
    steps = np.arange(1, curves.shape[1] + 1)
    line, = axis.plot(steps, np.nanmean(curves, axis=0), label=name)
    axis.fill_between(steps, np.nanmin(curves, axis=0), np.nanmax(curves, axis=0),
                      color=line.get_color(), alpha=0.15)
  axis.set_xlabel("training step")
  axis.set_ylabel("training batch loss")
  axis.set_title("Gated digits: training loss per strategy (mean and range over seeds)")
  axis.legend(fontsize=7)
  figure.tight_layout()
  figure.savefig(workdir / "curves.png", dpi=80)
  plt.close(figure)


def plot_gates(workdir: pathlib.Path, report: dict, arrays: dict, name: str,
               filename: str) -> None:
  """Plot a learned strategy's gates and the sources' shares of the update, per group."""
  learned = arrays["results"][name]
  groups, sources = report["groups"], report["sources"]
  figure, axes = plt.subplots(2, len(groups), figsize=(4 * len(groups), 5), sharex=True,
                              sharey=True, squeeze=False)
  for g, group in enumerate(groups):
    for row, (label, values) in enumerate((("gate", learned["gates"]),
                                           ("share of update", learned["shares"]))):
      axis = axes[row, g]
      for s, source in enumerate(sources):
        axis.plot(values[:, :, g, s].mean(axis=0), label=source)
      axis.set_ylim(-0.02, 1.02)
      axis.set_title(f"{group}: {label}")
      if row == 1:
        axis.set_xlabel("training step")
  axes[0, 0].legend(fontsize=7)
  figure.suptitle(f"G_optim '{name}' on the gated digits task (mean over seeds "
                  f"{report['seeds']})")
  figure.tight_layout()
  figure.savefig(workdir / filename, dpi=80)
  plt.close(figure)


def _meta_line(name: str, records: list[dict], config: dict) -> str:
  weight = config["judge_feedback_weight"]
  objective = ("its validation loss" if weight == 0 else
               f"its validation loss plus {weight} * (1 - D_optim's score of its training "
               "curve), with D_optim retrained every step on the archive of random-gate runs "
               "and all earlier candidates")
  line = (f"Meta-training of '{name}': {len(records)} ES steps of {config['meta_pairs']} "
          f"antithetic pairs, each candidate one inner run of {config['meta_inner_steps']} steps "
          f"scored by {objective}")
  if records:
    line += (f". Mean candidate validation loss: {records[0]['meta_loss']:.4f} at the first "
             f"step, {records[-1]['meta_loss']:.4f} at the last")
  return line + ".\n"


def _gate_table(report: dict, name: str) -> str:
  summary = report["learned"][name]
  rows = []
  for group in report["groups"]:
    gates, shares = summary["gates"][group], summary["shares"][group]
    rows.append([group] + [gates[s] for s in report["sources"]]
                + [shares[s] for s in report["sources"]]
                + [report["expected_sources"][group], summary["largest_share"][group]])
  headers = (["group"] + [f"gate {s}" for s in report["sources"]]
             + [f"share {s}" for s in report["sources"]] + ["expected", "largest share"])
  return f"### {name}\n\n" + common.markdown_table(headers, rows)


def markdown(report: dict) -> str:
  """Render the report as markdown."""
  config = report["config"]
  seeds = report["seeds"]
  rows = [[r["strategy"], r["test_loss"],
           ", ".join(f"{v:.3f}" for v in r["test_loss_per_seed"]), r["valid_loss"],
           r["test_accuracy"], r["final_train_loss"], r["d_optim"], r["threshold_mean"],
           ", ".join(f"{v:.2f}" for v in r["choice_probs"]), r["quarantined_steps"],
           r["es_pairs_dropped"]] for r in report["rows"]]
  ranks = ", ".join(f"{name} {report['rank_by_test_loss'][name]}" for name in report["learned"])
  judge = report["judge"]

  lines = [
      "# Learned choice of update mode\n",
      "Task: 8x8 digits through a hard per-pixel threshold (step function, zero gradient) into "
      "a one-hidden-layer perceptron whose activation is sampled per example from learned "
      "logits (relu, tanh, identity, zero). Test figures are expectations over the activation "
      "distribution on the digits test split (360 images). The validation loss is on the "
      "validation split, which also scores the candidates of meta-training.\n",
      f"Every strategy trains with Adam (learning rate {config['learning_rate']}) for "
      f"{config['inner_steps']} steps on seeds {seeds} (task seeds 1000+seed), and each figure "
      f"is the mean over those {len(seeds)} runs. ES: {config['es_pairs']} pairs per group and "
      f"step, sigma {config['es_sigma']}. 'hand_assigned' sends weights to the gradient, "
      "thresholds to ES and the activation logits to the score function. "
      "'learned_shared_bias' has one bias row for all groups, so only the gate features "
      "(sizes and agreement of the estimates) tell the groups apart.\n",
  ]
  lines += [_meta_line(name, records, config) for name, records in report["meta_train"].items()]
  lines += [
      common.markdown_table(
          ["strategy", "test loss", "per seed", "valid loss", "test accuracy", "final train loss",
           "D_optim P(top)", "mean threshold", "activation probs", "skipped steps",
           "ES pairs dropped"], rows),
      f"Best by test loss: **{report['best_by_test_loss']}**. Rank by test loss of the learned "
      f"strategies (of {len(report['rows'])}): {ranks}.\n",
      "## Learned gates per parameter group\n",
      "Gate: G_optim's softmax output, mean over steps and seeds. Share: the source's part of "
      "the mixed estimate's size (gate times the estimate's root mean square, normalised). "
      "Adam divides by the update's scale, so a gate on a source that is exactly zero for a "
      "group has no effect. The gradient is zero for the thresholds and logits, and the score "
      "function is zero for the weights and thresholds. The share shows what moves each "
      "group.\n",
  ]
  lines += [_gate_table(report, name) for name in report["learned"]]
  lines += [
      "## D_optim\n",
      f"Trained with the generic GAN step (non-saturating loss) on an archive of "
      f"{judge['archive_runs']} runs with random gates on other seeds. 'Real' is the top "
      f"{judge['num_real']} by -(mean + std) of the last fifth of the curve. Spearman "
      f"correlation between D_optim's score and that ranking on the archive (in-sample): "
      f"{judge['spearman_score_vs_quality']}. Archive runs with a non-finite loss: "
      f"{judge['archive_nonfinite_runs']}. The scores in the table above are for the "
      "strategies' own runs, which D_optim did not train on.\n",
  ]
  return "\n".join(lines)


def main(argv):
  del argv
  config = _CONFIG.value
  validation.validate(config, optim_strategy_config.schema())
  optim_strategy_config.check_relations(config)
  workdir = common.start_run(_WORKDIR.value, config)
  metrics = common.MetricsLog(workdir)
  # The evaluation is recomputed on every run, so its earlier records go.
  metrics.truncate_after("evaluate", -1)
  progress = common.Progress("meta_train", config.study.meta_steps)

  def log(record):
    metrics.append(record)
    if record["phase"].startswith("meta_train"):
      progress.update(record["step"], meta_loss=record["meta_loss"])

  def restore_records(phase, step):
    metrics.truncate_after(phase, step)
    return [r for r in metrics.read() if r.get("phase") == phase]

  checkpointing = strategy_study.Checkpointing(workdir / "checkpoints", config.checkpoint_every,
                                               restore_records)
  with optim.default_rule_scope(config.update_rule):
    report, arrays = strategy_study.run_study(config.study.to_dict(), jax.random.key(config.seed),
                                              log, checkpointing)
  report["config"] = config.study.to_dict() | {"seed": config.seed, "preset": config.preset}
  plot_curves(workdir, arrays)
  plot_gates(workdir, report, arrays, "learned", "gates.png")
  if "learned_shared_bias" in report["learned"]:
    plot_gates(workdir, report, arrays, "learned_shared_bias", "gates_shared_bias.png")
  common.write_report(workdir, report, markdown(report))
  logging.info("report written to %s", workdir / "report.md")


if __name__ == "__main__":
  flags.mark_flag_as_required("workdir")
  common.run_main(main)
