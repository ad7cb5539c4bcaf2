"""Generations of a population: training, NaN quarantine, PBT and compile-once."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from autogan_jax import core
from autogan_jax import population
from autogan_jax import tasks

SIZE = 6


def quadratic_tasks(nan_member=None, nan_after=3):
  """One quadratic per member; `nan_member`'s loss turns NaN from step `nan_after`."""
  members = []
  for i in range(SIZE):
    poisoned = nan_after if i == nan_member else -1
    members.append(tasks.quadratic_task(jax.random.key(100), dim=4, noise=0.0,
                                        nan_after=poisoned))
  return core.tree.stack(members)


def sgd_rule():
  return optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)


def make_state(task_batch, rule, learning_rates):
  return population.init_population(jax.random.key(0), task_batch, rule, SIZE,
                                    hyperparams={"learning_rate": learning_rates},
                                    tasks_batched=True)


def test_trainer_matches_plain_optax_loop():
  task = tasks.digits_task(width=8, depth=1, activation="relu", batch_size=8)
  rule = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)
  rates = jnp.array([1e-3, 1e-2])
  state = population.init_population(jax.random.key(0), task, rule, 2,
                                     hyperparams={"learning_rate": rates})
  trainer = jax.jit(population.make_population_trainer(rule, num_steps=4, eval_split="valid"))
  keys = jnp.stack([jax.random.key(5), jax.random.key(6)])
  params, _, losses, metrics = trainer(state.params, state.opt_state, state.meta_params, task,
                                       keys, 10)

  # Member 1 again, with a Python loop over plain optax.adam.
  member_params = core.tree.index(state.params, 1)
  tx = optax.adam(1e-2)
  opt_state = tx.init(member_params)
  data_key = core.split_named(keys[1], ("data", "loss"))["data"]

  @jax.jit
  def reference_step(member_params, opt_state, step):
    batch = task.batch(data_key, step)
    loss, grads = jax.value_and_grad(task.loss)(member_params, batch)
    updates, opt_state = tx.update(grads, opt_state, member_params)
    return optax.apply_updates(member_params, updates), opt_state, loss

  expected_losses = []
  for step in range(10, 14):
    member_params, opt_state, loss = reference_step(member_params, opt_state, step)
    expected_losses.append(float(loss))

  np.testing.assert_allclose(losses[1], expected_losses, rtol=1e-5)
  np.testing.assert_allclose(params["w0"][1], member_params["w0"], rtol=1e-5, atol=1e-6)
  expected_eval = task.evaluate(member_params, "valid")
  np.testing.assert_allclose(metrics["loss"][1], expected_eval["loss"], rtol=1e-5)
  assert not np.allclose(losses[0], losses[1])


def test_nan_member_replaced_and_counted():
  rule = sgd_rule()
  config = population.GenerationConfig(steps_per_generation=5, selection="none",
                                       tasks_batched=True)
  state = make_state(quadratic_tasks(nan_member=2), rule, jnp.linspace(0.05, 0.3, SIZE))
  generation = jax.jit(population.make_generation_step(rule, config))

  state, metrics = generation(state, quadratic_tasks(nan_member=2), jax.random.key(1))
  assert np.all(np.isnan(np.asarray(metrics["train_loss"][2, 3:])))
  assert np.all(np.isfinite(np.asarray(metrics["train_loss"])[[0, 1, 3, 4, 5]]))
  np.testing.assert_array_equal(metrics["failed"], [False, False, True, False, False, False])
  assert int(metrics["num_failed"]) == 1
  assert int(state.num_replaced) == 1

  # The failed member is now a copy of the best healthy member, hyperparameters included.
  fitness = np.where(np.asarray(metrics["failed"]), np.inf, np.asarray(metrics["fitness"]))
  donor = int(np.argmin(fitness))
  assert donor != 2
  np.testing.assert_array_equal(state.params["x"][2], state.params["x"][donor])
  rates = population.get_hyperparams(state.opt_state)["learning_rate"]
  assert float(rates[2]) == float(rates[donor])
  assert float(state.fitness[2]) == pytest.approx(fitness[donor])
  assert bool(core.tree.all_finite(state.params))

  # The run goes on: healthy members keep training, and the poisoned task fails again.
  before = np.asarray(state.params["x"])
  state, metrics = generation(state, quadratic_tasks(nan_member=2), jax.random.key(1))
  assert int(state.num_replaced) == 2
  assert np.all(np.isfinite(np.asarray(metrics["fitness"])[[0, 1, 3, 4, 5]]))
  assert not np.allclose(np.asarray(state.params["x"])[0], before[0])
  assert int(state.generation) == 2


