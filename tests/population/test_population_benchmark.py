"""The population benchmark runs on real digits data and writes its JSON figures."""

import functools
import importlib.util
import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@functools.cache
def load_benchmark():
  """Import the benchmark script once; a second import would define its flags again."""
  spec = importlib.util.spec_from_file_location("population_step",
                                                ROOT / "benchmarks" / "population_step.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_dense_flops_by_hand():
  benchmark = load_benchmark()
  # One member, one step, width 2, depth 1, batch 1, 64 inputs, 10 classes, no evaluation:
  # 3 passes * 2 FLOPs * (64 * 2 + 2 * 10) multiply-adds = 888.
  assert benchmark.dense_flops(1, 1, 2, 1, 1, num_eval=0) == 888.0
  assert benchmark.dense_flops(3, 1, 2, 1, 1, num_eval=0) == 3 * 888.0


@pytest.mark.slow
def test_benchmark_smoke(tmp_path):
  benchmark = load_benchmark()
  results = benchmark.run_benchmark(members=4, steps=3, width=8, depth=1, batch_size=8,
                                    matmul_size=128, repeats=1)
  for name in ("ratio", "flop_fraction", "vmapped_seconds", "loop_seconds", "dense_flop_fraction",
               "ratio_spread_loop", "loop_spread_seconds", "dense_only_flop_fraction"):
    assert results[name] > 0, name
  assert results["ratio"] == pytest.approx(results["loop_seconds"] / results["vmapped_seconds"])
  assert results["ratio_spread_loop"] == pytest.approx(
      results["loop_spread_seconds"] / results["vmapped_seconds"])
  assert results["vmapped_flops"] >= 0.5 * results["dense_flops"]
  # Per example, the dense-only scan multiplies and adds once per weight
  # (64 * 8 + 8 * 10) in the forward pass and once in the weight gradient, and
  # once per output-layer weight in the input gradient. Each multiply-add is
  # 2 FLOPs, for 4 members, 3 steps and batch 8.
  by_hand = 4 * 3 * 8 * 2.0 * (2 * (64 * 8 + 8 * 10) + 8 * 10)
  assert results["dense_only_flops"] == pytest.approx(by_hand, rel=0.05)
  assert len(results["times_seconds"]["vmapped"]) == 1
  output = tmp_path / "out.json"
  output.write_text(json.dumps(results))
  assert json.loads(output.read_text())["members"] == 4
