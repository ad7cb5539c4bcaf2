"""The output-level experiment's smoke preset on the real data, end to end."""

import json

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


def test_unknown_preset_is_rejected():
  with pytest.raises(ValueError, match="tiny"):
    output_level_config.get_config("tiny")


@pytest.mark.slow
def test_smoke_run_writes_report_and_resumes(tmp_path):
  config = output_level_config.get_config("smoke")
  report = output_level.run(config, tmp_path)
  for name in ("report.json", "report.md", "metrics.jsonl", "sampling_hmm.png",
               "sampling_chars.png", "reliability_digits.png", "reliability_stdlib_chars.png",
               "ensemble.png"):
    assert (tmp_path / name).exists(), name
  saved = json.loads((tmp_path / "report.json").read_text())
  assert set(saved) >= {"sampling", "calibration", "ensemble", "config"}
  hmm_result = saved["sampling"]["hmm"]
  assert len(hmm_result["fixed"]) >= 7
  assert hmm_result["comparison"]["front"]
  for data in ("digits", "stdlib_chars"):
    methods = saved["calibration"][data]["metrics"]
    assert set(methods) == {"uncalibrated", "temperature", "vector", "histogram", "isotonic",
                            "g_cal"}
    # G_cal rescales logits by a positive temperature, so the argmax never changes.
    assert methods["g_cal"]["accuracy"] == methods["uncalibrated"]["accuracy"]
  ratios = saved["ensemble"]["cost_ratios"]["g_ensemble"]
  assert 0.0 < ratios["multiply_adds"] < 1.0
  assert "G_ensemble" in (tmp_path / "report.md").read_text()

  # A rerun reads every finished part back instead of recomputing it.
  stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "phases").iterdir()}
  again = output_level.run(config, tmp_path)
  assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "phases").iterdir()} == stamps
  assert again["ensemble"]["results"] == report["ensemble"]["results"]
