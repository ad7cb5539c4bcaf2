"""The ensemble benchmark: the ensemble, one member, MIMO and G_ensemble on one test split.

Two problems share the code: digits classification (`digits_problem`) and
next-character prediction on the standard library's source (`char_problem`).
A `Problem` contains what differs between them: the members, G_ensemble's
network, how distillation inputs are drawn, what D_ensemble sees of an input,
MIMO's inputs and the multiply-add count of each network.

Inference cost is reported three ways, all measured in the same run. The first
is the multiply-adds of the dense layers at each network's real widths. The
second is the FLOPs that XLA's cost analysis reports for each compiled
predictor, which include padded hidden units and every activation branch. The
third is the median wall time of a forward pass over the test split.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from autogan_jax import optim
from autogan_jax.core import keys as keys_lib
from autogan_jax.ensemble import distillation
from autogan_jax.ensemble import mimo as mimo_lib
from autogan_jax.ensemble import population
from autogan_jax.tasks import char_lm
from autogan_jax.tasks import datasets
from autogan_jax.tasks import mlp


def mlp_multiply_adds(num_inputs: int, width: int, depth: int, num_outputs: int) -> int:
  """Return the multiply-adds of one forward pass of a dense MLP on one example."""
  return num_inputs * width + (depth - 1) * width * width + width * num_outputs


def char_multiply_adds(context: int, embed_dim: int, width: int, num_outputs: int,
                       num_heads: int = 1) -> int:
  """Return the multiply-adds of the character model (or its MIMO form) on one window.

  The embedding lookup is a gather and costs no multiply-adds; `num_heads`
  windows are read side by side and each gets its own output head.
  """
  return num_heads * context * embed_dim * width + width * num_outputs * num_heads


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


@dataclasses.dataclass(frozen=True)
class Problem:
  """Data, networks and cost model of one classification problem for the ensemble benchmark.

  Attributes:
    name: short name used in reports.
    members: member tasks stacked on a leading axis.
    lr_scales: per-member multipliers of the updates, shape [M].
    student: G_ensemble's task (its `init` and `apply` are used).
    draw_inputs: `draw_inputs(key, batch_size) -> inputs` for distillation and
      the adversarial stage.
    features: `features(x) -> float [B, F]`, D_ensemble's view of an input.
    mimo_x_train: MIMO's training inputs.
    mimo_y_train: MIMO's training labels.
    x_valid: validation inputs, for early stopping of distillation.
    y_valid: validation labels.
    x_test: test inputs.
    y_test: test labels.
    num_classes: classes (10 digits or 128 characters).
    mimo_vocab_size: token vocabulary when the inputs are token windows, else None.
    multiply_adds: `multiply_adds(width, num_heads) -> int` of one network of
      that hidden width on one example.
    test_description: the test split, in words, for reports.
  """

  name: str
  members: mlp.DigitsMLPTask | char_lm.CharLMTask
  lr_scales: jax.Array
  student: mlp.DigitsMLPTask | char_lm.CharLMTask
  draw_inputs: Callable
  features: Callable
  mimo_x_train: jax.Array
  mimo_y_train: jax.Array
  x_valid: jax.Array
  y_valid: jax.Array
  x_test: jax.Array
  y_test: jax.Array
  num_classes: int
  mimo_vocab_size: int | None
  multiply_adds: Callable
  test_description: str


def digits_problem(spec: population.EnsembleSpec, student_width: int, seed: int = 0,
                   data: datasets.ArraySplits | None = None) -> Problem:
  """Return the digits problem: members and G_ensemble are MLPs of depth `spec.depth`."""
  members, scales = population.build_members(spec, seed=seed, data=data)
  data = members.data
  student = mlp.digits_task(width=student_width, depth=spec.depth, activation="relu",
                            batch_size=spec.batch_size, data=data)
  x_pool = jnp.asarray(data.x_train)
  num_inputs = data.x_train.shape[1]
  return Problem(
      name="digits", members=members, lr_scales=scales, student=student,
      draw_inputs=lambda key, size: distillation.augment_inputs(key, x_pool, size),
      features=lambda x: x, mimo_x_train=data.x_train, mimo_y_train=data.y_train,
      x_valid=jnp.asarray(data.x_valid), y_valid=jnp.asarray(data.y_valid),
      x_test=jnp.asarray(data.x_test), y_test=jnp.asarray(data.y_test), num_classes=10,
      mimo_vocab_size=None,
      multiply_adds=lambda width, heads=1: mlp_multiply_adds(num_inputs * heads, width,
                                                             spec.depth, 10 * heads),
      test_description=f"digits test split ({data.x_test.shape[0]} images)")


def char_problem(spec: population.EnsembleSpec, student_width: int, text: datasets.TextSplits,
                 seed: int = 0, context: int = 16, embed_dim: int = 16,
                 test_positions: int = 4096, mimo_windows: int = 100_000) -> Problem:
  """Return the character problem: next-character prediction on the stdlib source.

  Members and G_ensemble are the one-hidden-layer character model. The test set
  is `test_positions` evenly spaced positions of the test split, and the
  validation set as many positions of the validation split. MIMO trains on
  up to `mimo_windows` evenly spaced windows of the train split, materialized
  once; the members draw their batches from every train position.
  """
  vocab = datasets.CHAR_VOCAB_SIZE
  members, scales = population.build_char_members(spec, text, seed=seed, context=context,
                                                  embed_dim=embed_dim)
  student = char_lm.char_task(width=student_width, activation="relu",
                              batch_size=spec.batch_size, context=context,
                              embed_dim=embed_dim, data=text)
  train = jnp.asarray(text.train)
  offsets = np.arange(-context, 0)

  def windows_at(stream: np.ndarray, count: int) -> tuple[jax.Array, jax.Array]:
    count = min(count, len(stream) - context)
    positions = np.linspace(context, len(stream) - 1, count).astype(np.int64)
    return (jnp.asarray(stream[positions[:, None] + offsets[None, :]]),
            jnp.asarray(stream[positions]))

  x_test, y_test = windows_at(text.test, test_positions)
  x_valid, y_valid = windows_at(text.valid, test_positions)
  mimo_x, mimo_y = windows_at(text.train, mimo_windows)
  return Problem(
      name="stdlib_chars", members=members, lr_scales=scales, student=student,
      draw_inputs=lambda key, size: distillation.draw_token_windows(key, train, context, size,
                                                                    vocab),
      features=lambda x: jax.nn.one_hot(x, vocab).reshape(x.shape[0], -1),
      mimo_x_train=mimo_x, mimo_y_train=mimo_y, x_valid=x_valid, y_valid=y_valid,
      x_test=x_test, y_test=y_test,
      num_classes=vocab, mimo_vocab_size=vocab,
      multiply_adds=lambda width, heads=1: char_multiply_adds(context, embed_dim, width, vocab,
                                                              heads),
      test_description=(f"{x_test.shape[0]} evenly spaced positions of the stdlib test split"))


def run_problem(problem: Problem, spec: population.EnsembleSpec, key: jax.Array, *,
                member_steps: int, distill_steps: int, adversarial_steps: int,
                mimo_heads: int, mimo_steps: int, dirichlet_weight: float = 0.1,
                tx: optax.GradientTransformation | None = None, timing_repeats: int = 30,
                distill_eval_every: int | None = None) -> dict:
  """Train the ensemble, MIMO and G_ensemble on `problem` and compare them on its test set.

  Args:
    problem: the data, members and G_ensemble's network.
    spec: the ensemble's member settings (`problem.members` was built from it).
    key: PRNG key.
    member_steps: training steps per member.
    distill_steps: G_ensemble's distillation steps.
    adversarial_steps: G_ensemble's adversarial steps against D_ensemble (0 skips them).
    mimo_heads: MIMO subnetworks.
    mimo_steps: MIMO training steps.
    dirichlet_weight: weight of the Dirichlet term in distillation.
    tx: update rule of the members, MIMO and distillation; defaults to `optim.default_rule(3e-3)` (G*).
    timing_repeats: forward passes timed per predictor.
    distill_eval_every: steps between checks of G_ensemble's NLL on the
      validation split during distillation; the checked parameters with the
      lowest NLL are kept. None keeps the final parameters.

  Returns:
    A dict of per-method test metrics, per-member metrics and the costs.
  """
  tx = tx if tx is not None else optim.default_rule(3e-3)
  named = keys_lib.split_named(keys_lib.as_key(key),
                               ("members", "student", "distill", "adversarial", "mimo"))
  members, student = problem.members, problem.student
  member_params, member_losses = population.train_population(
      members, problem.lr_scales, named["members"], member_steps, tx)
  x_test, y_test = problem.x_test, problem.y_test

  def ensemble_fn(x):
    return jnp.mean(population.member_probs(members, member_params, x), axis=0)

  def members_fn(x):
    return population.member_probs(members, member_params, x)

  def valid_nll(params):
    log_probs = jax.nn.log_softmax(student.apply(params, problem.x_valid))
    return -jnp.mean(jnp.take_along_axis(log_probs, problem.y_valid[:, None], axis=-1))

  distilled, distill_history = distillation.distill(
      student.apply, student.init(named["student"]), members_fn, None, named["distill"],
      steps=distill_steps, dirichlet_weight=dirichlet_weight, tx=tx,
      draw_inputs=problem.draw_inputs,
      valid_loss=valid_nll if distill_eval_every is not None else None,
      eval_every=distill_eval_every)
  g_params = distilled
  adversarial_history = None
  if adversarial_steps > 0:
    g_params, adversarial_history = distillation.adversarial_finetune(
        student.apply, distilled, members_fn, None, named["adversarial"],
        steps=adversarial_steps, draw_inputs=problem.draw_inputs, features=problem.features)

  mimo_params, mimo_losses = mimo_lib.train_mimo(
      problem.mimo_x_train, problem.mimo_y_train, named["mimo"],
      num_classes=problem.num_classes, width=spec.max_width, depth=mimo_depth(problem, spec),
      num_heads=mimo_heads, batch_size=spec.batch_size, steps=mimo_steps,
      vocab_size=problem.mimo_vocab_size, embed_dim=getattr(student, "embed_dim", 16), tx=tx)

  member_probs = members_fn(x_test)
  first = jax.tree.map(lambda leaf: leaf[0], members)
  first_params = jax.tree.map(lambda leaf: leaf[0], member_params)
  predictors = {
      "ensemble": ensemble_fn,
      "g_ensemble": lambda x: jax.nn.softmax(student.apply(g_params, x)),
      "g_ensemble_distilled_only": lambda x: jax.nn.softmax(student.apply(distilled, x)),
      "mimo": lambda x: mimo_lib.mimo_probs(mimo_params, x, mimo_heads),
      "single_member": lambda x: jax.nn.softmax(first.apply(first_params, x)),
  }
  results = {name: _metrics(fn(x_test), y_test) for name, fn in predictors.items()}
  per_member = [_metrics(member_probs[i], y_test) for i in range(spec.num_members)]
  results["member_mean"] = {k: float(np.mean([m[k] for m in per_member])) for k in per_member[0]}

  # Disagreement: G_ensemble's Dirichlet spread against the members' variance, per test input.
  member_variance = np.asarray(jnp.sum(jnp.var(member_probs, axis=0), -1))
  spread = np.asarray(distillation.dirichlet_spread(student.apply(g_params, x_test)))
  disagreement_correlation = float(np.corrcoef(member_variance, spread)[0, 1])

  widths = [spec.widths[i % len(spec.widths)] for i in range(spec.num_members)]
  multiply_adds = {
      "ensemble": sum(problem.multiply_adds(w) for w in widths),
      "g_ensemble": problem.multiply_adds(int(student.variant.width)),
      "single_member": problem.multiply_adds(widths[0]),
      "mimo": problem.multiply_adds(spec.max_width, mimo_heads),
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
      "problem": problem.name, "test_set": problem.test_description,
      "results": results, "per_member": per_member, "costs": costs, "cost_ratios": ratios,
      "disagreement_correlation": disagreement_correlation,
      "member_widths": widths,
      "final_losses": {"members": np.asarray(member_losses[:, -50:].mean(1)).tolist(),
                       "distill": float(np.mean(np.asarray(distill_history["loss"][-50:]))),
                       "mimo": float(np.mean(np.asarray(mimo_losses[-50:])))},
      "adversarial_history": adversarial_history,
      "distill_validation": {
          "best_step": int(distill_history["best_step"]),
          "valid_nll": np.asarray(distill_history["valid_loss"]).tolist(),
          "g_ensemble_valid_nll": float(valid_nll(g_params)),
          "ensemble_valid_nll": _metrics(ensemble_fn(problem.x_valid), problem.y_valid)["nll"]},
  }


def mimo_depth(problem: Problem, spec: population.EnsembleSpec) -> int:
  """Return MIMO's hidden layers: one for the character model, `spec.depth` on digits."""
  return 1 if problem.mimo_vocab_size is not None else spec.depth


def run_benchmark(spec: population.EnsembleSpec, key: jax.Array, *, member_steps: int,
                  student_width: int, distill_steps: int, adversarial_steps: int,
                  mimo_heads: int, mimo_steps: int, dirichlet_weight: float = 0.1,
                  tx: optax.GradientTransformation | None = None, timing_repeats: int = 30,
                  seed: int = 0) -> dict:
  """Run `run_problem` on digits: members train on the train split, scored on test.

  `seed` sets the members' data order; `key` sets every initialisation and draw.
  """
  return run_problem(digits_problem(spec, student_width, seed=seed), spec, key,
                     member_steps=member_steps, distill_steps=distill_steps,
                     adversarial_steps=adversarial_steps, mimo_heads=mimo_heads,
                     mimo_steps=mimo_steps, dirichlet_weight=dirichlet_weight, tx=tx,
                     timing_repeats=timing_repeats)
