"""The main job: bootstrap a learned update rule and compare it with tuned baselines.

  python -m experiments.bootstrap --workdir=runs/bootstrap \
      --config=experiments/configs/bootstrap.py[:default|smoke|large]

Four phases:

1. imitation: the learned rule learns to reproduce Adam's updates;
2. exploration: a population of variants of that rule is meta-trained, each
   member the way G_meta proposes (estimator, meta learning rate, tasks per
   meta-step, horizon schedule), under selection by whole-run validation;
3. self-reference: the best rules update their own meta-parameters with their
   own update, until a fixed point or the budget; the best validated one is G*;
4. G* trains models on held-out tasks against tuned Adam and SGD with
   momentum (the rules of phases 1 and 2 too, for comparison), and is saved as
   `g_star.json` for the other components.

Each phase checkpoints its whole state into the workdir. Rerunning with the
same workdir resumes where the last run stopped, and ends with the same rule as
an uninterrupted run. Writes `metrics.jsonl`, `report.json`, `report.md` and
PNG plots into the workdir.
"""

from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp
import optax
from absl import app
from absl import logging

from autogan_jax import meta
from autogan_jax import optim
from autogan_jax import tasks
from autogan_jax.checkpoint import RunCheckpointer
from experiments import bootstrap_components
from experiments import bootstrap_phases
from experiments import bootstrap_report
from experiments import common
from experiments import distributed
from experiments.configs import bootstrap as bootstrap_config

_CONFIG, _WORKDIR = common.define_run_flags(
    "experiments/configs/bootstrap.py", "runs/bootstrap", "Bootstrap config file and preset.",
    "Folder for checkpoints, metrics, report and plots.")


def rule_hyperparams(config, horizon: int) -> optim.RuleHyperparams:
  return optim.default_hyperparams(horizon=horizon, b1=config.rule.b1,
                                   b2=config.rule.b2)


def _run_phase(name: str, workdir, config, state, step_fn, step_args, total_steps: int,
               metrics_log: common.MetricsLog, base_key: jax.Array):
  """Run `step_fn(state, key, *step_args)` from `state.step` to `total_steps`.

  `step_args` are the hyperparameters, passed as traced arguments so that one
  compiled step serves any of their values. When given, `validate(state)`
  returns the state with its validation recorded; it runs before the first
  step and after every `validate_every` steps, before that step's checkpoint.

  The state after step k is checkpointed as step k. On start, the newest
  checkpoint of this phase is restored, and the metrics logged after it are dropped.
  """
  checkpointer = RunCheckpointer(workdir / "checkpoints" / name)
  latest = checkpointer.latest_step()
  if latest is not None:
    state = checkpointer.restore(state, latest)
    logging.info("%s: resumed from the checkpoint of step %d.", name, latest)
  start = int(state.step)
  metrics_log.truncate_after(name, start)
  if start >= total_steps:
    checkpointer.close()
    return state

  step_jit = jax.jit(step_fn)
  progress = common.Progress(name, total_steps, start=start, every_s=config.log_every_s)
  pending = []
  for step in range(start, total_steps):
    state, metrics = step_jit(state, jax.random.fold_in(base_key, step), *step_args)
    pending.append({"phase": name, "step": step + 1, **metrics})
    done = step + 1
    if done % config.checkpoint_every == 0 or done == total_steps:
      for record in jax.device_get(pending):
        metrics_log.append(record)
      pending = []
      checkpointer.save(done, state)
    progress.update(done, **{k: v for k, v in metrics.items() if jnp.ndim(v) == 0})
  checkpointer.close()
  return state


def flat_sampler(config):
  """Return the meta-training task sampler; tasks have flat parameter vectors (same math)."""
  family = tasks.meta_train_family(config.family)
  return lambda key: tasks.FlatTask(family.sample(key))


def run_imitation(workdir, config, metrics_log, key):
  c = config.imitation
  rule_hyper = rule_hyperparams(config, c.horizon)
  imitation = meta.Imitation(flat_sampler(config), num_tasks=c.num_tasks, unroll_length=c.unroll_length,
                             adam_learning_rate=c.adam_learning_rate)
  keys = jax.random.split(key, 3)
  meta_params = optim.init_meta_params(keys[0], config.rule.hidden_size,
                                       init_scale=config.rule.init_scale)
  fit_learning_rate = jnp.float32(c.learning_rate)
  state = imitation.init(meta_params, rule_hyper, optax.adam(fit_learning_rate), keys[1])

  def step_fn(state, key, rule_hyper, fit_learning_rate, horizon):
    return imitation.step(state, rule_hyper, optax.adam(fit_learning_rate), horizon, key)

  state = _run_phase("imitation", workdir, config, state, step_fn,
                     (rule_hyper, fit_learning_rate, jnp.int32(c.horizon)), c.steps,
                     metrics_log, keys[2])
  return imitation, state.meta_params


def heldout_digits(config):
  return tasks.heldout_digits_tasks(seed=config.seed)[:config.eval.digits_tasks]


