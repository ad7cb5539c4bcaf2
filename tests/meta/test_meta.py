import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax

from autogan_jax import core
from autogan_jax import meta
from autogan_jax import optim
from autogan_jax import tasks
from autogan_jax.meta import evaluation

HORIZON = 20


def _quadratic_sampler(nan_share: float = 0.0):

  def sample(key):
    k_task, k_nan = jax.random.split(key)
    task = tasks.quadratic_task(k_task, dim=4)
    poisoned = jax.random.uniform(k_nan) < nan_share
    return task.replace(nan_after=jnp.where(poisoned, 3, -1).astype(jnp.int32))

  return sample


def _hyper(**overrides):
  values = {"meta_learning_rate": 1e-2, "clip_norm": 1.0, "loss_floor": 1e-3,
            "valid_weight": 0.0, "horizon": HORIZON} | overrides
  return meta.make_hyperparams(**values)


def _run_meta(trainer, meta_params, hyper, steps, seed=0):
  rule_hyper = optim.default_hyperparams(horizon=HORIZON)
  state = trainer.init(meta_params, rule_hyper, hyper, jax.random.key(seed))
  step = jax.jit(trainer.step)
  history = []
  for i in range(steps):
    state, metrics = step(state, rule_hyper, hyper, jax.random.fold_in(jax.random.key(seed), i))
    history.append(jax.device_get(metrics))
  return state, history


def test_nan_inner_runs_quarantined():
  trainer = meta.TruncatedTrainer(_quadratic_sampler(nan_share=0.5), num_tasks=8,
                                  unroll_length=5)
  state, history = _run_meta(trainer, optim.adam_meta_params(1e-2), _hyper(), steps=12)
  assert int(state.step) == 12
  assert int(state.quarantined) > 0
  assert int(state.quarantined) == sum(int(m["quarantined_now"]) for m in history)
  assert bool(core.tree.all_finite(state.meta_params))
  assert bool(core.tree.all_finite(state.inner.params))
  assert all(np.isfinite(m["meta_loss"]) for m in history)


def test_all_runs_quarantined_leaves_meta_params_unchanged():
  trainer = meta.TruncatedTrainer(_quadratic_sampler(nan_share=1.0), num_tasks=4,
                                  unroll_length=5)
  start = optim.adam_meta_params(1e-2)
  state, _ = _run_meta(trainer, start, _hyper(), steps=3)
  for a, b in zip(jax.tree.leaves(state.meta_params), jax.tree.leaves(start)):
    np.testing.assert_array_equal(a, b)
  # Poisoned from step 3 on: the first unroll (steps 0-4) already fails.
  assert int(state.quarantined) == 12


def test_meta_training_lowers_meta_loss():
  trainer = meta.TruncatedTrainer(_quadratic_sampler(), num_tasks=8, unroll_length=10)
  start = optim.adam_meta_params(1e-3)
  state, _ = _run_meta(trainer, start, _hyper(meta_learning_rate=3e-2), steps=40)

  def final_loss(meta_params, seed):
    task = tasks.quadratic_task(jax.random.key(1000 + seed), dim=4)
    tx = optim.learned_optimizer(meta_params, optim.default_hyperparams(horizon=HORIZON))
    run = meta.inner.start(task, tx, jax.random.key(seed))
    run, _ = meta.inner.unroll(task, tx, run, HORIZON)
    return float(task.evaluate(run.params)["loss"])

  before = np.mean([final_loss(start, s) for s in range(4)])
  after = np.mean([final_loss(state.meta_params, s) for s in range(4)])
  assert after < 0.7 * before
  # Adam at 1e-3 is far too slow for these quadratics: the rule must speed up.
  assert float(jnp.exp(state.meta_params["log_lr"])) > 2e-3


