"""Config of the bootstrap: imitate Adam, explore as a population, self-reference, evaluate G*.

Presets: `default` (the main job, sized for 2 CPU cores), `smoke` (the tests) and
`large` (GPU or TPU). Select one with `--config=experiments/configs/bootstrap.py:smoke`
and override fields with flags such as `--config.population.generations=10`.
"""

from __future__ import annotations

import ml_collections

from autogan_jax.core import validation as v


def get_config(preset: str = "default") -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.preset = preset
  config.seed = 0
  # Meta-training task family: "digits" or "stdlib_chars".
  config.family = "digits"
  config.checkpoint_every = 50
  config.log_every_s = 10.0

  config.rule = ml_collections.ConfigDict({
      "hidden_size": 4, "init_scale": 0.1, "b1": 0.9, "b2": 0.999,
  })
  config.imitation = ml_collections.ConfigDict({
      "steps": 300, "num_tasks": 8, "unroll_length": 20, "horizon": 300,
      "adam_learning_rate": 3e-3, "learning_rate": 1e-2, "eval_steps": 300,
  })
  # Shared by phases 2 and 3. `learning_rate` is where G_meta's meta learning rate starts.
  config.meta = ml_collections.ConfigDict({
      "num_tasks": 8, "unroll_length": 20, "horizon": 300,
      "learning_rate": 3e-4, "clip_norm": 1.0, "loss_floor": 0.01, "valid_weight": 0.5,
      "validation_tasks": 8,
  })
  # Phase 2. Each generation meta-trains every member for `segment_steps` meta-steps;
  # the worst `exploit_fraction` then copy the best and are perturbed by
  # `perturb_scale` (times `diversity_boost` while the probe diversity is under
  # `diversity_floor`).
  config.population = ml_collections.ConfigDict({
      "size": 6, "generations": 10, "segment_steps": 60, "exploit_fraction": 0.34,
      "perturb_scale": 0.1, "diversity_floor": 0.05, "diversity_boost": 3.0,
      "es_sigma": 0.01, "g_learning_rate": 0.1, "d_steps": 100, "d_learning_rate": 3e-3,
      "d_weight": 0.5, "top_fraction": 0.5, "estimators": ("tbptt", "es", "pes"),
  })
  # Phase 3. The best `members` rules of phase 2 train themselves in blocks of
  # `block_steps`; the phase stops when the probe residual of every rule stays
  # under `tolerance` for `patience` blocks, or after `steps` meta-steps. A rule
  # whose validation score falls more than `revert_margin` behind its best
  # returns to its best meta-parameters. Each rule reads its meta-parameters in
  # units of `coordinate_scale`, centred on where phase 3 starts, so that its
  # own step size, tuned for network weights, moves them by that fraction.
  config.self_reference = ml_collections.ConfigDict({
      "members": 2, "steps": 300, "block_steps": 20, "tolerance": 0.01, "patience": 2,
      "num_tasks": 8, "revert_margin": 0.05, "coordinate_scale": 0.1,
  })
  config.eval = ml_collections.ConfigDict({
      "digits_steps": 300, "char_steps": 600, "eval_every": 10, "seeds": (0, 1, 2),
      "adam_learning_rates": (3e-4, 1e-3, 3e-3, 1e-2, 3e-2),
      "sgd_learning_rates": (1e-2, 3e-2, 1e-1, 3e-1, 1.0),
      "sgd_momentum": 0.9, "char": True, "enabled": True, "digits_tasks": 2,
      # G* against Adam on other components: a deep ensemble and the calibration GAN.
      "components": True, "component_steps": 300, "calibration_steps": 300,
      "component_seeds": (0, 1, 2),
  })

  if preset == "smoke":
    config.checkpoint_every = 5
    config.log_every_s = 2.0
    config.imitation.update(steps=10, num_tasks=2, unroll_length=5, horizon=20, eval_steps=20)
    config.meta.update(num_tasks=2, unroll_length=5, horizon=20, validation_tasks=2)
    # One estimator keeps the smoke run to one compiled segment; the tests of
    # autogan_jax.meta cover the other two.
    config.population.update(size=3, generations=2, segment_steps=3, d_steps=5,
                             estimators=("tbptt",))
    config.self_reference.update(steps=4, block_steps=2, num_tasks=2)
    config.eval.update(digits_steps=20, char_steps=20, eval_every=10, seeds=(0, 1, 2),
                       digits_tasks=1, component_steps=10, calibration_steps=10,
                       component_seeds=(0,),
                       adam_learning_rates=(1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
                       sgd_learning_rates=(1e-2, 3e-2, 1e-1, 3e-1, 1.0))
  elif preset == "large":
    config.checkpoint_every = 200
    config.rule.hidden_size = 32
    config.imitation.update(steps=2000, num_tasks=64, unroll_length=50, horizon=2000,
                            eval_steps=2000)
    config.meta.update(num_tasks=64, unroll_length=50, horizon=2000, validation_tasks=16)
    config.population.update(size=32, generations=20, segment_steps=500)
    config.self_reference.update(members=4, steps=5000, block_steps=250, num_tasks=64)
    config.eval.update(digits_steps=2000, char_steps=5000, eval_every=50,
                       seeds=(0, 1, 2, 3, 4))
  elif preset != "default":
    raise v.ConfigError(f"Unknown preset {preset!r}; expected one of 'default', 'smoke', 'large'.")
  return config


SCHEMA = {
    "seed": v.IntRange(0),
    "family": v.OneOf(("digits", "stdlib_chars")),
    "checkpoint_every": v.IntRange(1),
    "log_every_s": v.FloatRange(0.0),
    "rule.hidden_size": v.IntRange(1, 256),
    "rule.init_scale": v.FloatRange(0.0),
    "rule.b1": v.FloatRange(0.0, 1.0, high_inclusive=False),
    "rule.b2": v.FloatRange(0.0, 1.0, high_inclusive=False),
    "imitation.steps": v.IntRange(0),
    "imitation.num_tasks": v.IntRange(1),
    "imitation.unroll_length": v.IntRange(1),
    "imitation.horizon": v.IntRange(1),
    "imitation.adam_learning_rate": v.FloatRange(0.0, low_inclusive=False),
    "imitation.learning_rate": v.FloatRange(0.0, low_inclusive=False),
    "imitation.eval_steps": v.IntRange(1),
    "meta.num_tasks": v.IntRange(1),
    "meta.unroll_length": v.IntRange(1),
    "meta.horizon": v.IntRange(1),
    "meta.learning_rate": v.FloatRange(0.0, low_inclusive=False),
    "meta.clip_norm": v.FloatRange(0.0, low_inclusive=False),
    "meta.loss_floor": v.FloatRange(0.0, low_inclusive=False),
    "meta.valid_weight": v.FloatRange(0.0, 1.0),
    "meta.validation_tasks": v.IntRange(1),
    "population.size": v.IntRange(2),
    "population.generations": v.IntRange(0),
    "population.segment_steps": v.IntRange(1),
    "population.exploit_fraction": v.FloatRange(0.0, 1.0),
    "population.perturb_scale": v.FloatRange(0.0),
    "population.diversity_floor": v.FloatRange(0.0),
    "population.diversity_boost": v.FloatRange(1.0),
    "population.es_sigma": v.FloatRange(0.0, low_inclusive=False),
    "population.g_learning_rate": v.FloatRange(0.0),
    "population.d_steps": v.IntRange(0),
    "population.d_learning_rate": v.FloatRange(0.0),
    "population.d_weight": v.FloatRange(0.0),
    "population.top_fraction": v.FloatRange(0.0, 1.0, low_inclusive=False),
    "population.estimators": v.SequenceOf(v.OneOf(("tbptt", "es", "pes")), min_length=1),
    "self_reference.members": v.IntRange(1),
    "self_reference.steps": v.IntRange(0),
    "self_reference.block_steps": v.IntRange(1),
    "self_reference.tolerance": v.FloatRange(0.0),
    "self_reference.patience": v.IntRange(1),
    "self_reference.num_tasks": v.IntRange(1),
    "self_reference.revert_margin": v.FloatRange(0.0),
    "self_reference.coordinate_scale": v.FloatRange(0.0, low_inclusive=False),
    "eval.digits_steps": v.IntRange(1),
    "eval.char_steps": v.IntRange(1),
    "eval.eval_every": v.IntRange(1),
    "eval.seeds": v.SequenceOf(v.IntRange(0), min_length=3, distinct=True),
    "eval.adam_learning_rates": v.SequenceOf(v.FloatRange(0.0, low_inclusive=False),
                                             min_length=5),
    "eval.sgd_learning_rates": v.SequenceOf(v.FloatRange(0.0, low_inclusive=False),
                                            min_length=1),
    "eval.sgd_momentum": v.FloatRange(0.0, 1.0, high_inclusive=False),
    "eval.char": v.OneOf((True, False)),
    "eval.enabled": v.OneOf((True, False)),
    "eval.digits_tasks": v.IntRange(1, 2),
    "eval.components": v.OneOf((True, False)),
    "eval.component_steps": v.IntRange(1),
    "eval.calibration_steps": v.IntRange(1),
    "eval.component_seeds": v.SequenceOf(v.IntRange(0), min_length=1, distinct=True),
}


def validate(config: ml_collections.ConfigDict) -> None:
  """Raise `ConfigError` naming every invalid field; also checks fields against each other."""
  v.validate(config, SCHEMA)
  if config.self_reference.members > config.population.size:
    raise v.ConfigError(
        f"Invalid config value self_reference.members={config.self_reference.members}: "
        f"expected at most population.size={config.population.size}.")
  if config.self_reference.steps % config.self_reference.block_steps:
    raise v.ConfigError(
        f"Invalid config value self_reference.steps={config.self_reference.steps}: expected a "
        f"multiple of self_reference.block_steps={config.self_reference.block_steps}.")
  for field in ("digits_steps", "char_steps"):
    steps = config.eval[field]
    if steps % config.eval.eval_every:
      raise v.ConfigError(
          f"Invalid config value eval.{field}={steps}: expected a multiple of "
          f"eval.eval_every={config.eval.eval_every}.")
