"""The ensemble benchmark: the ensemble, one member, MIMO and G_ensemble on one test split.

Inference cost is reported three ways, all measured in the same run. The first
is the multiply-adds of the dense layers at each network's real widths. The
second is the FLOPs that XLA's cost analysis reports for each compiled
predictor, which include padded hidden units and every activation branch. The
third is the median wall time of a forward pass over the test split.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from autogan_jax.core import keys as keys_lib
from autogan_jax.ensemble import distillation
from autogan_jax.ensemble import mimo as mimo_lib
from autogan_jax.ensemble import population
from autogan_jax.tasks import mlp


def mlp_multiply_adds(num_inputs: int, width: int, depth: int, num_outputs: int) -> int:
  """Return the multiply-adds of one forward pass of a dense MLP on one example."""
  return num_inputs * width + (depth - 1) * width * width + width * num_outputs


def xla_flops(fn: Callable, x: jax.Array) -> float | None:
  """Return the FLOPs XLA's cost analysis reports for `fn(x)`, or None when unavailable."""
  analysis = jax.jit(fn).lower(x).compile().cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  if not analysis or "flops" not in analysis:
    return None
  return float(analysis["flops"])


def median_seconds(fn: Callable, x: jax.Array, repeats: int = 30) -> float:
  """Return the median wall time of `fn(x)` after one warm-up call."""
  compiled = jax.jit(fn)
  jax.block_until_ready(compiled(x))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(compiled(x))
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def _metrics(probs: jax.Array, labels: jax.Array) -> dict[str, float]:
  # `ensemble` may not import the calibration package, a sibling component, so the
  # 15-bin equal-width ECE is computed here as well.
  p = jnp.clip(probs, 1e-12, 1.0)
  labels = jnp.asarray(labels)
  nll = -jnp.mean(jnp.log(jnp.take_along_axis(p, labels[:, None], axis=-1)))
  accuracy = jnp.mean(jnp.argmax(probs, -1) == labels)
  confidence = jnp.max(probs, -1)
  correct = (jnp.argmax(probs, -1) == labels).astype(jnp.float32)
  index = jnp.clip(jnp.ceil(confidence * 15).astype(jnp.int32) - 1, 0, 14)
  counts = jnp.zeros(15).at[index].add(1.0)
  gap = jnp.abs(jnp.zeros(15).at[index].add(correct) - jnp.zeros(15).at[index].add(confidence))
  ece = jnp.sum(gap) / jnp.sum(counts)
  return {"nll": float(nll), "accuracy": float(accuracy), "ece": float(ece)}


