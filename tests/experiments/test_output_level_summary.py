"""Aggregation over seeds of the output-level figures, on hand-made per-seed reports."""

import math

import pytest

from experiments import output_level_summary as summary_lib


def test_aggregate_mean_and_sample_std():
  value = summary_lib.aggregate([1.0, 2.0, 4.0])
  assert value["mean"] == pytest.approx(7.0 / 3.0)
  # Sample standard deviation (ddof=1): sqrt(((1-7/3)^2 + (2-7/3)^2 + (4-7/3)^2) / 2).
  assert value["std"] == pytest.approx(math.sqrt(14.0 / 3.0 / 2.0))
  assert value["min"] == 1.0
  assert value["max"] == 4.0
  assert value["runs"] == 3


def test_aggregate_single_run_and_missing_values():
  assert summary_lib.aggregate([0.5])["std"] == 0.0
  partial = summary_lib.aggregate([1.0, None, float("nan"), 3.0])
  assert partial["runs"] == 2
  assert partial["mean"] == 2.0
  assert summary_lib.aggregate([None])["mean"] is None
  assert summary_lib.format_aggregate(summary_lib.aggregate([None])) == "—"


def fake_ensemble(g_nll: float, ensemble_nll: float) -> dict:
  methods = {"ensemble": ensemble_nll, "g_ensemble": g_nll, "g_ensemble_distilled_only": g_nll,
             "mimo": 0.5, "single_member": 0.4, "member_mean": 0.45}
  return {"results": {m: {"nll": v, "accuracy": 0.9, "ece": 0.01} for m, v in methods.items()},
          "cost_ratios": {"g_ensemble": {"multiply_adds": 0.1, "xla_flops": None,
                                         "seconds": 0.2}},
          "disagreement_correlation": 0.5, "test_set": "test split"}


def fake_calibration(g_ece: float, t_ece: float) -> dict:
  metrics = {"uncalibrated": {"ece": 0.1, "accuracy": 0.8, "nll": 0.7},
             "temperature": {"ece": t_ece, "accuracy": 0.8, "nll": 0.6},
             "g_cal": {"ece": g_ece, "accuracy": 0.8, "nll": 0.6}}
  return {"digits": {"metrics": metrics}}


def fake_sampling(margin: float, on_front: bool) -> dict:
  return {"hmm": {"learned": {"quality": -2.0 + margin, "entropy": 2.0, "quality_stderr": 0.01},
                  "comparison": {"front_quality_at_entropy": -2.0, "margin": margin,
                                 "dominated_by": 0 if on_front else 2,
                                 "on_or_beyond_front": on_front}}}


def test_summarize_counts_goals_per_seed_and_on_mean():
  per_seed = {
      0: {"sampling": fake_sampling(0.02, True), "calibration": fake_calibration(0.01, 0.02),
          "ensemble": {"digits": fake_ensemble(0.30, 0.30)}},
      1: {"sampling": fake_sampling(-0.04, False), "calibration": fake_calibration(0.03, 0.02),
          "ensemble": {"digits": fake_ensemble(0.32, 0.30)}},
  }
  summary = summary_lib.summarize(per_seed)
  assert summary["seeds"] == [0, 1]
  assert summary["runs"] == 2

  sampling = summary["sampling"]["hmm"]
  assert sampling["margin"]["mean"] == pytest.approx(-0.01)
  assert sampling["margin_in_stderr"]["mean"] == pytest.approx(-1.0)
  assert sampling["seeds_on_or_beyond_front"] == 1

  calibration = summary["calibration"]["digits"]
  assert calibration["methods"]["g_cal"]["ece"]["mean"] == pytest.approx(0.02)
  assert calibration["seeds_g_cal_ece_at_most_temperature"] == 1
  assert calibration["seeds_accuracy_unchanged"] == 2

  ensemble = summary["ensemble"]["digits"]
  assert ensemble["methods"]["g_ensemble"]["nll"]["mean"] == pytest.approx(0.31)
  # Seed 1 is 6.7% above the ensemble's NLL, the mean only 3.3% above.
  assert ensemble["seeds_meeting"]["within_5_percent"] == 1
  assert ensemble["goals_on_mean"]["within_5_percent"]
  assert ensemble["seeds_meeting"]["better_than_single"] == 2
  assert ensemble["cost_ratio"]["xla_flops"]["runs"] == 0
  assert "1 of 2 seeds" in summary_lib.summary_markdown(summary)
