"""G_optim: the three estimates, their gated mix, NaN candidates and the ES meta-gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import struct

from autogan_jax.core import validation
from autogan_jax.optim import learned
from autogan_jax.optim import strategy

GROUPS = ("weights", "thresholds", "choice")


def _per_example(params, batch, key):
  """A loss with one smooth group, one step-function group and one sampled choice."""
  x, y = batch["x"], batch["y"]
  smooth = (x @ params["weights"] - y) ** 2
  step = jnp.sum((x[:, :2] > params["thresholds"]).astype(jnp.float32), axis=1)
  sample = jax.random.categorical(key, params["choice"], shape=(x.shape[0],))
  losses = smooth + step + jnp.asarray([0.0, 1.0, 3.0])[sample]
  return losses, jax.nn.log_softmax(params["choice"])[sample]


def _problem():
  params = {"weights": jnp.array([0.5, -1.0, 2.0]), "thresholds": jnp.array([0.1, -0.2]),
            "choice": jnp.array([0.0, 0.5, -0.5])}
  x = jax.random.normal(jax.random.key(1), (32, 3))
  return params, {"x": x, "y": x @ jnp.array([1.0, 0.0, -1.0])}


@pytest.fixture(scope="module")
def estimates():
  params, batch = _problem()
  compute = jax.jit(lambda p, k: strategy.estimate_gradients(_per_example, p, batch, k, 0.05, 64))
  return compute(params, jax.random.key(0))


def test_estimates_per_source(estimates):
  estimates, loss = estimates
  params, batch = _problem()
  assert np.isfinite(float(loss))
  # The gradient reaches the smooth group only.
  smooth = lambda w: jnp.mean((batch["x"] @ w - batch["y"]) ** 2)  # noqa: E731
  np.testing.assert_allclose(estimates.gradient["weights"], jax.grad(smooth)(params["weights"]),
                             rtol=1e-5)
  assert float(jnp.max(jnp.abs(estimates.gradient["thresholds"]))) == 0.0
  assert float(jnp.max(jnp.abs(estimates.gradient["choice"]))) == 0.0
  # The score function reaches the sampled choice only.
  assert float(jnp.max(jnp.abs(estimates.score_function["weights"]))) == 0.0
  assert float(jnp.max(jnp.abs(estimates.score_function["thresholds"]))) == 0.0
  assert float(jnp.max(jnp.abs(estimates.score_function["choice"]))) > 0.0
  # ES responds to the step function.
  assert float(jnp.max(jnp.abs(estimates.es["thresholds"]))) > 0.0
  assert int(estimates.es_dropped) == 0


def test_es_estimate_matches_gradient_on_smooth_group(estimates):
  estimates, _ = estimates
  params, batch = _problem()
  smooth = lambda w: jnp.mean((batch["x"] @ w - batch["y"]) ** 2)  # noqa: E731
  true = jax.grad(smooth)(params["weights"])
  es_weights = estimates.es["weights"]
  cosine = jnp.dot(es_weights, true) / (jnp.linalg.norm(es_weights) * jnp.linalg.norm(true))
  assert float(cosine) > 0.9


@jax.jit
def _gate_and_mix(estimates, gate_params):
  gates = strategy.gates(gate_params, strategy.gate_features(estimates, GROUPS))
  return (gates, strategy.mix(estimates, gates, GROUPS),
          strategy.contribution_shares(estimates, gates, GROUPS))


def test_one_hot_gates_reproduce_each_estimator(estimates):
  estimates, _ = estimates
  sources = {"gradient_only": estimates.gradient, "es_only": estimates.es,
             "score_function_only": estimates.score_function}
  for name, expected in sources.items():
    gates, mixed, _ = _gate_and_mix(estimates, strategy.fixed_gate_params(name, GROUPS))
    assert set(np.unique(np.asarray(gates))) == {0.0, 1.0}
    for group in GROUPS:
      np.testing.assert_array_equal(mixed[group], expected[group])


def test_uniform_and_assigned_gates(estimates):
  estimates, _ = estimates
  uniform, mixed, _ = _gate_and_mix(estimates, strategy.fixed_gate_params("uniform_mix", GROUPS))
  np.testing.assert_allclose(uniform, np.full((3, 3), 1.0 / 3.0), rtol=1e-6)
  expected = (estimates.gradient["weights"] + estimates.es["weights"]
              + estimates.score_function["weights"]) / 3.0
  np.testing.assert_allclose(mixed["weights"], expected, rtol=1e-5)

  assignment = {"weights": "gradient", "thresholds": "es", "choice": "score_function"}
  _, mixed, shares = _gate_and_mix(estimates, strategy.assigned_gate_params(assignment, GROUPS))
  np.testing.assert_array_equal(mixed["thresholds"], estimates.es["thresholds"])
  np.testing.assert_array_equal(mixed["choice"], estimates.score_function["choice"])
  np.testing.assert_allclose(shares, np.eye(3), atol=1e-6)


def test_gate_params_reject_bad_input():
  with pytest.raises(validation.ConfigError, match="strategy"):
    strategy.fixed_gate_params("adam_only", GROUPS)
  with pytest.raises(validation.ConfigError, match="choice"):
    strategy.assigned_gate_params({"weights": "gradient", "thresholds": "es"}, GROUPS)
  with pytest.raises(validation.ConfigError, match="reparam"):
    strategy.assigned_gate_params(dict.fromkeys(GROUPS, "reparam"), GROUPS)


def test_es_drops_nonfinite_pairs():
  params = {"a": jnp.zeros(4), "b": jnp.zeros(2)}

  def loss_fn(p):
    value = jnp.sum((p["a"] - 1.0) ** 2) + jnp.sum(p["b"] ** 2)
    # Candidates that move a[0] far enough produce NaN.
    return jnp.where(p["a"][0] > 0.1, jnp.nan, value)

  estimate, dropped = jax.jit(lambda k: strategy.es_group_estimates(
      loss_fn, params, k, 0.1, 16))(jax.random.key(3))
  assert int(dropped) > 0
  assert int(dropped) < 16
  assert bool(jnp.all(jnp.isfinite(estimate["a"])))
  assert bool(jnp.all(jnp.isfinite(estimate["b"])))
  # The true gradient of a[1:] is -2, and the finite pairs still point that way.
  assert float(jnp.mean(estimate["a"][1:])) < 0.0


@struct.dataclass
class _NaNTask:
  """Least squares with a threshold group whose loss is NaN above 0.3."""

  groups: tuple = struct.field(pytree_node=False, default=("weights", "thresholds"))

  def init(self, key):
    return {"weights": jax.random.normal(key, (3,)), "thresholds": jnp.full((1,), 0.25)}

  def batch(self, key, step):
    x = jax.random.normal(jax.random.fold_in(key, step), (8, 3))
    return {"x": x, "y": x @ jnp.array([1.0, -1.0, 0.5])}

  def per_example(self, params, batch, key):
    del key
    losses = (batch["x"] @ params["weights"] - batch["y"]) ** 2 + params["thresholds"][0]
    return jnp.where(params["thresholds"][0] > 0.3, jnp.nan, losses), None


def test_nan_candidate_does_not_kill_run():
  task = _NaNTask()
  # The mixed estimate goes to the learned rule, set to Adam, as any optax transform would.
  tx = learned.learned_optimizer(learned.adam_meta_params(0.05))
  run = strategy.make_inner_run(task, tx, num_steps=40, es_sigma=0.1, es_pairs=4)
  params, trace = jax.jit(run)(strategy.fixed_gate_params("uniform_mix", task.groups),
                               jax.random.key(0))
  assert int(trace["es_dropped"].sum()) > 0
  assert bool(jnp.all(jnp.isfinite(trace["loss"])))
  assert bool(jnp.all(jnp.isfinite(params["weights"])))
  assert float(trace["loss"][-5:].mean()) < float(trace["loss"][:5].mean())
  np.testing.assert_allclose(trace["gates"].sum(axis=-1), 1.0, rtol=1e-6)


def test_make_inner_run_rejects_bad_settings():
  with pytest.raises(validation.ConfigError, match="es_pairs"):
    strategy.make_inner_run(_NaNTask(), optax.adam(0.1), num_steps=3, es_sigma=0.1, es_pairs=0)
  with pytest.raises(validation.ConfigError, match="es_sigma"):
    strategy.make_inner_run(_NaNTask(), optax.adam(0.1), num_steps=3, es_sigma=0.0, es_pairs=1)


def test_meta_gradient_points_downhill():
  theta = {"bias": jnp.zeros((2, 3)), "weights": jnp.zeros((5, 3))}
  target = jnp.arange(6.0).reshape(2, 3) / 6.0

  @jax.jit
  def meta_step(theta, key):
    candidates, eps = strategy.meta_candidates(theta, key, 0.1, 64)
    losses = jnp.sum((candidates["bias"] - target) ** 2, axis=(1, 2))
    losses = losses.at[0].set(jnp.nan)
    return candidates, strategy.meta_gradient(eps, losses, 0.1)

  candidates, (grad, nonfinite) = meta_step(theta, jax.random.key(0))
  assert candidates["bias"].shape == (128, 2, 3)
  assert int(nonfinite) == 1
  true = -2.0 * target
  cosine = jnp.sum(grad["bias"] * true) / (jnp.linalg.norm(grad["bias"]) * jnp.linalg.norm(true))
  assert float(cosine) > 0.5
  assert bool(jnp.all(jnp.isfinite(grad["weights"])))
