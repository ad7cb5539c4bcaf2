r"""G_optim: a learned choice, per parameter group, of how to estimate the gradient.

Each step computes three estimates of the loss gradient for every parameter
group (a top-level key of the parameter dict):

- "gradient": `jax.grad` of the mean loss. Zero through a step function or a
  sampled discrete choice.
- "es": antithetic evolution strategies on that group's parameters alone,

    g_es = 1 / (2 N sigma^2) sum_i eps_i (L(theta + eps_i) - L(theta - eps_i)),

  with the other groups held fixed (Salimans et al., "Evolution Strategies as a
  Scalable Alternative to Reinforcement Learning", 2017). Pairs whose loss is
  NaN or infinite are dropped and counted.
- "score_function": the REINFORCE estimate from the per-example
  log-probabilities of sampled choices, with a leave-one-out baseline
  (Williams, 1992). It is zero for groups that the sampling does not depend on.

G_optim turns features of these estimates into softmax gates per group,

    gates[g] = softmax(bias[g] + W^T features[g]),
    update_input[g] = sum_s gates[g, s] * estimate_s[g],

and passes the mixed estimate to any optax transform (Adam by default, or a
learned rule). The features are exponential moving averages of the root mean
square of each estimate (on a log scale) and of the cosine between the ES
estimate and the other two. W lets the gates react to what each source
delivers. With W = 0 and a one-hot row of `bias` at +-1e9 the gates are
exactly one source: that is how the fixed strategies are expressed.

The whole inner run is one `lax.scan`; the gate parameters are traced data, so
one compiled run serves every strategy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax

from autogan_jax.core import tree as tree_util
from autogan_jax.core import validation
from autogan_jax.estimators import discrete
from autogan_jax.estimators import es

PyTree = Any

SOURCES = ("gradient", "es", "score_function")
GATE_FEATURES = ("log_rms_gradient", "log_rms_es", "log_rms_score_function",
                 "cosine_es_gradient", "cosine_es_score_function")
FIXED_STRATEGIES = ("gradient_only", "es_only", "score_function_only", "uniform_mix")
# A logit this far below the others gives a gate of exactly 0.0 in float32.
_OFF_LOGIT = 1e9


class Estimates(NamedTuple):
  """The three gradient estimates of one step, each shaped like the parameters.

  Attributes:
    gradient: `jax.grad` of the mean loss.
    es: per-group antithetic ES estimate.
    score_function: REINFORCE estimate from the sampled choices' log-probabilities.
    es_dropped: number of ES pairs dropped because a loss was not finite.
  """

  gradient: PyTree
  es: PyTree
  score_function: PyTree
  es_dropped: jax.Array


class InnerState(NamedTuple):
  """State of one inner run.

  Attributes:
    params: task parameters, one subtree per group.
    opt_state: state of the optax transform that receives the mixed estimate.
    features: moving averages of the gate features, shape [groups, features].
    quarantined: steps skipped because the loss or the update was not finite.
  """

  params: PyTree
  opt_state: PyTree
  features: jax.Array
  quarantined: jax.Array


def init_gate_params(group_names: Sequence[str], key: jax.Array | None = None,
                     scale: float = 0.0) -> dict[str, jax.typing.ArrayLike]:
  """Return G_optim's parameters; with `scale=0` every gate starts as the uniform mix.

  Args:
    group_names: the parameter groups, in the order of the parameter dict's keys.
    key: PRNG key for random initial values; only read when `scale > 0`.
    scale: standard deviation of the initial values.
  """
  num_groups = len(group_names)
  # Built with numpy so that no eager JAX operation compiles a program.
  params = {"bias": np.zeros((num_groups, len(SOURCES)), np.float32),
            "weights": np.zeros((len(GATE_FEATURES), len(SOURCES)), np.float32)}
  if scale > 0:
    if key is None:
      raise ValueError("init_gate_params needs a key when scale > 0.")
    k_bias, k_weights = jax.random.split(key)
    params = {"bias": scale * jax.random.normal(k_bias, params["bias"].shape),
              "weights": scale * jax.random.normal(k_weights, params["weights"].shape)}
  return params


def assigned_gate_params(assignment: Mapping[str, str],
                         group_names: Sequence[str]) -> dict[str, jax.typing.ArrayLike]:
  """Return gate parameters that send each group's gate wholly to one source.

  Args:
    assignment: group name to one of `SOURCES`, for every group.
    group_names: the groups in gate order.
  """
  missing = [g for g in group_names if g not in assignment]
  if missing:
    raise validation.ConfigError(f"The assignment has no source for groups {missing}; "
                                 f"give one of {SOURCES} for every group of {tuple(group_names)}.")
  params = init_gate_params(group_names)
  bias = np.full((len(group_names), len(SOURCES)), -_OFF_LOGIT, np.float32)
  for g, group in enumerate(group_names):
    validation.check_choice(f"assignment[{group!r}]", assignment[group], SOURCES)
    bias[g, SOURCES.index(assignment[group])] = 0.0
  params["bias"] = bias
  return params


def fixed_gate_params(strategy: str,
                      group_names: Sequence[str]) -> dict[str, jax.typing.ArrayLike]:
  """Return gate parameters that implement one of `FIXED_STRATEGIES` exactly."""
  validation.check_choice("strategy", strategy, FIXED_STRATEGIES)
  if strategy == "uniform_mix":
    return init_gate_params(group_names)
  source = {"gradient_only": "gradient", "es_only": "es",
            "score_function_only": "score_function"}[strategy]
  return assigned_gate_params(dict.fromkeys(group_names, source), group_names)


def es_group_estimates(loss_fn: Callable[[PyTree], jax.Array], params: dict, key: jax.Array,
                       sigma: float | jax.Array,
                       num_pairs: int) -> tuple[dict[str, PyTree], jax.Array]:
  """Estimate the gradient of `loss_fn` for each group of `params` by antithetic ES.

  Each group gets its own `num_pairs` mirrored pairs that perturb that group
  alone. All `2 * num_pairs * groups` candidates run in one `vmap`, and the
  groups' perturbations are disjoint slices of one Gaussian draw over the
  flattened parameters, so they are independent. A pair with a non-finite
  loss contributes nothing, and the group's estimate averages over its finite
  pairs.

  Returns:
    `(estimates, dropped)`: a dict shaped like `params` and the number of
    dropped pairs over all groups.
  """
  group_names = tuple(params)
  flats, unravels = zip(*(jax.flatten_util.ravel_pytree(params[g]) for g in group_names))
  sizes = [flat.shape[0] for flat in flats]
  flat = jnp.concatenate(flats)
  bounds = np.cumsum([0] + sizes)
  masks = jnp.stack([(jnp.arange(flat.shape[0]) >= lo) & (jnp.arange(flat.shape[0]) < hi)
                     for lo, hi in zip(bounds[:-1], bounds[1:])]).astype(flat.dtype)

  def unravel(vector):
    return {g: unravels[i](vector[bounds[i]:bounds[i + 1]]) for i, g in enumerate(group_names)}

  noise = jax.random.normal(key, (num_pairs, flat.shape[0]), flat.dtype)
  # eps[g, i] perturbs group g only: shape [groups, pairs, num_params].
  eps = sigma * noise[None, :, :] * masks[:, None, :]
  candidates = jnp.stack([flat + eps, flat - eps])
  losses = jax.vmap(lambda v: loss_fn(unravel(v)))(candidates.reshape(-1, flat.shape[0]))
  losses = losses.reshape(2, len(group_names), num_pairs)
  finite = jnp.all(jnp.isfinite(losses), axis=0)
  differences = jnp.where(finite, losses[0] - losses[1], 0.0)
  num_finite = jnp.maximum(jnp.sum(finite, axis=1), 1)
  # The mean over a group's finite pairs of (L+ - L-) eps / (2 sigma^2).
  combined = jnp.einsum("gp,gpn->n", differences / num_finite[:, None], eps)
  estimate = unravel(combined / (2.0 * jnp.square(sigma)))
  dropped = jnp.sum(~finite).astype(jnp.int32)
  return estimate, dropped


def estimate_gradients(per_example: Callable, params: dict, batch: PyTree, key: jax.Array,
                       es_sigma: float | jax.Array, es_pairs: int) -> tuple[Estimates, jax.Array]:
  """Compute the three estimates of every group for one batch.

  Args:
    per_example: `per_example(params, batch, key) -> (losses, log_probs)`, both
      of shape [batch]; `log_probs` is None when nothing is sampled.
    params: dict of parameter groups.
    batch: the step's batch.
    key: PRNG key of the step. The gradient, the score function and every ES
      candidate share its sampling key, so the three see the same samples.
    es_sigma: standard deviation of the ES perturbations.
    es_pairs: mirrored pairs per group.

  Returns:
    `(estimates, loss)` with `loss` the mean loss at `params`.
  """
  sample_key, es_key = jax.random.split(key)

  def objectives(p):
    losses, log_probs = per_example(p, batch, sample_key)
    surrogate = (jnp.zeros(()) if log_probs is None
                 else discrete.score_function_surrogate(log_probs, -losses))
    return jnp.stack([jnp.mean(losses), surrogate])

  values, pullback = jax.vjp(objectives, params)
  gradient, = pullback(jnp.array([1.0, 0.0]))
  score_function, = pullback(jnp.array([0.0, 1.0]))

  def loss_fn(p):
    # Common random numbers: every candidate uses the step's samples.
    return jnp.mean(per_example(p, batch, sample_key)[0])

  es_estimate, dropped = es_group_estimates(loss_fn, params, es_key, es_sigma, es_pairs)
  return Estimates(gradient, es_estimate, score_function, dropped), values[0]


def _flat(tree: PyTree) -> jax.Array:
  leaves = jax.tree.leaves(tree)
  return jnp.concatenate([jnp.ravel(leaf) for leaf in leaves])


def gate_features(estimates: Estimates, group_names: Sequence[str]) -> jax.Array:
  """Return the features of `GATE_FEATURES` for each group, shape [groups, features].

  Root mean squares enter as log10(rms + 1e-6) / 3, which maps an exactly zero
  estimate to -2 and keeps typical values within [-2, 1].
  """
  rows = []
  for group in group_names:
    vectors = [_flat(estimates.gradient[group]), _flat(estimates.es[group]),
               _flat(estimates.score_function[group])]
    safe = [jnp.where(jnp.isfinite(v), v, 0.0) for v in vectors]
    rms = [jnp.sqrt(jnp.mean(v * v)) for v in safe]
    log_rms = [jnp.log10(r + 1e-6) / 3.0 for r in rms]

    def cosine(a, b):
      return jnp.dot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b) + 1e-12)

    rows.append(jnp.stack(log_rms + [cosine(safe[1], safe[0]), cosine(safe[1], safe[2])]))
  return jnp.stack(rows)


def _group_rms(estimates: Estimates, group_names: Sequence[str]) -> jax.Array:
  """Return the root mean square of each source's estimate per group, [groups, sources]."""
  rows = []
  for group in group_names:
    vectors = [_flat(source[group]) for source in
               (estimates.gradient, estimates.es, estimates.score_function)]
    rows.append(jnp.stack([jnp.sqrt(jnp.mean(jnp.where(jnp.isfinite(v), v, 0.0) ** 2))
                           for v in vectors]))
  return jnp.stack(rows)


