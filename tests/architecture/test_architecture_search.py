"""Search space, the three searches and the smoke experiment on real data."""

import itertools
import json

import jax
import numpy as np
import pytest

from autogan_jax.architecture import experiment
from autogan_jax.architecture import search
from autogan_jax.core import ConfigError
from autogan_jax.model_space import space as space_lib
from autogan_jax.model_space import zoo as zoo_lib
from experiments.configs import architecture_search as config_lib


def test_space_round_trips_every_family():
  space = space_lib.SearchSpace()
  rng = np.random.default_rng(0)
  families = set()
  for _ in range(200):
    choice = space.sample(rng)
    spec = space.to_spec(choice)
    families.add(spec.family)
    np.testing.assert_array_equal(space.to_choice(spec), choice)
    features = space.features(choice)
    assert features.shape == (space.num_features,)
    assert features.sum() == len(space.slot_sizes())
  assert families == set(space.families)


def test_mutation_changes_one_used_slot():
  space = space_lib.SearchSpace()
  rng = np.random.default_rng(1)
  for _ in range(100):
    parent = space.sample(rng)
    child = space.mutate(parent, rng)
    assert space.to_spec(child) != space.to_spec(parent)
    changed = np.flatnonzero(child != parent)
    names = [name for name, _ in space.slots()]
    # A depth change may zero the widths past the new depth; a family change resets attention.
    if not {names[i] for i in changed} & {"depth", "family"}:
      assert len(changed) == 1


def test_space_rejects_odd_head_dims():
  with pytest.raises(ConfigError, match="model_dims"):
    space_lib.SearchSpace(model_dims=(6,), heads=(2,))


def test_history_features_rank_options():
  space = space_lib.SearchSpace(families=("mlp", "gru"))
  rng = np.random.default_rng(0)
  low, high = space.sample(rng), space.sample(rng)
  low[0], high[0] = 0, 1
  history = search.history_features(space, [low, high], [0.1, 0.9])
  assert history[0] == 0.0
  assert history[1] == 1.0


def _proposer_archive(space, size, seed):
  rng = np.random.default_rng(seed)
  choices = [space.sample(rng) for _ in range(size)]
  # The validation accuracy grows with the learning-rate option, so the best region is known.
  slot = [name for name, _ in space.slots()].index("learning_rate")
  scores = [float(c[slot]) + 0.01 * i for i, c in enumerate(choices)]
  return choices, scores


@pytest.mark.parametrize("explore_fraction,mutations", [(1.0, True), (0.0, False),
                                                        (0.25, True)])
def test_adversarial_proposals_are_new_and_counted(explore_fraction, mutations):
  space = space_lib.SearchSpace(families=("mlp",), depths=(1, 2), widths=(8, 16),
                                model_dims=(4,), heads=(1, 2))
  config = search.SearchConfig(budget=12, round_size=4, gan_steps=5, gan_batch=4,
                               candidates_per_model=4, explore_fraction=explore_fraction,
                               mutation_candidates=mutations)
  proposer = search.AdversarialProposer(space, np.array([1.0, 0.0]), config,
                                        jax.random.key(0))
  choices, scores = _proposer_archive(space, 8, seed=0)
  picked = proposer.propose(choices, scores, 4, np.random.default_rng(0), round_index=1)
  assert len(picked) == 4
  keys = {tuple(c) for c in picked}
  assert len(keys) == 4
  assert not keys & {tuple(c) for c in choices}
  generator_picks = proposer.picked_from_generator[-1]
  assert 0 <= generator_picks <= 4
  # G draws 16 samples from a space of thousands of specs, so with these keys some are new.
  assert generator_picks >= round(explore_fraction * 4)
  if not mutations:
    assert generator_picks >= 1
  if explore_fraction == 1.0:
    assert generator_picks == 4


def test_ranker_scorer_prefers_known_best_region():
  # Accuracy grows with the learning-rate option (0 to 4), so a ranker trained on
  # the archive should pick candidates near the top option.
  space = space_lib.SearchSpace(families=("mlp",), depths=(1, 2), widths=(8, 16),
                                model_dims=(4,), heads=(1, 2))
  config = search.SearchConfig(budget=40, round_size=4, gan_steps=5, gan_batch=4,
                               candidates_per_model=8, explore_fraction=0.0,
                               candidate_scorer="ranker")
  proposer = search.AdversarialProposer(space, np.array([1.0, 0.0]), config,
                                        jax.random.key(0))
  choices, scores = _proposer_archive(space, 32, seed=1)
  picked = proposer.propose(choices, scores, 4, np.random.default_rng(0), round_index=1)
  slot = [name for name, _ in space.slots()].index("learning_rate")
  assert len({tuple(c) for c in picked} - {tuple(c) for c in choices}) == 4
  assert np.mean([c[slot] for c in choices]) < 2.0
  assert np.mean([c[slot] for c in picked]) >= 3.5


