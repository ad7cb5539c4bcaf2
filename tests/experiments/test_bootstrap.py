"""End-to-end runs of the main job's smoke preset on the real data, in subprocesses."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from autogan_jax.checkpoint import RunCheckpointer

REPO = pathlib.Path(__file__).resolve().parents[2]
SMOKE = "--config=experiments/configs/bootstrap.py:smoke"


def _run(args, timeout=900, driver=None):
  command = [sys.executable, "-m", "experiments.bootstrap"] if driver is None else [
      sys.executable, "-c", driver]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run(command + args, cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=timeout)


def _exploration_records(workdir: pathlib.Path):
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  # Wall times and trace counts belong to the process, not to the run's results.
  return [{k: v for k, v in r.items() if k not in ("seconds", "traces")} for r in records
          if r["phase"] in ("exploration", "self_reference")]


@pytest.fixture(scope="module")
def smoke_workdir(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("smoke")
  result = _run([f"--workdir={workdir}", SMOKE])
  assert result.returncode == 0, result.stderr[-4000:]
  return workdir


def test_smoke_report_holds_every_phase(smoke_workdir):
  report = json.loads((smoke_workdir / "report.json").read_text())
  heldout = report["heldout"]
  tasks = {r["task"] for r in heldout}
  # The smoke preset evaluates one held-out digits task and the character model.
  assert len(tasks) == 2
  assert any(t.startswith("stdlib_chars") for t in tasks)
  rules = {"phase1_imitation", "phase2_population", "g_star"}
  assert {r["optimizer"] for r in heldout} == rules | {"adam_tuned", "sgd_momentum"}
  assert len(heldout) == 2 * 5 * 3
  expected_keys = {"task", "optimizer", "seed", "final_train_loss", "test_loss",
                   "test_accuracy", "steps_to_adam_final_loss"}
  for record in heldout:
    assert set(record) == expected_keys
    assert np.isfinite(record["final_train_loss"])
    assert np.isfinite(record["test_loss"])
    assert 0.0 <= record["test_accuracy"] <= 1.0
  adam = [r for r in heldout if r["optimizer"] == "adam_tuned"]
  # Tuned Adam reaches its own mean final loss in at least one seed.
  assert any(r["steps_to_adam_final_loss"] is not None for r in adam)
  grid = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
  assert all(lr in grid for lr in report["tuned_adam_learning_rate"].values())
  assert report["tuning_runs_total"] == 2 * (5 + 5) * 3
  assert set(report["imitation_relative_error"]) == {t for t in tasks if t.startswith("digits")}
  assert set(report["steps_to_adam_final_loss_ratio"]) == rules
  for ratios in report["steps_to_adam_final_loss_ratio"].values():
    assert set(ratios) == tasks
    assert all(0.0 <= v <= 10.0 for v in ratios.values())
  # Phase 2: every member of both generations got its settings from G_meta.
  assert len(report["g_meta_choices"]) == 2 * 3
  assert {c["estimator"] for c in report["g_meta_choices"]} == {"tbptt"}
  assert all(c["tasks_per_meta_step"] in (2, 4, 8) for c in report["g_meta_choices"])
  assert len(report["diversity"]) == 2 and all(d > 0 for d in report["diversity"])
  # Phase 3: a residual per block and rule, and G* no worse than phase 2's best.
  residuals = report["self_reference"]["function_residual"]
  assert len(residuals) == 2 and all(len(r) == 2 for r in residuals)
  assert report["g_star_validation_score"] <= min(report["phase2_best_validation_scores"]) + 1e-6
  # Phase 4 also trains an ensemble and the calibration GAN with Adam and with G*.
  summary = {row["rule"]: row for row in report["components_summary"]}
  assert set(summary) == {"adam", "g_star"}
  for row in summary.values():
    assert row["seeds"] == 1
    assert 0.0 < row["ensemble_test_nll"] < 2.5
    assert 0.0 <= row["calibrated_test_ece"] <= 1.0
  for name in ("report.md", "metrics.jsonl", "meta_training.png", "heldout_curves.png",
               "exploration.png", "self_reference.png", "g_star.json"):
    assert (smoke_workdir / name).stat().st_size > 0
  markdown = (smoke_workdir / "report.md").read_text()
  for heading in ("Phase 1: imitation of Adam", "Phase 2: population exploration",
                  "Phase 3: self-reference", "Phase 4: G* on held-out tasks"):
    assert heading in markdown


def test_saved_g_star_is_an_optax_rule(smoke_workdir):
  from autogan_jax import optim
  params, info = optim.load_rule(smoke_workdir / "g_star.json")
  assert info["preset"] == "smoke"
  tx = optim.g_star(path=smoke_workdir / "g_star.json")
  x = {"w": np.ones(3, np.float32)}
  updates, _ = tx.update({"w": np.ones(3, np.float32)}, tx.init(x), x)
  assert np.all(np.isfinite(updates["w"]))
  assert np.any(updates["w"] != 0)
  scaled = optim.g_star(learning_rate=2 * float(np.exp(params["log_lr"])),
                        path=smoke_workdir / "g_star.json")
  doubled, _ = scaled.update({"w": np.ones(3, np.float32)}, scaled.init(x), x)
  np.testing.assert_allclose(doubled["w"], 2 * updates["w"], rtol=1e-5)


def test_smoke_metrics_cover_every_step(smoke_workdir):
  records = [json.loads(line) for line in
             (smoke_workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records if r["phase"] == "imitation"] == list(range(1, 11))
  assert [r["step"] for r in records if r["phase"] == "exploration"] == [1, 2]
  assert [r["step"] for r in records if r["phase"] == "self_reference"] == [2, 4]
  # Every jitted function of phase 2 compiled once for both generations.
  traces = [r for r in records if r["phase"] == "exploration"][-1]["traces"]
  assert {"segment_tbptt", "keep_best", "curve_features", "d_meta_opt_loss", "g_meta_loss",
          "discriminate", "validation_scores", "probe_updates"} <= set(traces)
  for name, count in traces.items():
    assert count == 1, name


def test_rerun_of_finished_run_resumes_without_training(smoke_workdir):
  before = (smoke_workdir / "metrics.jsonl").read_text()
  result = _run([f"--workdir={smoke_workdir}", SMOKE])
  assert result.returncode == 0, result.stderr[-4000:]
  assert (smoke_workdir / "metrics.jsonl").read_text() == before
  assert "resumed from the checkpoint of step 10" in result.stderr
  assert "exploration: resumed from the checkpoint of generation 2" in result.stderr


# Runs the main job, but SIGKILLs the process when population exploration is
# about to write the checkpoint of generation 2, so the newest one on disk is 1.
KILLING_DRIVER = textwrap.dedent("""
    import os, signal, sys
    from absl import app
    from autogan_jax.checkpoint import manager
    from experiments import bootstrap

    original_save = manager.RunCheckpointer.save

    def save(self, step, state):
      if self.directory.name == "exploration" and step == 2:
        os.kill(os.getpid(), signal.SIGKILL)
      original_save(self, step, state)

    manager.RunCheckpointer.save = save
    sys.argv = ["bootstrap"] + sys.argv[1:]
    app.run(bootstrap.main)
