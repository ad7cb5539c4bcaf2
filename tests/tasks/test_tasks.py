import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from autogan_jax import core
from autogan_jax import tasks


def _train(task, steps=150, lr=3e-3, seed=0):
  key = jax.random.key(seed)
  params = task.init(key)
  tx = optax.adam(lr)
  state = tx.init(params)

  def body(carry, step):
    params, state = carry
    loss, grads = jax.value_and_grad(task.loss)(params, task.batch(key, step))
    updates, state = tx.update(grads, state, params)
    return (optax.apply_updates(params, updates), state), loss

  (params, _), losses = jax.lax.scan(body, (params, state), jnp.arange(steps))
  return params, losses


def test_digits_training_learns():
  task = tasks.digits_task(width=32, depth=1, activation="relu", batch_size=32)
  before = task.evaluate(task.init(jax.random.key(0)))
  params, _ = jax.jit(_train, static_argnums=1)(task, 150)
  after = task.evaluate(params)
  assert float(after["loss"]) < 0.5 * float(before["loss"])
  assert float(after["accuracy"]) > 0.85


def test_char_training_learns():
  task = tasks.char_task(width=64, batch_size=32)
  before = task.evaluate(task.init(jax.random.key(0)), "valid")
  params, _ = jax.jit(_train, static_argnums=1)(task, 150)
  after = task.evaluate(params, "valid")
  # Uniform guessing over 128 ids costs log(128) = 4.85 nats per character.
  assert float(after["loss"]) < float(before["loss"]) - 1.0
  assert float(after["accuracy"]) > 0.15


def test_padded_digits_task_matches_unpadded():
  padded = tasks.digits_task(width=16, depth=1, activation="tanh", batch_size=32,
                             max_width=64, max_depth=2, max_batch_size=64)
  exact = tasks.digits_task(width=16, depth=1, activation="tanh", batch_size=32)
  params = padded.init(jax.random.key(0))
  exact_params = {"w0": params["w0"][:, :16], "b0": params["b0"][:16],
                  "w_out": params["w_out"][:16], "b_out": params["b_out"]}
  x = jnp.asarray(tasks.datasets.load_digits().x_test[:20])
  np.testing.assert_allclose(padded.apply(params, x), exact.apply(exact_params, x),
                             rtol=1e-5, atol=1e-5)


def test_masked_parameters_get_zero_gradient():
  task = tasks.digits_task(width=16, depth=1, activation="relu", batch_size=32, max_width=32,
                           max_depth=2, max_batch_size=64)
  params = task.init(jax.random.key(0))
  grads = jax.grad(task.loss)(params, task.batch(jax.random.key(1), 0))
  assert float(jnp.abs(grads["w0"][:, 16:]).max()) == 0.0
  assert float(jnp.abs(grads["w1"]).max()) == 0.0  # depth 1: the second layer is unused.
  assert float(jnp.abs(grads["w0"][:, :16]).max()) > 0.0


def test_batch_is_pure_function_of_key_and_step():
  task = tasks.digits_task(width=16, depth=1, activation="relu", batch_size=32)
  key = jax.random.key(3)
  a, b, c = task.batch(key, 4), task.batch(key, 4), task.batch(key, 5)
  np.testing.assert_array_equal(a["y"], b["y"])
  assert not np.array_equal(a["x"], c["x"])


def test_subset_fraction_limits_examples():
  task = tasks.digits_task(width=16, depth=1, activation="relu", batch_size=64,
                           subset_fraction=0.1)
  seen = set()
  for step in range(30):
    seen |= {r.tobytes() for r in np.asarray(task.batch(jax.random.key(0), step)["x"])}
  assert len(seen) < 0.2 * 1078


def test_family_sample_never_recompiles_and_stays_in_range():
  family = tasks.DigitsFamily()
  counter = core.TraceCounter()
  sample = jax.jit(counter.wrap(lambda k: family.sample(k).variant, "sample"))
  for seed in range(5):
    variant = sample(jax.random.key(seed))
    assert int(variant.width) in family.widths
    assert int(variant.depth) in family.depths
    assert tasks.ACTIVATIONS[int(variant.activation)] in family.activations
  assert counter["sample"] == 1


def test_heldout_tasks_differ_from_meta_train_family():
  family = tasks.DigitsFamily()
  for task in tasks.heldout_digits_tasks():
    v = task.variant
    outside = (int(v.width) not in family.widths or int(v.depth) not in family.depths
               or tasks.ACTIVATIONS[int(v.activation)] not in family.activations)
    assert outside, task.describe()


def test_stacked_tasks_vmap():
  family = tasks.DigitsFamily()
  stacked = jax.vmap(family.sample)(jax.random.split(jax.random.key(0), 4))
  params = jax.vmap(lambda t, k: t.init(k))(stacked, jax.random.split(jax.random.key(1), 4))
  losses = jax.vmap(lambda t, p: t.evaluate(p, "valid")["loss"])(stacked, params)
  assert losses.shape == (4,)
  assert bool(jnp.all(jnp.isfinite(losses)))


def test_flat_task_matches_task():
  task = tasks.digits_task(width=16, depth=2, activation="gelu", batch_size=32)
  flat = tasks.FlatTask(task)
  key = jax.random.key(0)
  batch = task.batch(key, 0)
  flat_params = flat.init(key)
  assert flat_params.ndim == 1
  np.testing.assert_allclose(flat.loss(flat_params, batch), task.loss(task.init(key), batch),
                             rtol=1e-6)


