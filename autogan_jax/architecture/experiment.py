"""The architecture-search experiment: searches, D_model ranking and weight novelty.

`run(config, workdir)` is the whole experiment; `experiments/architecture_search.py`
only parses flags. Each finished search is written to `searches/*.json` in the
workdir, so a rerun with the same workdir skips finished searches and ends
with the same figures.
"""

from __future__ import annotations

import json
import pathlib
import time

import jax
import numpy as np
from absl import logging
from scipy import stats

from autogan_jax import optim
from autogan_jax.architecture import search as search_lib
from autogan_jax.core import validation
from autogan_jax.model_space import data as data_lib
from autogan_jax.model_space import models_gan
from autogan_jax.model_space import ranking
from autogan_jax.model_space import space as space_lib
from autogan_jax.model_space import spec as spec_lib
from autogan_jax.model_space import weight_generation
from autogan_jax.model_space import zoo as zoo_lib

TASKS = ("digits", "chars")
# Uses of minus the early loss by the spec-and-curve D_model: through its curve
# features only, as a prior that it corrects, or averaged with its ranks.
EARLY_LOSS_USES = ("features", "prior", "rank_average")
TASK_EMBEDDINGS = {"digits": np.array([1.0, 0.0], np.float32),
                   "chars": np.array([0.0, 1.0], np.float32)}

SCHEMA = {
    "tasks": validation.SequenceOf(validation.OneOf(TASKS)),
    "seeds": validation.SequenceOf(validation.IntRange(0), distinct=True),
    "update_rule": validation.OneOf(optim.DEFAULT_RULES),
    "methods": validation.SequenceOf(validation.OneOf(search_lib.METHODS)),
    "train_steps": validation.IntRange(1),
    "population_size": validation.IntRange(1),
    "char_context": validation.IntRange(1, 256),
    "char_eval_windows": validation.IntRange(1),
    "space.families": validation.SequenceOf(validation.OneOf(spec_lib.FAMILIES)),
    "space.depths": validation.SequenceOf(validation.IntRange(1, 16)),
    "space.widths": validation.SequenceOf(validation.IntRange(1, 4096)),
    "space.model_dims": validation.SequenceOf(validation.IntRange(2, 4096)),
    "space.heads": validation.SequenceOf(validation.IntRange(1, 64)),
    "search.budget": validation.IntRange(2),
    "search.round_size": validation.IntRange(1),
    "search.evolution_population": validation.IntRange(2),
    "search.tournament_size": validation.IntRange(1),
    "search.gan_batch": validation.IntRange(1),
    "search.top_fraction": validation.FloatRange(0.0, 1.0, low_inclusive=False),
    "search.g_learning_rate": validation.FloatRange(0.0, low_inclusive=False),
    "search.d_learning_rate": validation.FloatRange(0.0, low_inclusive=False),
    "search.gan_steps": validation.IntRange(1),
    "search.candidates_per_model": validation.IntRange(1),
    "search.explore_fraction": validation.FloatRange(0.0, 1.0),
    "search.mutation_candidates": validation.OneOf((True, False)),
    "search.generator_draws": validation.IntRange(1),
    "search.candidate_scorer": validation.OneOf(search_lib.CANDIDATE_SCORERS),
    "search.proposal_temperature": validation.FloatRange(0.0, low_inclusive=False),
    "search.loss": validation.OneOf(("non_saturating", "hinge", "wasserstein")),
    "ranking.steps": validation.IntRange(1),
    "ranking.early_fraction": validation.FloatRange(0.0, 1.0, low_inclusive=False),
    "ranking.curve_points": validation.IntRange(1),
    "ranking.adversarial_weight": validation.FloatRange(0.0),
    "ranking.pairwise_weight": validation.FloatRange(0.0),
    "ranking.members": validation.IntRange(1),
    "ranking.hidden": validation.SequenceOf(validation.IntRange(1)),
    "ranking.early_loss": validation.OneOf(EARLY_LOSS_USES),
    "weights.enabled": validation.OneOf((True, False)),
    "weights.archive_size": validation.IntRange(2),
    "weights.archive_steps": validation.IntRange(1),
    "weights.gan_steps": validation.IntRange(1),
    "weights.short_steps": validation.IntRange(1),
    "weights.samples": validation.IntRange(1),
}