""")


def test_sigkill_during_exploration_then_resume_matches(smoke_workdir, tmp_path):
  args = [f"--workdir={tmp_path}", SMOKE, "--config.eval.enabled=False"]
  killed = _run(args, driver=KILLING_DRIVER)
  assert killed.returncode == -9, killed.stderr[-4000:]
  assert RunCheckpointer(tmp_path / "checkpoints" / "exploration").latest_step() == 1

  resumed = _run(args)
  assert resumed.returncode == 0, resumed.stderr[-4000:]
  assert "exploration: resumed from the checkpoint of generation 1" in resumed.stderr
  ours = json.loads((tmp_path / "g_star.json").read_text())
  uninterrupted = json.loads((smoke_workdir / "g_star.json").read_text())
  assert ours["meta_params"] == uninterrupted["meta_params"]
  assert _exploration_records(tmp_path) == _exploration_records(smoke_workdir)


def test_rerun_with_other_config_is_rejected(smoke_workdir):
  before = (smoke_workdir / "config.json").read_text()
  result = _run([f"--workdir={smoke_workdir}", SMOKE, "--config.seed=7"], timeout=120)
  assert result.returncode != 0
  assert "fields that differ: seed" in result.stderr
  assert (smoke_workdir / "config.json").read_text() == before


def test_invalid_config_fails_before_compute(tmp_path):
  result = _run([f"--workdir={tmp_path}", SMOKE, "--config.meta.unroll_length=-5"],
                timeout=120)
  assert result.returncode != 0
  assert "meta.unroll_length=-5" in result.stderr
  assert "an integer >= 1" in result.stderr
  assert not (tmp_path / "checkpoints").exists()


def test_unknown_preset_is_rejected(tmp_path):
  result = _run([f"--workdir={tmp_path}", "--config=experiments/configs/bootstrap.py:huge"],
                timeout=120)
  assert result.returncode != 0
  assert "Unknown preset 'huge'" in result.stderr