def test_all_members_failed_keeps_state():
  state = make_state(quadratic_tasks(), sgd_rule(), jnp.full(SIZE, 0.1))
  broken = state.replace(fitness=jnp.full(SIZE, jnp.nan))
  repaired, failed = population.replace_nonfinite(broken)
  assert np.all(np.asarray(failed))
  assert int(repaired.num_replaced) == 0
  np.testing.assert_array_equal(repaired.params["x"], state.params["x"])


def test_no_retrace_across_generations():
  rule = sgd_rule()
  config = population.GenerationConfig(steps_per_generation=3, tasks_batched=True,
                                       meta_params_noise=0.1)
  meta_params = {"scale": jnp.ones((SIZE, 2))}
  state = population.init_population(jax.random.key(0), quadratic_tasks(), rule, SIZE,
                                     hyperparams={"learning_rate": 0.1}, meta_params=meta_params,
                                     tasks_batched=True)
  counter = core.TraceCounter()
  generation = jax.jit(counter.wrap(population.make_generation_step(rule, config), "generation"))
  task_batch = quadratic_tasks()
  for index in range(4):
    state, _ = generation(state, task_batch, jax.random.key(index))
    # Hyperparameters are data: changing them between generations compiles nothing new.
    rates = population.get_hyperparams(state.opt_state)["learning_rate"]
    state = state.replace(opt_state=population.set_hyperparams(state.opt_state,
                                                               {"learning_rate": rates * 0.9}))
  assert counter["generation"] == 1
  assert int(state.generation) == 4
  assert int(state.step) == 12


def test_truncation_exploit_and_explore():
  rule = sgd_rule()
  config = population.GenerationConfig(truncation_fraction=0.34, perturb_factor=2.0,
                                       meta_params_noise=0.5, tasks_batched=True)
  state = make_state(quadratic_tasks(), rule, jnp.linspace(0.1, 0.6, SIZE))
  state = state.replace(fitness=jnp.array([5.0, 1.0, 3.0, 0.5, 4.0, 2.0]),
                        meta_params={"w": jnp.arange(SIZE, dtype=jnp.float32)})
  evolved, info = population.exploit_and_explore(jax.random.key(3), state, config)

  # floor(0.34 * 6) = 2: members 0 and 4 (worst) copy one of members 3 and 1 (best).
  explored = np.asarray(info["explored"])
  parents = np.asarray(info["parents"])
  np.testing.assert_array_equal(explored, [True, False, False, False, True, False])
  assert set(parents[[0, 4]]) <= {1, 3}
  np.testing.assert_array_equal(parents[[1, 2, 3, 5]], [1, 2, 3, 5])

  old_rates = np.asarray(population.get_hyperparams(state.opt_state)["learning_rate"])
  new_rates = np.asarray(population.get_hyperparams(evolved.opt_state)["learning_rate"])
  for member in (0, 4):
    parent = parents[member]
    np.testing.assert_array_equal(evolved.params["x"][member], state.params["x"][parent])
    ratio = new_rates[member] / old_rates[parent]
    assert ratio == pytest.approx(2.0) or ratio == pytest.approx(0.5)
    assert float(evolved.meta_params["w"][member]) != float(parent)
    assert float(evolved.fitness[member]) == float(state.fitness[parent])
  np.testing.assert_array_equal(new_rates[[1, 2, 3, 5]], old_rates[[1, 2, 3, 5]])
  np.testing.assert_array_equal(np.asarray(evolved.meta_params["w"])[[1, 2, 3, 5]],
                                [1.0, 2.0, 3.0, 5.0])


def test_generation_config_rejects_bad_values():
  with pytest.raises(core.ConfigError, match="selection"):
    population.GenerationConfig(selection="roulette")
  with pytest.raises(core.ConfigError, match="truncation_fraction"):
    population.GenerationConfig(truncation_fraction=0.7)
  with pytest.raises(core.ConfigError, match="steps_per_generation"):
    population.GenerationConfig(steps_per_generation=0)


def test_hyperparams_set_get_and_reject_unknown():
  tx = optax.chain(optax.clip(1.0), optax.inject_hyperparams(optax.adam)(learning_rate=0.1))
  opt_state = jax.vmap(tx.init)({"x": jnp.zeros((3, 2))})
  assert "learning_rate" in population.hyperparam_names(opt_state)
  opt_state = population.set_hyperparams(opt_state, {"learning_rate": jnp.array([1.0, 2.0, 3.0])})
  np.testing.assert_array_equal(population.get_hyperparams(opt_state)["learning_rate"],
                                [1.0, 2.0, 3.0])
  np.testing.assert_allclose(population.get_hyperparams(opt_state)["b1"], [0.9] * 3)
  with pytest.raises(ValueError, match="momentum"):
    population.set_hyperparams(opt_state, {"momentum": 0.5})
