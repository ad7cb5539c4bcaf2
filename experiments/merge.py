"""Align, combine, merge and reorder digits networks; write a report and plots.

Usage:
  python -m experiments.merge --workdir=runs/merge --config=experiments/configs/merge.py:smoke

Rerunning with the same workdir skips finished stages and resumes an
interrupted search from its last checkpoint.
"""

from __future__ import annotations

import pathlib

import jax
import matplotlib
import numpy as np
from absl import flags
from absl import logging

from autogan_jax import optim
from autogan_jax.weight_space import interpolation
from autogan_jax.weight_space import pipeline
from experiments import common
from experiments.configs import merge as merge_config

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402  The backend must be set first.
from matplotlib import ticker  # noqa: E402

_CONFIG, _WORKDIR = common.define_run_flags(
    "experiments/configs/merge.py", None, "Merge study config file and preset.",
    "Folder for checkpoints, metrics, report and plots.")


def plot_barriers(report: dict, path: pathlib.Path) -> None:
  """Plot test loss along the linear path of every pair, before and after alignment."""
  fig, ax = plt.subplots(figsize=(6, 4))
  for i, pair in enumerate(report["barrier"]["pairs"]):
    ts = pair["ts"]
    ax.plot(ts, pair["test"]["losses_before"], color="tab:red", alpha=0.8,
            label="before alignment" if i == 0 else None)
    ax.plot(ts, pair["test"]["losses_after"], color="tab:blue", alpha=0.8,
            label="after weight matching" if i == 0 else None)
  ax.set_xlabel("interpolation coefficient t")
  ax.set_ylabel("test cross-entropy (all ten digits)")
  pairs = report["barrier"]["pairs"]
  seeds = ", ".join("-".join(str(seed) for seed in pair["seeds"]) for pair in pairs)
  ax.set_title(f"Linear paths between MLPs from different seeds\n"
               f"({_count(len(pairs), 'pair')}, seeds {seeds})")
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_merges(report: dict, path: pathlib.Path) -> None:
  """Plot the test accuracy of every merge, per merge seed."""
  runs = report["merge"]["runs"]
  names = list(interpolation.METHODS) + ["learned", "parent_a", "parent_b", "base"]
  fig, ax = plt.subplots(figsize=(8, 4))
  width = 0.8 / len(runs)
  for j, run in enumerate(runs):
    values = [run["fixed"][m]["best_test_accuracy"] for m in interpolation.METHODS]
    values.append(run["learned"]["selected"]["test_accuracy"])
    values += [run["networks"][n]["test"]["accuracy"] for n in ("parent_a", "parent_b", "base")]
    ax.bar(np.arange(len(names)) + j * width, values, width, label=f"seed {run['seed']}")
  ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=30, ha="right")
  ax.set_ylabel("test accuracy (all ten digits)")
  ax.set_ylim(0.0, 1.0)
  ax.set_title("Merges of two fine-tunes on different digit subsets")
  ax.legend(fontsize=8, loc="lower left")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _count(number: int, noun: str) -> str:
  return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def plot_searches(records: list[dict], path: pathlib.Path, study_seed: int) -> None:
  """Plot G's proposals by round: scores of the adversarial searches, margins of the judged one."""
  fig, (ax_score, ax_margin) = plt.subplots(1, 2, figsize=(11, 4))
  ax_share = ax_margin.twinx()
  phases = sorted({r["phase"] for r in records})
  for phase in phases:
    rows = sorted((r for r in records if r["phase"] == phase), key=lambda r: r["step"])
    steps = [r["step"] for r in rows]
    if "proposal_mean" in rows[0]:
      ax_score.plot(steps, [r["proposal_mean"] for r in rows], label=phase)
    else:
      ax_margin.plot(steps, [r["proposal_margin_mean"] for r in rows],
                     label=f"{phase}: mean margin")
      ax_share.plot(steps, [r["proposal_beats_fraction"] for r in rows], linestyle="--",
                    color="tab:gray", label=f"{phase}: share beating both parents")
  for ax in (ax_score, ax_margin):
    ax.set_xlabel("round")
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
  ax_score.set_title(f"Mean score of G's proposals per round (study seed {study_seed})")
  ax_score.set_ylabel("mean score of the proposals on the data\nthe search fits on (see report)")
  ax_score.legend(fontsize=8)
  ax_margin.set_title(f"G_combine's hybrids per round (study seed {study_seed})")
  ax_margin.set_ylabel("mean validation score of the hybrids\nminus their better parent's")
  ax_share.set_ylabel("share of hybrids beating both parents")
  ax_share.set_ylim(0.0, 1.05)
  ax_margin.axhline(0.0, color="gray", linewidth=0.5)
  lines = ax_margin.get_legend_handles_labels()
  shares = ax_share.get_legend_handles_labels()
  ax_margin.legend(lines[0] + shares[0], lines[1] + shares[1], fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _number(value) -> str:
  """Format a float with three decimals; None (no barrier to remove) becomes "n/a"."""
  return "n/a" if value is None else f"{value:.3f}"


def _fitting_text(merge: dict, config) -> str:
  """Describe on which data G_interpolate fits and the learned merge is chosen."""
  sizes = merge["split_sizes"]
  if config.merge.fit_split == "train":
    data = (f"G_interpolate scores its proposals on the training split ({sizes['fit']} digits, "
            "which the base saw and each parent saw half of), and the learned merge is chosen "
            f"on the whole validation split ({sizes['select']}), the same data on which the "
            "fixed methods pick their coefficient.")
  else:
    data = (f"The validation split is divided, stratified by digit, into a fitting part "
            f"({sizes['fit']}) and a selection part ({sizes['select']}). G_interpolate scores "
            "its proposals on the fitting part and the learned merge is chosen on the "
            "selection part.")
  rescale = (" G also chooses per hidden layer whether to rescale its units' pre-activations "
             "to the mean and standard deviation that the parents' units have on the training "
             "inputs, interpolated like the merge (REPAIR); fixed methods have no such step."
             if config.merge.rescale else "")
  return data + rescale


def _merge_section(merge: dict, config) -> list[str]:
  """Render the fixed and learned merges: test and validation accuracy per seed."""
  rescaled = "best_fixed_rescaled" in merge["runs"][0]["learned"]
  lines = ["## Fixed merges against the learned merge", "",
           f"Per merge seed: a base MLP trained {config.merge.base_steps} steps on all digits, "
           f"fine-tuned {config.merge.finetune_steps} steps on digits "
           f"{tuple(config.merge.classes_a)} (parent A) and {tuple(config.merge.classes_b)} "
           f"(parent B). Each fixed method's coefficient is chosen on the whole validation "
           f"split ({merge['split_sizes']['valid']} digits) over {config.merge.grid_points} "
           f"grid points by `{merge['objective']}`. " + _fitting_text(merge, config)
           + (" G starts at the best fixed merge." if config.merge.warm_start else "")
           + f" The learned merge is the candidate with the best selection `{merge['objective']}` "
           "among the best fixed merge, G's most likely merge"
           + (f" and the {config.merge.selection_candidates} best archive members by fitting score"
              if config.merge.selection_candidates else "")
           + "; the best fixed merge wins ties. The best archive member by fitting score"
           + (" and the best fixed merge with every hidden layer rescaled are" if rescaled
              else " is")
           + " reported for comparison. Accuracies are on all ten digits, one run per seed; the "
           "test split is used for nothing else.", "",
           "Test accuracy:", ""]
  extra = ["best fixed + rescale"] if rescaled else []
  rows = []
  for run in merge["runs"]:
    nets = run["networks"]
    learned = run["learned"]
    row = [run["seed"], nets["base"]["test"]["accuracy"], nets["parent_a"]["test"]["accuracy"],
           nets["parent_b"]["test"]["accuracy"]]
    row += [run["fixed"][m]["best_test_accuracy"] for m in interpolation.METHODS]
    row += [run["best_fixed"]["method"], run["best_fixed"]["best_test_accuracy"]]
    if rescaled:
      row.append(learned["best_fixed_rescaled"]["test_accuracy"])
    row += [learned["selected"]["test_accuracy"], learned["selected"]["source"],
            learned["archive_best"]["test_accuracy"], learned["generator_mode"]["test_accuracy"]]
    rows.append(row)
  lines.append(common.markdown_table(
      ["seed", "base", "parent A", "parent B"] + list(interpolation.METHODS)
      + ["best fixed (by valid)", "best fixed"] + extra
      + ["learned (selected)", "selected candidate", "archive best (by fit)", "G mode"], rows))
  chooses = ("the learned merge" if config.merge.fit_split == "train"
             else "in part the learned merge")
  lines += [f"Validation accuracy (the split that chooses every fixed coefficient and {chooses}):",
            ""]
  rows = []
  for run in merge["runs"]:
    learned = run["learned"]
    row = [run["seed"]] + [run["fixed"][m]["best_valid_accuracy"] for m in interpolation.METHODS]
    row.append(run["best_fixed"]["best_valid_accuracy"])
    if rescaled:
      row.append(learned["best_fixed_rescaled"]["valid_accuracy"])
    row.append(learned["selected"]["valid_accuracy"])
    rows.append(row)
  lines.append(common.markdown_table(
      ["seed"] + list(interpolation.METHODS) + ["best fixed"] + extra + ["learned (selected)"],
      rows))
  for run in merge["runs"]:
    selected = run["learned"]["selected"]
    lines.append(f"- Seed {run['seed']}: learned layers {selected['layers']} (selection "
                 f"loss {selected['select_loss']:.4f}, best fixed "
                 f"{run['learned']['candidates']['best_fixed']['select_loss']:.4f}); best fixed "
                 f"{run['best_fixed']['method']} at coefficient "
                 f"{run['best_fixed']['best_coefficient']:.3g}; "
                 f"{run['learned']['candidates_scored']} candidates scored, "
                 f"{run['learned']['quarantined']} quarantined.")
  s = merge["summary"]
  # Computed from the runs, so that a merge stage stored before these means were added renders.
  learned_valid = np.mean([run["learned"]["selected"]["valid_accuracy"] for run in merge["runs"]])
  fixed_valid = np.mean([run["best_fixed"]["best_valid_accuracy"] for run in merge["runs"]])
  learned_loss = np.mean([run["learned"]["selected"]["test_loss"] for run in merge["runs"]])
  fixed_loss = np.mean([run["learned"]["candidates"]["best_fixed"]["test_loss"]
                        for run in merge["runs"]])
  digit_gap = 360 * (s["learned_test_accuracy_mean"] - s["best_fixed_test_accuracy_mean"])
  verdict = "not met"
  if merge["goal_met"]:
    verdict = "met" if digit_gap >= 1 else "met, by less than one test digit"
  lines += ["", f"Mean test accuracy over {_count(s['runs'], 'seed')}: learned (selected) "
            f"{s['learned_test_accuracy_mean']:.4f}, best fixed "
            f"{s['best_fixed_test_accuracy_mean']:.4f}, archive best by fitting score without "
            f"selection {s['archive_best_test_accuracy_mean']:.4f}. The learned merge wins on "
            f"{s['learned_wins']} of {_count(s['runs'], 'seed')}, ties on {s['learned_ties']} "
            "and loses on "
            f"{s['runs'] - s['learned_wins'] - s['learned_ties']}; on the mean it classifies "
            f"{digit_gap:+.1f} test digits of 360 more than the best fixed merge. Mean "
            f"validation accuracy: learned {learned_valid:.4f}, best fixed {fixed_valid:.4f}. "
            f"Mean test cross-entropy: learned {learned_loss:.4f}, best fixed {fixed_loss:.4f}. "
            f"Goal (learned beats best fixed on the mean): {verdict}.", ""]
  return lines


def markdown(report: dict, config) -> str:
  """Render the report as markdown with every figure's seeds, split and run count."""
  barrier = report["barrier"]
  lines = ["# Weight-space merge study", "",
           f"Preset `{config.preset}`, study seed {config.seed}, MLP hidden sizes "
           f"{tuple(config.mlp.hidden_sizes)}. Data: scikit-learn digits, fixed split "
           "(1078 train, 359 validation, 360 test).", "",
           "## Loss barrier before and after weight matching", "",
           f"{_count(len(barrier['pairs']), 'pair')} of MLPs, each trained for "
           f"{config.barrier.steps} "
           f"steps on all digits from its own seed; barrier = max over {config.barrier.points} "
           "points t of loss(t) minus the chord between the end losses.", ""]
  rows = []
  for pair in barrier["pairs"]:
    for split in ("train", "test"):
      rows.append([str(pair["seeds"]), split, pair[split]["barrier_before"],
                   pair[split]["barrier_after"], pair[split]["removed_fraction"]])
  lines.append(common.markdown_table(
      ["seeds", "split", "barrier before", "barrier after", "share removed"], rows))
  summary = barrier["summary"]["test"]
  lines += [f"Test split, mean of {_count(len(barrier['pairs']), 'pair')}: barrier "
            f"{summary['barrier_before_mean']:.4f} before, {summary['barrier_after_mean']:.4f} "
            f"after; share removed mean {_number(summary['removed_fraction_mean'])}, minimum "
            f"{_number(summary['removed_fraction_min'])}. Goal (at least 0.8 removed in every "
            f"pair): {'met' if barrier['goal_met'] else 'not met'}.", ""]

  merge = report["merge"]
  lines += _merge_section(merge, config)
  comb = report["combination"]
  lines += ["## Module hybrids of two transformer fine-tunes", "",
            "Parents: a transformer-like network (embed, attention and feed-forward blocks, "
            "readout) trained on all digits, then fine-tuned on the two subsets. Accuracies on "
            "all ten digits, one run.", ""]
  rows = [[name, comb["parents_valid"][name]["accuracy"], comb["parents_test"][name]["accuracy"]]
          for name in ("parent_a", "parent_b")]
  rows += [[name, h["valid"]["accuracy"], h["test"]["accuracy"]]
           for name, h in comb["fixed_hybrids"].items()]
  rows.append(["G_combine best scored hybrid", comb["best_hybrid"]["valid"]["accuracy"],
               comb["best_hybrid"]["test"]["accuracy"]])
  lines.append(common.markdown_table(["network", "valid accuracy", "test accuracy"], rows))
  judge = comb["judge"]
  lines += [f"D_combine judges whether a hybrid's validation {comb['metric']} exceeds its "
            f"better parent's. It is trained on {judge['evidence_size']} scored hybrids "
            f"(share beating their parents {judge['evidence_beats_fraction']:.3f}) of "
            f"{_count(len(judge['pairs']), 'parent pair')}, "
            f"{config.combine.initial_per_pair} random ones "
            "per pair and "
            f"{config.search.batch_size} of G_combine's proposals per round for "
            f"{config.search.rounds} rounds, and G_combine is trained to maximise D's "
            "judgement of its hybrids of the two fine-tunes. Below, D is scored on fresh "
            "hybrids it never saw. The majority baseline predicts the majority label of D's "
            f"training evidence ({'beats' if judge['majority_label'] else 'does not beat'}) "
            "for every hybrid. The pair-majority baseline is stronger: it predicts the majority "
            "label of the training evidence of each hybrid's own parent pair. One run.", ""]
  rows = []
  for name, values in judge["heldout"].items():
    rows.append([name, values["count"], values["beats_fraction"], values["accuracy"],
                 values["majority_accuracy"], values.get("pair_majority_accuracy"),
                 values["balanced_accuracy"], values["margin_spearman"]])
  lines.append(common.markdown_table(
      ["held-out hybrids", "count", "share beating parents", "D accuracy", "majority baseline",
       "pair-majority baseline", "D balanced accuracy", "Spearman (predicted vs exact margin)"],
      rows))
  g = comb["generator"]
  lines += [f"Share of {g['samples']} G_combine samples that beat both parents on validation "
            f"{comb['metric']}: {g['initial_beats_parents_fraction']:.3f} before training, "
            f"{g['final_beats_parents_fraction']:.3f} after; mean margin over the better parent "
            f"{g['initial_margin_mean']:.4f} before, {g['final_margin_mean']:.4f} after.", ""]

  perm = report["permutation"]
  lines += ["## Module orders of the base transformer", "",
            f"All {perm['num_orders']} sequences of {config.permute.slots} slots over modules "
            f"{perm['module_names']} (repeats share weights), validation accuracy on all ten "
            "digits, one run.", "",
            f"- Trained order {perm['original_order']}: {perm['original_valid_accuracy']:.4f}.",
            f"- Best order {perm['best_order']}: {perm['best_valid_accuracy']:.4f}.",
            f"- Mean over all orders (uniform G): {perm['uniform_valid_accuracy_mean']:.4f}; "
            f"mean of {perm['generator_samples']} samples of the trained G_permute: "
            f"{perm['generator_valid_accuracy_mean']:.4f}; G's most likely order "
            f"{perm['generator_top_order']}.",
            f"- Spearman correlation between D_permute's logit and validation accuracy over all "
            f"orders: {perm['discriminator_spearman']:.3f}.", ""]
  return "\n".join(lines)


def run(config, workdir: str | pathlib.Path) -> dict:
  """Validate `config`, run or resume the study in `workdir`, write the report and plots."""
  merge_config.validate(config)
  workdir = common.start_run(workdir, config)
  metrics = common.MetricsLog(workdir)
  logging.info("Merge study %s in %s.", config.preset, workdir)
  with optim.default_rule_scope(config.update_rule):
    report = pipeline.run_study(config, jax.random.key(config.seed), workdir,
                                metrics=metrics.append, metrics_truncate=metrics.truncate_after)
  report["config"] = config.to_dict()
  common.write_report(workdir, report, markdown(report, config))
  plot_barriers(report, workdir / "barrier.png")
  plot_merges(report, workdir / "merges.png")
  plot_searches(metrics.read(), workdir / "searches.png", config.seed)
  logging.info("Wrote %s.", workdir / "report.md")
  return report


def main(argv):
  del argv
  run(_CONFIG.value, _WORKDIR.value or "")


if __name__ == "__main__":
  flags.mark_flag_as_required("workdir")
  common.run_main(main)