def validate_config(config) -> None:
  """Raise ConfigError naming every invalid field before any compute."""
  validation.validate(config, SCHEMA)
  s = config.search
  problems = []
  if s.round_size >= s.budget:
    problems.append(
        f"Invalid config value search.round_size={s.round_size}: expected less than "
        f"search.budget={s.budget}, because the first round trains random specs for every "
        "method and no adversarial or evolution round would be left.")
  if s.tournament_size > s.evolution_population:
    problems.append(
        f"Invalid config value search.tournament_size={s.tournament_size}: expected at most "
        f"search.evolution_population={s.evolution_population}.")
  if problems:
    raise validation.ConfigError("\n".join(problems))
  _space(config)
  _search_config(config)
  _ranking_config(config)


def _space(config) -> space_lib.SearchSpace:
  return space_lib.SearchSpace(
      families=tuple(config.space.families), depths=tuple(config.space.depths),
      widths=tuple(config.space.widths), model_dims=tuple(config.space.model_dims),
      heads=tuple(config.space.heads))


def _search_config(config) -> search_lib.SearchConfig:
  s = config.search
  return search_lib.SearchConfig(
      budget=s.budget, round_size=s.round_size, evolution_population=s.evolution_population,
      tournament_size=s.tournament_size, gan_steps=s.gan_steps, gan_batch=s.gan_batch,
      candidates_per_model=s.candidates_per_model, top_fraction=s.top_fraction,
      explore_fraction=s.explore_fraction, mutation_candidates=s.mutation_candidates,
      generator_draws=s.generator_draws, candidate_scorer=s.candidate_scorer,
      proposal_temperature=s.proposal_temperature,
      loss=s.loss, g_learning_rate=s.g_learning_rate, d_learning_rate=s.d_learning_rate)


def _ranking_config(config) -> ranking.RankingConfig:
  r = config.ranking
  return ranking.RankingConfig(steps=r.steps, adversarial_weight=r.adversarial_weight,
                               pairwise_weight=r.pairwise_weight, members=r.members,
                               hidden=tuple(r.hidden))


def _result_to_json(result: search_lib.SearchResult) -> dict:
  return {"method": result.method, "choices": [c.tolist() for c in result.choices],
          "valid_accuracy": result.valid_accuracy, "test_accuracy": result.test_accuracy,
          "curves": [c.tolist() for c in result.curves], "quarantined": result.quarantined,
          "generator_picks": result.generator_picks}


def _result_from_json(data: dict) -> search_lib.SearchResult:
  return search_lib.SearchResult(
      method=data["method"], choices=[np.asarray(c) for c in data["choices"]],
      valid_accuracy=data["valid_accuracy"], test_accuracy=data["test_accuracy"],
      curves=[np.asarray(c, np.float32) for c in data["curves"]],
      quarantined=data["quarantined"], generator_picks=data.get("generator_picks", 0))


def _load_task(name: str, config):
  if name == "digits":
    return data_lib.digits_data()
  return data_lib.char_data(config.char_context, config.char_eval_windows)


def run_searches(config, workdir: pathlib.Path, metrics_log=None) -> dict:
  """Run (or load finished) searches of every task, seed and method."""
  space = _space(config)
  search_config = _search_config(config)
  folder = workdir / "searches"
  folder.mkdir(parents=True, exist_ok=True)
  results: dict[str, dict[str, list[search_lib.SearchResult]]] = {}
  total = len(config.tasks) * len(config.seeds) * len(config.methods)
  done, ran, run_seconds = 0, 0, 0.0
  for task in config.tasks:
    data, io = _load_task(task, config)
    trainer = zoo_lib.ZooTrainer(space, data, io, config.train_steps, config.population_size)
    results[task] = {m: [] for m in config.methods}
    for seed in config.seeds:
      for method in config.methods:
        path = folder / f"{task}_{method}_seed{seed}.json"
        done += 1
        if path.exists():
          results[task][method].append(_result_from_json(json.loads(path.read_text())))
          logging.info("Search %d/%d (%s, %s, seed %d): loaded the finished %s.", done, total,
                       task, method, seed, path.name)
          continue
        eta = f"{(total - done + 1) * run_seconds / ran:.0f} s" if ran else "unknown"
        logging.info("Search %d/%d: %s, %s, seed %d (ETA of the searches left: %s).", done,
                     total, task, method, seed, eta)
        start = time.perf_counter()
        keep = method == "random" and seed == config.seeds[0]
        result = search_lib.run_search(method, trainer, TASK_EMBEDDINGS[task], search_config,
                                       seed, keep_records=keep)
        if keep:
          zoo_lib.save_zoo(workdir / "zoo" / task, result.records, io, task)
        path.write_text(json.dumps(_result_to_json(result)))
        results[task][method].append(result)
        ran += 1
        run_seconds += time.perf_counter() - start
        if metrics_log is not None:
          metrics_log.append({"phase": "search", "step": len(result.choices), "task": task,
                              "method": method, "seed": seed,
                              "best_valid_accuracy": float(max(result.valid_accuracy)),
                              "best_test_accuracy": result.best_test(),
                              "seconds": time.perf_counter() - start})
  return results