def test_search_config_rejects_unknown_scorer():
  with pytest.raises(ConfigError, match="candidate_scorer"):
    search.SearchConfig(candidate_scorer="oracle")


def test_generator_draws_find_untrained_specs():
  # The space has eight specs and six are trained. With these keys one draw of two
  # G samples misses at least one untrained spec, and eight draws find both.
  space = space_lib.SearchSpace(
      families=("mlp",), depths=(1,), widths=(8,), activations=("relu", "gelu"),
      norms=("none",), connectivities=("none",), model_dims=(4,), learning_rates=(1e-3, 1e-2),
      weight_decays=(0.0,), batch_sizes=(16, 32), heads=(1,))
  every = sorted({tuple(space.canonical(np.array(c)))
                  for c in itertools.product(*[range(n) for n in space.slot_sizes()])})
  assert len(every) == 8
  archive = [np.array(c) for c in every[:6]]
  picks = {}
  for draws in (1, 8):
    config = search.SearchConfig(budget=10, round_size=2, gan_steps=2, gan_batch=2,
                                 candidates_per_model=1, explore_fraction=1.0,
                                 mutation_candidates=False, generator_draws=draws)
    picks[draws] = []
    for key in range(3):
      proposer = search.AdversarialProposer(space, np.array([1.0, 0.0]), config,
                                            jax.random.key(key))
      picked = proposer.propose(archive, [float(i) for i in range(6)], 2,
                                np.random.default_rng(0), round_index=1)
      assert {tuple(c) for c in picked} == set(every[6:])
      picks[draws].append(proposer.picked_from_generator[-1])
  assert picks[8] == [2, 2, 2]
  assert sum(picks[1]) < 6


def test_search_config_rejects_explore_fraction():
  with pytest.raises(ConfigError, match="explore_fraction=1.5"):
    search.SearchConfig(explore_fraction=1.5)


def test_search_config_rejects_zero_draws():
  with pytest.raises(ConfigError, match="generator_draws=0"):
    search.SearchConfig(generator_draws=0)


def _smoke_config():
  config = config_lib.get_config("smoke")
  return config


def test_invalid_config_rejected_before_compute(tmp_path):
  config = _smoke_config()
  config.search.budget = 1
  config.tasks = ("digits", "images")
  with pytest.raises(ConfigError) as error:
    experiment.run(config, tmp_path)
  assert "search.budget=1" in str(error.value)
  assert "tasks" in str(error.value)
  assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("field, value, message", [
    ("round_size", 8, "search.round_size=8: expected less than search.budget=8"),
    ("tournament_size", 9, "search.tournament_size=9: expected at most"),
    ("top_fraction", 2.0, "search.top_fraction=2.0"),
])
def test_contradicting_search_values_rejected(tmp_path, field, value, message):
  config = _smoke_config()
  config.search.budget = 8
  config.search.evolution_population = 8
  config.search[field] = value
  with pytest.raises(ConfigError, match=message):
    experiment.run(config, tmp_path)
  assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_smoke_experiment_writes_report_and_resumes(tmp_path):
  config = _smoke_config()
  report, markdown = experiment.run(config, tmp_path)
  for task in config.tasks:
    for method in config.methods:
      figure = report["search"][task][method]
      assert figure["seeds"] == len(config.seeds)
      assert len(figure["best_valid_by_budget_mean"]) == config.search.budget
    ranks = report["ranking"][task]
    assert len(ranks["per_seed"]) == len(config.seeds)
    assert np.isfinite(ranks["spearman_spec_and_early_curve_mean"])
  methods = report["weights"]["mean"]
  assert set(methods) == {"generated", "archive_plus_noise", "archive_average", "fresh_init"}
  assert (tmp_path / "best_found_vs_budget.png").stat().st_size > 0
  assert "Spearman" in markdown

  records, io, task = zoo_lib.load_zoo(tmp_path / "zoo" / "digits")
  assert task == "digits"
  assert len(records) == config.search.budget
  saved = json.loads((tmp_path / "searches" / "digits_random_seed0.json").read_text())
  assert [r.metrics["valid_accuracy"] for r in records] == saved["valid_accuracy"]

  # Every method starts from the same random round and trains exactly the budget.
  first_round = None
  for method in config.methods:
    saved = json.loads((tmp_path / "searches" / f"chars_{method}_seed1.json").read_text())
    assert len(saved["choices"]) == config.search.budget
    first_round = first_round or saved["choices"][:config.search.round_size]
    assert saved["choices"][:config.search.round_size] == first_round
  adversarial = json.loads((tmp_path / "searches" / "digits_adversarial_seed0.json").read_text())
  assert len({tuple(c) for c in adversarial["choices"]}) == config.search.budget

  # A rerun loads every finished search and gives the same search figures.
  again, _ = experiment.run(config, tmp_path)
  assert again["search"] == report["search"]
