"""Phase 4, beyond held-out tasks: G* trains other components of the framework.

Each component takes its update rule as an optax transformation from its
caller, and without one it trains with the framework's default rule (the
packaged G*). Here the same training runs twice on the digits splits, once
with Adam and once with this run's G*, and the results are compared:

- a deep ensemble of differently shaped members, trained as one vmapped
  population (members' and ensemble's test negative log-likelihood and accuracy);
- the calibration GAN, G_cal and D_cal both trained by the rule, on the
  validation logits of the ensemble's first member (test ECE with 15 bins).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from autogan_jax import calibration
from autogan_jax import ensemble
from autogan_jax import optim
from autogan_jax.calibration import metrics as cal_metrics
from autogan_jax.tasks import datasets


def _ensemble_figures(tasks, params, x, y) -> dict[str, float]:
  probs = ensemble.member_probs(tasks, params, jnp.asarray(x))
  labels = jnp.asarray(y)
  member_nll = jax.vmap(lambda p: cal_metrics.negative_log_likelihood(p, labels))(probs)
  member_acc = jnp.mean(jnp.argmax(probs, -1) == labels[None], axis=1)
  mean_probs = jnp.mean(probs, axis=0)
  return {
      "member_test_nll": float(jnp.mean(member_nll)),
      "member_test_accuracy": float(jnp.mean(member_acc)),
      "ensemble_test_nll": float(cal_metrics.negative_log_likelihood(mean_probs, labels)),
      "ensemble_test_accuracy": float(jnp.mean(jnp.argmax(mean_probs, -1) == labels)),
  }


def compare(g_star_params, seeds, member_steps: int, calibration_steps: int) -> list[dict[str, Any]]:
  """Train both components with Adam and with G*, once per seed; return one record per run."""
  data = datasets.load_digits()
  spec = ensemble.EnsembleSpec()
  rule_hyper = optim.default_hyperparams(horizon=member_steps)
  rules = {
      "adam": (optax.adam(3e-3), optax.adam(1e-3), optax.adam(3e-3)),
      "g_star": (optim.learned_optimizer(g_star_params, rule_hyper),
                 optim.learned_optimizer(dict(g_star_params, log_lr=jnp.log(1e-3)),
                                         optim.default_hyperparams(horizon=calibration_steps)),
                 optim.learned_optimizer(dict(g_star_params, log_lr=jnp.log(3e-3)),
                                         optim.default_hyperparams(horizon=calibration_steps))),
  }
  records = []
  for seed in seeds:
    tasks, scales = ensemble.build_members(spec, seed=seed)
    for name, (member_tx, g_tx, d_tx) in rules.items():
      params, _ = ensemble.train_population(tasks, scales, jax.random.key(seed), member_steps,
                                            tx=member_tx)
      record = {"rule": name, "seed": int(seed), **_ensemble_figures(tasks, params, data.x_test,
                                                                     data.y_test)}
      first = jax.tree.map(lambda x: x[0], params)
      task0 = jax.tree.map(lambda x: x[0], tasks)
      valid_logits = task0.apply(first, jnp.asarray(data.x_valid))
      test_logits = task0.apply(first, jnp.asarray(data.x_test))
      calibrated, _ = calibration.train_calibration_gan(
          valid_logits, jnp.asarray(data.y_valid), jax.random.key(seed + 100),
          steps=calibration_steps, g_tx=g_tx, d_tx=d_tx)
      probs = calibrated(test_logits)
      confidences, correct = cal_metrics.top_label(probs, jnp.asarray(data.y_test))
      record["calibrated_test_ece"] = float(
          cal_metrics.expected_calibration_error(confidences, correct))
      raw_conf, raw_correct = cal_metrics.top_label(jax.nn.softmax(test_logits),
                                                    jnp.asarray(data.y_test))
      record["uncalibrated_test_ece"] = float(
          cal_metrics.expected_calibration_error(raw_conf, raw_correct))
      records.append(record)
  return records


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """Return the mean of every figure over seeds, per rule."""
  rows = []
  for rule in dict.fromkeys(r["rule"] for r in records):
    group = [r for r in records if r["rule"] == rule]
    row = {"rule": rule, "seeds": len(group)}
    for key in group[0]:
      if key not in ("rule", "seed"):
        row[key] = float(np.mean([r[key] for r in group]))
    rows.append(row)
  return rows
