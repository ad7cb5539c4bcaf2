"""Output level: learned sampling, the calibration GAN and one-pass ensembles, against baselines.

  python -m experiments.output_level --workdir=runs/output_level \
      --config=experiments/configs/output_level.py:default

Each part's work is a library call (`sampling.benchmark`, `calibration.benchmark`,
`ensemble.benchmark`). Every part runs once per seed in `config.seeds`, under
`seed_S/` in the workdir, and the report gives the mean and spread over seeds
first and the detail of the first seed after. Trained language models and
classifiers are saved as orbax checkpoints and each finished part as
`seed_S/phases/PART.json`, so a rerun with the same workdir skips what is done.
"""

from __future__ import annotations

import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app
from absl import logging

from autogan_jax import calibration
from autogan_jax import checkpoint
from autogan_jax import core
from autogan_jax import ensemble
from autogan_jax import optim
from autogan_jax import sampling
from autogan_jax import tasks
from autogan_jax.calibration import benchmark as calibration_benchmark
from autogan_jax.ensemble import benchmark as ensemble_benchmark
from autogan_jax.sampling import benchmark as sampling_benchmark
from autogan_jax.sampling import evaluation
from autogan_jax.tasks import hmm
from experiments import common
from experiments import output_level_summary

_CONFIG, _WORKDIR = common.define_run_flags(
    "experiments/configs/output_level.py:default", "", "Experiment settings.",
    "Folder for checkpoints, metrics, report and plots.")

PARTS = ("sampling", "calibration", "ensemble")
POSITIVE_INT = core.IntRange(1)
POSITIVE_FLOAT = core.FloatRange(0.0, low_inclusive=False)
SCHEMA = {
    "seeds": core.SequenceOf(core.IntRange(0)),
    "update_rule": core.OneOf(optim.DEFAULT_RULES),
    "parts": core.SequenceOf(core.OneOf(PARTS)),
    "learning_rate": POSITIVE_FLOAT,
    "hmm.num_states": POSITIVE_INT,
    "hmm.vocab_size": core.IntRange(2, 127),
    "hmm.length": core.IntRange(3),
    "hmm.num_train": POSITIVE_INT,
    "hmm.lm_context": POSITIVE_INT,
    "hmm.lm_width": POSITIVE_INT,
    "hmm.lm_steps": POSITIVE_INT,
    "hmm.eval_sequences": core.IntRange(2),
    "char.max_chars": core.IntRange(10_000),
    "char.width": POSITIVE_INT,
    "char.lm_steps": POSITIVE_INT,
    "char.sample_length": core.IntRange(3),
    "char.eval_prompts": core.IntRange(2),
    "sampler.steps": POSITIVE_INT,
    "sampler.char_steps": POSITIVE_INT,
    "sampler.snapshot_every": POSITIVE_INT,
    "sampler.batch_size": core.IntRange(2),
    "sampler.estimator": core.OneOf(sampling.ESTIMATORS),
    "sampler.loss": core.OneOf(("non_saturating", "hinge", "wasserstein")),
    "sampler.g_learning_rate": POSITIVE_FLOAT,
    "sampler.d_learning_rate": POSITIVE_FLOAT,
    "calibration.digits_width": POSITIVE_INT,
    "calibration.digits_depth": POSITIVE_INT,
    "calibration.digits_steps": POSITIVE_INT,
    "calibration.gan_steps": POSITIVE_INT,
    "calibration.gan_d_steps": POSITIVE_INT,
    "ensemble.num_members": core.IntRange(2),
    "ensemble.widths": core.SequenceOf(POSITIVE_INT),
    "ensemble.depth": POSITIVE_INT,
    "ensemble.member_steps": POSITIVE_INT,
    "ensemble.student_width": POSITIVE_INT,
    "ensemble.char_widths": core.SequenceOf(POSITIVE_INT),
    "ensemble.char_student_width": POSITIVE_INT,
    "ensemble.distill_steps": POSITIVE_INT,
    "ensemble.distill_eval_every": POSITIVE_INT,
    "ensemble.dirichlet_weight": core.FloatRange(0.0),
    "ensemble.adversarial_steps": core.IntRange(0),
    "ensemble.mimo_heads": POSITIVE_INT,
    "ensemble.mimo_steps": POSITIVE_INT,
}
# Folded into the test sampling key to make the key of the validation draws.
VALIDATION_STREAM = 1
# Characters scored per split when calibrating the character model.
CHAR_CALIBRATION_POSITIONS = 4096