def contribution_shares(estimates: Estimates, group_gates: jax.Array,
                        group_names: Sequence[str]) -> jax.Array:
  """Return each source's share of the mixed estimate's size, [groups, sources].

  The share is gate * rms(estimate), normalised over sources. Because Adam
  divides by the update's own scale, a source whose estimate is exactly zero
  changes nothing whatever its gate. The share, not the gate, then shows which
  source moves the group.
  """
  weighted = group_gates * _group_rms(estimates, group_names)
  return weighted / jnp.maximum(jnp.sum(weighted, axis=-1, keepdims=True), 1e-30)


def gates(gate_params: dict[str, jax.Array], features: jax.Array) -> jax.Array:
  """Return the softmax gates [groups, sources] of G_optim for the given features."""
  logits = gate_params["bias"] + features @ gate_params["weights"]
  return jax.nn.softmax(logits, axis=-1)


def mix(estimates: Estimates, group_gates: jax.Array, group_names: Sequence[str]) -> dict:
  """Return `sum_s gates[g, s] * estimate_s[g]` for every group g.

  A source whose gate is exactly zero contributes exactly zero, even where its
  estimate is not finite.
  """
  sources = (estimates.gradient, estimates.es, estimates.score_function)
  mixed = {}
  for g, group in enumerate(group_names):

    def combine(*leaves, g=g):
      total = jnp.zeros_like(leaves[0])
      for s, leaf in enumerate(leaves):
        total = total + jnp.where(group_gates[g, s] > 0, group_gates[g, s] * leaf, 0.0)
      return total

    mixed[group] = jax.tree.map(combine, *(source[group] for source in sources))
  return mixed


