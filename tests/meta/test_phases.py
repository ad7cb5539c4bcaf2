"""Population exploration, G_meta, D_meta-opt and self-reference on quadratic tasks."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from autogan_jax import core
from autogan_jax import meta
from autogan_jax import optim
from autogan_jax import tasks
from autogan_jax.meta import exploration
from autogan_jax.meta import meta_opt

HORIZON = 20


def _sampler(key):
  return tasks.quadratic_task(key, dim=4)


def _hyper(**overrides):
  values = {"meta_learning_rate": 1e-2, "clip_norm": 1.0, "loss_floor": 1e-3,
            "valid_weight": 0.0, "horizon": HORIZON} | overrides
  return meta.make_hyperparams(**values)


RULE_HYPER = optim.default_hyperparams(horizon=HORIZON)


def _member(trainer, meta_params, seed=0):
  return exploration.init_member(trainer, meta_params, RULE_HYPER, _hyper(),
                                 jax.random.key(seed))


def test_es_and_pes_estimates_point_downhill():
  # On quadratics the meta-loss falls as the learning rate grows (up to a point), so
  # the averaged estimate of d(meta-loss)/d(log_lr) must be negative at a tiny rate.
  trainer = meta.TruncatedTrainer(_sampler, num_tasks=8, unroll_length=5)
  start = optim.sgd_meta_params(1e-3)
  accumulated = {}
  for persistent in (False, True):
    member = _member(trainer, start)
    step = jax.jit(lambda m, k, p=persistent: exploration.particle_step(
        trainer, m, RULE_HYPER, _hyper(meta_learning_rate=3e-2), k, 0.05, p))
    for i in range(15):
      member, metrics = step(member, jax.random.key(i))
    assert float(member.train.meta_params["log_lr"]) > float(start["log_lr"]) + 0.05
    assert np.isfinite(float(metrics["meta_loss"]))
    accumulated[persistent] = float(jnp.abs(member.noise["log_lr"]).mean())
  # After 15 steps each run is 3 truncations past its last restart: PES has summed three
  # perturbations (mean size about sqrt(3) times one), truncated ES holds only the last.
  assert accumulated[True] > 1.3 * accumulated[False]


def test_particle_step_quarantines_nonfinite_pairs():
  def poisoned(key):
    return tasks.quadratic_task(key, dim=4).replace(nan_after=jnp.int32(2))

  trainer = meta.TruncatedTrainer(poisoned, num_tasks=4, unroll_length=5)
  start = optim.adam_meta_params(1e-2)
  member = _member(trainer, start)
  member, metrics = exploration.particle_step(trainer, member, RULE_HYPER, _hyper(),
                                              jax.random.key(1), 0.05, True)
  assert int(metrics["quarantined_now"]) == 4
  for a, b in zip(jax.tree.leaves(member.train.meta_params), jax.tree.leaves(start)):
    np.testing.assert_array_equal(a, b)
  assert np.all(np.asarray(member.particles.step) == HORIZON)


def test_segment_follows_settings_and_horizon_schedule():
  trainer = meta.TruncatedTrainer(_sampler, num_tasks=8, unroll_length=5)
  member = _member(trainer, optim.adam_meta_params(1e-2))
  settings = meta_opt.MetaSettings(
      estimator=jnp.int32(0), log10_learning_rate=jnp.float32(-2.0),
      tasks=jnp.int32(meta_opt.TASK_CHOICES.index(2)),
      horizon_start=jnp.int32(meta_opt.HORIZON_STARTS.index(0.5)))
  segment = jax.jit(exploration.make_segment(trainer, "tbptt", 4, 8, 0.01))
  member, metrics = segment(member, settings, RULE_HYPER, _hyper(horizon=40), jax.random.key(0))
  # Horizon 40 starts at half and grows linearly over 8 meta-steps.
  np.testing.assert_array_equal(np.asarray(metrics["horizon"]), [20, 22, 25, 28])
  assert int(member.train.step) == 4
  with pytest.raises(ValueError, match="Unknown estimator 'sgd'"):
    exploration.make_segment(trainer, "sgd", 4, 8, 0.01)


def test_generator_learns_the_rewarded_estimator():
  params = meta_opt.init_generator(-3.0)
  tx = optax.adam(0.1)
  opt_state = tx.init(params)
  traces = core.TraceCounter()
  grad = jax.jit(traces.wrap(jax.grad(meta_opt.generator_loss), "grad"))
  for i in range(60):
    settings = meta_opt.sample_settings(params, jax.random.key(i), 16)
    rewards = ((settings.estimator == 2).astype(jnp.float32)
               - 0.5 * (settings.tasks == 2).astype(jnp.float32))
    updates, opt_state = tx.update(grad(params, settings, rewards), opt_state, params)
    params = optax.apply_updates(params, updates)
  # Updated parameters keep the initial ones' types, so the loss compiles once.
  assert traces["grad"] == 1
  probs = meta_opt.choice_probabilities(params)
  assert probs["estimator"][2] > 0.9
  assert probs["tasks_per_meta_step"][2] < 0.2


def test_generator_never_draws_excluded_estimators():
  params = meta_opt.init_generator(-3.0, ("es",))
  settings = meta_opt.sample_settings(params, jax.random.key(0), 64)
  assert set(np.asarray(settings.estimator).tolist()) == {1}
  with pytest.raises(ValueError, match="allowed_estimators"):
    meta_opt.init_generator(-3.0, ("adam",))


def _curves(key, count):
  """Half converging curves (falling, calm), half not (flat, noisy or rising)."""
  steps = jnp.arange(40.0)
  keys = jax.random.split(key, count)
  good = [2.0 * jnp.exp(-steps / (8 + 4 * i % 7)) + 0.05 * jax.random.normal(k, (40,))
          for i, k in enumerate(keys[:count // 2])]
  bad = [1.0 + 0.01 * i * steps + 0.4 * jax.random.normal(k, (40,))
         for i, k in enumerate(keys[count // 2:])]
  return jnp.stack(good + bad)


def test_discriminator_orders_converging_curves_first():
  features = jax.vmap(meta_opt.curve_features)(_curves(jax.random.key(0), 16))
  labels = jnp.arange(16) < 8
  params = meta_opt.init_discriminator(jax.random.key(1))
  tx = optax.adam(1e-2)
  opt_state = tx.init(params)
  grad = jax.jit(jax.grad(meta_opt.discriminator_loss))
  for _ in range(200):
    updates, opt_state = tx.update(grad(params, features, labels), opt_state, params)
    params = optax.apply_updates(params, updates)
  held_out = jax.vmap(meta_opt.curve_features)(_curves(jax.random.key(7), 8))
  logits = np.asarray(meta_opt.discriminate(params, held_out))
  assert logits[:4].min() > logits[4:].max()
  nan_curve = jnp.full((40,), jnp.nan)
  assert float(meta_opt.curve_features(nan_curve)[-1]) == 1.0


def test_diversity_and_selection():
  same = jnp.ones((4, 10))
  assert float(exploration.diversity(same)) == pytest.approx(0.0, abs=1e-7)
  spread = jnp.stack([jnp.ones(10), -jnp.ones(10)])
  assert float(exploration.diversity(spread)) == pytest.approx(1.0)
  result = exploration.select_parents([0.5, np.nan, 0.1, 0.9], exploit_fraction=0.5)
  # The NaN member copies the best; the worst healthy member copies the next best.
  assert result.parents == [0, 2, 2, 0]
  assert result.replaced_nonfinite == [1]


def test_self_reference_needs_no_hand_written_optimizer(monkeypatch):
  trainer = meta.TruncatedTrainer(_sampler, num_tasks=4, unroll_length=5)
  hyper = _hyper()
  self_hyper = optim.default_hyperparams(horizon=10)
  start = optim.adam_meta_params(3e-2)
  state = trainer.init(start, RULE_HYPER, hyper, jax.random.key(0), self_hyper)

  def unavailable(*args, **kwargs):
    raise AssertionError("a hand-written optimizer was called during self-reference")

  for name in ("adam", "adamw", "scale_by_adam", "sgd", "clip_by_global_norm", "chain"):
    monkeypatch.setattr(optax, name, unavailable)
  step = jax.jit(lambda s, k: trainer.step(s, RULE_HYPER, hyper, k, self_hyper))
  first, _ = step(state, jax.random.key(1))

  # The change of the meta-parameters is the rule's own update of its own meta-gradient.
  tasks_, runs, _ = trainer.restart_finished(state.meta_params, RULE_HYPER, hyper, state.tasks,
                                             state.inner, jax.random.fold_in(jax.random.key(1), 0))
  grads = jax.vmap(jax.grad(lambda mp, t, r: trainer.meta_loss(mp, RULE_HYPER, hyper, t, r)[0]),
                   in_axes=(None, 0, 0))(state.meta_params, tasks_, runs)
  mean = jax.tree.map(lambda g: jnp.mean(g, axis=0), grads)
  rule = optim.learned_optimizer(state.meta_params, self_hyper)
  expected, _ = rule.update(mean, state.meta_opt_state, state.meta_params)
  for name in start:
    np.testing.assert_allclose(first.meta_params[name] - start[name], expected[name],
                               rtol=1e-4, atol=1e-7, err_msg=name)
  assert isinstance(first.meta_opt_state, optim.LearnedRuleState)
  assert int(first.meta_opt_state.count) == 1

  # In scaled units centred on the start, the rule reads zero parameters and scaled
  # gradients, and its update moves the meta-parameters by the scale times itself.
  coords = meta.SelfCoordinates(center=start, scale=jnp.float32(0.1))
  scaled, _ = jax.jit(lambda s, k: trainer.step(s, RULE_HYPER, hyper, k, self_hyper, coords))(
      state, jax.random.key(1))
  zeros = jax.tree.map(jnp.zeros_like, start)
  local, _ = rule.update(jax.tree.map(lambda g: 0.1 * g, mean), state.meta_opt_state, zeros)
  for name in start:
    np.testing.assert_allclose(scaled.meta_params[name] - start[name], 0.1 * local[name],
                               rtol=1e-4, atol=1e-7, err_msg=name)
