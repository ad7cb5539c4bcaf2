"""The merge study on the digits: alignment barriers, fixed and learned merges, hybrids, orders.

`run_study(config, key, workdir)` runs five stages and returns one report
dict. Each stage stores its result as JSON under `workdir/stages` and its
trained networks as orbax checkpoints under `workdir/checkpoints`; the G/D
searches checkpoint every round. A rerun with the same workdir skips finished
stages and resumes an interrupted search.

1. barrier: MLPs trained on all digits from different seeds; the loss
   barrier of the linear path before and after weight matching.
2. merge: per merge seed, a base MLP trained briefly on all digits and two
   fine-tunes on different digit subsets. Every fixed method is tuned over its
   coefficient grid on the validation split and compared with G_interpolate's
   learned merge, by test accuracy on all ten digits. G_interpolate is fitted
   on the training split and the learned merge chosen on the validation split,
   or (`config.merge.fit_split="valid_part"`) fitted on one part of the
   validation split and chosen on the other.
3. transformers: a base transformer-like network and two fine-tunes on the
   same subsets.
4. combination: module, layer-range and mixture hybrids of the two
   transformer fine-tunes, and G_combine trained on D_combine's judgement of
   whether a hybrid beats its parents.
5. permutation: every module order of the base transformer and G_permute's search.
"""

from __future__ import annotations

import functools
import json
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from scipy import stats

from autogan_jax import checkpoint
from autogan_jax import optim
from autogan_jax.tasks import datasets
from autogan_jax.weight_space import adversarial
from autogan_jax.weight_space import alignment
from autogan_jax.weight_space import combination
from autogan_jax.weight_space import hybrid_judge
from autogan_jax.weight_space import interpolate_search
from autogan_jax.weight_space import interpolation
from autogan_jax.weight_space import network as network_lib
from autogan_jax.weight_space import permutation
from autogan_jax.weight_space import permute_search
from autogan_jax.weight_space import training

MetricsCallback = Callable[[Mapping[str, Any]], None]


@jax.jit
def _scores(layers: network_lib.Network, x: jax.Array, y: jax.Array) -> dict[str, jax.Array]:
  logits = network_lib.apply_network(layers, x)
  return {"loss": training.cross_entropy(logits, y),
          "accuracy": jnp.mean(jnp.argmax(logits, axis=-1) == y)}


def scores(layers: network_lib.Network, data: datasets.ArraySplits,
           split: str) -> dict[str, float]:
  """Return the loss and accuracy of a network on all ten digits of `split`."""
  x, y = data.split(split)
  return {k: float(v) for k, v in _scores(layers, jnp.asarray(x), jnp.asarray(y)).items()}


