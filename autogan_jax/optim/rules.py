"""Saved learned rules, and G*: the rule the bootstrap ends with.

A rule is saved as JSON: its meta-parameters as nested lists, and free-form
information about where it came from. The package ships the G* of the main
job's default run (`g_star.json` next to this file); `g_star()` turns it into
an optax transformation, so any component that trains something can take it
as its update rule.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
import numpy as np
import optax

from autogan_jax.optim import learned

PACKAGED_G_STAR = pathlib.Path(__file__).with_name("g_star.json")


def save_rule(path: str | pathlib.Path, meta_params: dict[str, Any],
              info: dict[str, Any] | None = None) -> None:
  """Write `meta_params` and `info` to `path` as JSON."""
  payload = {"meta_params": {k: np.asarray(v).tolist() for k, v in meta_params.items()},
             "info": info or {}}
  pathlib.Path(path).write_text(json.dumps(payload, indent=1) + "\n")


def load_rule(path: str | pathlib.Path) -> tuple[dict[str, Any], dict[str, Any]]:
  """Read a rule written by `save_rule`; return its meta-parameters and info.

  Raises:
    ValueError: if the file lacks a meta-parameter of the learned rule.
  """
  payload = json.loads(pathlib.Path(path).read_text())
  # NumPy arrays stay constants when a rule is loaded while JAX traces a function.
  params = {k: np.asarray(v, np.float32) for k, v in payload.get("meta_params", {}).items()}
  missing = {"log_lr", "basis", "w1", "b1", "w2", "b2"} - set(params)
  if missing:
    raise ValueError(f"Invalid rule file {path}: missing meta-parameters {sorted(missing)}.")
  return params, payload.get("info", {})


def g_star(learning_rate: float | None = None, path: str | pathlib.Path | None = None,
           horizon: int = 1000) -> optax.GradientTransformationExtraArgs:
  """Return G* as an optax transformation.

  Args:
    learning_rate: when given, replaces G*'s own step size exp(log_lr), for
      components whose parameters live on another scale than the digits
      networks G* was meta-trained on; the shape of its updates is kept.
    path: a rule file from `save_rule`; the packaged G* when None.
    horizon: the number of steps the caller will train for (a feature of the rule).
  """
  params, _ = load_rule(PACKAGED_G_STAR if path is None else path)
  if learning_rate is not None:
    if not learning_rate > 0:
      raise ValueError(f"Invalid learning_rate={learning_rate}: expected a positive number.")
    params = dict(params, log_lr=np.asarray(np.log(learning_rate), np.float32))
  # Components build their default rule inside jitted functions too; eager
  # evaluation keeps tracers out of the returned (and cached) rule.
  with jax.ensure_compile_time_eval():
    return learned.learned_optimizer(params, learned.default_hyperparams(horizon=horizon))
