"""The pendulum simulator against known solutions of its equations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from autogan_jax.core import validation
from autogan_jax.tasks import pendulum


def test_undamped_undriven_conserves_energy():
  config = pendulum.PendulumConfig(damping=0.0, drive_amplitude=0.0)
  states, _ = pendulum.simulate(config, jnp.asarray([2.0, 0.5]), jnp.asarray(0.0), 300)
  energy = np.asarray(pendulum.energy(config, states))
  np.testing.assert_allclose(energy, energy[0], rtol=1e-4)


def test_small_angle_matches_damped_oscillator():
  gamma, w0 = 0.4, 1.3
  config = pendulum.PendulumConfig(damping=gamma, natural_frequency=w0, drive_amplitude=0.0)
  theta0 = 1e-3
  states, times = pendulum.simulate(config, jnp.asarray([theta0, 0.0]), jnp.asarray(0.0), 100)
  # Underdamped solution of theta'' + gamma theta' + w0^2 theta = 0 from rest.
  wd = np.sqrt(w0 ** 2 - gamma ** 2 / 4)
  t = np.asarray(times)
  expected = theta0 * np.exp(-gamma * t / 2) * (np.cos(wd * t) + gamma / (2 * wd) * np.sin(wd * t))
  np.testing.assert_allclose(np.asarray(states[:, 0]), expected, atol=2e-7)


def test_drive_phase_changes_motion():
  config = pendulum.PendulumConfig()
  start = jnp.asarray([0.3, 0.0])
  a, _ = pendulum.simulate(config, start, jnp.asarray(0.0), 40)
  b, _ = pendulum.simulate(config, start, jnp.asarray(np.pi), 40)
  assert float(jnp.max(jnp.abs(a - b))) > 0.1


def test_observations_and_splits():
  data = pendulum.load_pendulum(num_train=8, num_eval=4, length=20, seed=1)
  assert data.train.shape == (8, 20, 3)
  assert data.test.shape == (4, 20, 3)
  np.testing.assert_allclose(data.train[..., 0] ** 2 + data.train[..., 1] ** 2, 1.0, atol=1e-5)
  assert not np.allclose(data.valid, data.test)
  with_phase = pendulum.load_pendulum(num_train=8, num_eval=4, length=20, seed=1,
                                      config=pendulum.PendulumConfig(observe_phase=True))
  assert with_phase.train.shape[-1] == 5


def test_velocity_observation_matches_finite_difference():
  config = pendulum.PendulumConfig(dt=0.01)
  out = pendulum.sample_trajectories(config, jax.random.key(0), 2, 50)
  theta = np.unwrap(np.asarray(out["states"][..., 0]), axis=1)
  finite = (theta[:, 2:] - theta[:, :-2]) / (2 * config.dt)
  np.testing.assert_allclose(finite, np.asarray(out["observations"][:, 1:-1, 2]), atol=2e-3)


def test_invalid_config_rejected():
  with pytest.raises(validation.ConfigError, match="dt"):
    pendulum.PendulumConfig(dt=0.0)
