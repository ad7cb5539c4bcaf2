"""Antithetic ES against gradients computed by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from autogan_jax import estimators

DIM = 4
CURVATURE = jnp.array([0.5, 1.0, 2.0, 4.0])
TARGET = jnp.array([1.0, -1.0, 0.5, 0.0])


def quadratic(theta, key=None):
  del key
  return 0.5 * jnp.sum(CURVATURE * (theta["x"] - TARGET) ** 2)


def test_es_pair_matches_hand_formula():
  # For a quadratic, L(t + e) - L(t - e) = 2 e . grad L(t), so the estimate
  # equals (1 / (N sigma^2)) * sum_i e_i (e_i . grad L(t)) exactly.
  theta = {"x": jnp.array([0.3, 0.2, -0.1, 0.7])}
  sigma, num_pairs = 0.1, 3
  key = jax.random.key(4)
  grad, _ = estimators.antithetic_es_gradient(key, quadratic, theta, sigma, num_pairs)

  eps = estimators.antithetic_perturbations(jax.random.split(key)[0], theta, num_pairs, sigma)
  e = np.asarray(eps["x"], np.float64)
  true_grad = np.asarray(CURVATURE * (theta["x"] - TARGET), np.float64)
  expected = (e * (e @ true_grad)[:, None]).sum(0) / (num_pairs * sigma**2)
  np.testing.assert_allclose(grad["x"], expected, rtol=1e-4, atol=1e-5)


def test_es_mean_is_quadratic_gradient():
  theta = {"x": jnp.array([0.3, 0.2, -0.1, 0.7])}
  true_grad = np.asarray(CURVATURE * (theta["x"] - TARGET))
  estimate = jax.jit(lambda k: estimators.antithetic_es_gradient(k, quadratic, theta, 0.05, 64)[0])
  samples = np.stack([np.asarray(estimate(jax.random.key(s))["x"]) for s in range(200)])

  mean = samples.mean(0)
  stderr = samples.std(0, ddof=1) / np.sqrt(samples.shape[0])
  assert np.all(np.abs(mean - true_grad) < 4 * stderr + 1e-6), (mean, true_grad, stderr)
  np.testing.assert_allclose(mean, true_grad, atol=0.15)


def test_es_step_function_gradient():
  # ES differentiates the smoothed step: d/dt E[1{t + e > 0}] = pdf(t / sigma) / sigma.
  sigma, theta = 0.5, {"x": jnp.array(0.2)}
  step = lambda t, key=None: (t["x"] > 0).astype(jnp.float32)  # noqa: E731
  grad, metrics = jax.jit(
      lambda k: estimators.antithetic_es_gradient(k, step, theta, sigma, 20000))(
          jax.random.key(0))
  expected = stats.norm.pdf(0.2 / sigma) / sigma
  assert jax.grad(lambda t: step(t))(theta)["x"] == 0.0
  assert abs(float(grad["x"]) - expected) < 0.03, (float(grad["x"]), expected)
  assert abs(float(metrics["loss"]) - stats.norm.cdf(0.2 / sigma)) < 0.02


def test_es_common_random_numbers():
  # A loss with additive noise that depends only on the key: the noise cancels in each pair.
  theta = {"x": jnp.array([0.3, 0.2, -0.1, 0.7])}

  def noisy(t, key):
    return quadratic(t) + 100.0 * jax.random.normal(key, ())

  clean, _ = estimators.antithetic_es_gradient(jax.random.key(1), quadratic, theta, 0.1, 8)
  with_noise, _ = estimators.antithetic_es_gradient(jax.random.key(1), noisy, theta, 0.1, 8)
  np.testing.assert_allclose(with_noise["x"], clean["x"], rtol=1e-3, atol=1e-3)


def test_es_rejects_zero_pairs():
  with pytest.raises(ValueError, match="num_pairs"):
    estimators.antithetic_perturbations(jax.random.key(0), {"x": jnp.zeros(2)}, 0, 0.1)