def make_inner_run(task: Any, tx: optax.GradientTransformation, *, num_steps: int,
                   es_sigma: float, es_pairs: int, feature_decay: float = 0.9) -> Callable:
  """Build `run(gate_params, key) -> (params, trace)`, one inner training run.

  Args:
    task: has `init(key)`, `batch(key, step)`, `per_example(params, batch, key)`
      and a `groups` tuple naming the keys of its parameter dict. The
      gates' rows follow the order of `groups`.
    tx: the optax transform that receives the mixed estimate.
    num_steps: training steps, the length of the `lax.scan`.
    es_sigma: standard deviation of the ES perturbations.
    es_pairs: mirrored ES pairs per group and step.
    feature_decay: decay of the moving averages of the gate features.

  Returns:
    A pure, jittable function. `trace` contains per-step arrays "loss" [steps],
    "gates" and "shares" [steps, groups, sources] (see `contribution_shares`)
    and "es_dropped" [steps], and the scalar
    "quarantined" (steps skipped because the loss or update was not finite).
  """
  validation.check("num_steps", num_steps, validation.IntRange(1))
  validation.check("es_pairs", es_pairs, validation.IntRange(1))
  validation.check("es_sigma", es_sigma, validation.FloatRange(0.0, low_inclusive=False))
  validation.check("feature_decay", feature_decay, validation.FloatRange(0.0, 1.0))
  group_names = tuple(task.groups)

  def step(carry, step_index, gate_params, data_key, noise_key):
    batch = task.batch(data_key, step_index)
    estimates, loss = estimate_gradients(task.per_example, carry.params, batch,
                                         jax.random.fold_in(noise_key, step_index), es_sigma,
                                         es_pairs)
    observed = gate_features(estimates, group_names)
    features = jnp.where(step_index == 0, observed,
                         feature_decay * carry.features + (1.0 - feature_decay) * observed)
    group_gates = gates(gate_params, features)
    mixed = mix(estimates, group_gates, group_names)
    updates, opt_state = tx.update(mixed, carry.opt_state, carry.params)
    params = optax.apply_updates(carry.params, updates)

    # A non-finite loss or update skips the step, and the run goes on.
    ok = jnp.isfinite(loss) & tree_util.all_finite(params)
    new = InnerState(params=tree_util.select(ok, params, carry.params),
                     opt_state=tree_util.select(ok, opt_state, carry.opt_state),
                     features=jnp.where(jnp.all(jnp.isfinite(features)), features,
                                        carry.features),
                     quarantined=carry.quarantined + (~ok).astype(jnp.int32))
    shares = contribution_shares(estimates, group_gates, group_names)
    return new, {"loss": loss, "gates": group_gates, "shares": shares,
                 "es_dropped": estimates.es_dropped}

  def run(gate_params: dict[str, jax.Array], key: jax.Array):
    init_key, data_key, noise_key = jax.random.split(key, 3)
    params = task.init(init_key)
    if set(params) != set(group_names):
      raise ValueError(f"The task's parameter dict has keys {sorted(params)}, but its groups "
                       f"are {group_names}; they must name the same keys.")
    carry = InnerState(params=params, opt_state=tx.init(params),
                       features=jnp.zeros((len(group_names), len(GATE_FEATURES))),
                       quarantined=jnp.zeros((), jnp.int32))
    carry, trace = jax.lax.scan(
        lambda c, i: step(c, i, gate_params, data_key, noise_key), carry,
        jnp.arange(num_steps))
    trace["quarantined"] = carry.quarantined
    return carry.params, trace

  return run


