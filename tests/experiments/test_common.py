"""The launchers' shared handling of unknown config fields, invalid values and reused folders."""

import json
import pathlib
import subprocess
import sys
from unittest import mock

import ml_collections
import pytest

import autogan_jax
from autogan_jax.core import validation
from experiments import common
from experiments.configs import architecture_search as architecture_search_config

REPO = pathlib.Path(__file__).resolve().parents[2]


def _launch(module, *args):
  command = [sys.executable, "-m", module, *args]
  return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300,
                        check=False)


def test_start_run_rejects_other_config(tmp_path):
  config = ml_collections.ConfigDict({"seed": 0, "search": {"budget": 8}})
  workdir = common.start_run(tmp_path / "run", config)
  saved = (workdir / "config.json").read_text()
  assert json.loads(saved)["search"]["budget"] == 8
  assert common.start_run(tmp_path / "run", config) == workdir
  config.search.budget = 16
  with pytest.raises(validation.ConfigError, match="fields that differ: search.budget"):
    common.start_run(tmp_path / "run", config)
  assert (workdir / "config.json").read_text() == saved


def test_each_start_records_its_code_version(tmp_path, monkeypatch):
  config = ml_collections.ConfigDict({"seed": 0})
  common.start_run(tmp_path, config)
  common.start_run(tmp_path, config)
  monkeypatch.setattr(common, "code_version", lambda: "9.9.9+gitabc")
  with mock.patch.object(common.logging, "warning") as warning:
    common.start_run(tmp_path, config)
  starts = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
  assert len(starts) == 3
  assert starts[0]["code_version"] == starts[1]["code_version"]
  assert starts[0]["code_version"].startswith(autogan_jax.__version__)
  assert starts[2]["code_version"] == "9.9.9+gitabc"
  assert warning.call_count == 1
  assert "9.9.9+gitabc" in warning.call_args.args


@pytest.mark.parametrize("module, config_file", [
    ("experiments.architecture_search", "architecture_search"),
    ("experiments.merge", "merge"),
])
def test_unknown_field_named_cleanly(tmp_path, module, config_file):
  result = _launch(module, f"--workdir={tmp_path}",
                   f"--config=experiments/configs/{config_file}.py:smoke", "--config.search.nope=1")
  assert result.returncode == 1
  assert "unknown config field 'nope' in --config.search.nope=1" in result.stderr
  assert "Traceback" not in result.stderr
  assert not any(tmp_path.iterdir())


def test_wrong_type_names_preset_value(tmp_path):
  result = _launch("experiments.architecture_search", f"--workdir={tmp_path}",
                   "--config=experiments/configs/architecture_search.py:smoke",
                   "--config.train_steps=1.5")
  assert result.returncode == 1
  assert "--config.train_steps=1.5" in result.stderr
  assert "The preset sets config.train_steps to 10 (int)" in result.stderr
  assert "Traceback" not in result.stderr
  assert not any(tmp_path.iterdir())


def test_unknown_preset_one_line(tmp_path):
  result = _launch("experiments.merge", f"--workdir={tmp_path}",
                   "--config=experiments/configs/merge.py:huge")
  assert result.returncode == 1
  assert "Traceback" not in result.stderr
  assert "huge" in result.stderr
  assert "preset" in result.stderr


def test_bad_value_and_other_config(tmp_path):
  smoke = "--config=experiments/configs/architecture_search.py:smoke"
  result = _launch("experiments.architecture_search", f"--workdir={tmp_path}", smoke,
                   "--config.seeds=(3,3)")
  assert result.returncode == 1
  assert "Invalid config value seeds=(3, 3)" in result.stderr
  assert "repeated: [3]" in result.stderr
  # The message comes alone, without the program's usage text.
  assert "python -m experiments.architecture_search" not in result.stderr
  assert "Traceback" not in result.stderr
  assert not (tmp_path / "searches").exists()

  # A folder that contains another config's run is rejected before any search starts.
  config = json.loads(architecture_search_config.get_config("smoke").to_json_best_effort())
  config["search"]["budget"] = 4
  (tmp_path / "config.json").write_text(json.dumps(config))
  result = _launch("experiments.architecture_search", f"--workdir={tmp_path}", smoke)
  assert result.returncode == 1
  assert "contains a run of another config" in result.stderr
  assert "search.budget" in result.stderr
  assert "Traceback" not in result.stderr
  assert not (tmp_path / "searches").exists()