def validate_config(config) -> None:
  """Reject an invalid config before any compute."""
  core.validate(config, SCHEMA)
  if len(set(config.seeds)) != len(config.seeds):
    raise core.ConfigError(f"Invalid config: seeds={tuple(config.seeds)} has repeated "
                           "values; expected distinct seeds.")
  if config.sampler.steps % config.sampler.snapshot_every:
    raise core.ConfigError(
        f"Invalid config: sampler.snapshot_every={config.sampler.snapshot_every} does not "
        f"divide sampler.steps={config.sampler.steps}; expected a divisor of it.")
  if config.ensemble.distill_steps % config.ensemble.distill_eval_every:
    raise core.ConfigError(
        f"Invalid config: ensemble.distill_eval_every={config.ensemble.distill_eval_every} "
        f"does not divide ensemble.distill_steps={config.ensemble.distill_steps}; expected a "
        "divisor of it.")


# --- Shared pieces: training with checkpoints, and cached parts --------------------------------

def train_task(task, key: jax.Array, steps: int, learning_rate: float, workdir: pathlib.Path,
               name: str):
  """Train `task` with Adam in chunked scans, or restore its saved parameters."""
  k_init, k_data = jax.random.split(key)
  params = task.init(k_init)
  checkpointer = checkpoint.RunCheckpointer(workdir / "checkpoints" / name)
  if checkpointer.latest_step() == steps:
    logging.info("Restoring the trained %s from %s.", name, checkpointer.directory)
    return checkpointer.restore(params)
  tx = optax.adam(learning_rate)
  progress = common.Progress(name, steps)
  # Steps run in equal chunks of at most 500, one compile, with progress logged after each.
  chunk = max(d for d in range(1, min(steps, 500) + 1) if steps % d == 0)

  @jax.jit
  def run_chunk(params, opt_state, start):
    def step(carry, i):
      params, opt_state = carry
      loss, grads = jax.value_and_grad(task.loss)(params, task.batch(k_data, i))
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss
    return jax.lax.scan(step, (params, opt_state), start + jnp.arange(chunk))

  opt_state = tx.init(params)
  done = 0
  while done < steps:
    (params, opt_state), losses = run_chunk(params, opt_state, done)
    done += chunk
    progress.update(min(done, steps), loss=float(jnp.mean(losses)))
  checkpointer.save(steps, params)
  checkpointer.close()
  return params


def cached_part(workdir: pathlib.Path, name: str, compute):
  """Return the saved result of part `name`, or compute it and save it as JSON.

  The result gets a `seconds` entry: the wall time of the compute that made it.
  """
  path = workdir / "phases" / f"{name}.json"
  if path.exists():
    logging.info("Part %s is done; reading %s.", name, path)
    return json.loads(path.read_text())
  start = time.perf_counter()
  result = common.to_builtin(compute())
  result["seconds"] = time.perf_counter() - start
  logging.info("Part %s took %.1f s.", name, result["seconds"])
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(result, indent=1))
  return result


