"""The optimization-strategy experiment: config checks and the smoke preset on real digits."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from autogan_jax.checkpoint import RunCheckpointer
from autogan_jax.core import validation
from experiments.configs import optim_strategy as config_module

REPO = pathlib.Path(__file__).resolve().parents[2]
SMOKE = "--config=experiments/configs/optim_strategy.py:smoke"


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


def _run(args, driver=None, timeout=600):
  command = ([sys.executable, "-m", "experiments.optim_strategy"] if driver is None
             else [sys.executable, "-c", driver])
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run(command + args, cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=timeout)


def _meta_records(workdir, phase):
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return [r for r in records if r["phase"] == phase]


@pytest.fixture(scope="module")
def smoke_workdir(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("smoke")
  result = _run([f"--workdir={workdir}", SMOKE])
  assert result.returncode == 0, result.stderr[-4000:]
  return workdir


def test_smoke_run_writes_report(smoke_workdir):
  for name in ("report.md", "report.json", "metrics.jsonl", "curves.png", "gates.png",
               "gates_shared_bias.png"):
    assert (smoke_workdir / name).stat().st_size > 0, name

  report = json.loads((smoke_workdir / "report.json").read_text())
  assert report["seeds"] == [0, 1]
  names = [row["strategy"] for row in report["rows"]]
  assert names == ["learned", "learned_shared_bias", "gradient_only", "es_only",
                   "score_function_only", "uniform_mix", "hand_assigned"]
  for row in report["rows"]:
    assert np.isfinite(row["test_loss"]), row["strategy"]
    assert 0.0 <= row["test_accuracy"] <= 1.0
    assert np.isfinite(row["valid_loss"]), row["strategy"]
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

  assert [r["step"] for r in _meta_records(smoke_workdir, "meta_train")] == [1, 2]
  assert [r["step"] for r in _meta_records(smoke_workdir, "meta_train_shared_bias")] == [1, 2]
  assert len(_meta_records(smoke_workdir, "evaluate")) == 7
  assert "D_optim" in (smoke_workdir / "report.md").read_text()
  # The smoke preset meta-trains with D_optim's feedback in the objective.
  for record in _meta_records(smoke_workdir, "meta_train"):
    assert 0.0 < record["d_optim_mean"] < 1.0
    expected = record["meta_loss"] + 0.3 * (1.0 - record["d_optim_mean"])
    assert record["meta_objective"] == pytest.approx(expected, rel=1e-5)
  assert RunCheckpointer(smoke_workdir / "checkpoints" / "meta_train").latest_step() == 2


# Runs the experiment, but SIGKILLs the process when meta-training is about to
# write the checkpoint of meta-step 2, so the newest one on disk is 1.
KILLING_DRIVER = textwrap.dedent("""
    import os, signal, sys
    from absl import app
    from autogan_jax.checkpoint import manager
    from experiments import optim_strategy

    original_save = manager.RunCheckpointer.save

    def save(self, step, state):
      if self.directory.name == "meta_train" and step == 2:
        os.kill(os.getpid(), signal.SIGKILL)
      original_save(self, step, state)

    manager.RunCheckpointer.save = save
    sys.argv = ["optim_strategy"] + sys.argv[1:]
    app.run(optim_strategy.main)
""")


def test_sigkill_then_resume_matches(smoke_workdir, tmp_path):
  # The shared-bias variant meta-trains independently of the 'learned' gates, so it
  # is left out here to save time.
  args = [f"--workdir={tmp_path}", SMOKE, "--config.study.shared_bias_variant=False"]
  killed = _run(args, driver=KILLING_DRIVER)
  assert killed.returncode == -9, killed.stderr[-4000:]
  assert RunCheckpointer(tmp_path / "checkpoints" / "meta_train").latest_step() == 1
  # The record of step 2 is written before its checkpoint, so resuming has to drop it.
  assert [r["step"] for r in _meta_records(tmp_path, "meta_train")] == [1, 2]

  resumed = _run(args)
  assert resumed.returncode == 0, resumed.stderr[-4000:]
  assert "meta_train: resumed from the checkpoint of meta-step 1" in resumed.stderr
  ours = json.loads((tmp_path / "report.json").read_text())
  uninterrupted = json.loads((smoke_workdir / "report.json").read_text())
  assert (ours["learned_gate_params"]["learned"]
          == uninterrupted["learned_gate_params"]["learned"])
  assert ours["meta_train"]["learned"] == uninterrupted["meta_train"]["learned"]
  assert _meta_records(tmp_path, "meta_train") == _meta_records(smoke_workdir, "meta_train")
  assert ours["rows"][0] == uninterrupted["rows"][0]


def test_workdir_of_other_config_is_rejected(smoke_workdir):
  before = (smoke_workdir / "metrics.jsonl").read_text()
  result = _run([f"--workdir={smoke_workdir}", SMOKE, "--config.study.meta_sigma=0.25"],
                timeout=120)
  assert result.returncode != 0
  assert "contains a run of another config" in result.stderr
  assert "study.meta_sigma" in result.stderr
  assert (smoke_workdir / "metrics.jsonl").read_text() == before
