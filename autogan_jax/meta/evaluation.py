"""Held-out evaluation of an update rule against tuned human-designed baselines.

On each held-out task, every optimizer trains from the same initialisations and
batch orders (one per seed):

- `adam_tuned`: Adam with the learning rate from a grid that gives the lowest
  final validation loss, averaged over the seeds;
- `sgd_momentum`: SGD with heavy-ball momentum, tuned the same way on its own grid;
- each learned rule given by name (for example one per bootstrap phase), as it
  is, with no tuning on the held-out task.

Every run of a grid trains in one `jit(vmap(vmap(scan)))` call.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from autogan_jax.meta import inner
from autogan_jax.optim import learned

BASELINES = ("adam_tuned", "sgd_momentum")


@dataclasses.dataclass(frozen=True)
class EvalSettings:
  """How long each held-out run trains and which grids tune the baselines."""

  num_steps: int
  eval_every: int
  seeds: tuple[int, ...]
  adam_learning_rates: tuple[float, ...]
  sgd_learning_rates: tuple[float, ...]
  sgd_momentum: float = 0.9


def _seed_keys(seeds: Sequence[int]) -> jax.Array:
  return jnp.stack([jax.random.key(s) for s in seeds])


def grid_curves(task, make_tx: Callable[[jax.Array], optax.GradientTransformation],
                learning_rates: Sequence[float], seeds: Sequence[int], num_steps: int,
                eval_every: int) -> dict[str, np.ndarray]:
  """Train every (learning rate, seed) pair; leaves have leading axes [lr, seed]."""

  def one(lr, key):
    return inner.train_curve(task, make_tx(lr), key, num_steps, eval_every)

  run = jax.jit(jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None)))
  out = run(jnp.asarray(learning_rates, jnp.float32), _seed_keys(seeds))
  return jax.tree.map(np.asarray, out)


def learned_curves(task, meta_params, rule_hyper: learned.RuleHyperparams,
                   seeds: Sequence[int], num_steps: int, eval_every: int) -> dict[str, np.ndarray]:
  """Train the learned rule once per seed; leaves have a leading seed axis.

  `meta_params` may also be several rules stacked on a leading axis; the
  leaves then have leading axes [rule, seed], and all rules train in one call.
  """
  stacked = meta_params["log_lr"].ndim == 1

  def one(meta_params, rule_hyper, key):
    tx = learned.learned_optimizer(meta_params, rule_hyper)
    return inner.train_curve(task, tx, key, num_steps, eval_every)

  run = jax.vmap(one, in_axes=(None, None, 0))
  if stacked:
    run = jax.vmap(run, in_axes=(0, None, None))
  return jax.tree.map(np.asarray, jax.jit(run)(meta_params, rule_hyper, _seed_keys(seeds)))


def steps_to_reach(curve: np.ndarray, threshold: float, eval_every: int) -> int | None:
  """Return the first evaluated step whose loss is at most `threshold`, or None."""
  hits = np.nonzero(np.asarray(curve) <= threshold)[0]
  return int(hits[0]) * eval_every if hits.size else None


def _pick_tuned(curves: dict[str, np.ndarray], learning_rates: Sequence[float]):
  with warnings.catch_warnings():
    # A learning rate that diverged has no finite validation loss, and numpy warns about
    # its empty mean. Its score is NaN, which the next line turns into infinity.
    warnings.simplefilter("ignore", RuntimeWarning)
    score = np.nanmean(curves["valid_loss"], axis=1)
  score = np.where(np.isfinite(score), score, np.inf)
  best = int(np.argmin(score))
  return float(learning_rates[best]), jax.tree.map(lambda x: x[best], curves)


def compare_on_task(task, task_name: str, rules: dict[str, Any],
                    rule_hyper: learned.RuleHyperparams,
                    settings: EvalSettings) -> dict[str, Any]:
  """Run the learned rules and the tuned baselines on one held-out task.

  Args:
    task: the held-out task.
    task_name: its name in the records.
    rules: meta-parameters of each learned rule, by the name its records get.
    rule_hyper: the learned rules' fixed settings.
    settings: run length, seeds and the baselines' grids.

  Returns:
    A dict with `records` (one per optimizer and seed, with the keys of the
    report's `heldout` list), `adam_learning_rate`, `sgd_learning_rate`,
    `tuning_runs` (runs spent tuning the baselines) and `curves` (mean
    full-train-split loss per evaluated step, per optimizer).
  """
  s = settings
  adam = grid_curves(task, lambda lr: optax.adam(lr), s.adam_learning_rates, s.seeds,
                     s.num_steps, s.eval_every)
  sgd = grid_curves(task, lambda lr: optax.sgd(lr, momentum=s.sgd_momentum),
                    s.sgd_learning_rates, s.seeds, s.num_steps, s.eval_every)
  adam_lr, adam_best = _pick_tuned(adam, s.adam_learning_rates)
  sgd_lr, sgd_best = _pick_tuned(sgd, s.sgd_learning_rates)
  names = list(rules)
  stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *(rules[n] for n in names))
  all_rules = learned_curves(task, stacked, rule_hyper, s.seeds, s.num_steps, s.eval_every)
  runs = {name: jax.tree.map(lambda x, i=i: x[i], all_rules) for i, name in enumerate(names)}
  runs.update(adam_tuned=adam_best, sgd_momentum=sgd_best)

  threshold = float(np.mean(adam_best["train_loss"][:, -1]))
  has_accuracy = bool(np.all(np.isfinite(adam_best["test_accuracy"])))
  records = []
  for name, curves in runs.items():
    for i, seed in enumerate(s.seeds):
      records.append({
          "task": task_name,
          "optimizer": name,
          "seed": int(seed),
          "final_train_loss": float(curves["train_loss"][i, -1]),
          "test_loss": float(curves["test_loss"][i]),
          "test_accuracy": float(curves["test_accuracy"][i]) if has_accuracy else None,
          "steps_to_adam_final_loss": steps_to_reach(curves["train_loss"][i], threshold,
                                                     s.eval_every),
      })
  return {
      "records": records,
      "adam_learning_rate": adam_lr,
      "sgd_learning_rate": sgd_lr,
      "adam_final_train_loss": threshold,
      "tuning_runs": (len(s.adam_learning_rates) + len(s.sgd_learning_rates)) * len(s.seeds),
      "curves": {name: np.mean(c["train_loss"], axis=0).tolist() for name, c in runs.items()},
      "steps": [i * s.eval_every for i in range(s.num_steps // s.eval_every + 1)],
  }


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """Average the records over seeds, per task and optimizer."""
  rows = []
  order = list(dict.fromkeys(r["optimizer"] for r in records))
  keys = sorted({(r["task"], r["optimizer"]) for r in records},
                key=lambda k: (k[0], order.index(k[1])))
  for task, optimizer in keys:
    group = [r for r in records if r["task"] == task and r["optimizer"] == optimizer]

    def mean(field):
      values = [r[field] for r in group if r[field] is not None]
      return float(np.mean(values)) if values else None

    reached = [r["steps_to_adam_final_loss"] for r in group]
    rows.append({
        "task": task, "optimizer": optimizer, "seeds": len(group),
        "final_train_loss": mean("final_train_loss"), "test_loss": mean("test_loss"),
        "test_accuracy": mean("test_accuracy"),
        "steps_to_adam_final_loss": mean("steps_to_adam_final_loss"),
        "runs_reaching_adam_final_loss": sum(x is not None for x in reached),
    })
  return rows
