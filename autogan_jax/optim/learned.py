r"""A learned, per-parameter update rule as an optax gradient transformation.

For every scalar parameter the rule keeps a momentum and a second moment,

  m1 = b1 m1 + (1 - b1) g,   v = b2 v + (1 - b2) g^2,

the same state as Adam, bias-corrects them, and proposes

  update = -exp(log_lr) * (c_adam * m1^ / (sqrt(v^ + eps_root) + eps)
                           + c_grad * g + c_momentum * m1 + c_decay * p
                           + f(features)),

where `f` is a small perceptron applied to each parameter on its own. Its inputs
are g and m1^ scaled by 1 / sqrt(v^ + eps^2), the parameter itself, and two
encodings of the step: a fast-saturating one and the fraction of the horizon.
Adam with learning rate `lr` is the point c_adam = 1, log_lr = log(lr), every
other coefficient and f's output layer zero; SGD and SGD with momentum are the
points c_grad = 1 or c_momentum = 1 / (1 - b1).

The perceptron is written as explicit sums over its few inputs and hidden units,
so XLA fuses it into elementwise passes over each tensor instead of building a
[num_params, num_features] matrix. The state has no more moments than Adam's,
because XLA gives every extra moment another pass over memory. With a slow
momentum as a third state array, `benchmarks/optimizer_step.py` measured the
update at 1.8 to 2.4 times Adam's time on a 2-core CPU. Without it, at 4 hidden
units, the ratio was about 1.4.

`eps_root` keeps the meta-gradient finite when a parameter's gradient is exactly
zero: d sqrt(v) / dv is infinite at v = 0, and the product with a zero
dv/dmeta_params would be NaN.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

PyTree = Any

# The per-parameter inputs of the perceptron, in order. The last two are the
# step encodings, shared by all parameters.
FEATURES = ("grad", "momentum", "param", "step", "horizon_fraction")
# Coefficients of the hand-designed directions that the rule mixes.
BASIS = ("adam", "grad", "momentum", "decay")


class LearnedRuleState(NamedTuple):
  """Per-parameter statistics of the learned rule.

  Attributes:
    count: number of updates so far, an int32 that saturates instead of wrapping.
    momentum: first moment with decay `b1`.
    second_moment: second moment with decay `b2`.
  """

  count: jax.Array
  momentum: PyTree
  second_moment: PyTree


class RuleHyperparams(NamedTuple):
  """Settings of the rule that are traced data but not meta-trained.

  Attributes:
    b1: decay of the momentum.
    b2: decay of the second moment.
    eps: added to sqrt(v) in the Adam direction.
    eps_root: added to v inside that square root.
    horizon: the number of steps the inner run is expected to take.
  """

  b1: jax.Array
  b2: jax.Array
  eps: jax.Array
  eps_root: jax.Array
  horizon: jax.Array


def default_hyperparams(horizon: int | float = 1000, b1: float = 0.9, b2: float = 0.999,
                        eps: float = 1e-8, eps_root: float = 1e-16) -> RuleHyperparams:
  """Return the rule's fixed settings as float32 arrays."""
  values = (b1, b2, eps, eps_root, horizon)
  return RuleHyperparams(*(jnp.asarray(v, jnp.float32) for v in values))


def init_meta_params(key: jax.Array, hidden_size: int = 4, init_scale: float = 0.1,
                     learning_rate: float = 1e-3) -> dict[str, jax.Array]:
  """Return random meta-parameters; the rule starts as a random mix, not as Adam.

  Args:
    key: PRNG key.
    hidden_size: hidden units of the per-parameter perceptron.
    init_scale: standard deviation of the basis coefficients and the output layer.
    learning_rate: initial value of exp(log_lr).
  """
  k_basis, k_w1, k_w2 = jax.random.split(key, 3)
  num_features = len(FEATURES)
  return {
      "log_lr": jnp.asarray(jnp.log(learning_rate), jnp.float32),
      "basis": init_scale * jax.random.normal(k_basis, (len(BASIS),)),
      "w1": jax.random.normal(k_w1, (num_features, hidden_size)) / jnp.sqrt(num_features),
      "b1": jnp.zeros((hidden_size,)),
      "w2": init_scale * jax.random.normal(k_w2, (hidden_size,)) / jnp.sqrt(hidden_size),
      "b2": jnp.zeros(()),
  }


def adam_meta_params(learning_rate: float, hidden_size: int = 4) -> dict[str, jax.Array]:
  """Return meta-parameters that make the rule exactly Adam with `learning_rate`."""
  params = init_meta_params(jax.random.key(0), hidden_size, learning_rate=learning_rate)
  params = jax.tree.map(jnp.zeros_like, params)
  params["log_lr"] = jnp.asarray(jnp.log(learning_rate), jnp.float32)
  params["basis"] = jnp.zeros((len(BASIS),)).at[BASIS.index("adam")].set(1.0)
  return params


def sgd_meta_params(learning_rate: float, hidden_size: int = 4,
                    momentum: bool = False, b1: float = 0.9) -> dict[str, jax.Array]:
  """Return meta-parameters that make the rule SGD at `learning_rate`, with momentum if asked.

  Heavy-ball momentum with coefficient b1 accumulates sum_k b1^k g. The rule's
  momentum is (1 - b1) times that sum, so its coefficient is 1 / (1 - b1).
  """
  params = jax.tree.map(jnp.zeros_like, adam_meta_params(learning_rate, hidden_size))
  params["log_lr"] = jnp.asarray(jnp.log(learning_rate), jnp.float32)
  if momentum:
    params["basis"] = params["basis"].at[BASIS.index("momentum")].set(1.0 / (1.0 - b1))
  else:
    params["basis"] = params["basis"].at[BASIS.index("grad")].set(1.0)
  return params