def _spearman(x, y) -> float:
  return float(stats.spearmanr(x, y).statistic)


def ranking_figures(config, results: dict) -> dict:
  """Rank each seed's random zoo with a D_model trained on the searches of the other seeds.

  For every held-out seed, the held-out models are that seed's random search,
  a uniform sample of the space. D trains on every search of the other seeds.
  No search of the held-out seed trains D, because all of them share their
  first round with the held-out models. Figures are given per held-out seed
  and as the mean over held-out seeds.

  `ranking.early_loss` sets how the spec-and-curve D uses minus the early
  loss: only through its curve features ("features"), as a prior that D
  corrects ("prior"), or by averaging D's ranks with its ranks
  ("rank_average"). Next to D's Spearman correlations, each held-out seed
  reports three reference figures that D does not use: minus the early loss
  alone, minus the loss of the last five of all training steps (the end of
  the curve, which an early ranker cannot see), and the Spearman correlation
  of the held-out models' validation and test accuracies. The last one shows
  how reproducible the order to predict is.
  """
  space = _space(config)
  ranking_config = _ranking_config(config)
  early_loss_use = config.ranking.early_loss
  figures = {}
  for task, by_method in results.items():
    zoo = by_method.get("random")
    if not zoo or len(zoo) < 2:
      figures[task] = {"note": "needs the random method and at least two seeds"}
      continue
    classes = 10 if task == "digits" else 128
    early = max(1, int(config.ranking.early_fraction * config.train_steps))

    def features(result, with_curve=True):
      rows = []
      for c, curve in zip(result.choices, result.curves):
        parts = [space.features(c)]
        if with_curve:
          parts.append(models_gan.curve_features(curve, early, config.ranking.curve_points,
                                                 classes))
        rows.append(np.concatenate(parts))
      return np.stack(rows)

    def early_loss_scores(result, steps=early):
      return np.array([ranking.early_loss_score(c, steps, classes) for c in result.curves])

    per_seed = []
    for heldout_index, seed in enumerate(config.seeds):
      train = [runs[i] for runs in by_method.values() for i in range(len(runs))
               if i != heldout_index]
      heldout = zoo[heldout_index]
      heldout_accuracy = np.asarray(heldout.valid_accuracy)
      figure = {
          "heldout_seed": int(seed), "train_models": sum(len(r.choices) for r in train),
          "heldout_models": len(heldout.choices),
          "heldout_valid_accuracy_std": float(heldout_accuracy.std()),
          "spearman_minus_early_loss_baseline": _spearman(early_loss_scores(heldout),
                                                          heldout_accuracy),
          "spearman_minus_final_loss": _spearman(
              early_loss_scores(heldout, config.train_steps), heldout_accuracy),
          "spearman_valid_vs_test": _spearman(heldout_accuracy, heldout.test_accuracy)}
      accuracy = np.concatenate([r.valid_accuracy for r in train])
      for label, with_curve in (("spec_and_early_curve", True), ("spec_only", False)):
        x = np.concatenate([features(r, with_curve) for r in train])
        prior, heldout_prior = None, None
        if with_curve and early_loss_use == "prior":
          prior = np.concatenate([early_loss_scores(r) for r in train])
          heldout_prior = early_loss_scores(heldout)
        ranker = ranking.train_ranker(x, accuracy, jax.random.key(seed), ranking_config, prior)
        scores = ranking.score(ranker, features(heldout, with_curve), heldout_prior)
        if with_curve and early_loss_use == "rank_average":
          scores = ranking.rank_average(scores, early_loss_scores(heldout))
        figure[f"spearman_{label}"] = _spearman(scores, heldout_accuracy)
      per_seed.append(figure)
    keys = ("spearman_spec_and_early_curve", "spearman_spec_only",
            "spearman_minus_early_loss_baseline", "spearman_minus_final_loss",
            "spearman_valid_vs_test", "heldout_valid_accuracy_std")
    figures[task] = {
        "early_steps": early, "early_loss": early_loss_use,
        "split": "validation accuracy of held-out zoo models", "per_seed": per_seed,
        **{f"{k}_mean": float(np.mean([f[k] for f in per_seed])) for k in keys}}
  return figures


