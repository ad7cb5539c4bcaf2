"""The packaged G* and rule files."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from autogan_jax import optim
from autogan_jax import tasks


def test_packaged_g_star_comes_from_default_run():
  params, info = optim.load_rule(optim.rules.PACKAGED_G_STAR)
  assert info["preset"] == "default"
  assert np.isfinite(info["validation_score"])
  # It is a trained rule, not Adam's exact point.
  assert not np.allclose(params["basis"], optim.adam_meta_params(1e-3)["basis"])


def test_packaged_g_star_trains_digits_network():
  task = tasks.heldout_digits_tasks(seed=0)[0]
  tx = optim.g_star(horizon=100)
  params = task.init(jax.random.key(0))
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, i):
    loss, grads = jax.value_and_grad(task.loss)(params, task.batch(jax.random.key(1), i), None)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  losses = []
  for i in range(100):
    params, opt_state, loss = step(params, opt_state, i)
    losses.append(float(loss))
  assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])


def test_rule_file_round_trip_and_errors(tmp_path):
  params = optim.init_meta_params(jax.random.key(3))
  optim.save_rule(tmp_path / "rule.json", params, {"note": "test"})
  loaded, info = optim.load_rule(tmp_path / "rule.json")
  assert info == {"note": "test"}
  for name in params:
    np.testing.assert_allclose(loaded[name], params[name], rtol=1e-6)
  (tmp_path / "bad.json").write_text('{"meta_params": {"log_lr": 0.0}}')
  with pytest.raises(ValueError, match="missing meta-parameters"):
    optim.load_rule(tmp_path / "bad.json")
  with pytest.raises(ValueError, match="learning_rate=-1"):
    optim.g_star(learning_rate=-1.0, path=tmp_path / "rule.json")
  scaled = optim.g_star(learning_rate=1e-3, path=tmp_path / "rule.json")
  assert isinstance(scaled, optax.GradientTransformationExtraArgs)
  assert jnp.isfinite(jnp.asarray(loaded["log_lr"]))
