"""Meta-training of the gates with D_optim's feedback, on a constructed stand-in inner run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from autogan_jax.optim import curve_judge
from autogan_jax.optim import strategy_study

GROUPS = ("weights", "thresholds")
STEPS = 20
CONFIG = {"meta_learning_rate": 0.1, "meta_pairs": 4, "meta_sigma": 0.5, "meta_steps": 3,
          "judge_top_fraction": 0.25, "judge_steps": 100, "judge_hidden": 4}


@jax.jit
def _constructed_run(gate_params, key_data):
  """Equal validation losses for every candidate, and training curves that fall faster the
  larger the first bias entry is."""
  del key_data
  rate = jax.nn.softplus(gate_params["bias"][:, 0, 0])[:, None]
  curves = 2.0 * jnp.exp(-rate * jnp.arange(STEPS) / 4.0) + 0.1
  return {"valid_loss": jnp.ones(rate.shape[0]), "loss": curves}


def _meta_train(weight):
  config = dict(CONFIG, judge_feedback_weight=weight)
  initial = _constructed_run({"bias": jnp.linspace(-2.0, 2.0, 8)[:, None, None]
                              * jnp.ones((8, 2, 3))}, None)["loss"]
  feedback = {"judge_key": jax.random.key(1), "initial_curves": np.asarray(initial)}
  return strategy_study.meta_train(config, _constructed_run, 8, GROUPS, jax.random.key(0),
                                   lambda record: None, feedback=feedback)


def test_zero_feedback_weight_leaves_gates():
  gate_params, records = _meta_train(0.0)
  np.testing.assert_array_equal(gate_params["bias"], np.zeros((2, 3)))
  assert [r["step"] for r in records] == [1, 2, 3]
  assert "d_optim_mean" not in records[0]


def test_feedback_moves_gates_toward_top_curves():
  # The validation losses are equal, so only D_optim's scores can move the gates.
  gate_params, records = _meta_train(1.0)
  assert gate_params["bias"][0, 0] > 0.1
  for record in records:
    assert 0.0 < record["d_optim_mean"] < 1.0
    assert record["meta_objective"] == pytest.approx(2.0 - record["d_optim_mean"], rel=1e-5)


def test_prefix_judge_ignores_rows_past_count():
  t = jnp.arange(STEPS)
  good = 2.0 * jnp.exp(-t[None] / jnp.linspace(2.0, 4.0, 4)[:, None]) + 0.1
  bad = 2.0 + 0.05 * jnp.sin(t[None] + jnp.arange(8)[:, None])
  archive = jnp.concatenate([good, bad])
  train = jax.jit(lambda curves: curve_judge.train_curve_judge_on_prefix(
      jax.random.key(2), curves, 12, steps=100, hidden=4))
  filled_nan, metrics = train(jnp.concatenate([archive, jnp.full((4, STEPS), jnp.nan)]))
  filled_good, _ = train(jnp.concatenate([archive, jnp.full((4, STEPS), 0.01)]))
  for name in filled_nan:
    np.testing.assert_array_equal(filled_nan[name], filled_good[name])
  assert int(metrics["num_real"]) == 3
  assert int(metrics["num_fake"]) == 9
  scores = curve_judge.score_curves(filled_nan, archive)
  assert float(scores[:3].min()) > float(scores[4:].max())
