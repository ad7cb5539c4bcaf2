"""PES against the gradient of the full unroll, computed by backpropagation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from autogan_jax import estimators

DECAY = 0.9
TARGET = jnp.array([1.0, -0.5, 0.25])
NUM_TRUNCATIONS = 4
TRUNCATION_LENGTH = 5
THETA = {"drive": jnp.array([0.2, 0.1, -0.3]), "gain": jnp.array(0.5)}


def unroll(theta, state, key):
  """K steps of s <- DECAY * s + gain * drive; the loss sums 0.5 * |s - TARGET|^2."""
  del key

  def step(s, _):
    s = DECAY * s + theta["gain"] * theta["drive"]
    return s, 0.5 * jnp.sum((s - TARGET) ** 2)

  state, losses = jax.lax.scan(step, state, None, length=TRUNCATION_LENGTH)
  return state, jnp.sum(losses)


def full_unroll_loss(theta):
  state, total = jnp.zeros(3), 0.0
  for _ in range(NUM_TRUNCATIONS):
    state, loss = unroll(theta, state, None)
    total = total + loss
  return total


def run_estimator(key, persistent, num_pairs, sigma=0.02):
  """Sum the per-truncation estimates over one whole inner run."""
  state = estimators.pes_init(THETA, jnp.zeros(3), num_pairs)
  total = jax.tree.map(jnp.zeros_like, THETA)
  for index in range(NUM_TRUNCATIONS):
    if not persistent:
      state = estimators.pes_reset(state)  # xi = 0 before each truncation: truncated ES.
    grad, state, _ = estimators.pes_step(jax.random.fold_in(key, index), THETA, state, unroll,
                                         sigma)
    total = jax.tree.map(jnp.add, total, grad)
  return total


def flat(tree):
  return np.concatenate([np.ravel(np.asarray(tree["drive"])), np.ravel(np.asarray(tree["gain"]))])


def flat_rows(tree):
  """Flatten a batch of theta-shaped trees into rows of [drive..., gain]."""
  drive = np.asarray(tree["drive"])
  return np.concatenate([drive, np.asarray(tree["gain"]).reshape(drive.shape[0], 1)], axis=1)


@pytest.fixture(scope="module")
def estimates():
  # 400 independent runs of 64 pairs each, for the mean and its standard error.
  keys = jax.random.split(jax.random.key(0), 400)
  pes = jax.jit(jax.vmap(lambda k: run_estimator(k, True, 64)))(keys)
  tes = jax.jit(jax.vmap(lambda k: run_estimator(k, False, 64)))(keys)
  return flat_rows(pes), flat_rows(tes), flat(jax.grad(full_unroll_loss)(THETA))


def test_pes_unbiased_over_truncations(estimates):
  pes, _, true_grad = estimates
  mean = pes.mean(0)
  stderr = pes.std(0, ddof=1) / np.sqrt(pes.shape[0])
  assert np.all(np.abs(mean - true_grad) < 4 * stderr), (mean, true_grad, stderr)
  np.testing.assert_allclose(mean, true_grad, rtol=0.1, atol=0.1)


def test_truncated_es_is_biased(estimates):
  # Truncated ES ignores how theta moved the state passed between truncations.
  _, tes, true_grad = estimates
  mean = tes.mean(0)
  stderr = tes.std(0, ddof=1) / np.sqrt(tes.shape[0])
  assert np.any(np.abs(mean - true_grad) > 10 * stderr), (mean, true_grad, stderr)


def test_pes_first_truncation_is_es():
  # Before any truncation xi = 0, so the first PES step equals antithetic ES on one unroll.
  key = jax.random.key(3)
  state = estimators.pes_init(THETA, jnp.zeros(3), 16)
  pes_grad, state, _ = estimators.pes_step(key, THETA, state, unroll, 0.05)
  loss = lambda theta, k: unroll(theta, jnp.zeros(3), k)[1]  # noqa: E731
  es_grad, _ = estimators.antithetic_es_gradient(key, loss, THETA, 0.05, 16)
  np.testing.assert_allclose(flat(pes_grad), flat(es_grad), rtol=1e-5, atol=1e-6)
  assert int(state.truncation) == 1


def test_pes_accumulates_and_resets_pairs():
  state = estimators.pes_init(THETA, jnp.zeros(3), 4)
  _, state, _ = estimators.pes_step(jax.random.key(1), THETA, state, unroll, 0.1)
  first = np.asarray(state.accumulated["drive"])
  _, state, _ = estimators.pes_step(jax.random.key(2), THETA, state, unroll, 0.1)
  eps = estimators.antithetic_perturbations(jax.random.split(jax.random.key(2))[0], THETA, 4, 0.1)
  np.testing.assert_allclose(state.accumulated["drive"], first + eps["drive"], rtol=1e-6)
  # Mirrored partners evolve different inner states.
  assert not np.allclose(state.inner_state[0], state.inner_state[4])

  reset = estimators.pes_reset(state, jnp.zeros(3), pairs=jnp.array([True, False, False, False]))
  assert np.all(np.asarray(reset.accumulated["drive"][0]) == 0.0)
  np.testing.assert_array_equal(reset.accumulated["drive"][1:], state.accumulated["drive"][1:])
  assert np.all(np.asarray(reset.inner_state[0]) == 0.0)
  assert np.all(np.asarray(reset.inner_state[4]) == 0.0)
  np.testing.assert_array_equal(reset.inner_state[1], state.inner_state[1])
  assert int(reset.truncation) == 2
  assert int(estimators.pes_reset(state).truncation) == 0
