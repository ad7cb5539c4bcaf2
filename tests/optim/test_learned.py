import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from autogan_jax import core
from autogan_jax import optim


def _random_grads(params, t):
  return jax.tree.map(
      lambda x: jax.random.normal(jax.random.fold_in(jax.random.key(7), t), x.shape), params)


def _max_update_gap(rule, reference, steps=8):
  params = {"w": jax.random.normal(jax.random.key(0), (5, 3)), "b": jnp.zeros(4)}
  rule_state, ref_state = rule.init(params), reference.init(params)
  gap = 0.0
  for t in range(steps):
    grads = _random_grads(params, t)
    ours, rule_state = rule.update(grads, rule_state, params)
    theirs, ref_state = reference.update(grads, ref_state, params)
    gap = max(gap, max(float(jnp.max(jnp.abs(a - b)))
                       for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs))))
    params = optax.apply_updates(params, theirs)
  return gap


@pytest.mark.parametrize("meta_params, reference", [
    (optim.adam_meta_params(1e-3), optax.adam(1e-3, eps_root=1e-16)),
    (optim.sgd_meta_params(0.1), optax.sgd(0.1)),
    (optim.sgd_meta_params(0.05, momentum=True), optax.sgd(0.05, momentum=0.9)),
])
def test_rule_reproduces_hand_written_rules(meta_params, reference):
  rule = optim.learned_optimizer(meta_params)
  assert _max_update_gap(rule, reference) < 1e-6


def test_random_rule_is_not_adam():
  rule = optim.learned_optimizer(optim.init_meta_params(jax.random.key(0)))
  assert _max_update_gap(rule, optax.adam(1e-3)) > 1e-5


def test_rejects_mismatched_meta_params():
  meta_params = optim.init_meta_params(jax.random.key(0), hidden_size=4)
  meta_params["w2"] = jnp.zeros(8)
  with pytest.raises(ValueError, match=r"meta_params\['w1'\]"):
    optim.learned_optimizer(meta_params)


def test_update_requires_params():
  rule = optim.learned_optimizer(optim.adam_meta_params(1e-3))
  params = {"w": jnp.ones(3)}
  with pytest.raises(ValueError, match="reads the parameters"):
    rule.update(params, rule.init(params))


def test_chains_with_optax_transforms():
  meta_params = optim.adam_meta_params(1e-2)
  chained = optax.chain(optax.clip_by_global_norm(0.5), optim.learned_optimizer(meta_params))
  reference = optax.chain(optax.clip_by_global_norm(0.5), optax.adam(1e-2, eps_root=1e-16))
  assert _max_update_gap(chained, reference) < 1e-6


class _MLP(nnx.Module):

  def __init__(self, rngs: nnx.Rngs):
    self.hidden = nnx.Linear(64, 32, rngs=rngs)
    self.out = nnx.Linear(32, 10, rngs=rngs)

  def __call__(self, x):
    return self.out(nnx.relu(self.hidden(x)))


def test_trains_flax_nnx_model_in_plain_optax_loop():
  from autogan_jax.tasks import datasets
  data = datasets.load_digits()
  x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
  model = _MLP(nnx.Rngs(0))
  tx = optim.learned_optimizer(optim.init_meta_params(jax.random.key(0)) | {
      "basis": jnp.array([1.0, 0.0, 0.0, 0.0]), "w2": jnp.zeros(4),
      "log_lr": jnp.log(jnp.float32(1e-2))})
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

  def loss_fn(model):
    logits = model(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @nnx.jit
  def train_step(model, optimizer):
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  first = float(train_step(model, optimizer))
  for _ in range(100):
    last = float(train_step(model, optimizer))
  assert last < 0.3 * first
  accuracy = jnp.mean(jnp.argmax(model(jnp.asarray(data.x_test)), 1) == data.y_test)
  assert float(accuracy) > 0.85


def test_update_compiles_once_for_any_meta_params():
  counter = core.TraceCounter()
  params = {"w": jnp.ones((4, 3))}

  def step(meta_params, hyper, params):
    rule = optim.learned_optimizer(meta_params, hyper)
    return rule.update(params, rule.init(params), params)

  step = jax.jit(counter.wrap(step, "step"))
  for seed in range(3):
    meta_params = optim.init_meta_params(jax.random.key(seed))
    hyper = optim.default_hyperparams(horizon=100 * (seed + 1), b1=0.8 + 0.05 * seed)
    step(meta_params, hyper, params)
  assert counter["step"] == 1


# A two-parameter problem where "z" never receives a gradient: it is masked out,
# as the padded units of a task are, so its gradient is an exact, computed zero.
def _dead_parameter_loss(params):
  mask = 0.0
  return (params["w"] - 2.0) ** 2 + (mask * params["z"]) ** 2


def _unrolled_loss(scale, make_rule, steps=6):
  rule = make_rule(scale)
  params = {"w": jnp.asarray(0.5, scale.dtype), "z": jnp.asarray(0.3, scale.dtype)}
  state = rule.init(params)
  for _ in range(steps):
    grads = jax.grad(_dead_parameter_loss)(params)
    updates, state = rule.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  return _dead_parameter_loss(params) + params["z"] ** 2


def _learned_rule(scale):
  meta_params = jax.tree.map(lambda x: x.astype(scale.dtype),
                             optim.init_meta_params(jax.random.key(3)))
  meta_params["log_lr"] = jnp.log(0.05) + scale
  return optim.learned_optimizer(meta_params)


UNROLLED_RULES = {
    "learned": _learned_rule,
    "adam": lambda scale: optim.unrollable_rule("adam", 0.05 * jnp.exp(scale)),
    "sgd_momentum": lambda scale: optim.unrollable_rule("sgd_momentum", 0.05 * jnp.exp(scale)),
}


@pytest.mark.parametrize("name", sorted(UNROLLED_RULES))
def test_meta_gradient_finite_with_zero_gradient(name):
  make_rule = UNROLLED_RULES[name]
  loss = functools.partial(_unrolled_loss, make_rule=make_rule)
  with jax.enable_x64(True):
    grad = float(jax.grad(loss)(jnp.float64(0.0)))
    h = 1e-4
    finite_difference = float((loss(jnp.float64(h)) - loss(jnp.float64(-h))) / (2 * h))
  assert np.isfinite(grad)
  np.testing.assert_allclose(grad, finite_difference, rtol=1e-3, atol=1e-7)


def test_plain_adam_meta_gradient_nan():
  # Why the unrollable rules set eps_root: optax.adam's default of 0 takes
  # d sqrt(v) / dv at v = 0 for the dead parameter and returns NaN.
  loss = functools.partial(_unrolled_loss,
                           make_rule=lambda s: optax.adam(0.05 * jnp.exp(s)))
  assert np.isnan(float(jax.grad(loss)(jnp.float32(0.0))))


def test_entries_without_gradient_stay_put():
  # A random rule has nonzero decay and correction terms, which move every
  # entry that has had a gradient, but not the one whose gradient is always zero.
  tx = optim.learned_optimizer(optim.init_meta_params(jax.random.key(3)))
  params = {"w": jnp.array([0.5, -0.3, 0.7])}
  state = tx.init(params)
  for step in range(5):
    grads = {"w": jnp.array([0.1 * (step + 1), -0.2, 0.0])}
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  assert float(params["w"][2]) == float(jnp.float32(0.7))
  assert float(params["w"][0]) != 0.5
  assert float(params["w"][1]) != -0.3