class _Stages:
  """Stage results as JSON, networks as checkpoints and searches under a workdir.

  Without a workdir nothing is stored and every stage runs.
  """

  def __init__(self, workdir: pathlib.Path | None, metrics: MetricsCallback | None = None,
               metrics_truncate: Callable[[str, int], None] | None = None):
    self.workdir = workdir
    self.metrics = metrics
    self.metrics_truncate = metrics_truncate

  def load(self, name: str) -> dict[str, Any] | None:
    if self.workdir is None:
      return None
    path = self.workdir / "stages" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None

  def store(self, name: str, result: dict[str, Any]) -> None:
    if self.workdir is None:
      return
    folder = self.workdir / "stages"
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f"{name}.json.tmp"
    temporary.write_text(json.dumps(result, indent=1))
    temporary.replace(folder / f"{name}.json")

  def networks(self, name: str, build: Callable[[], Any], like: Any) -> Any:
    """Return the checkpointed networks `name`, or build and checkpoint them."""
    if self.workdir is None:
      return build()
    checkpointer = checkpoint.RunCheckpointer(self.workdir / "checkpoints" / name)
    try:
      if checkpointer.latest_step() is not None:
        return checkpointer.restore(like)
      built = build()
      checkpointer.save(0, built)
      return built
    finally:
      checkpointer.close()

  def _search_dir(self, phase: str) -> pathlib.Path | None:
    """Return the checkpoint folder of a search, first dropping metrics newer than its checkpoint."""
    if self.workdir is None:
      return None
    search_dir = self.workdir / "checkpoints" / phase
    if self.metrics_truncate is not None and search_dir.exists():
      checkpointer = checkpoint.RunCheckpointer(search_dir)
      self.metrics_truncate(phase, checkpointer.latest_step() or 0)
      checkpointer.close()
    return search_dir

  def search(self, phase: str, problem: adversarial.Problem, key: jax.Array,
             config) -> adversarial.SearchResult:
    """Run or resume the search `phase`, logging one metrics record per round."""
    search_dir = self._search_dir(phase)
    total = config.search.rounds

    def on_round(round_index: int, record: Mapping[str, float]) -> None:
      logging.info("%s round %d/%d: proposal mean %.4f, archive best %.4f, d_loss %.4f",
                   phase, round_index, total, record["proposal_mean"], record["archive_best"],
                   record["d_loss"])
      if self.metrics is not None:
        self.metrics({"phase": phase, "step": round_index, **record})

    return adversarial.run_search(problem, key, _search_settings(config),
                                  checkpoint_dir=search_dir, on_round=on_round)

  def judged_search(self, phase: str, pairs: list[hybrid_judge.ParentPair], key: jax.Array,
                    config) -> hybrid_judge.JudgedResult:
    """Run or resume the judged search `phase`, logging one metrics record per round."""
    search_dir = self._search_dir(phase)
    total = config.search.rounds

    def on_round(round_index: int, record: Mapping[str, float]) -> None:
      logging.info("%s round %d/%d: share of proposals beating their parents %.3f, mean margin "
                   "%.4f, d_loss %.4f", phase, round_index, total,
                   record["proposal_beats_fraction"], record["proposal_margin_mean"],
                   record["d_loss"])
      if self.metrics is not None:
        self.metrics({"phase": phase, "step": round_index, **record})

    c = config.combine
    settings = hybrid_judge.JudgeSettings(
        rounds=config.search.rounds, d_steps=c.d_steps, g_steps=c.g_steps,
        batch_size=config.search.batch_size, minibatch_size=c.minibatch_size,
        initial_per_pair=c.initial_per_pair, d_hidden=config.search.d_hidden,
        margin_weight=c.margin_weight)
    return hybrid_judge.run_judged_search(pairs, key, settings, checkpoint_dir=search_dir,
                                          on_round=on_round)


def _search_settings(config) -> adversarial.SearchSettings:
  s = config.search
  return adversarial.SearchSettings(
      rounds=s.rounds, steps_per_round=s.steps_per_round, batch_size=s.batch_size,
      top_k=s.top_k, initial_candidates=s.initial_candidates, d_hidden=s.d_hidden, loss=s.loss)


# Stage 1: loss barrier before and after alignment.


def barrier_stage(config, key: jax.Array, data: datasets.ArraySplits,
                  stages: _Stages) -> dict[str, Any]:
  """Train `config.barrier.pairs` pairs of MLPs and measure their barriers before and after alignment."""
  cached = stages.load("barrier")
  if cached is not None:
    return cached
  c = config.barrier
  sizes = (64,) + tuple(config.mlp.hidden_sizes) + (10,)
  tx = optim.default_rule(config.train.learning_rate)
  ts = jnp.linspace(0.0, 1.0, c.points)
  pairs = []
  for pair in range(c.pairs):
    seeds = (config.seed * 1000 + 2 * pair + 1, config.seed * 1000 + 2 * pair + 2)

    def build(seeds=seeds):
      nets = []
      for seed in seeds:
        k_init, k_batches = jax.random.split(jax.random.key(seed))
        layers = network_lib.init_mlp(k_init, sizes, config.mlp.activation)
        layers, _ = training.train(layers, data, key=k_batches, steps=c.steps,
                                   batch_size=config.train.batch_size, tx=tx)
        nets.append(layers)
      return tuple(nets)

    like = tuple(network_lib.init_mlp(jax.random.key(0), sizes, config.mlp.activation)
                 for _ in seeds)
    net_a, net_b = stages.networks(f"barrier_pair_{pair}", build, like)
    spec = permutation.mlp_permutation_spec(net_a)
    perms, sweeps = alignment.weight_matching(jax.random.fold_in(key, pair), net_a, net_b, spec)
    aligned_b = permutation.permute(net_b, spec, perms)
    result = {"seeds": list(seeds), "matching_sweeps": sweeps, "ts": np.asarray(ts).tolist(),
              "accuracy_test": [scores(net, data, "test")["accuracy"] for net in (net_a, net_b)]}
    for split in ("train", "test"):
      x, y = (jnp.asarray(v) for v in data.split(split))
      loss_fn = lambda layers, x=x, y=y: _scores(layers, x, y)["loss"]
      before = alignment.interpolation_losses(net_a, net_b, ts, loss_fn)
      after = alignment.interpolation_losses(net_a, aligned_b, ts, loss_fn)
      barrier_before = float(alignment.loss_barrier(ts, before))
      barrier_after = float(alignment.loss_barrier(ts, after))
      result[split] = {
          "losses_before": np.asarray(before).tolist(),
          "losses_after": np.asarray(after).tolist(),
          "barrier_before": barrier_before, "barrier_after": barrier_after,
          "removed_fraction": (1.0 - barrier_after / barrier_before
                               if barrier_before > 0 else None),
      }
    logging.info("Barrier pair %d (seeds %s): test barrier %.4f before, %.4f after alignment.",
                 pair, seeds, result["test"]["barrier_before"], result["test"]["barrier_after"])
    pairs.append(result)
  summary = {}
  for split in ("train", "test"):
    removed = [p[split]["removed_fraction"] for p in pairs if p[split]["removed_fraction"] is not None]
    summary[split] = {
        "barrier_before_mean": float(np.mean([p[split]["barrier_before"] for p in pairs])),
        "barrier_after_mean": float(np.mean([p[split]["barrier_after"] for p in pairs])),
        "removed_fraction_mean": float(np.mean(removed)) if removed else None,
        "removed_fraction_min": float(np.min(removed)) if removed else None,
    }
  result = {"pairs": pairs, "summary": summary, "goal_removed_fraction": 0.8,
            "goal_met": summary["test"]["removed_fraction_min"] is not None
            and summary["test"]["removed_fraction_min"] >= 0.8}
  stages.store("barrier", result)
  return result


