"""The temporal experiment's smoke preset end to end on the real data."""

import json
import subprocess
import sys

import pytest

from autogan_jax.core import ConfigError
from autogan_jax.core import validation
from experiments.configs import temporal as temporal_config


def run_experiment(workdir, *overrides):
  command = [sys.executable, "-m", "experiments.temporal", f"--workdir={workdir}",
             "--config=experiments/configs/temporal.py:smoke", *overrides]
  return subprocess.run(command, capture_output=True, text=True, timeout=1200, check=False)


@pytest.mark.slow
def test_smoke_run_writes_report(tmp_path):
  result = run_experiment(tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads((tmp_path / "report.json").read_text())

  alignment = report["alignment"]
  assert len(alignment["rows"]) == 9
  for row in alignment["rows"]:
    assert row["test_cer"] >= 0.0
    assert row["valid_cer"] >= 0.0
  assert alignment["learned"]["config"] in {row["config"] for row in alignment["rows"]}
  assert len(alignment["learned_by_search_seed"]) == 2
  assert alignment["learned"]["config"] in alignment["learned_by_search_seed"]
  best = min(row["test_cer"] for row in alignment["rows"])
  assert alignment["best_fixed_by_test"]["test_cer"] == best
  assert alignment["goal_met"] == (alignment["learned"]["test_cer"] <= best)

  for study in ("pendulum", "char"):
    results = report[study]["results"]
    assert "learned" in results
    assert "next_step_baseline" in results
    for row in results.values():
      assert len(row["errors_by_step"]) == report[study]["rollout_steps"]
      assert row["next_step"] is not None
  pendulum = report["pendulum"]["results"]
  assert pendulum["next_step_baseline"]["calls"] == 50.0
  assert report["pendulum"]["goal_met"] == (
      pendulum["learned"]["error_at_end"] < pendulum["next_step_baseline"]["error_at_end"])

  markdown = (tmp_path / "report.md").read_text()
  assert "character error rate" in markdown
  assert "error at step 50" in markdown
  for name in ("alignment_cer.png", "alignment_ctc.png", "alignment_boundaries.png",
               "pendulum_rollout_error.png", "pendulum_examples.png", "char_rollout_error.png"):
    assert (tmp_path / name).stat().st_size > 0, name
  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert sum(r["phase"] == "alignment" for r in records) == 9
  assert sum(r["phase"] == "pendulum_search" for r in records) == 2


def test_invalid_config_rejected_before_compute(tmp_path):
  result = run_experiment(tmp_path, "--config.pendulum.train_steps=0")
  assert result.returncode != 0
  assert "pendulum.train_steps=0" in result.stderr
  assert not (tmp_path / "metrics.jsonl").exists()


def test_every_preset_passes_schema():
  for preset in temporal_config.PRESETS:
    validation.validate(temporal_config.get_config(preset), temporal_config.schema())
  short = temporal_config.get_config("smoke")
  short.pendulum.length = 60
  with pytest.raises(ConfigError, match="pendulum.length=60"):
    temporal_config.check_lengths(short)
  with pytest.raises(ConfigError, match="preset"):
    temporal_config.get_config("huge")