def _step_features(count: jax.Array, horizon: jax.Array) -> tuple[jax.Array, jax.Array]:
  t = count.astype(jnp.float32)
  return jnp.tanh(t / 100.0), t / jnp.maximum(horizon, 1.0)


def _leaf_update(meta_params, hyper: RuleHyperparams, step_bias: jax.Array,
                 corrections: tuple[jax.Array, jax.Array], g, p, m, v):
  """Update the statistics of one tensor and return (m, v, update)."""
  fix_m, fix_v = corrections
  m = hyper.b1 * m + (1.0 - hyper.b1) * g
  v = hyper.b2 * v + (1.0 - hyper.b2) * g * g

  m_hat = m / fix_m
  v_hat = v / fix_v
  inv_rms = jax.lax.rsqrt(v_hat + hyper.eps * hyper.eps)
  features = (g * inv_rms, m_hat * inv_rms, p)

  w1, w2 = meta_params["w1"], meta_params["w2"]
  correction = meta_params["b2"]
  for j in range(w2.shape[0]):
    pre = step_bias[j]
    for i, feature in enumerate(features):
      pre = pre + w1[i, j] * feature
    correction = correction + w2[j] * jax.nn.relu(pre)

  c = meta_params["basis"]
  adam_direction = m_hat / (jnp.sqrt(v_hat + hyper.eps_root) + hyper.eps)
  direction = (c[0] * adam_direction + c[1] * g + c[2] * m + c[3] * p + correction)
  update = -jnp.exp(meta_params["log_lr"]) * direction
  # An entry whose second moment is exactly zero has never had a nonzero
  # gradient (a padded or masked unit): it stays where it is, as under Adam,
  # although the decay and correction terms would otherwise move it.
  update = jnp.where(v > 0, update, 0.0)
  return m, v, update.astype(g.dtype)


def learned_optimizer(meta_params: PyTree,
                      hyperparams: RuleHyperparams | None = None
                      ) -> optax.GradientTransformationExtraArgs:
  """Return the learned update rule set by `meta_params` as an optax transformation.

  Args:
    meta_params: the pytree from `init_meta_params` (or `adam_meta_params`);
      its leaves may be traced, so one compiled step serves any values.
    hyperparams: decays, epsilons and horizon (`default_hyperparams()` if None).

  Returns:
    An `optax.GradientTransformationExtraArgs` whose `update` needs `params`.
  """
  hyper = default_hyperparams() if hyperparams is None else hyperparams
  hidden_size = meta_params["w2"].shape[0]
  expected = {"w1": (len(FEATURES), hidden_size), "b1": (hidden_size,), "w2": (hidden_size,),
              "basis": (len(BASIS),)}
  for name, shape in expected.items():
    if meta_params[name].shape != shape:
      raise ValueError(f"Invalid meta_params[{name!r}] of shape {meta_params[name].shape}: "
                       f"expected {shape} for {hidden_size} hidden units. Create them with "
                       "init_meta_params.")

  def init_fn(params):
    zeros = lambda: jax.tree.map(jnp.zeros_like, params)  # noqa: E731
    return LearnedRuleState(count=jnp.zeros((), jnp.int32), momentum=zeros(),
                            second_moment=zeros())

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    if params is None:
      raise ValueError("The learned update rule reads the parameters: call "
                       "update(grads, state, params).")
    count = optax.safe_increment(state.count)
    t = count.astype(jnp.float32)
    corrections = (1.0 - hyper.b1**t, 1.0 - hyper.b2**t)

    # The step encodings are the same for every parameter, so their share of the
    # first layer is folded into one bias per hidden unit.
    step_feature, horizon_feature = _step_features(count, hyper.horizon)
    w1 = meta_params["w1"]
    num_tensor_features = len(FEATURES) - 2
    step_bias = (meta_params["b1"] + w1[num_tensor_features] * step_feature
                 + w1[num_tensor_features + 1] * horizon_feature)

    def leaf(g, p, m, v):
      return _leaf_update(meta_params, hyper, step_bias, corrections, g, p, m, v)

    results = jax.tree.map(leaf, updates, params, state.momentum, state.second_moment)
    outer = jax.tree.structure(updates)
    inner = jax.tree.structure((0, 0, 0))
    m, v, new_updates = jax.tree.transpose(outer, inner, results)
    return new_updates, LearnedRuleState(count=count, momentum=m, second_moment=v)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


UNROLLABLE_RULES = ("adam", "sgd", "sgd_momentum")


def unrollable_rule(name: str, learning_rate: float | jax.Array,
                    momentum: float = 0.9) -> optax.GradientTransformation:
  """Return a hand-written rule whose unrolls can be differentiated with finite results.

  Adam gets `eps_root=1e-16`: with optax's default of 0, a parameter whose
  gradient is exactly zero makes the meta-gradient NaN (the derivative of sqrt
  at 0 times a zero). SGD and SGD with momentum have no such point.
  """
  if name == "adam":
    return optax.adam(learning_rate, eps_root=1e-16)
  if name == "sgd":
    return optax.sgd(learning_rate)
  if name == "sgd_momentum":
    return optax.sgd(learning_rate, momentum=momentum)
  raise ValueError(f"Unknown rule {name!r}; expected one of {UNROLLABLE_RULES}.")