@pytest.mark.parametrize("kwargs, field", [
    ({"width": 0}, "width"), ({"activation": "sigmoid"}, "activation"),
    ({"batch_size": 128, "max_batch_size": 64}, "batch_size"),
    ({"subset_fraction": 0.0}, "subset_fraction")])
def test_invalid_digits_task_rejected(kwargs, field):
  args = {"width": 16, "depth": 1, "activation": "relu", "batch_size": 32} | kwargs
  with pytest.raises(core.ConfigError, match=field):
    tasks.digits_task(**args)


def test_quadratic_nan_injection():
  task = tasks.quadratic_task(jax.random.key(0), nan_after=3)
  params = task.init(jax.random.key(1))
  assert np.isfinite(float(task.loss(params, task.batch(jax.random.key(2), 2))))
  assert np.isnan(float(task.loss(params, task.batch(jax.random.key(2), 3))))


def test_batches_draw_only_from_subset_uniformly():
  task = tasks.digits_task(width=16, depth=1, activation="relu", batch_size=64,
                           subset_fraction=0.3, seed=4)
  mask = np.asarray(task._subset_mask())
  x_train = tasks.datasets.load_digits().x_train
  allowed = {x_train[i].tobytes() for i in np.nonzero(mask)[0]}
  counts = {}
  for step in range(200):
    for row in np.asarray(task.batch(jax.random.key(0), step)["x"]):
      counts[row.tobytes()] = counts.get(row.tobytes(), 0) + 1
  assert set(counts) <= allowed
  # 12,800 draws over about 320 examples: every example is drawn, about 40 times each.
  assert len(counts) >= 0.95 * len(allowed)
  assert max(counts.values()) < 4 * 12_800 / len(allowed)


def test_batch_picks_ranks_of_kept_examples():
  # Rank r must pick the r-th kept example (the first index whose running
  # count of kept examples exceeds r), for full, partial and one-example subsets.
  for subset_fraction, seed in ((1.0, 0), (0.3, 4), (1e-6, 5)):
    task = tasks.digits_task(width=8, depth=1, activation="relu", batch_size=64,
                             subset_fraction=subset_fraction, seed=seed)
    kept_count = np.cumsum(np.asarray(task._subset_mask()))
    for step in range(3):
      key = jax.random.key(step)
      step_key = jax.random.fold_in(jax.random.fold_in(key, seed), step)
      ranks = np.asarray(jax.random.randint(step_key, (64,), 0, kept_count[-1]))
      expected = np.searchsorted(kept_count, ranks, side="right")
      batch = task.batch(key, step)
      np.testing.assert_array_equal(batch["x"], task.data.x_train[expected])
      np.testing.assert_array_equal(batch["y"], task.data.y_train[expected])


def _value_and_derivatives(function, x):
  """Return `function(x)` and its elementwise first and second derivatives."""
  first = jax.grad(lambda x: jnp.sum(function(x)))
  second = jax.grad(lambda x: jnp.sum(first(x)))
  return function(x), first(x), second(x)


def test_activation_derivatives_match_functions():
  functions = (jax.nn.relu, jnp.tanh, jax.nn.gelu, jax.nn.elu, jax.nn.swish)
  assert len(functions) == len(tasks.ACTIVATIONS)
  x = jnp.concatenate([jnp.zeros(1), jax.random.normal(jax.random.key(0), (31,)) * 3])

  @jax.jit
  def both(index):
    activation = lambda x: tasks.mlp.apply_activation(index, x)  # noqa: E731
    plain = lambda x: jax.lax.switch(index, functions, x)  # noqa: E731
    return _value_and_derivatives(activation, x), _value_and_derivatives(plain, x)

  for index, name in enumerate(tasks.ACTIVATIONS):
    actual, expected = both(index)
    for order in range(3):
      np.testing.assert_allclose(actual[order], expected[order], rtol=1e-5, atol=1e-6,
                                 err_msg=f"{name}, derivative order {order}")


def test_activation_gradient_with_batched_index():
  functions = (jax.nn.relu, jnp.tanh, jax.nn.gelu, jax.nn.elu, jax.nn.swish)
  x = jax.random.normal(jax.random.key(1), (len(functions), 16))
  loss = lambda index, x: jnp.sum(tasks.mlp.apply_activation(index, x) ** 2)  # noqa: E731
  grads = jax.jit(jax.vmap(jax.grad(loss, argnums=1)))(jnp.arange(len(functions)), x)
  for index, function in enumerate(functions):
    np.testing.assert_allclose(grads[index], 2 * function(x[index]) * jax.vmap(
        jax.grad(function))(x[index]), rtol=1e-5, atol=1e-6, err_msg=tasks.ACTIVATIONS[index])


def test_digits_loss_is_mean_label_nll():
  task = tasks.digits_task(width=8, depth=1, activation="tanh", batch_size=16)
  params = task.init(jax.random.key(0))
  batch = task.batch(jax.random.key(1), 0)
  log_probs = np.asarray(jax.nn.log_softmax(jax.jit(task.apply)(params, batch["x"])))
  expected = -np.mean(log_probs[np.arange(16), np.asarray(batch["y"])])
  np.testing.assert_allclose(jax.jit(task.loss)(params, batch), expected, rtol=1e-6)

  x, y = task.data.split("valid")
  log_probs = np.asarray(jax.nn.log_softmax(jax.jit(task.apply)(params, jnp.asarray(x))))
  evaluate = jax.jit(lambda params: task.evaluate(params, "valid"))
  np.testing.assert_allclose(evaluate(params)["loss"], -np.mean(log_probs[np.arange(len(y)), y]),
                             rtol=1e-5)
