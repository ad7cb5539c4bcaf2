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


def _final_meta_params(workdir: pathlib.Path, step: int):
  checkpointer = RunCheckpointer(workdir / "checkpoints" / "meta_train")
  assert checkpointer.latest_step() == step
  path = workdir / "checkpoints" / "meta_train" / str(step)
  import orbax.checkpoint as ocp
  restored = ocp.StandardCheckpointer().restore(path / "default")
  return restored["meta_params"] | {
      f"best_{name}": value for name, value in restored["best_meta_params"].items()}


@pytest.fixture(scope="module")
def smoke_workdir(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("smoke")
  result = _run([f"--workdir={workdir}", SMOKE])
  assert result.returncode == 0, result.stderr[-4000:]
  return workdir


def test_smoke_report_holds_comparison(smoke_workdir):
  report = json.loads((smoke_workdir / "report.json").read_text())
  heldout = report["heldout"]
  tasks = {r["task"] for r in heldout}
  # The smoke preset evaluates one held-out digits task and the character model.
  assert len(tasks) == 2
  assert any(t.startswith("stdlib_chars") for t in tasks)
  assert {r["optimizer"] for r in heldout} == {"learned", "adam_tuned", "sgd_momentum"}
  assert len(heldout) == 2 * 3 * 3
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
  for name in ("report.md", "metrics.jsonl", "meta_training.png", "heldout_curves.png"):
    assert (smoke_workdir / name).stat().st_size > 0
  markdown = (smoke_workdir / "report.md").read_text()
  assert "adam_tuned" in markdown
  assert "Imitation of Adam" in markdown


def test_smoke_metrics_cover_every_step(smoke_workdir):
  records = [json.loads(line) for line in
             (smoke_workdir / "metrics.jsonl").read_text().splitlines()]
  meta_steps = [r["step"] for r in records if r["phase"] == "meta_train"]
  assert meta_steps == list(range(1, 11))
  assert all("quarantined_total" in r for r in records if r["phase"] == "meta_train")


def test_rerun_of_finished_run_resumes_without_training(smoke_workdir):
  before = (smoke_workdir / "metrics.jsonl").read_text()
  result = _run([f"--workdir={smoke_workdir}", SMOKE])
  assert result.returncode == 0, result.stderr[-4000:]
  assert (smoke_workdir / "metrics.jsonl").read_text() == before
  assert "resumed from the checkpoint of step 10" in result.stderr


# Runs the main job, but SIGKILLs the process when meta-training is about to
# write the checkpoint of step 6, so the newest checkpoint on disk is step 4.
KILLING_DRIVER = textwrap.dedent("""
    import os, signal, sys
    from absl import app
    from autogan_jax.checkpoint import manager
    from experiments import bootstrap

    original_save = manager.RunCheckpointer.save

    def save(self, step, state):
      if self.directory.name == "meta_train" and step == 6:
        os.kill(os.getpid(), signal.SIGKILL)
      original_save(self, step, state)

    manager.RunCheckpointer.save = save
    sys.argv = ["bootstrap"] + sys.argv[1:]
    app.run(bootstrap.main)
""")


def test_sigkill_during_meta_training_then_resume_matches(smoke_workdir, tmp_path):
  args = [f"--workdir={tmp_path}", SMOKE, "--config.checkpoint_every=2",
          "--config.eval.enabled=False"]
  killed = _run(args, driver=KILLING_DRIVER)
  assert killed.returncode == -9, killed.stderr[-4000:]
  assert RunCheckpointer(tmp_path / "checkpoints" / "meta_train").latest_step() == 4

  resumed = _run(args)
  assert resumed.returncode == 0, resumed.stderr[-4000:]
  assert "meta_train: resumed from the checkpoint of step 4" in resumed.stderr

  ours = _final_meta_params(tmp_path, 10)
  uninterrupted = _final_meta_params(smoke_workdir, 10)
  for name in uninterrupted:
    np.testing.assert_array_equal(ours[name], uninterrupted[name], err_msg=name)
  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records if r["phase"] == "meta_train"] == list(range(1, 11))


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
