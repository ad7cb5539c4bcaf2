"""The merge study's smoke preset end to end on the real digits, and its config checks."""

import json

import numpy as np
import pytest

from autogan_jax.core import ConfigError
from autogan_jax.tasks import datasets
from autogan_jax.weight_space import pipeline
from autogan_jax.weight_space import interpolation
from experiments import merge
from experiments.configs import merge as merge_config


@pytest.mark.slow
def test_smoke_study_writes_report_and_resumes(tmp_path):
  config = merge_config.get_config("smoke")
  report = merge.run(config, tmp_path)
  for name in ("report.json", "report.md", "metrics.jsonl", "barrier.png", "merges.png",
               "searches.png"):
    assert (tmp_path / name).exists(), name

  # The barrier is measured on the real test split, and alignment never changes the end points.
  pair = report["barrier"]["pairs"][0]
  assert pair["test"]["barrier_before"] >= 0.0
  assert pair["test"]["losses_after"][0] == pair["test"]["losses_before"][0]
  assert pair["test"]["losses_after"][-1] == pytest.approx(pair["test"]["losses_before"][-1],
                                                           rel=1e-4)

  # Grid end points reproduce the parents and the base, an independent check of the merge code.
  run = report["merge"]["runs"][0]
  nets = run["networks"]
  assert run["fixed"]["linear"]["valid_accuracy"][0] == pytest.approx(
      nets["parent_a"]["valid"]["accuracy"])
  assert run["fixed"]["linear"]["valid_accuracy"][-1] == pytest.approx(
      nets["parent_b"]["valid"]["accuracy"])
  assert run["fixed"]["task_arithmetic"]["valid_accuracy"][0] == pytest.approx(
      nets["base"]["valid"]["accuracy"])
  assert set(run["fixed"]) == set(interpolation.METHODS)
  assert 0.0 <= run["learned"]["archive_best"]["test_accuracy"] <= 1.0

  # G fits on the training split and the learned merge is chosen on the whole
  # validation split among candidates that include the best fixed merge, so it
  # is never worse there.
  sizes = report["merge"]["split_sizes"]
  assert sizes["fit"] == 1078
  assert sizes["select"] == sizes["valid"] == 359
  learned = run["learned"]
  assert learned["selected"]["source"] in learned["candidates"]
  assert learned["selected"]["select_loss"] <= learned["candidates"]["best_fixed"]["select_loss"]
  assert learned["selected"]["valid_loss"] == pytest.approx(learned["selected"]["select_loss"])
  assert learned["candidates"]["best_fixed"]["test_accuracy"] == pytest.approx(
      run["best_fixed"]["best_test_accuracy"])
  assert set(learned["candidates"]) == {"best_fixed", "generator_mode"} | {
      f"archive_rank_{rank}" for rank in range(config.merge.selection_candidates)}
  # Rescaling every hidden layer of the best fixed merge changes its scores.
  rescaled = learned["best_fixed_rescaled"]
  assert rescaled["layers"][0].endswith(" + rescale")
  assert rescaled["valid_loss"] != pytest.approx(learned["candidates"]["best_fixed"]["valid_loss"])
  assert "best fixed + rescale" in (tmp_path / "report.md").read_text()

  # D_combine is scored on held-out hybrids of four parent pairs.
  judge = report["combination"]["judge"]
  pooled = judge["heldout"]["pooled"]
  assert pooled["count"] == 4 * config.combine.heldout_per_pair
  assert 0.0 <= pooled["accuracy"] <= 1.0
  assert pooled["majority_accuracy"] == pytest.approx(
      pooled["beats_fraction"] if judge["majority_label"] else 1.0 - pooled["beats_fraction"])
  assert judge["evidence_size"] == (4 * config.combine.initial_per_pair
                                    + config.search.rounds * config.search.batch_size)

  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  phases = {r["phase"] for r in records}
  assert phases == {"interpolate_seed_1", "combine", "permute"}
  assert report["permutation"]["num_orders"] == 3 ** config.permute.slots

  # A rerun in the same folder reuses every finished stage and gives the same report.
  again = merge.run(config, tmp_path)
  assert again["merge"] == report["merge"]
  assert again["permutation"] == report["permutation"]
  records_again = (tmp_path / "metrics.jsonl").read_text().splitlines()
  assert len(records_again) == len(records)


def test_config_rejects_invalid_values():
  config = merge_config.get_config("smoke")
  config.search.top_k = 100
  with pytest.raises(ConfigError, match="search.top_k"):
    merge_config.validate(config)
  config = merge_config.get_config("smoke")
  config.transformer.heads = 3
  with pytest.raises(ConfigError, match="transformer.width"):
    merge_config.validate(config)
  config = merge_config.get_config("smoke")
  config.search.objective = "f1"
  with pytest.raises(ConfigError, match="search.objective"):
    merge_config.validate(config)
  config = merge_config.get_config("smoke")
  config.merge.selection_fraction = 1.0
  with pytest.raises(ConfigError, match="merge.selection_fraction"):
    merge_config.validate(config)
  config = merge_config.get_config("smoke")
  config.merge.fit_split = "test"
  with pytest.raises(ConfigError, match="merge.fit_split"):
    merge_config.validate(config)
  config = merge_config.get_config("smoke")
  config.combine.metric = "f1"
  with pytest.raises(ConfigError, match="combine.metric"):
    merge_config.validate(config)
  with pytest.raises(ConfigError, match="preset"):
    merge_config.get_config("huge")
  for preset in merge_config.PRESETS:
    merge_config.validate(merge_config.get_config(preset))


def test_split_validation_is_stratified():
  data = datasets.load_digits()
  x, y = data.split("valid")
  parts = pipeline.split_validation(data, 0.5, seed=3)
  (x_fit, y_fit), (x_select, y_select) = parts["fit"], parts["select"]
  assert len(y_fit) + len(y_select) == len(y)
  for label in range(10):
    count = int(np.sum(y == label))
    assert int(np.sum(y_select == label)) == round(0.5 * count)
  # The parts are disjoint and together hold every validation digit once.
  rows = lambda a: {row.tobytes() for row in a}
  assert not rows(x_fit) & rows(x_select)
  assert rows(x_fit) | rows(x_select) == rows(x)
  again = pipeline.split_validation(data, 0.5, seed=3)
  np.testing.assert_array_equal(again["select"][1], y_select)