def imitation_errors(workdir, imitation, meta_params, config) -> dict[str, float]:
  """Relative error of the rule's updates to Adam's over a whole held-out run, per task.

  The errors are saved in the workdir, and a rerun reads them instead of recompiling.
  """
  cache = workdir / "imitation_errors.json"
  if cache.exists():
    return json.loads(cache.read_text())
  rule_hyper = rule_hyperparams(config, config.imitation.eval_steps)
  errors = {}
  for task in heldout_digits(config):
    error_fn = jax.jit(lambda mp, t: imitation.relative_error(
        mp, rule_hyper, t, jax.random.key(config.seed), config.imitation.eval_steps))
    errors[task.describe()] = float(error_fn(meta_params, tasks.FlatTask(task)))
  cache.write_text(json.dumps(errors))
  return errors


def run_evaluation(workdir, config, rules: dict) -> list[dict]:
  """Evaluate on every held-out task, reusing results saved by an earlier run."""
  cache = workdir / "heldout.json"
  if cache.exists():
    logging.info("Held-out results found in %s; not recomputing them.", cache)
    return json.loads(cache.read_text())
  e = config.eval
  heldout = [(t, e.digits_steps) for t in heldout_digits(config)]
  if e.char:
    heldout += [(t, e.char_steps) for t in tasks.heldout_char_tasks(seed=config.seed)]
  results = []
  for task, num_steps in heldout:
    settings = meta.evaluation.EvalSettings(
        num_steps=num_steps, eval_every=e.eval_every, seeds=tuple(e.seeds),
        adam_learning_rates=tuple(e.adam_learning_rates),
        sgd_learning_rates=tuple(e.sgd_learning_rates), sgd_momentum=e.sgd_momentum)
    start = time.perf_counter()
    result = meta.evaluation.compare_on_task(task, task.describe(), rules,
                                             rule_hyperparams(config, num_steps), settings)
    logging.info("Evaluated %s in %.1f s: tuned Adam lr %g, SGD lr %g.", task.describe(),
                 time.perf_counter() - start, result["adam_learning_rate"],
                 result["sgd_learning_rate"])
    results.append(result)
  cache.write_text(json.dumps(common.to_builtin(results)))
  return results


def run_components(workdir, config, g_star) -> list[dict]:
  """Train other components with Adam and with G*, reusing results saved by an earlier run."""
  cache = workdir / "components.json"
  if not config.eval.components:
    return []
  if cache.exists():
    return json.loads(cache.read_text())
  start = time.perf_counter()
  records = bootstrap_components.compare(g_star, tuple(config.eval.component_seeds),
                                         config.eval.component_steps,
                                         config.eval.calibration_steps)
  logging.info("Trained the ensemble and the calibration GAN with Adam and G* in %.1f s.",
               time.perf_counter() - start)
  cache.write_text(json.dumps(common.to_builtin(records)))
  return records


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  bootstrap_config.validate(config)
  try:
    distributed.initialize_from_flags()
  except ValueError as error:
    raise app.UsageError(str(error)) from None
  workdir = common.start_run(_WORKDIR.value, config,
                             may_differ=("log_every_s", "checkpoint_every", "eval.enabled"))
  logging.info("Bootstrap run in %s with preset %s on %s.", workdir, config.preset,
               jax.default_backend())

  metrics_log = common.MetricsLog(workdir)
  keys = jax.random.split(jax.random.key(config.seed), 4)
  clock = common.PhaseClock()
  imitation, imitated = run_imitation(workdir, config, metrics_log, keys[0])
  clock.lap("phase1_imitation")
  tools = bootstrap_phases.Tools(config, rule_hyperparams(config, config.meta.horizon), keys[3])
  explored = bootstrap_phases.run_exploration(workdir, config, tools, imitated, metrics_log,
                                              keys[1])
  clock.lap("phase2_exploration")
  starts, start_scores = bootstrap_phases.best_members(explored,
                                                       config.self_reference.members)
  logging.info("Exploration done; the best validation scores are %s.", start_scores)
  settled = bootstrap_phases.run_self_reference(workdir, config, tools, starts, metrics_log,
                                                keys[2])
  clock.lap("phase3_self_reference")
  g_star, g_star_score, g_star_index = bootstrap_phases.g_star(settled)
  optim.save_rule(workdir / "g_star.json", jax.device_get(g_star),
                  {"validation_score": g_star_score, "preset": config.preset,
                   "seed": config.seed, "family": config.family})
  logging.info("G* is rule %d of phase 3 with validation score %.4f; saved to %s.",
               g_star_index, g_star_score, workdir / "g_star.json")
  if not config.eval.enabled:
    logging.info("Held-out evaluation is disabled (eval.enabled=False); no report written.")
    return
  errors = imitation_errors(workdir, imitation, imitated, config)
  logging.info("Imitation relative error on held-out tasks: %s", errors)
  rules = {"phase1_imitation": imitated,
           "phase2_population": jax.tree.map(lambda x: x[0], starts),
           "g_star": g_star}
  results = run_evaluation(workdir, config, rules)
  components = run_components(workdir, config, jax.device_get(g_star))
  clock.lap("phase4_evaluation")
  bootstrap_report.write(workdir, config, metrics_log.read(), errors, results,
                         jax.device_get(g_star), start_scores, g_star_score, clock.laps,
                         components)
  logging.info("Wrote %s and %s.", workdir / "report.md", workdir / "report.json")


if __name__ == "__main__":
  common.run_main(main)