# Stage 2: fixed and learned merges of two specialised MLPs.


def _specialised_parents(config, seed: int, data: datasets.ArraySplits, init_fn,
                         steps_base: int, steps_finetune: int):
  """Train a base on all digits, then fine-tune one copy per digit subset."""
  tx = optim.default_rule(config.train.learning_rate)
  keys = jax.random.split(jax.random.key(seed), 4)
  base = init_fn(keys[0])
  base, _ = training.train(base, data, key=keys[1], steps=steps_base,
                           batch_size=config.train.batch_size, tx=tx)
  parent_a, _ = training.train(base, data, key=keys[2], steps=steps_finetune,
                               batch_size=config.train.batch_size, tx=tx,
                               classes=tuple(config.merge.classes_a))
  parent_b, _ = training.train(base, data, key=keys[3], steps=steps_finetune,
                               batch_size=config.train.batch_size, tx=tx,
                               classes=tuple(config.merge.classes_b))
  return base, parent_a, parent_b


@jax.jit
def _merge_scores(basis: interpolate_search.MergeBasis, choices: jax.Array,
                  coefficients: jax.Array, rescales: jax.Array,
                  splits: dict[str, tuple[jax.Array, jax.Array]]):
  """Return {split: {"loss", "accuracy"}} of merge configurations [count, layers, ...].

  `rescales` [count, layers] is ignored when `basis` has no activation statistics.
  """

  def one(choice, coefficient, rescale):
    merged = interpolate_search.merge_network(choice, coefficient, basis,
                                              rescale if basis.can_rescale else None)
    return {name: _scores(merged, x, y) for name, (x, y) in splits.items()}

  return jax.lax.map(lambda args: one(*args), (choices, coefficients, rescales), batch_size=16)


