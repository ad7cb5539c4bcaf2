"""Architecture search: G_model/D_model against random search and regularized evolution.

  python -m experiments.architecture_search --workdir=/tmp/arch \\
      --config=experiments/configs/architecture_search.py:default

Writes metrics.jsonl, report.json, report.md, best_found_vs_budget.png, one
JSON per finished search (a rerun resumes from them) and the random-search zoo
of the first seed (orbax arrays plus one JSON spec per model).
"""

from absl import flags
from absl import logging

from autogan_jax import optim
from autogan_jax.architecture import experiment
from experiments import common

_CONFIG, _WORKDIR = common.define_run_flags(
    "experiments/configs/architecture_search.py:default", None,
    "Experiment config file and preset.", "Folder for checkpoints, metrics and reports.")


def main(argv):
  del argv
  config = _CONFIG.value
  experiment.validate_config(config)
  workdir = common.start_run(_WORKDIR.value, config)
  metrics = common.MetricsLog(workdir)
  with optim.default_rule_scope(config.update_rule):
    report, markdown = experiment.run(config, workdir, metrics)
  common.write_report(workdir, report, markdown)
  logging.info("Wrote %s", workdir / "report.md")


if __name__ == "__main__":
  flags.mark_flag_as_required("workdir")
  common.run_main(main)
