"""The output-level experiment's smoke preset on the real data, end to end."""

import json

import numpy as np
import pytest

from autogan_jax.core import ConfigError
from experiments import output_level
from experiments.configs import output_level as output_level_config


def test_invalid_config_is_rejected_before_compute(tmp_path):
  config = output_level_config.get_config("smoke")
  config.sampler.estimator = "reinforce"
  config.hmm.vocab_size = 1
  with pytest.raises(ConfigError) as error:
    output_level.run(config, tmp_path)
  assert "sampler.estimator" in str(error.value)
  assert "hmm.vocab_size" in str(error.value)
  assert not any(tmp_path.iterdir())


def test_repeated_seeds_are_rejected(tmp_path):
  config = output_level_config.get_config("smoke")
  config.seeds = (1, 1)
  with pytest.raises(ConfigError, match="seeds"):
    output_level.run(config, tmp_path)
  assert not any(tmp_path.iterdir())


def test_unknown_preset_is_rejected():
  with pytest.raises(ValueError, match="tiny"):
    output_level_config.get_config("tiny")


@pytest.mark.slow
def test_smoke_run_writes_report_and_resumes(tmp_path):
  config = output_level_config.get_config("smoke")
  report = output_level.run(config, tmp_path)
  for name in ("report.json", "report.md", "metrics.jsonl", "sampling_hmm.png",
               "sampling_chars.png", "reliability_digits.png", "reliability_stdlib_chars.png",
               "ensemble_digits.png", "ensemble_stdlib_chars.png"):
    assert (tmp_path / name).exists(), name
  saved = json.loads((tmp_path / "report.json").read_text())
  assert set(saved) >= {"sampling", "calibration", "ensemble", "config"}
  hmm_result = saved["sampling"]["hmm"]
  assert len(hmm_result["fixed"]) >= 7
  assert hmm_result["comparison"]["front"]
  # The smoke preset keeps G_sampler every 2 of 4 steps and picks one snapshot on validation.
  selection = hmm_result["selection"]
  assert [c["step"] for c in selection["candidates"]] == [2, 4]
  assert selection["chosen_step"] == max(selection["candidates"],
                                         key=lambda c: c["margin"])["step"]
  for data in ("digits", "stdlib_chars"):
    methods = saved["calibration"][data]["metrics"]
    assert set(methods) == {"uncalibrated", "temperature", "vector", "histogram", "isotonic",
                            "g_cal"}
    # G_cal rescales logits by a positive temperature, so the argmax never changes.
    assert methods["g_cal"]["accuracy"] == methods["uncalibrated"]["accuracy"]
  for data in ("digits", "stdlib_chars"):
    result = saved["ensemble"][data]
    assert set(result["results"]) == {"ensemble", "g_ensemble", "g_ensemble_distilled_only",
                                      "mimo", "single_member", "member_mean"}
    assert 0.0 < result["cost_ratios"]["g_ensemble"]["multiply_adds"] < 1.0
    early_stopping = result["distill_validation"]
    assert len(early_stopping["valid_nll"]) == 2
    assert early_stopping["best_step"] == 10 * (1 + int(np.argmin(early_stopping["valid_nll"])))
  # The character model predicts one of 128 characters, so its NLL scale differs from digits.
  assert saved["ensemble"]["stdlib_chars"]["results"]["ensemble"]["nll"] > 0.0
  assert saved["summary"]["runs"] == 1
  summary_nll = saved["summary"]["ensemble"]["stdlib_chars"]["methods"]["g_ensemble"]["nll"]
  assert summary_nll["mean"] == saved["ensemble"]["stdlib_chars"]["results"]["g_ensemble"]["nll"]
  assert summary_nll["std"] == 0.0
  markdown = (tmp_path / "report.md").read_text()
  assert "Summary over seeds 0" in markdown
  assert "G_ensemble" in markdown

  # A rerun reads every finished part back instead of recomputing it.
  phases = tmp_path / "seed_0" / "phases"
  stamps = {p.name: p.stat().st_mtime_ns for p in phases.iterdir()}
  assert "ensemble_chars.json" in stamps
  again = output_level.run(config, tmp_path)
  assert {p.name: p.stat().st_mtime_ns for p in phases.iterdir()} == stamps
  for data in ("digits", "stdlib_chars"):
    assert again["ensemble"][data]["results"] == report["ensemble"][data]["results"]
