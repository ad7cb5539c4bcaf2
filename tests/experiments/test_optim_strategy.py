"""The optimization-strategy experiment: config checks and the smoke preset on real digits."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from autogan_jax.core import validation
from experiments.configs import optim_strategy as config_module

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_config_rejects_invalid_values():
  for preset in config_module.PRESETS:
    config = config_module.get_config(preset)
    validation.validate(config, config_module.schema())
    config_module.check_relations(config)
  config = config_module.get_config("smoke")
  config.study.es_pairs = 0
  with pytest.raises(validation.ConfigError, match="study.es_pairs=0"):
    validation.validate(config, config_module.schema())
  config = config_module.get_config("smoke")
  config.study.threshold_low = 0.9
  config.study.threshold_high = 0.5
  with pytest.raises(validation.ConfigError, match="threshold_low"):
    config_module.check_relations(config)
  config = config_module.get_config("smoke")
  config.study.judge_top_fraction = 0.9
  with pytest.raises(validation.ConfigError, match="no fake curves"):
    config_module.check_relations(config)


def test_smoke_run_writes_report(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  result = subprocess.run(
      [sys.executable, "-m", "experiments.optim_strategy", f"--workdir={tmp_path}",
       "--config=experiments/configs/optim_strategy.py:smoke"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-4000:]
  for name in ("report.md", "report.json", "metrics.jsonl", "curves.png", "gates.png",
               "gates_shared_bias.png"):
    assert (tmp_path / name).stat().st_size > 0, name

  report = json.loads((tmp_path / "report.json").read_text())
  assert report["seeds"] == [0, 1]
  names = [row["strategy"] for row in report["rows"]]
  assert names == ["learned", "learned_shared_bias", "gradient_only", "es_only",
                   "score_function_only", "uniform_mix", "hand_assigned"]
  for row in report["rows"]:
    assert np.isfinite(row["test_loss"]), row["strategy"]
    assert 0.0 <= row["test_accuracy"] <= 1.0
    assert len(row["test_loss_per_seed"]) == 2
    assert 0.0 < row["d_optim"] < 1.0
    np.testing.assert_allclose(sum(row["choice_probs"]), 1.0, rtol=1e-5)
  rows = {row["strategy"]: row for row in report["rows"]}
  # The gradient never reaches the thresholds or the activation logits.
  assert rows["gradient_only"]["choice_probs"] == [0.25, 0.25, 0.25, 0.25]
  assert rows["gradient_only"]["threshold_mean"] == rows["score_function_only"]["threshold_mean"]
  for name, summary in report["learned"].items():
    for group in report["groups"]:
      np.testing.assert_allclose(sum(summary["gates"][group].values()), 1.0, rtol=1e-5)
      np.testing.assert_allclose(sum(summary["shares"][group].values()), 1.0, rtol=1e-5)
    # No source but ES reaches the thresholds.
    assert summary["shares"]["thresholds"]["es"] == pytest.approx(1.0), name
  shared = np.asarray(report["learned_gate_params"]["learned_shared_bias"]["bias"])
  np.testing.assert_array_equal(shared, np.broadcast_to(shared[:1], shared.shape))

  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records if r["phase"] == "meta_train"] == [1, 2]
  assert [r["step"] for r in records if r["phase"] == "meta_train_shared_bias"] == [1, 2]
  assert sum(r["phase"] == "evaluate" for r in records) == 7
  assert "D_optim" in (tmp_path / "report.md").read_text()