def weight_figures(config) -> dict:
  """Run the weight-novelty comparison on digits for every seed."""
  data, io = data_lib.digits_data()
  w = config.weights
  wg_config = weight_generation.WeightGenerationConfig(
      archive_size=w.archive_size, archive_steps=w.archive_steps, gan_steps=w.gan_steps,
      samples=w.samples, short_steps=w.short_steps)
  spec = spec_lib.ModelSpec(family="mlp", widths=tuple(w.widths), activation="relu",
                            learning_rate=w.learning_rate, batch_size=32)
  runs = [weight_generation.run_weight_generation(spec, data, io, seed, wg_config)
          for seed in config.seeds]
  methods = runs[0]["methods"].keys()
  summary = {}
  for name in methods:
    summary[name] = {key: float(np.mean([r["methods"][name][key] for r in runs]))
                     for key in runs[0]["methods"][name]}
  return {"spec": spec.describe(), "seeds": list(config.seeds), "per_seed": runs,
          "mean": summary}


def search_figures(results: dict) -> dict:
  """Mean and standard deviation over seeds of the best-found metrics per method."""
  figures = {}
  for task, by_method in results.items():
    figures[task] = {}
    for method, runs in by_method.items():
      best_valid = np.stack([r.best_so_far() for r in runs])
      tests = np.array([r.best_test() for r in runs])
      figures[task][method] = {
          "seeds": len(runs),
          "best_valid_accuracy_mean": float(best_valid[:, -1].mean()),
          "best_valid_accuracy_std": float(best_valid[:, -1].std()),
          "test_accuracy_of_best_mean": float(tests.mean()),
          "test_accuracy_of_best_std": float(tests.std()),
          "best_valid_by_budget_mean": best_valid.mean(0).tolist(),
          "quarantined": int(sum(r.quarantined for r in runs)),
          "generator_picks": int(sum(r.generator_picks for r in runs))}
    methods = figures[task]
    if {"adversarial", "random", "evolution"} <= set(methods):
      adv = methods["adversarial"]["test_accuracy_of_best_mean"]
      figures[task]["goal"] = {
          "beats_random": adv > methods["random"]["test_accuracy_of_best_mean"],
          "matches_evolution": adv >= methods["evolution"]["test_accuracy_of_best_mean"]}
  return figures


def plot_search(figures: dict, path: pathlib.Path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt

  fig, axes = plt.subplots(1, len(figures), figsize=(5 * len(figures), 4), squeeze=False)
  for ax, (task, methods) in zip(axes[0], figures.items()):
    for method, f in methods.items():
      if method == "goal":
        continue
      curve = f["best_valid_by_budget_mean"]
      ax.plot(np.arange(1, len(curve) + 1), curve, label=f"{method} ({f['seeds']} seeds)")
    ax.set_xlabel("trained models")
    ax.set_ylabel("best validation accuracy (mean over seeds)")
    ax.set_title(task)
    ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)



def _table(headers: list[str], rows: list[list]) -> str:
  def cell(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)

  lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
  lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
  return "\n".join(lines) + "\n"


