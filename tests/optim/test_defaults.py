"""The framework's default update rule: G* unless a scope names Adam."""

import jax
from jax import flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from autogan_jax import ensemble
from autogan_jax import optim
from autogan_jax.core import validation


def _one_update(tx, grads, params):
  state = tx.init(params)
  updates, _ = tx.update(grads, state, params)
  return updates


@pytest.fixture(name="problem")
def fixture_problem():
  key_p, key_g = jax.random.split(jax.random.key(0))
  params = {"w": jax.random.normal(key_p, (5, 3)), "b": jnp.zeros(3)}
  grads = jax.tree.map(lambda p: jax.random.normal(key_g, p.shape), params)
  return params, grads


def test_default_rule_is_g_star(problem):
  params, grads = problem
  assert optim.current_default() == "g_star"
  got = _one_update(optim.default_rule(3e-3, horizon=200), grads, params)
  want = _one_update(optim.g_star(learning_rate=3e-3, horizon=200), grads, params)
  adam = _one_update(optax.adam(3e-3), grads, params)
  for name in params:
    np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-9)
  assert max(float(jnp.max(jnp.abs(got[n] - adam[n]))) for n in params) > 1e-5


def test_scope_selects_adam_and_restores(problem):
  params, grads = problem
  with optim.default_rule_scope("adam"):
    assert optim.current_default() == "adam"
    got = _one_update(optim.default_rule(3e-3), grads, params)
  want = _one_update(optax.adam(3e-3), grads, params)
  for name in params:
    np.testing.assert_allclose(got[name], want[name], rtol=1e-6)
  assert optim.current_default() == "g_star"


def test_scope_restores_after_error():
  with pytest.raises(RuntimeError):
    with optim.default_rule_scope("adam"):
      raise RuntimeError("inside the scope")
  assert optim.current_default() == "g_star"


def test_same_object_per_setting():
  assert optim.default_rule(1e-3) is optim.default_rule(1e-3)
  assert optim.default_rule(1e-3) is not optim.default_rule(2e-3)
  with optim.default_rule_scope("adam"):
    assert optim.default_rule(1e-3) is optim.default_rule(1e-3)


@pytest.mark.parametrize("name", ["sgd", "", "G*"])
def test_unknown_rule_rejected(name):
  with pytest.raises(validation.ConfigError, match="default_rule"):
    with optim.default_rule_scope(name):
      pass


@pytest.mark.parametrize("rate", [0.0, -1e-3])
def test_nonpositive_learning_rate_rejected(rate):
  with pytest.raises(validation.ConfigError, match="learning_rate"):
    optim.default_rule(rate)


def test_component_trains_with_default():
  # A component given no rule trains exactly as with the default rule passed
  # explicitly; inside an Adam scope it trains with Adam, which differs.
  tasks, scales = ensemble.build_members(ensemble.EnsembleSpec(num_members=2, widths=(16,)))
  key = jax.random.key(1)

  def train(tx):
    params, _ = ensemble.train_population(tasks, scales, key, 5, tx=tx)
    return flatten_util.ravel_pytree(params)[0]

  implicit = train(None)
  explicit = train(optim.default_rule(3e-3))
  np.testing.assert_allclose(implicit, explicit, rtol=1e-6, atol=1e-7)
  with optim.default_rule_scope("adam"):
    scoped = train(None)
    scoped_rule = optim.default_rule(3e-3)
  assert float(jnp.max(jnp.abs(implicit - scoped))) > 1e-5
  np.testing.assert_allclose(scoped, train(scoped_rule), rtol=1e-6, atol=1e-7)


def test_rule_built_inside_jit_is_reusable(problem):
  # The first request for this rate happens while JAX traces `step`. The cached
  # rule must hold constants, because it is used again outside that trace.
  params, grads = problem
  rate = 7.25e-3

  @jax.jit
  def step(params, grads):
    tx = optim.default_rule(rate)
    return tx.update(grads, tx.init(params), params)[0]

  inside = step(params, grads)
  outside = _one_update(optim.default_rule(rate), grads, params)
  for name in params:
    np.testing.assert_allclose(inside[name], outside[name], rtol=1e-6, atol=1e-9)


def test_traced_learning_rate_rejected():
  with pytest.raises(TypeError, match="expects a Python number"):
    jax.jit(lambda rate: optim.default_rule(rate).init({"w": jnp.zeros(2)}))(1e-3)