def run_benchmark(spec: population.EnsembleSpec, key: jax.Array, *, member_steps: int,
                  student_width: int, distill_steps: int, adversarial_steps: int,
                  mimo_heads: int, mimo_steps: int, dirichlet_weight: float = 0.1,
                  tx: optax.GradientTransformation | None = None, timing_repeats: int = 30
                  ) -> dict:
  """Train the ensemble, MIMO and G_ensemble on the digits train split and compare on test.

  Args:
    spec: the ensemble's members.
    key: PRNG key.
    member_steps: training steps per member.
    student_width: hidden width of G_ensemble (same depth as the members).
    distill_steps: G_ensemble's distillation steps.
    adversarial_steps: G_ensemble's adversarial steps against D_ensemble (0 skips them).
    mimo_heads: MIMO subnetworks.
    mimo_steps: MIMO training steps.
    dirichlet_weight: weight of the Dirichlet term in distillation.
    tx: update rule of the members, MIMO and distillation; defaults to `optax.adam(3e-3)`.
    timing_repeats: forward passes timed per predictor.

  Returns:
    A dict of per-method test metrics, per-member metrics and the costs.
  """
  tx = tx if tx is not None else optax.adam(3e-3)
  named = keys_lib.split_named(keys_lib.as_key(key),
                               ("members", "student", "distill", "adversarial", "mimo"))
  members, scales = population.build_members(spec, seed=0)
  data = members.data
  member_params, member_losses = population.train_population(
      members, scales, named["members"], member_steps, tx)
  x_test = jnp.asarray(data.x_test)
  y_test = jnp.asarray(data.y_test)

  def ensemble_fn(x):
    return jnp.mean(population.member_probs(members, member_params, x), axis=0)

  def members_fn(x):
    return population.member_probs(members, member_params, x)

  student = mlp.digits_task(width=student_width, depth=spec.depth, activation="relu",
                            batch_size=spec.batch_size, data=data)
  distilled, distill_losses = distillation.distill(
      student.apply, student.init(named["student"]), members_fn, data.x_train,
      named["distill"], steps=distill_steps, dirichlet_weight=dirichlet_weight, tx=tx)
  g_params = distilled
  adversarial_history = None
  if adversarial_steps > 0:
    g_params, adversarial_history = distillation.adversarial_finetune(
        student.apply, distilled, members_fn, data.x_train, named["adversarial"],
        steps=adversarial_steps)

  mimo_params, mimo_losses = mimo_lib.train_mimo(
      data.x_train, data.y_train, named["mimo"], num_classes=10, width=spec.max_width,
      depth=spec.depth, num_heads=mimo_heads, batch_size=spec.batch_size, steps=mimo_steps, tx=tx)

  member_probs = members_fn(x_test)
  predictors = {
      "ensemble": ensemble_fn,
      "g_ensemble": lambda x: jax.nn.softmax(student.apply(g_params, x)),
      "g_ensemble_distilled_only": lambda x: jax.nn.softmax(student.apply(distilled, x)),
      "mimo": lambda x: mimo_lib.mimo_probs(mimo_params, x, mimo_heads),
      "single_member": lambda x: jax.nn.softmax(
          jax.tree.map(lambda leaf: leaf[0], members).apply(
              jax.tree.map(lambda leaf: leaf[0], member_params), x)),
  }
  results = {name: _metrics(fn(x_test), y_test) for name, fn in predictors.items()}
  per_member = [_metrics(member_probs[i], y_test) for i in range(spec.num_members)]
  results["member_mean"] = {k: float(np.mean([m[k] for m in per_member])) for k in per_member[0]}

  # Disagreement: G_ensemble's Dirichlet spread against the members' variance, per test input.
  member_variance = np.asarray(jnp.sum(jnp.var(member_probs, axis=0), -1))
  spread = np.asarray(distillation.dirichlet_spread(student.apply(g_params, x_test)))
  disagreement_correlation = float(np.corrcoef(member_variance, spread)[0, 1])

  num_inputs = data.x_train.shape[1]
  widths = [spec.widths[i % len(spec.widths)] for i in range(spec.num_members)]
  multiply_adds = {
      "ensemble": sum(mlp_multiply_adds(num_inputs, w, spec.depth, 10) for w in widths),
      "g_ensemble": mlp_multiply_adds(num_inputs, student_width, spec.depth, 10),
      "single_member": mlp_multiply_adds(num_inputs, widths[0], spec.depth, 10),
      "mimo": mlp_multiply_adds(num_inputs * mimo_heads, spec.max_width, spec.depth,
                                10 * mimo_heads),
  }
  costs = {}
  for name in ("ensemble", "g_ensemble", "single_member", "mimo"):
    costs[name] = {"multiply_adds": multiply_adds[name],
                   "xla_flops": xla_flops(predictors[name], x_test),
                   "seconds": median_seconds(predictors[name], x_test, timing_repeats)}
  ratios = {}
  for name in ("g_ensemble", "single_member", "mimo"):
    ratios[name] = {
        field: (costs[name][field] / costs["ensemble"][field]
                if costs[name][field] and costs["ensemble"][field] else None)
        for field in ("multiply_adds", "xla_flops", "seconds")}
  return {
      "results": results, "per_member": per_member, "costs": costs, "cost_ratios": ratios,
      "disagreement_correlation": disagreement_correlation,
      "member_widths": widths,
      "final_losses": {"members": np.asarray(member_losses[:, -50:].mean(1)).tolist(),
                       "distill": float(np.mean(np.asarray(distill_losses[-50:]))),
                       "mimo": float(np.mean(np.asarray(mimo_losses[-50:])))},
      "adversarial_history": adversarial_history,
  }