def char_text(config) -> tasks.datasets.TextSplits:
  return tasks.datasets.load_stdlib_text(max_chars=config.char.max_chars,
                                         max_eval_chars=max(config.char.max_chars // 10, 20_000))


def char_model(config, key: jax.Array, workdir: pathlib.Path):
  """Return the character task and its trained parameters."""
  task = tasks.char_task(width=config.char.width, data=char_text(config))
  params = train_task(task, key, config.char.lm_steps, config.learning_rate, workdir, "char_lm")
  return task, params


def char_windows(task, stream: np.ndarray, positions: np.ndarray) -> tuple[jax.Array, jax.Array]:
  offsets = np.arange(-task.context, 0)
  return jnp.asarray(stream[positions[:, None] + offsets[None, :]]), jnp.asarray(stream[positions])


# --- Sampling ------------------------------------------------------------------------------------

def sampler_transforms(config):
  return optax.adam(config.sampler.g_learning_rate), optax.adam(config.sampler.d_learning_rate)


def run_hmm_sampling(config, seed: int, keys: dict, workdir: pathlib.Path) -> dict:
  c = config.hmm
  corpus = hmm.load_hmm_corpus(seed=seed, num_states=c.num_states,
                               vocab_size=c.vocab_size, length=c.length, num_train=c.num_train,
                               num_eval=max(c.eval_sequences, 2))
  task = hmm.hmm_lm_task(context=c.lm_context, width=c.lm_width, data=corpus)
  params = train_task(task, keys["hmm_lm"], c.lm_steps, config.learning_rate, workdir, "hmm_lm")
  lm_eval = {k: float(v) for k, v in task.evaluate(params, "test").items()}

  def next_logits(windows):
    return task.apply(params, windows)

  prompts = jnp.full((c.eval_sequences, task.context), task.bos, jnp.int32)

  def judge(_, tokens):
    return np.asarray(hmm.log_likelihood(corpus.hmm, jnp.asarray(tokens))) / tokens.shape[1]

  eval_key = keys["sampling_eval"]
  records = sampling_benchmark.sweep_fixed_rules(next_logits, prompts, eval_key, c.length, judge,
                                                 corpus.vocab_size)
  true_tokens = hmm.sample(corpus.hmm, keys["hmm_truth"], c.eval_sequences, c.length)
  true_log_probs = hmm.next_token_log_probs(corpus.hmm, true_tokens)
  true_entropy = float(jnp.mean(-jnp.sum(jnp.exp(true_log_probs) * true_log_probs, axis=-1)))
  truth = {"quality": float(np.mean(judge(None, np.asarray(true_tokens)))),
           "entropy": true_entropy,
           "distinct_2": evaluation.distinct_ngrams(np.asarray(true_tokens), 2),
           "distinct_3": evaluation.distinct_ngrams(np.asarray(true_tokens), 3)}

  # D_quality's real sequences are fresh draws of the language under the sampler's own key,
  # independent of the test draws of `eval_key` and `keys["hmm_truth"]`.
  g_tx, d_tx = sampler_transforms(config)
  snapshots, history = sampling.train_sampler(
      next_logits, lambda key, size: jnp.full((size, task.context), task.bos, jnp.int32),
      lambda key, size: hmm.sample(corpus.hmm, key, size, c.length), keys["hmm_sampler"],
      vocab_size=corpus.vocab_size, input_vocab_size=corpus.vocab_size + 1, length=c.length,
      steps=config.sampler.steps, batch_size=config.sampler.batch_size,
      estimator=config.sampler.estimator, loss=config.sampler.loss, g_tx=g_tx, d_tx=d_tx,
      snapshot_every=config.sampler.snapshot_every)
  # The snapshot is chosen on validation draws, made with another sampling key than the
  # test figures, against a fixed-rule front swept with that key.
  valid_key = jax.random.fold_in(eval_key, VALIDATION_STREAM)
  chosen, candidates = sampling_benchmark.select_snapshot(
      next_logits, snapshots, prompts, valid_key, c.length, judge, corpus.vocab_size)
  g_params = jax.tree.map(lambda leaf: leaf[chosen], snapshots)
  learned = sampling_benchmark.evaluate_learned(next_logits, g_params, prompts, eval_key,
                                                c.length, judge)
  every = config.sampler.snapshot_every
  selection = {"chosen_step": (chosen + 1) * every,
               "candidates": [{"step": (i + 1) * every, **r} for i, r in enumerate(candidates)]}
  return {"lm": lm_eval, "fixed": records, "learned": learned, "truth": truth,
          "comparison": sampling_benchmark.compare_to_front(records, learned),
          "selection": selection,
          "gan_final": {k: float(np.mean(v[-20:])) for k, v in history.items()}}


def run_char_sampling(config, keys: dict, workdir: pathlib.Path) -> dict:
  c = config.char
  task, params = char_model(config, keys["char_lm"], workdir)
  text = task.data
  length = c.sample_length

  def next_logits(windows):
    return task.apply(params, windows)

  valid = text.valid
  positions = np.linspace(task.context, len(valid) - length - 1, c.eval_prompts).astype(np.int64)
  prompts, _ = char_windows(task, valid, positions)
  reference = evaluation.NgramReference.fit(text.train, tasks.datasets.CHAR_VOCAB_SIZE)

  def judge(prompt_windows, tokens):
    return reference.score(prompt_windows, tokens)

  eval_key = keys["sampling_eval"]
  records = sampling_benchmark.sweep_fixed_rules(next_logits, prompts, eval_key, length, judge,
                                                 tasks.datasets.CHAR_VOCAB_SIZE)
  real_continuations = valid[positions[:, None] + np.arange(length)[None, :]]
  truth = {"quality": float(np.mean(judge(np.asarray(prompts), real_continuations))),
           "distinct_2": evaluation.distinct_ngrams(real_continuations, 2),
           "distinct_3": evaluation.distinct_ngrams(real_continuations, 3)}

  train = jnp.asarray(text.train)

  def prompts_fn(key, size):
    starts = jax.random.randint(key, (size,), task.context, train.shape[0] - length)
    return train[starts[:, None] + jnp.arange(-task.context, 0)[None, :]]

  def real_fn(key, size):
    starts = jax.random.randint(key, (size,), task.context, train.shape[0] - length)
    return train[starts[:, None] + jnp.arange(length)[None, :]]

  g_tx, d_tx = sampler_transforms(config)
  # The character sampler keeps its final parameters; no snapshot is selected.
  snapshots, history = sampling.train_sampler(
      next_logits, prompts_fn, real_fn, keys["char_sampler"],
      vocab_size=tasks.datasets.CHAR_VOCAB_SIZE, input_vocab_size=tasks.datasets.CHAR_VOCAB_SIZE,
      length=length, steps=config.sampler.char_steps, batch_size=config.sampler.batch_size,
      estimator=config.sampler.estimator, loss=config.sampler.loss, g_tx=g_tx, d_tx=d_tx)
  g_params = jax.tree.map(lambda leaf: leaf[-1], snapshots)
  learned = sampling_benchmark.evaluate_learned(next_logits, g_params, prompts, eval_key, length,
                                                judge)
  return {"lm": {k: float(v) for k, v in task.evaluate(params, "test").items()},
          "fixed": records, "learned": learned, "truth": truth,
          "comparison": sampling_benchmark.compare_to_front(records, learned),
          "gan_final": {k: float(np.mean(v[-20:])) for k, v in history.items()}}


def plot_front(path: pathlib.Path, result: dict, title: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt

  fig, ax = plt.subplots(figsize=(6.4, 4.6))
  for rule in sampling.RULES:
    points = sorted((r["entropy"], r["quality"]) for r in result["fixed"] if r["rule"] == rule)
    if points:
      ax.plot(*zip(*points), marker="o", markersize=3, linewidth=1, label=rule)
  front = sorted((r["entropy"], r["quality"]) for r in result["comparison"]["front"])
  ax.plot(*zip(*front), "k--", linewidth=1.5, label="front of fixed rules")
  learned = result["learned"]
  ax.errorbar([learned["entropy"]], [learned["quality"]], yerr=[learned["quality_stderr"]],
              marker="*", markersize=14, color="red", label="G_sampler")
  if "entropy" in result["truth"]:
    ax.plot([result["truth"]["entropy"]], [result["truth"]["quality"]], "kx", markersize=10,
            label="the language itself")
  ax.set_xlabel("diversity: entropy of the sampling distribution (nats per token)")
  ax.set_ylabel("quality: log-likelihood per token")
  ax.set_title(title, fontsize=10)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


# --- Calibration ---------------------------------------------------------------------------------

def run_calibration(config, keys: dict, workdir: pathlib.Path,
                    plot_dir: pathlib.Path | None) -> dict:
  """Compare the calibrators on digits and the character model; plot into `plot_dir` if set."""
  c = config.calibration
  results = {}

  digits = tasks.digits_task(width=c.digits_width, depth=c.digits_depth, activation="relu",
                             batch_size=64)
  digits_params = train_task(digits, keys["digits"], c.digits_steps, config.learning_rate,
                             workdir, "digits_classifier")
  data = digits.data
  sets = {"digits": (digits.apply(digits_params, jnp.asarray(data.x_valid)), data.y_valid,
                     digits.apply(digits_params, jnp.asarray(data.x_test)), data.y_test)}

  task, params = char_model(config, keys["char_lm"], workdir)
  splits = {}
  for split in ("valid", "test"):
    stream = task.data.split(split)
    positions = np.linspace(task.context, len(stream) - 1,
                            CHAR_CALIBRATION_POSITIONS).astype(np.int64)
    windows, targets = char_windows(task, stream, positions)
    splits[split] = (task.apply(params, windows), targets)
  sets["stdlib_chars"] = (*splits["valid"], *splits["test"])

  for name, (fit_logits, fit_labels, test_logits, test_labels) in sets.items():
    outcome, predictions, extra = calibration_benchmark.compare_calibrators(
        fit_logits, fit_labels, test_logits, test_labels, keys[f"calibration_{name}"],
        gan_steps=c.gan_steps, gan_d_steps=c.gan_d_steps)
    if plot_dir is not None:
      calibration.plot_reliability(plot_dir / f"reliability_{name}.png", predictions,
                                   jnp.asarray(test_labels),
                                   f"{name}: fitted on valid, scored on test")
    results[name] = {"metrics": outcome, "temperature": extra["temperature"],
                     "g_cal_temperature_range": extra["g_cal_temperature_range"],
                     "fit_examples": int(len(fit_labels)), "test_examples": int(len(test_labels))}
  return results


# --- Ensemble ------------------------------------------------------------------------------------

def run_ensemble(config, seed: int, key: jax.Array, data: str) -> dict:
  """Run the ensemble benchmark on `data`: "digits" or "stdlib_chars"."""
  c = config.ensemble
  if data == "digits":
    spec = ensemble.EnsembleSpec(num_members=c.num_members, widths=tuple(c.widths),
                                 depth=c.depth)
    problem = ensemble_benchmark.digits_problem(spec, c.student_width, seed=seed)
  else:
    spec = ensemble.EnsembleSpec(num_members=c.num_members, widths=tuple(c.char_widths),
                                 depth=1)
    problem = ensemble_benchmark.char_problem(spec, c.char_student_width, char_text(config),
                                              seed=seed)
  return ensemble_benchmark.run_problem(
      problem, spec, key, member_steps=c.member_steps, distill_steps=c.distill_steps,
      adversarial_steps=c.adversarial_steps, mimo_heads=c.mimo_heads, mimo_steps=c.mimo_steps,
      dirichlet_weight=c.dirichlet_weight, tx=optax.adam(config.learning_rate),
      distill_eval_every=c.distill_eval_every)


def plot_ensemble(path: pathlib.Path, methods: dict, title: str) -> None:
  """Plot each method's mean test NLL over seeds, with the sample standard deviation as bars."""
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt

  names = list(output_level_summary.ENSEMBLE_METHODS)
  nll = [methods[n]["nll"]["mean"] for n in names]
  spread = [methods[n]["nll"]["std"] for n in names]
  fig, ax = plt.subplots(figsize=(7.0, 3.6))
  ax.bar(range(len(names)), nll, yerr=spread, capsize=4,
         color=["black", "red", "salmon", "tab:blue", "gray", "silver"])
  ax.axhline(1.05 * methods["ensemble"]["nll"]["mean"], color="k", linestyle="--", linewidth=1,
             label="ensemble NLL + 5%")
  ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
  ax.set_ylabel("test NLL (nats)")
  ax.set_title(title, fontsize=10)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


# --- Report --------------------------------------------------------------------------------------

def sampling_markdown(name: str, result: dict, config, judge: str) -> str:
  comparison = result["comparison"]
  learned = result["learned"]
  lines = [f"### {name}\n",
           f"Judge: {judge}. Language model test loss {result['lm']['loss']:.4f} nats per token.",
           f"G_sampler: entropy {learned['entropy']:.4f}, quality {learned['quality']:.4f} "
           f"(standard error {learned['quality_stderr']:.4f}), distinct-2 "
           f"{learned['distinct_2']:.4f}, distinct-3 {learned['distinct_3']:.4f}.",
           f"Front quality at that entropy: {comparison['front_quality_at_entropy']:.4f}; "
           f"margin {comparison['margin']:+.4f} nats per token, "
           f"{comparison['margin'] / max(learned['quality_stderr'], 1e-12):+.2f} standard errors "
           "of G_sampler's quality (within one standard error it is on the front, not "
           "measurably beyond it); fixed-rule points that beat "
           f"G_sampler on both axes: {comparison['dominated_by']}. "
           f"**On or beyond the front: {comparison['on_or_beyond_front']}.**",
           *([f"G_sampler is the snapshot after {result['selection']['chosen_step']} of "
              f"{config.sampler.steps} steps, the one with the largest margin on validation "
              "draws (another sampling key than the figures above)."]
             if "selection" in result else
             [f"G_sampler is the final snapshot after {config.sampler.char_steps} steps."]),
           f"The language itself (real sequences): quality {result['truth']['quality']:.4f}"
           + (f", entropy {result['truth']['entropy']:.4f}." if "entropy" in result["truth"]
              else "."), "",
           "Front of the fixed rules:\n"]
  rows = [[r["rule"], r["parameter"], r["entropy"], r["quality"], r["distinct_2"],
           r["distinct_3"]] for r in comparison["front"]]
  lines.append(common.markdown_table(["rule", "parameter", "entropy", "quality", "distinct-2",
                                      "distinct-3"], rows))
  lines.append("All fixed-rule points:\n")
  rows = [[r["rule"], r["parameter"], r["entropy"], r["quality"], r["quality_stderr"],
           r["distinct_2"], r["distinct_3"]] for r in result["fixed"]]
  lines.append(common.markdown_table(["rule", "parameter", "entropy", "quality", "stderr",
                                      "distinct-2", "distinct-3"], rows))
  return "\n".join(lines) + "\n"


def ensemble_markdown(data: str, result: dict, config) -> str:
  r = result["results"]
  ratio = {k: ("n/a" if v is None else f"{v:.4f}")
           for k, v in result["cost_ratios"]["g_ensemble"].items()}
  goals = output_level_summary.ensemble_goals(r)
  lines = [
      f"### {data}\n\n{config.ensemble.num_members} members (widths "
      f"{result['member_widths']}) trained on the train split; scored on the "
      f"{result['test_set']}.\n\n"
      f"**G_ensemble NLL within 5% of the ensemble: {goals['within_5_percent']}; better than a "
      f"single member: {goals['better_than_single']}; better than MIMO: "
      f"{goals['better_than_mimo']}. Cost ratio G_ensemble / ensemble: multiply-adds "
      f"{ratio['multiply_adds']}, XLA FLOPs {ratio['xla_flops']}, wall time "
      f"{ratio['seconds']}.** Correlation of G_ensemble's Dirichlet spread with the "
      f"members' variance over test inputs: {result['disagreement_correlation']:.4f}.\n"]
  rows = [[n, m["nll"], m["accuracy"], m["ece"]] for n, m in r.items()]
  lines.append(common.markdown_table(["method", "NLL", "accuracy", "ECE (15 bins)"], rows))
  rows = [[n, c["multiply_adds"], c["xla_flops"], c["seconds"]]
          for n, c in result["costs"].items()]
  lines.append("\nCosts, measured in this run (wall time: median of repeated forward passes "
               "over the test set):\n\n" + common.markdown_table(
                   ["predictor", "multiply-adds per example", "XLA FLOPs", "seconds"], rows))
  return "\n".join(lines)


def build_markdown(report: dict, config, seed: int) -> str:
  """Render one seed's detail: every method's figures from that single run."""
  parts = [f"# Detail of seed {seed}\n\nOne run of each method with seed {seed} (no averaging). "
           "Every figure is on the test split unless it says otherwise.\n"]
  if "sampling" in report:
    parts.append(
        "## Learned sampling\n\n"
        f"Each sampler draws {config.hmm.eval_sequences} HMM sequences of "
        f"{config.hmm.length} tokens (and {config.char.eval_prompts} continuations of "
        f"{config.char.sample_length} characters after validation-split prompts) with the same "
        "keys. Diversity is the mean entropy of the sampling distribution per token; quality "
        "the mean log-likelihood per token under the judge. Plots: `sampling_hmm.png`, "
        "`sampling_chars.png`.\n")
    parts.append(sampling_markdown("Hidden Markov language", report["sampling"]["hmm"], config,
                                   "the exact HMM likelihood"))
    parts.append(sampling_markdown(
        "Character model of the standard library", report["sampling"]["chars"], config,
        "an interpolated character trigram model fitted on the train split (a proxy, not the "
        "true likelihood)"))
  if "calibration" in report:
    parts.append("## Calibration\n\nEach method is fitted on the validation split and scored on "
                 "the test split. Plots: `reliability_digits.png`, "
                 "`reliability_stdlib_chars.png`.\n")
    for name, result in report["calibration"].items():
      metrics = result["metrics"]
      ts, gc = metrics["temperature"], metrics["g_cal"]
      parts.append(
          f"### {name}\n\nFitted on {result['fit_examples']} validation examples, scored on "
          f"{result['test_examples']} test examples. Temperature {result['temperature']:.4f}; "
          f"G_cal temperatures on test span {result['g_cal_temperature_range'][0]:.4f} to "
          f"{result['g_cal_temperature_range'][1]:.4f}. **G_cal ECE {gc['ece']:.4f} vs "
          f"temperature scaling {ts['ece']:.4f}: goal met: {gc['ece'] <= ts['ece']}; "
          f"accuracy {gc['accuracy']:.4f} vs {ts['accuracy']:.4f}.**\n")
      headers = ["method", "accuracy", "ECE (15 equal-width)", "ECE (15 equal-mass)", "MCE",
                 "MCE (equal-mass)", "NLL", "Brier"]
      rows = [[n, m["accuracy"], m["ece"], m["ece_equal_mass"], m["mce"], m["mce_equal_mass"],
               m["nll"], m["brier"]] for n, m in metrics.items()]
      parts.append(common.markdown_table(headers, rows))
  if "ensemble" in report:
    parts.append("## Ensemble in one pass\n\n`single_member` is member 0; `member_mean` "
                 "averages the members' own figures. Plots (mean over seeds): "
                 "`ensemble_digits.png`, `ensemble_stdlib_chars.png`.\n")
    for data, result in report["ensemble"].items():
      parts.append(ensemble_markdown(data, result, config))
  return "\n".join(parts)


def run_seed(config, seed: int, workdir: pathlib.Path, plot_dir: pathlib.Path | None,
             metrics_log: common.MetricsLog) -> dict:
  """Run the parts named in `config.parts` with one seed, caching each under `workdir`."""
  names = ("hmm_lm", "hmm_truth", "hmm_sampler", "sampling_eval", "char_lm", "char_sampler",
           "digits", "calibration_digits", "calibration_stdlib_chars", "ensemble",
           "ensemble_chars")
  keys = core.split_named(core.as_key(seed), names)
  report = {}
  seconds = {}

  if "sampling" in config.parts:
    hmm_result = cached_part(workdir, "sampling_hmm",
                             lambda: run_hmm_sampling(config, seed, keys, workdir))
    char_result = cached_part(workdir, "sampling_chars",
                              lambda: run_char_sampling(config, keys, workdir))
    report["sampling"] = {"hmm": hmm_result, "chars": char_result}
    seconds.update(sampling_hmm=hmm_result["seconds"], sampling_chars=char_result["seconds"])
    if plot_dir is not None:
      plot_front(plot_dir / "sampling_hmm.png", hmm_result,
                 f"Hidden Markov language (seed {seed}): exact log-likelihood against entropy")
      plot_front(plot_dir / "sampling_chars.png", char_result,
                 f"Standard-library characters (seed {seed}): trigram-judge log-likelihood "
                 "against entropy")
    for language, result in report["sampling"].items():
      metrics_log.append({"phase": "sampling", "step": 0, "seed": seed, "language": language,
                          **result["learned"], "margin": result["comparison"]["margin"]})

  if "calibration" in config.parts:
    report["calibration"] = cached_part(workdir, "calibration",
                                        lambda: run_calibration(config, keys, workdir, plot_dir))
    seconds["calibration"] = report["calibration"].pop("seconds")
    for name, result in report["calibration"].items():
      metrics_log.append({"phase": "calibration", "step": 0, "seed": seed, "data": name,
                          "g_cal_ece": result["metrics"]["g_cal"]["ece"],
                          "temperature_ece": result["metrics"]["temperature"]["ece"]})

  if "ensemble" in config.parts:
    report["ensemble"] = {
        "digits": cached_part(workdir, "ensemble",
                              lambda: run_ensemble(config, seed, keys["ensemble"], "digits")),
        "stdlib_chars": cached_part(
            workdir, "ensemble_chars",
            lambda: run_ensemble(config, seed, keys["ensemble_chars"], "stdlib_chars")),
    }
    for data, result in report["ensemble"].items():
      seconds[f"ensemble_{data}"] = result["seconds"]
      metrics_log.append({"phase": "ensemble", "step": 0, "seed": seed, "data": data,
                          **{f"{name}_nll": m["nll"] for name, m in result["results"].items()}})
  report["seconds"] = seconds
  return report


def run(config, workdir: pathlib.Path) -> dict:
  """Run every seed of `config.seeds` into `workdir` and write the report over seeds.

  Plots of single runs (sampling fronts, reliability diagrams) show the first seed.
  """
  validate_config(config)
  workdir = common.start_run(workdir, config)
  metrics_log = common.MetricsLog(workdir)
  for phase in PARTS:
    metrics_log.truncate_after(phase, -1)
  per_seed = {}
  for index, seed in enumerate(config.seeds):
    logging.info("Seed %d (%d of %d).", seed, index + 1, len(config.seeds))
    per_seed[seed] = run_seed(config, seed, workdir / f"seed_{seed}",
                              workdir if index == 0 else None, metrics_log)

  summary = output_level_summary.summarize(per_seed)
  if "ensemble" in summary:
    for data, result in summary["ensemble"].items():
      plot_ensemble(workdir / f"ensemble_{data}.png", result["methods"],
                    f"{data}: mean test NLL over seeds {list(config.seeds)}, bars one sample "
                    "standard deviation")
  first = config.seeds[0]
  report = {"summary": summary, "per_seed": per_seed, "config": config.to_dict()}
  report.update(per_seed[first])
  columns = sorted(per_seed[first]["seconds"])
  timing_rows = [[seed, *[r["seconds"].get(k) for k in columns]] for seed, r in per_seed.items()]
  markdown = "\n".join([
      "# Output level\n",
      output_level_summary.summary_markdown(summary),
      "Wall seconds per part and seed, recorded when the part was computed:\n",
      common.markdown_table(["seed", *columns], timing_rows),
      "",
      build_markdown(per_seed[first], config, first)])
  common.write_report(workdir, report, markdown)
  return report


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  validate_config(config)
  workdir = common.prepare_workdir(_WORKDIR.value)
  with optim.default_rule_scope(config.update_rule):
    run(config, workdir)
  logging.info("Report written to %s.", workdir / "report.md")


if __name__ == "__main__":
  common.run_main(main)