def split_validation(data: datasets.ArraySplits, selection_fraction: float,
                     seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Split the validation data, stratified by digit, into a "fit" part and a "select" part.

  Each digit contributes round(selection_fraction * count) of its validation
  examples, drawn with `seed`, to the selection part. Returns {"fit": (x, y),
  "select": (x, y)}.
  """
  x, y = data.split("valid")
  rng = np.random.default_rng(seed)
  selected = np.zeros(len(y), bool)
  for label in np.unique(y):
    members = rng.permutation(np.flatnonzero(y == label))
    selected[members[:int(round(selection_fraction * len(members)))]] = True
  return {"fit": (x[~selected], y[~selected]), "select": (x[selected], y[selected])}


def _best_index(split_scores: Mapping[str, np.ndarray], objective: str) -> int:
  """Return the index of the best score under `objective`; ties go to the lowest index."""
  if objective == "accuracy":
    return int(np.argmax(np.asarray(split_scores["accuracy"])))
  return int(np.argmin(np.asarray(split_scores["loss"])))


def _fixed_merges(evaluate, num_layers: int, grid_points: int,
                  objective: str) -> dict[str, dict[str, Any]]:
  """Score every fixed method over its coefficient grid; pick each coefficient on the validation split."""
  fixed = {}
  for method in interpolation.METHODS:
    low, high = interpolation.COEFFICIENT_RANGES[method]
    grid = np.linspace(low, high, grid_points)
    choices, coefficients = jax.vmap(
        lambda c, method=method: interpolate_search.uniform_config(method, c, num_layers))(
            jnp.asarray(grid, jnp.float32))
    result = jax.device_get(evaluate(choices, coefficients, jnp.zeros(coefficients.shape)))
    valid, test = result["valid"], result["test"]
    best = _best_index(valid, objective)
    fixed[method] = {"grid": grid.tolist(),
                     "valid_accuracy": np.asarray(valid["accuracy"]).tolist(),
                     "valid_loss": np.asarray(valid["loss"]).tolist(),
                     "test_accuracy": np.asarray(test["accuracy"]).tolist(),
                     "best_coefficient": float(grid[best]),
                     "best_valid_accuracy": float(valid["accuracy"][best]),
                     "best_valid_loss": float(valid["loss"][best]),
                     "best_test_accuracy": float(test["accuracy"][best])}
  return fixed


def _entry(choice, coefficient, rescale, split_scores: Mapping[str, Any],
           index: int) -> dict[str, Any]:
  """Describe one merge configuration with its scores on every split."""
  entry = {"layers": interpolate_search.describe(choice, coefficient, rescale)}
  for split, values in split_scores.items():
    entry[f"{split}_accuracy"] = float(values["accuracy"][index])
    entry[f"{split}_loss"] = float(values["loss"][index])
  return entry


def _learned_merge(config, result: adversarial.SearchResult, evaluate,
                   best_fixed_config: tuple[jax.Array, jax.Array],
                   rescalable: jax.Array | None) -> dict[str, Any]:
  """Choose the learned merge on the selection split among the search's candidates.

  The candidates are the best fixed merge, G's most likely configuration and
  the `config.merge.selection_candidates` best archive members by their score
  on the fitting split. The candidate with the best selection-split score
  under `config.search.objective` is the learned merge, and the best fixed
  merge wins ties, so on the selection split the learned merge is never
  worse. Two more configurations are scored for the report only: the best
  archive member and, when `rescalable` (a [layers] 0/1 mask) is given, the
  best fixed merge with every rescalable layer rescaled.
  """
  objective = config.search.objective
  g_params = result.state.g_params
  g_mode = (jax.nn.one_hot(jnp.argmax(g_params["logits"], -1), len(interpolate_search.CHOICES)),
            jax.nn.sigmoid(g_params["coefficient_mean"]),
            jnp.argmax(g_params["rescale_logits"], -1).astype(jnp.float32))
  filled = int(result.archive.size)
  order = np.argsort(-np.asarray(result.archive.scores[:filled]), kind="stable")
  eligible_archive = min(config.merge.selection_candidates, filled)
  top = order[:max(eligible_archive, 1)]
  fixed_choice, fixed_coefficient = best_fixed_config
  named = [("best_fixed", fixed_choice, fixed_coefficient, jnp.zeros(fixed_coefficient.shape)),
           ("generator_mode",) + g_mode]
  if rescalable is not None:
    named.append(("best_fixed_rescaled", fixed_choice, fixed_coefficient, rescalable))
  names = [row[0] for row in named] + [f"archive_rank_{rank}" for rank in range(len(top))]
  eligible = np.array([name in ("best_fixed", "generator_mode") for name in names[:len(named)]]
                      + [rank < eligible_archive for rank in range(len(top))])
  samples = result.archive.samples
  choices = jnp.concatenate([jnp.stack([row[1] for row in named]), samples["choice"][top]])
  coefficients = jnp.concatenate([jnp.stack([row[2] for row in named]),
                                  samples["coefficient"][top]])
  rescales = jnp.concatenate([jnp.stack([row[3] for row in named]), samples["rescale"][top]])
  split_scores = jax.device_get(evaluate(choices, coefficients, rescales))
  entries = {name: _entry(choices[i], coefficients[i],
                          rescales[i] if rescalable is not None else None, split_scores, i)
             for i, name in enumerate(names)}

  # Configurations outside the candidates can never be chosen.
  select = split_scores["select"]
  chosen_scores = {"accuracy": np.where(eligible, select["accuracy"], -np.inf),
                   "loss": np.where(eligible, select["loss"], np.inf)}
  chosen = names[_best_index(chosen_scores, objective)]
  learned = {"selected": {"source": chosen, **entries[chosen]},
             "archive_best": entries["archive_rank_0"],
             "generator_mode": entries["generator_mode"],
             "candidates": {name: entries[name] for name, ok in zip(names, eligible) if ok},
             "quarantined": int(result.archive.quarantined),
             "candidates_scored": filled}
  if rescalable is not None:
    learned["best_fixed_rescaled"] = entries["best_fixed_rescaled"]
  return learned


def merge_stage(config, key: jax.Array, data: datasets.ArraySplits,
                stages: _Stages) -> dict[str, Any]:
  """Compare every fixed method, tuned on its grid, with G_interpolate's learned merge.

  Fixed methods pick their coefficient on the whole validation split. The
  learned merge has a fitting split, which scores G_interpolate's proposals,
  and a selection split, which chooses among the search's best candidates and
  the best fixed merge (see `_learned_merge`). With `config.merge.fit_split`
  "train" these are the training split and the whole validation split, so
  the learned merge and the fixed methods are chosen on the same data. With
  "valid_part" they are two parts of the validation split (see
  `split_validation`). With `config.merge.rescale`, G may also rescale each
  hidden layer to statistics measured on the training split's inputs. The
  test split is only reported.
  """
  cached = stages.load("merge")
  if cached is not None:
    return cached
  sizes = (64,) + tuple(config.mlp.hidden_sizes) + (10,)
  init_fn = lambda k: network_lib.init_mlp(k, sizes, config.mlp.activation)
  objective = config.search.objective
  if config.merge.fit_split == "train":
    parts = {"fit": data.split("train"), "select": data.split("valid")}
  else:
    parts = split_validation(data, config.merge.selection_fraction, config.seed)
  splits = {name: tuple(jnp.asarray(v) for v in pair) for name, pair in
            (("valid", data.split("valid")), ("test", data.split("test")), *parts.items())}
  x_stats = jnp.asarray(data.split("train")[0]) if config.merge.rescale else None
  runs = []
  for seed in config.merge.seeds:
    like = tuple(init_fn(jax.random.key(0)) for _ in range(3))
    base, parent_a, parent_b = stages.networks(
        f"merge_parents_{seed}",
        lambda seed=seed: _specialised_parents(config, seed, data, init_fn,
                                               config.merge.base_steps,
                                               config.merge.finetune_steps), like)
    k_dare, k_search = jax.random.split(jax.random.fold_in(key, seed))
    basis = interpolate_search.prepare_merge(base, parent_a, parent_b, k_dare, x_stats=x_stats)
    evaluate = functools.partial(_merge_scores, basis, splits=splits)
    num_layers = len(base)
    run = {"seed": seed, "networks": {
        name: {"valid": scores(net, data, "valid"), "test": scores(net, data, "test")}
        for name, net in (("base", base), ("parent_a", parent_a), ("parent_b", parent_b))}}

    fixed = _fixed_merges(evaluate, num_layers, config.merge.grid_points, objective)
    key_fn = ((lambda m: fixed[m]["best_valid_accuracy"]) if objective == "accuracy"
              else (lambda m: -fixed[m]["best_valid_loss"]))
    best_fixed = max(interpolation.METHODS, key=key_fn)
    run["fixed"] = fixed
    run["best_fixed"] = {"method": best_fixed, **{k: v for k, v in fixed[best_fixed].items()
                                                  if k.startswith("best_")}}
    best_fixed_config = interpolate_search.uniform_config(
        best_fixed, fixed[best_fixed]["best_coefficient"], num_layers)

    # G_interpolate and D_interpolate score proposals on the fitting split only.
    x_fit, y_fit = splits["fit"]
    problem = interpolate_search.make_problem(
        basis, x_fit[:config.search.probe_size], x_fit, y_fit, objective=objective,
        initial_config=best_fixed_config if config.merge.warm_start else None)
    result = stages.search(f"interpolate_seed_{seed}", problem, k_search, config)
    rescalable = (jnp.asarray(interpolate_search.rescalable_layers(base), jnp.float32)
                  if basis.can_rescale else None)
    learned = _learned_merge(config, result, evaluate, best_fixed_config, rescalable)
    run["learned"] = learned
    run["learned_beats_best_fixed"] = (learned["selected"]["test_accuracy"]
                                       > run["best_fixed"]["best_test_accuracy"])
    logging.info("Merge seed %d: learned test accuracy %.4f (%s), best fixed (%s) %.4f.", seed,
                 learned["selected"]["test_accuracy"], learned["selected"]["source"], best_fixed,
                 run["best_fixed"]["best_test_accuracy"])
    runs.append(run)

  learned_tests = [r["learned"]["selected"]["test_accuracy"] for r in runs]
  archive_tests = [r["learned"]["archive_best"]["test_accuracy"] for r in runs]
  fixed_tests = [r["best_fixed"]["best_test_accuracy"] for r in runs]
  summary = {"learned_test_accuracy_mean": float(np.mean(learned_tests)),
             "learned_valid_accuracy_mean": float(np.mean(
                 [r["learned"]["selected"]["valid_accuracy"] for r in runs])),
             "best_fixed_valid_accuracy_mean": float(np.mean(
                 [r["best_fixed"]["best_valid_accuracy"] for r in runs])),
             "archive_best_test_accuracy_mean": float(np.mean(archive_tests)),
             "best_fixed_test_accuracy_mean": float(np.mean(fixed_tests)),
             "learned_wins": int(sum(r["learned_beats_best_fixed"] for r in runs)),
             "learned_ties": int(sum(a == b for a, b in zip(learned_tests, fixed_tests))),
             "runs": len(runs)}
  result = {"runs": runs, "summary": summary, "objective": objective,
            "split_sizes": {name: int(len(pair[1])) for name, pair in splits.items()},
            "goal_met": summary["learned_test_accuracy_mean"]
            > summary["best_fixed_test_accuracy_mean"]}
  stages.store("merge", result)
  return result


# Stages 3 to 5: transformer parents, hybrids and module orders.


def _transformer_init(config):
  t = config.transformer
  return lambda k: network_lib.init_transformer(k, width=t.width, heads=t.heads,
                                                hidden=t.hidden, blocks=t.blocks)


def transformer_networks(config, data: datasets.ArraySplits, stages: _Stages):
  """Return the base transformer and its two fine-tunes on the merge subsets."""
  init_fn = _transformer_init(config)
  like = tuple(init_fn(jax.random.key(0)) for _ in range(3))
  seed = config.seed * 1000 + 500
  return stages.networks(
      "transformers",
      lambda: _specialised_parents(config, seed, data, init_fn, config.transformer.base_steps,
                                   config.transformer.finetune_steps), like)


def combination_stage(config, key: jax.Array, data: datasets.ArraySplits, stages: _Stages,
                      networks) -> dict[str, Any]:
  """Score fixed hybrids of the two transformer fine-tunes, then run G_combine against D_combine.

  D_combine learns from hybrids of four parent pairs (the two fine-tunes,
  the base with each fine-tune, and the two worst fixed hybrids) whether a
  hybrid's validation
  `config.combine.metric` exceeds the better parent's, and G_combine proposes
  hybrids of the two fine-tunes that D judges to beat them. D is then scored
  on fresh hybrids that it never saw against the majority-class baseline.
  """
  cached = stages.load("combination")
  if cached is not None:
    return cached
  base, parent_a, parent_b = networks
  parents = {"parent_a": scores(parent_a, data, "valid"),
             "parent_b": scores(parent_b, data, "valid")}
  parents_test = {"parent_a": scores(parent_a, data, "test"),
                  "parent_b": scores(parent_b, data, "test")}
  n = len(parent_a)
  fixed = {
      "attention_from_b": combination.kind_weights(parent_a, {"attention"}),
      "feed_forward_from_b": combination.kind_weights(parent_a, {"feed_forward"}),
      "first_half_from_b": combination.range_weights(n, 0, n // 2),
      "second_half_from_b": combination.range_weights(n, n // 2, n),
      "uniform_mixture": np.full(n, 0.5, np.float32),
  }
  hybrids = {}
  for name, weights in fixed.items():
    child = combination.mix_modules(parent_a, parent_b, weights)
    hybrids[name] = {"weights": weights.tolist(), "valid": scores(child, data, "valid"),
                     "test": scores(child, data, "test")}

  x_valid, y_valid = (jnp.asarray(v) for v in data.split("valid"))
  x_probe = x_valid[:config.search.probe_size]
  # The fourth pair is the two fixed hybrids with the lowest validation
  # accuracy. In the default study every held-out hybrid of A and B beats
  # them and none of the base pairs beats the base, so only these middling
  # parents give D evidence of both labels within one pair.
  first, second = sorted(hybrids, key=lambda name: hybrids[name]["valid"]["accuracy"])[:2]
  hybrid_parents = [combination.mix_modules(parent_a, parent_b, fixed[name])
                    for name in (first, second)]
  pair_names = ("parent_a+parent_b", "base+parent_a", "base+parent_b", f"{first}+{second}")
  pairs = [hybrid_judge.make_pair(one, other, x_probe, x_valid, y_valid,
                                  objective=config.combine.metric)
           for one, other in ((parent_a, parent_b), (base, parent_a), (base, parent_b),
                              tuple(hybrid_parents))]
  k_search, k_heldout, k_generator = jax.random.split(key, 3)
  result = stages.judged_search("combine", pairs, k_search, config)
  evidence = result.evidence
  filled = int(evidence.size)
  train_margins = np.asarray(evidence.scores[:filled])
  train_labels = train_margins > 0
  train_pairs = np.asarray(evidence.samples["pair"][:filled])
  majority_label = bool(np.mean(train_labels) >= 0.5)
  pair_majority = [bool(np.mean(train_labels[train_pairs == i]) >= 0.5)
                   for i in range(len(pairs))]

  # D_combine on fresh hybrids of every pair from the untrained, nearly uniform G,
  # against the majority label of all its evidence and of the hybrid's own pair.
  heldout = {}
  pooled_features, pooled_margins, pooled_pair_majority = [], [], []
  count = config.combine.heldout_per_pair
  for index, (name, pair) in enumerate(zip(pair_names, pairs)):
    k_pair = jax.random.fold_in(k_heldout, index)
    sample = pair.sample(pair.init_generator(k_pair), jax.random.fold_in(k_pair, 1), count)
    features, margins = jax.jit(pair.featurize)(sample), jax.jit(pair.margin)(sample)
    pooled_features.append(features)
    pooled_margins.append(margins)
    pooled_pair_majority.append(np.full(count, pair_majority[index]))
    heldout[name] = hybrid_judge.judge_accuracy(result.state.d_params, features, margins,
                                                majority_label)
    heldout[name]["pair_majority_accuracy"] = float(
        np.mean((np.asarray(margins) > 0) == pair_majority[index]))
  features, margins = jnp.concatenate(pooled_features), jnp.concatenate(pooled_margins)
  heldout["pooled"] = hybrid_judge.judge_accuracy(result.state.d_params, features, margins,
                                                  majority_label)
  heldout["pooled"]["pair_majority_accuracy"] = hybrid_judge.judge_accuracy(
      result.state.d_params, features, margins,
      np.concatenate(pooled_pair_majority))["majority_accuracy"]

  # G_combine's hybrids of the two fine-tunes before and after training on D's judgement.
  target = pairs[0]
  margin_of = jax.jit(target.margin)
  k_initial, k_final = jax.random.split(k_generator)
  initial = target.sample(target.init_generator(k_initial), k_initial, count)
  final = target.sample(result.state.g_params, k_final, count)
  initial_margin, final_margin = np.asarray(margin_of(initial)), np.asarray(margin_of(final))
  heldout["generator_final"] = hybrid_judge.judge_accuracy(
      result.state.d_params, jax.jit(target.featurize)(final), final_margin, majority_label)

  own = np.flatnonzero(np.asarray(evidence.samples["pair"][:filled]) == 0)
  best_row = int(own[np.argmax(train_margins[own])])
  best_weights = evidence.samples["weights"][best_row]
  best_child = combination.mix_modules(parent_a, parent_b, best_weights)
  out = {
      "parents_valid": parents, "parents_test": parents_test, "fixed_hybrids": hybrids,
      "metric": config.combine.metric,
      "judge": {"heldout": heldout, "pairs": list(pair_names),
                "parent_scores": {name: np.asarray(pair.parent_scores).tolist()
                                  for name, pair in zip(pair_names, pairs)},
                "evidence_size": filled,
                "evidence_beats_fraction": float(np.mean(train_labels)),
                "majority_label": majority_label, "pair_majority_labels": pair_majority},
      "generator": {
          "initial_beats_parents_fraction": float(np.mean(initial_margin > 0)),
          "final_beats_parents_fraction": float(np.mean(final_margin > 0)),
          "initial_margin_mean": float(np.mean(initial_margin)),
          "final_margin_mean": float(np.mean(final_margin)),
          "samples": count,
      },
      "best_hybrid": {"weights": np.asarray(best_weights).tolist(),
                      "valid": scores(best_child, data, "valid"),
                      "test": scores(best_child, data, "test")},
  }
  stages.store("combination", out)
  return out


def permutation_stage(config, key: jax.Array, data: datasets.ArraySplits, stages: _Stages,
                      networks) -> dict[str, Any]:
  """Score every module order of the base transformer, then run G_permute and check D."""
  cached = stages.load("permutation")
  if cached is not None:
    return cached
  base = networks[0]
  pool = permutation.module_pool(base)
  slots = config.permute.slots
  x_valid, y_valid = (jnp.asarray(v) for v in data.split("valid"))
  objective = config.search.objective
  sequences = permute_search.all_sequences(pool.num_choices, slots)
  score_all = jax.jit(lambda s: permute_search.sequence_scores(pool, s, x_valid, y_valid,
                                                               "accuracy"))
  accuracy_all = np.asarray(score_all(jnp.asarray(sequences)))
  # The trained order alternates attention i and feed-forward i; skips pad it to the slots.
  original = []
  for block in range(min(pool.num_attention, pool.num_feed_forward)):
    original += [block, pool.num_attention + block]
  original = (original + [pool.skip_id] * slots)[:slots]

  problem = permute_search.make_problem(pool, x_valid[:config.search.probe_size], x_valid,
                                        y_valid, slots=slots, objective=objective)
  result = stages.search("permute", problem, key, config)

  # D's judgement of every order against the orders' true validation accuracy.
  one_hots = jax.nn.one_hot(jnp.asarray(sequences), pool.num_choices)
  d_logits = []
  featurize = jax.jit(problem.featurize)
  for start in range(0, len(sequences), 128):
    features = featurize(one_hots[start:start + 128])
    d_logits.append(np.asarray(adversarial.discriminate(result.state.d_params, features)))
  d_logits = np.concatenate(d_logits)
  correlation = stats.spearmanr(d_logits, accuracy_all).statistic

  count = config.search.initial_candidates
  final = problem.sample(result.state.g_params, jax.random.fold_in(key, 1), count)
  final_accuracy = np.asarray(score_all(jnp.argmax(final, axis=-1)))
  best = int(np.argmax(accuracy_all))
  out = {
      "num_orders": len(sequences),
      "module_names": ([f"attention_{i}" for i in range(pool.num_attention)]
                       + [f"feed_forward_{i}" for i in range(pool.num_feed_forward)] + ["skip"]),
      "original_order": original,
      "original_valid_accuracy": float(np.asarray(score_all(jnp.asarray([original])))[0]),
      "best_order": sequences[best].tolist(),
      "best_valid_accuracy": float(accuracy_all[best]),
      "uniform_valid_accuracy_mean": float(np.mean(accuracy_all)),
      "generator_valid_accuracy_mean": float(np.mean(final_accuracy)),
      "generator_samples": count,
      "generator_top_order": np.argmax(result.state.g_params["logits"], -1).tolist(),
      "discriminator_spearman": float(correlation),
  }
  stages.store("permutation", out)
  return out


def run_study(config, key: jax.Array, workdir: pathlib.Path | None = None,
              metrics: MetricsCallback | None = None,
              metrics_truncate: Callable[[str, int], None] | None = None) -> dict[str, Any]:
  """Run every stage and return the report dict (see the module docstring).

  Args:
    config: a validated merge config.
    key: the study's PRNG key.
    workdir: where stage results and checkpoints go; None keeps everything in memory.
    metrics: receives one record per search round.
    metrics_truncate: called as (phase, step) before a search resumes, to
      drop metric records written after its last checkpoint.
  """
  data = datasets.load_digits()
  stages = _Stages(workdir, metrics, metrics_truncate)
  keys = jax.random.split(key, 4)
  report = {"barrier": barrier_stage(config, keys[0], data, stages)}
  report["merge"] = merge_stage(config, keys[1], data, stages)
  networks = transformer_networks(config, data, stages)
  report["transformers"] = {
      name: {"valid": scores(net, data, "valid"), "test": scores(net, data, "test")}
      for name, net in zip(("base", "parent_a", "parent_b"), networks)}
  report["combination"] = combination_stage(config, keys[2], data, stages, networks)
  report["permutation"] = permutation_stage(config, keys[3], data, stages, networks)
  return report
