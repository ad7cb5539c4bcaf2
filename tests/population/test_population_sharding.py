"""The population on 8 simulated CPU devices matches the same population on one device."""

import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from autogan_jax import population

import population_sharded_run as sharded_run

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_eight_devices_match_one(tmp_path):
  output = tmp_path / "sharded.npz"
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
  script = pathlib.Path(__file__).with_name("population_sharded_run.py")
  completed = subprocess.run([sys.executable, str(script), str(output)],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert completed.returncode == 0, completed.stderr[-3000:]
  sharded = dict(np.load(output))

  single = sharded_run.run()
  assert int(single["device_count"]) == jax.device_count()
  assert int(sharded["device_count"]) == 8
  assert int(sharded["padded_size"]) == 16
  assert int(sharded["shards"]) == 8
  assert bool(sharded["rejects_indivisible"])

  # Selection is exact. Float results agree to rounding, not bit for bit, because XLA
  # may fuse and vectorise a 2-member shard differently from a 12-member batch.
  np.testing.assert_array_equal(sharded["parents"], single["parents"])
  np.testing.assert_allclose(sharded["fitness"], single["fitness"], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(sharded["w0"], single["w0"], rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(sharded["learning_rate"], single["learning_rate"], rtol=1e-6)
  # Selection acted: some members copied a better one.
  assert np.any(sharded["parents"] != np.arange(sharded_run.POPULATION_SIZE))


def test_pad_and_unpad_leading():
  tree = {"a": jnp.arange(6.0).reshape(3, 2), "count": jnp.array(7)}
  padded = population.pad_leading(tree, 8)
  assert padded["a"].shape == (8, 2)
  np.testing.assert_array_equal(padded["a"][3:], np.broadcast_to([0.0, 1.0], (5, 2)))
  assert int(padded["count"]) == 7
  np.testing.assert_array_equal(population.unpad_leading(padded, 3)["a"], tree["a"])
  assert population.padded_size(12, 8) == 16
  assert population.padded_size(16, 8) == 16