def test_meta_step_compiles_once_for_any_hyperparameters():
  counter = core.TraceCounter()
  trainer = meta.TruncatedTrainer(_quadratic_sampler(), num_tasks=2, unroll_length=3)
  step = jax.jit(counter.wrap(trainer.step, "meta_step"))
  for i, lr in enumerate((1e-3, 3e-2, 0.5)):
    rule_hyper = optim.default_hyperparams(horizon=10 + i, b1=0.8 + 0.05 * i)
    hyper = _hyper(meta_learning_rate=lr, clip_norm=0.1 * (i + 1), valid_weight=0.1 * i,
                   horizon=10 + i)
    meta_params = optim.init_meta_params(jax.random.key(i))
    state = trainer.init(meta_params, rule_hyper, hyper, jax.random.key(i))
    for j in range(2):
      state, _ = step(state, rule_hyper, hyper, jax.random.key(j))
  assert counter["meta_step"] == 1


def test_runs_restart_at_horizon():
  trainer = meta.TruncatedTrainer(_quadratic_sampler(), num_tasks=2, unroll_length=5)
  state, _ = _run_meta(trainer, optim.adam_meta_params(1e-2), _hyper(horizon=10), steps=3)
  # Steps 0-4, 5-9, then a restart at 10: the third unroll ends at inner step 5.
  np.testing.assert_array_equal(state.inner.step, [5, 5])


def test_imitation_fits_adam():
  imitation = meta.Imitation(_quadratic_sampler(), num_tasks=4, unroll_length=10,
                             adam_learning_rate=1e-2)
  rule_hyper = optim.default_hyperparams(horizon=HORIZON)
  fit_tx = optax.adam(3e-2)
  state = imitation.init(optim.init_meta_params(jax.random.key(0)), rule_hyper, fit_tx,
                         jax.random.key(1))
  step = jax.jit(lambda s, k: imitation.step(s, rule_hyper, fit_tx, jnp.int32(HORIZON), k))
  losses = []
  for i in range(60):
    state, metrics = step(state, jax.random.key(i))
    losses.append(float(metrics["imitation_loss"]))
  assert np.mean(losses[-5:]) < 0.2 * np.mean(losses[:5])
  task = tasks.quadratic_task(jax.random.key(99), dim=4)
  fitted = float(imitation.relative_error(state.meta_params, rule_hyper, task,
                                          jax.random.key(5), HORIZON))
  random = float(imitation.relative_error(optim.init_meta_params(jax.random.key(0)), rule_hyper,
                                          task, jax.random.key(5), HORIZON))
  assert fitted < 0.5 * random


def test_adam_point_has_zero_imitation_error():
  imitation = meta.Imitation(_quadratic_sampler(), num_tasks=1, unroll_length=5,
                             adam_learning_rate=1e-2)
  task = tasks.quadratic_task(jax.random.key(0), dim=4)
  error = imitation.relative_error(optim.adam_meta_params(1e-2), optim.default_hyperparams(),
                                   task, jax.random.key(1), 20)
  assert float(error) < 1e-4


def test_validation_keeps_best_and_rejects_divergent_rule():
  trainer = meta.TruncatedTrainer(_quadratic_sampler(), num_tasks=2, unroll_length=5)
  rule_hyper = optim.default_hyperparams(horizon=HORIZON)
  good = optim.adam_meta_params(3e-2)
  diverging = optim.sgd_meta_params(100.0)
  state = trainer.init(good, rule_hyper, _hyper(), jax.random.key(0))
  score = jax.jit(lambda mp: trainer.validation_score(mp, rule_hyper, jax.random.key(1), 4,
                                                      HORIZON))
  good_score = score(good)
  assert np.isfinite(float(good_score))
  assert float(score(diverging)) == np.inf

  state = meta.keep_best(state, good_score)
  assert float(state.best_score) == float(good_score)
  state = state.replace(meta_params=diverging, step=jnp.int32(7))
  state = meta.keep_best(state, score(diverging))
  assert int(state.best_step) == 0
  np.testing.assert_array_equal(state.best_meta_params["log_lr"], good["log_lr"])


def test_tuning_skips_diverged_rate_quietly():
  curves = {"valid_loss": np.array([[np.nan, np.nan], [1.0, 2.0], [3.0, np.nan]])}
  with warnings.catch_warnings():
    warnings.simplefilter("error", RuntimeWarning)
    rate, picked = evaluation._pick_tuned(curves, [0.1, 0.01, 0.001])
  assert rate == 0.01
  np.testing.assert_array_equal(picked["valid_loss"], [1.0, 2.0])
