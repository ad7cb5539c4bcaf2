"""Edge cases and properties of the interpolation and merge methods."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from autogan_jax.core import TraceCounter
from autogan_jax.weight_space import interpolation

finite_floats = st.floats(-100.0, 100.0, allow_nan=False, width=32)
vectors = st.integers(1, 6).flatmap(
    lambda n: st.lists(finite_floats, min_size=n, max_size=n).map(
        lambda v: np.asarray(v, np.float32)))
pairs = st.integers(1, 6).flatmap(
    lambda n: st.tuples(*[st.lists(finite_floats, min_size=n, max_size=n)] * 2).map(
        lambda ab: (np.asarray(ab[0], np.float32), np.asarray(ab[1], np.float32))))
coefficients = st.floats(0.0, 1.0, width=32)


def _close(actual, expected, scale):
  np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=1e-4,
                             atol=1e-4 * (1.0 + scale))


@settings(max_examples=30, deadline=None)
@given(pairs, coefficients)
def test_linear_endpoints_and_finite(ab, t):
  a, b = ab
  assert np.all(np.isfinite(interpolation.linear(a, b, t)))
  _close(interpolation.linear(a, b, 0.0), a, 0.0)
  _close(interpolation.linear(a, b, 1.0), b, 0.0)


@settings(max_examples=30, deadline=None)
@given(pairs, coefficients)
def test_slerp_endpoints_and_finite(ab, t):
  a, b = ab
  scale = float(np.max(np.abs(np.concatenate([a, b]))))
  assert np.all(np.isfinite(interpolation.slerp(a, b, t)))
  _close(interpolation.slerp(a, b, 0.0), a, scale)
  _close(interpolation.slerp(a, b, 1.0), b, scale)


@settings(max_examples=30, deadline=None)
@given(vectors, st.floats(-3.0, 3.0, width=32).filter(lambda c: abs(c) > 1e-3), coefficients)
def test_slerp_parallel_and_antiparallel(a, factor, t):
  b = (factor * a).astype(np.float32)
  scale = float(np.max(np.abs(np.concatenate([a, b]))))
  for pair in ((a, b), (a, b + np.float32(1e-6))):
    out = interpolation.slerp(*pair, t)
    assert np.all(np.isfinite(out))
    _close(interpolation.slerp(*pair, 0.0), pair[0], scale)
    _close(interpolation.slerp(*pair, 1.0), pair[1], scale)


@settings(max_examples=20, deadline=None)
@given(vectors, coefficients)
def test_slerp_zero_vector_is_linear(a, t):
  zero = np.zeros_like(a)
  _close(interpolation.slerp(a, zero, t), (1.0 - t) * a, float(np.max(np.abs(a))))
  _close(interpolation.slerp(zero, a, t), t * a, float(np.max(np.abs(a))))
  assert np.all(interpolation.slerp(zero, zero, t) == 0.0)


def test_slerp_orthogonal_midpoint():
  a = jnp.array([1.0, 0.0, 0.0])
  b = jnp.array([0.0, 3.0, 0.0])
  # Direction at 45 degrees, norm halfway between 1 and 3.
  expected = 2.0 * jnp.array([np.sqrt(0.5), np.sqrt(0.5), 0.0])
  _close(interpolation.slerp(a, b, 0.5), expected, 0.0)


def test_slerp_antiparallel_midpoint_keeps_norm():
  a = jnp.array([1.0, 2.0, 2.0])
  out = interpolation.slerp(a, -a, 0.5)
  assert np.isclose(float(jnp.linalg.norm(out)), 3.0, rtol=1e-5)
  assert abs(float(jnp.dot(out, a))) < 1e-4


def test_slerp_one_dimensional_antiparallel_is_linear():
  out = interpolation.slerp(jnp.array([1.0]), jnp.array([-3.0]), 0.25)
  _close(out, jnp.array([0.0]), 0.0)


model_sets = st.integers(1, 5).flatmap(
    lambda n: st.tuples(
        st.lists(finite_floats, min_size=n, max_size=n),
        st.lists(st.lists(finite_floats, min_size=n, max_size=n), min_size=1, max_size=3))
).map(lambda bm: (np.asarray(bm[0], np.float32), np.asarray(bm[1], np.float32)))


def _task_vector_methods():
  key = jax.random.key(0)
  return {
      "task_arithmetic": lambda base, models, c: interpolation.task_arithmetic(base, models, c),
      "ties": lambda base, models, c: interpolation.ties(base, models, c, density=1.0),
      "dare": lambda base, models, c: interpolation.dare(key, base, models, c, drop_rate=0.0),
  }


@pytest.mark.parametrize("method", ["task_arithmetic", "ties", "dare"])
@settings(max_examples=20, deadline=None)
@given(bm=model_sets, c=coefficients)
def test_task_vector_methods_edges(method, bm, c):
  base, models = bm
  merge = _task_vector_methods()[method]
  scale = float(np.max(np.abs(np.concatenate([base[None], models]))))
  assert np.all(np.isfinite(merge(base, models, c)))
  _close(merge(base, models, 0.0), base, scale)
  # One model at coefficient 1 is that model, for every method.
  _close(merge(base, models[:1], 1.0), models[0], scale)
  # All-zero task vectors leave the base unchanged at any coefficient.
  _close(merge(base, np.repeat(base[None], models.shape[0], 0), c), base, scale)


@settings(max_examples=20, deadline=None)
@given(bm=model_sets, c=coefficients, density=st.floats(0.05, 1.0))
def test_ties_and_dare_finite_at_any_density(bm, c, density):
  base, models = bm
  assert np.all(np.isfinite(interpolation.ties(base, models, c, density=density)))
  out = interpolation.dare(jax.random.key(1), base, models, c, drop_rate=0.9)
  assert np.all(np.isfinite(out))


def test_ties_hand_example_with_sign_tie():
  base = jnp.zeros(4)
  models = jnp.array([[1.0, -2.0, 3.0, 0.0], [-1.0, 2.0, 1.0, 0.0]])
  # Entries 0 and 1 are sign ties (sums of 0) and keep the base; entry 2 averages 3 and 1.
  _close(interpolation.ties(base, models, 1.0, density=1.0), [0.0, 0.0, 2.0, 0.0], 0.0)
  # Trimming to 2 of 4 keeps [0, -2, 3, 0] and [-1, 2, 0, 0]; the sum elects [-, tie, +].
  _close(interpolation.ties(base, models, 1.0, density=0.5), [-1.0, 0.0, 3.0, 0.0], 0.0)


def test_trim_keeps_exact_count():
  vector = jnp.array([[3.0, -1.0, 1.0], [1.0, -5.0, 0.5]])
  trimmed = interpolation.trim(vector, 0.5)
  assert int(jnp.sum(trimmed != 0)) == 3
  # Three entries of magnitude 1 tie for the third place; the first in index order is kept.
  _close(trimmed, [[3.0, -1.0, 0.0], [0.0, -5.0, 0.0]], 0.0)


def test_dare_mean_matches_task_arithmetic():
  base = jnp.linspace(-1.0, 1.0, 8)
  models = jnp.stack([base + 1.0, base - 0.5 * jnp.arange(8)])
  keys = jax.random.split(jax.random.key(3), 4000)
  draws = jax.vmap(lambda k: interpolation.dare(k, base, models, 0.7, drop_rate=0.5))(keys)
  expected = interpolation.task_arithmetic(base, models, 0.7)
  # Each entry's standard error is below 0.7 * 3.5 * 2 / sqrt(4000), about 0.08.
  np.testing.assert_allclose(np.asarray(jnp.mean(draws, 0)), np.asarray(expected), atol=0.2)


def test_invalid_settings_raise():
  with pytest.raises(ValueError, match="drop_rate"):
    interpolation.dare(jax.random.key(0), jnp.zeros(2), jnp.zeros((1, 2)), drop_rate=1.0)
  with pytest.raises(ValueError, match="density"):
    interpolation.trim(jnp.ones(3), 0.0)
  with pytest.raises(ValueError, match="merge method"):
    interpolation.tree_merge("average", 0.5, {}, {}, {})
  with pytest.raises(ValueError, match="PRNG key"):
    interpolation.tree_merge("dare", 0.5, {"w": jnp.ones(2)}, {"w": jnp.ones(2)},
                             {"w": jnp.ones(2)})


@pytest.mark.parametrize("method", interpolation.METHODS)
def test_merge_pair_battery(method):
  """Every method: jitted, finite, right shape, endpoints, and compiled once."""
  counter = TraceCounter()
  merge = jax.jit(counter.wrap(interpolation.merge_pair, method))
  keys = jax.random.split(jax.random.key(4), 3)
  base = jax.random.normal(keys[0], (5, 3))
  a = base + 0.1 * jax.random.normal(keys[1], (5, 3))
  b = base + 0.1 * jax.random.normal(keys[2], (5, 3))
  index = interpolation.METHODS.index(method)
  outputs = [merge(index, c, base, a, b, jax.random.key(5)) for c in (0.0, 0.3, 1.0)]
  for out in outputs:
    assert out.shape == base.shape
    assert np.all(np.isfinite(out))
  if method in ("linear", "slerp"):
    _close(outputs[0], a, 1.0)
    _close(outputs[2], b, 1.0)
  else:
    _close(outputs[0], base, 1.0)
  if method == "task_arithmetic":
    _close(outputs[2], a + b - base, 1.0)
  assert counter[method] == 1