def meta_candidates(gate_params: dict[str, jax.Array], key: jax.Array, sigma: float,
                    num_pairs: int, shared_bias: bool = False
                    ) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
  """Draw antithetic candidates of the gate parameters for one ES meta-step.

  With `shared_bias`, every group's row of the bias gets the same
  perturbation, so rows that start equal stay equal under the ES update and
  only the features tell the groups apart.

  Returns:
    `(candidates, eps)`: candidates with a leading axis of `2 * num_pairs`
    (first all `theta + eps_i`, then all `theta - eps_i`) and the perturbations
    with a leading axis of `num_pairs`.
  """
  eps = es.antithetic_perturbations(key, gate_params, num_pairs, sigma)
  if shared_bias:
    eps["bias"] = jnp.broadcast_to(eps["bias"][:, :1], eps["bias"].shape)
  candidates = jax.tree.map(lambda theta, e: jnp.concatenate([theta + e, theta - e]),
                            gate_params, eps)
  return candidates, eps


def meta_gradient(eps: dict[str, jax.Array], losses: jax.Array, sigma: float,
                  nonfinite_loss: float = 10.0) -> tuple[dict[str, jax.Array], jax.Array]:
  """Combine the meta-losses of `meta_candidates` into the antithetic ES meta-gradient.

  A non-finite meta-loss counts as `nonfinite_loss`, so a diverging candidate
  reads as a bad one instead of making the estimate NaN.

  Returns:
    `(grad, num_nonfinite)`.
  """
  finite = jnp.isfinite(losses)
  losses = jnp.where(finite, losses, nonfinite_loss)
  num_pairs = losses.shape[0] // 2
  grad = es.es_gradient_from_losses(eps, losses[:num_pairs], losses[num_pairs:], sigma)
  return grad, jnp.sum(~finite)