def markdown_report(config, search: dict, ranks: dict, weights: dict | None) -> str:
  """Render the report's figures as markdown."""
  seeds = list(config.seeds)
  text = ["# Architecture search\n",
          f"Budget {config.search.budget} trained models per search, {config.train_steps} "
          f"training steps each, families {list(config.space.families)}, seeds {seeds}. "
          "Search selects by validation accuracy; the test accuracy is that of the model "
          "with the best validation accuracy. Means and standard deviations are over seeds.\n"]
  for task, methods in search.items():
    rows = [[m, f["seeds"], f["best_valid_accuracy_mean"], f["best_valid_accuracy_std"],
             f["test_accuracy_of_best_mean"], f["test_accuracy_of_best_std"], f["quarantined"],
             f["generator_picks"]]
            for m, f in methods.items() if m != "goal"]
    text.append(f"## {task}\n")
    text.append(_table(["method", "seeds", "best valid acc", "std", "test acc of best", "std",
                        "quarantined", "picked from G samples"], rows))
    if "goal" in methods:
      g = methods["goal"]
      text.append(f"\nAdversarial search beats random search: {g['beats_random']}; "
                  f"matches or beats regularized evolution: {g['matches_evolution']} "
                  "(test accuracy of the best model, mean over seeds).\n")
  text.append("\n## D_model ranking of held-out zoo models\n")
  columns = ("spearman_spec_and_early_curve", "spearman_spec_only",
             "spearman_minus_early_loss_baseline", "spearman_minus_final_loss",
             "spearman_valid_vs_test", "heldout_valid_accuracy_std")
  for task, f in ranks.items():
    if "note" in f:
      text.append(f"- {task}: {f['note']}\n")
      continue
    first = f["per_seed"][0]
    prior = {"features": "",
             "prior": " D corrects minus the early loss (its prior).",
             "rank_average": " D's score is the mean of its rank and the rank of minus the "
                             "early loss."}[f["early_loss"]]
    text.append(f"### {task}\n")
    text.append(f"Spearman correlation with the validation accuracy of each held-out seed's "
                f"{first['heldout_models']} random-search models. D trains on the "
                f"{first['train_models']} models of the other seeds' searches and reads the "
                f"spec and the first {f['early_steps']} of {config.train_steps} training "
                f"steps.{prior} Minus the early loss is the mean training loss of the last "
                f"{min(5, f['early_steps'])} early steps; minus the final loss uses the last "
                f"{min(5, config.train_steps)} of all steps, which an early ranker cannot "
                "see. Valid against test is the Spearman correlation of the held-out models' "
                "validation and test accuracies: how reproducible the order to predict is.\n")
    rows = [[p["heldout_seed"], *(p[k] for k in columns)] for p in f["per_seed"]]
    rows.append(["mean", *(f[f"{k}_mean"] for k in columns)])
    text.append(_table(["held-out seed", "D: spec and early curve", "D: spec only",
                        "minus early loss", "minus final loss", "valid against test",
                        "std of valid acc"], rows))
  if weights is not None:
    text.append(f"\n## Generated weights against copies ({weights['spec']}, digits, seeds "
                f"{weights['seeds']}, validation accuracy, mean over seeds of the mean over "
                f"{config.weights.samples} draws)\n")
    rows = [[name, f["relative_distance_to_nearest_archive_model"],
             f["valid_accuracy_before"], f["valid_accuracy_after_short_training"]]
            for name, f in weights["mean"].items()]
    text.append(_table(["initial weights", "distance to nearest archive model (relative)",
                        "valid acc at start", f"valid acc after {config.weights.short_steps} "
                        "steps"], rows))
  return "\n".join(text)


def run(config, workdir: pathlib.Path, metrics_log=None) -> tuple[dict, str]:
  """Run the whole experiment into `workdir`; return the report dict and its markdown."""
  validate_config(config)
  start = time.perf_counter()
  results = run_searches(config, workdir, metrics_log)
  search = search_figures(results)
  plot_search(search, workdir / "best_found_vs_budget.png")
  ranks = ranking_figures(config, results)
  weights = weight_figures(config) if config.weights.enabled else None
  # A rerun loads finished searches, so this is the wall time of this start only.
  # metrics.jsonl has each search's own time.
  report = {"search": search, "ranking": ranks, "weights": weights,
            "seconds_this_start": time.perf_counter() - start, "seeds": list(config.seeds),
            "tasks": list(config.tasks)}
  return report, markdown_report(config, search, ranks, weights)
