"""The sampling benchmark: every fixed rule over a sweep of its parameter, and G_sampler.

Each sampler generates the same number of sequences from the same prompts and
keys, and a judge scores them. Quality is the judge's mean log-likelihood per
token. Diversity is the mean entropy of the sampling distribution per position,
and distinct 2- and 3-grams are reported beside it. The front is the Pareto front
of all fixed-rule points over (diversity, quality).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from autogan_jax.sampling import decoding
from autogan_jax.sampling import evaluation
from autogan_jax.sampling import learned
from autogan_jax.sampling import rules as rules_lib

# judge(prompts [N, C], tokens [N, L]) -> per-sequence quality [N] (log-likelihood per token).
Judge = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _summarize(out: Mapping[str, jax.Array], prompts: np.ndarray, judge: Judge
               ) -> dict[str, float]:
  tokens = np.asarray(out["tokens"])
  quality = judge(np.asarray(prompts), tokens)
  return {
      "quality": float(np.mean(quality)),
      "quality_stderr": float(np.std(quality) / np.sqrt(len(quality))),
      "entropy": float(np.mean(np.asarray(out["entropy"]))),
      "distinct_2": evaluation.distinct_ngrams(tokens, 2),
      "distinct_3": evaluation.distinct_ngrams(tokens, 3),
  }


def sweep_fixed_rules(next_logits: Callable, prompts: jax.Array, key: jax.Array, length: int,
                      judge: Judge, vocab_size: int,
                      sweeps: Mapping[str, Sequence[float]] | None = None
                      ) -> list[dict[str, float | str]]:
  """Evaluate every rule at every parameter of its sweep; one compile per rule.

  Args:
    next_logits: the language model, windows [N, C] to logits [N, V].
    prompts: starting windows [N, C], shared by every sampler.
    key: sampling key, shared by every sampler (common random numbers).
    length: tokens generated per sequence.
    judge: the quality judge.
    vocab_size: V, which bounds top-k.
    sweeps: rule name to parameter values; `rules.default_sweep` for missing rules.

  Returns:
    One record per (rule, parameter) with its quality and diversity figures.
  """
  sweeps = dict(sweeps or {})
  for name in rules_lib.RULES:
    sweeps.setdefault(name, rules_lib.default_sweep(name, vocab_size))
  for name, values in sweeps.items():
    for value in values:
      rules_lib.validate_rule(name, value, vocab_size)
  settings = [(name, float(value)) for name, values in sweeps.items() for value in values]
  indices = jnp.asarray([rules_lib.RULES.index(name) for name, _ in settings], jnp.int32)
  parameters = jnp.asarray([value for _, value in settings], jnp.float32)

  def run_one(setting):
    index, parameter = setting
    rule = decoding.memoryless(
        lambda logits: rules_lib.apply_rule_by_index(index, parameter, logits))
    out = decoding.generate(next_logits, rule, key, prompts, length)
    return {"tokens": out["tokens"], "entropy": out["entropy"]}

  # One compile and one sequential pass over every (rule, parameter) setting.
  outs = jax.jit(lambda i, p: jax.lax.map(run_one, (i, p)))(indices, parameters)
  records = []
  for i, (name, value) in enumerate(settings):
    summary = _summarize(jax.tree.map(lambda leaf: leaf[i], outs), prompts, judge)
    records.append({"rule": name, "parameter": value, **summary})
  return records


def evaluate_learned(next_logits: Callable, g_params, prompts: jax.Array, key: jax.Array,
                     length: int, judge: Judge) -> dict[str, float]:
  """Evaluate G_sampler with the same prompts, key and judge as the fixed rules."""
  transform = learned.make_transform(g_params, length)
  state = learned.initial_state(jax.tree.map(jnp.asarray, g_params), prompts.shape[0])
  out = jax.jit(lambda k: decoding.generate(next_logits, transform, k, prompts, length,
                                            initial_state=state))(key)
  return _summarize(out, prompts, judge)


def compare_to_front(records: Sequence[Mapping[str, float]], point: Mapping[str, float]
                     ) -> dict[str, object]:
  """Place a sampler against the front of the fixed rules.

  Returns the front (its records, by increasing entropy), the front's quality at
  the sampler's entropy (linear interpolation), the sampler's margin over it
  (positive means beyond the front), and how many fixed-rule points beat the
  sampler on both axes.
  """
  points = np.array([[r["entropy"], r["quality"]] for r in records])
  front_index = evaluation.pareto_front(points)
  front_points = points[front_index]
  at = evaluation.front_quality_at(front_points, point["entropy"])
  at_least = (points[:, 0] >= point["entropy"]) & (points[:, 1] >= point["quality"])
  strictly = (points[:, 0] > point["entropy"]) | (points[:, 1] > point["quality"])
  dominating = int(np.sum(at_least & strictly))
  return {"front": [dict(records[i]) for i in front_index], "front_quality_at_entropy": at,
          "margin": point["quality"] - at, "dominated_by": dominating,
          "on_or_beyond_front": dominating == 0}


def select_snapshot(next_logits: Callable, snapshots, prompts: jax.Array, key: jax.Array,
                    length: int, judge: Judge, vocab_size: int) -> tuple[int, list[dict]]:
  """Pick the G_sampler snapshot with the largest margin over the fixed rules' front.

  The caller passes validation prompts and a validation key, both disjoint from
  the ones the test figures use. The fixed rules are swept again with these
  prompts and this key, so every candidate is compared with a front drawn under
  the same conditions.

  Args:
    next_logits: the language model, windows [N, C] to logits [N, V].
    snapshots: G_sampler parameters stacked on a leading axis [S, ...].
    prompts: validation starting windows [N, C].
    key: validation sampling key.
    length: tokens generated per sequence.
    judge: the quality judge.
    vocab_size: V, which bounds top-k.

  Returns:
    The index of the chosen snapshot and one record per snapshot with its
    validation figures and margin.
  """
  records = sweep_fixed_rules(next_logits, prompts, key, length, judge, vocab_size)
  count = jax.tree.leaves(snapshots)[0].shape[0]

  @jax.jit
  def generate(g_params):
    state = learned.initial_state(g_params, prompts.shape[0])
    return decoding.generate(next_logits, learned.make_transform(g_params, length), key,
                             prompts, length, initial_state=state)

  candidates = []
  for index in range(count):
    out = generate(jax.tree.map(lambda leaf, i=index: jnp.asarray(leaf[i]), snapshots))
    point = _summarize(out, prompts, judge)
    comparison = compare_to_front(records, point)
    candidates.append({**point, "margin": comparison["margin"],
                       "dominated_by": comparison["dominated_by"]})
  return best_margin_index([c["margin"] for c in candidates]), candidates


def best_margin_index(margins: Sequence[float]) -> int:
  """Return the index of the largest finite margin.

  An infinite margin means the sampler's entropy lies beyond the most diverse
  fixed-rule point, where the front is not measured, and a NaN margin comes from
  a diverged sampler, so both rank below every finite margin. Without any finite
  margin, +inf ranks first and NaN last.
  """
  margins = np.asarray(margins, dtype=np.float64)
  finite = np.isfinite(margins)
  if np.any(finite):
    return int(np.argmax(np.where(finite, margins, -np.inf)))
  return int(np.argmax(np.where(np.isnan(margins), -np.inf, margins)))
