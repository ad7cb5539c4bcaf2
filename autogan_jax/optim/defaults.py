"""The framework's default update rule: G*, unless the caller scopes Adam.

Every component that trains something and is not handed an update rule takes
`default_rule(learning_rate)`: G*, the rule the main job's bootstrap ends with
and the package ships (`rules.g_star`), at the step size the component would
otherwise give Adam. A program that needs the human-designed baseline
throughout, for example an experiment whose reported figures were measured
with Adam, runs under `with default_rule_scope("adam"): ...`. The scope is a
context variable, so it holds for the current thread or task only.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Iterator

import jax
import optax

from autogan_jax.core import validation
from autogan_jax.optim import rules

DEFAULT_RULES = ("g_star", "adam")

_SCOPED_RULE = contextvars.ContextVar("autogan_jax_default_rule", default="g_star")


@functools.lru_cache(maxsize=64)
def _build(name: str, learning_rate: float, horizon: int) -> optax.GradientTransformation:
  # One object per setting, so jitted functions that take the rule as a static
  # argument compile once per setting and not once per call.
  if name == "adam":
    return optax.adam(learning_rate)
  return rules.g_star(learning_rate=learning_rate, horizon=horizon)


def default_rule(learning_rate: float, horizon: int = 1000) -> optax.GradientTransformation:
  """Return the default update rule at `learning_rate`: G*, or Adam inside `default_rule_scope("adam")`.

  Args:
    learning_rate: the step size; it replaces G*'s own step size, which was
      meta-trained for the digits networks of the bootstrap.
    horizon: the number of steps the caller trains for, a feature that G*
      reads; Adam ignores it.

  Returns:
    An optax transformation whose `update` takes `(grads, state, params)`.
    G*'s update needs `params`; Adam's accepts them.
  """
  if isinstance(learning_rate, jax.core.Tracer):
    raise TypeError(
        "Invalid learning_rate: default_rule expects a Python number, not a traced value. "
        "Build the rule outside the jitted function, or wrap a rule with "
        "optax.inject_hyperparams to pass the rate as data.")
  validation.check("learning_rate", learning_rate, validation.FloatRange(0.0, low_inclusive=False))
  validation.check("horizon", horizon, validation.IntRange(1))
  return _build(_SCOPED_RULE.get(), float(learning_rate), int(horizon))


def current_default() -> str:
  """Return the name of the rule that `default_rule` returns here: "g_star" or "adam"."""
  return _SCOPED_RULE.get()


@contextlib.contextmanager
def default_rule_scope(name: str) -> Iterator[None]:
  """Make `default_rule` return the rule `name` ("g_star" or "adam") inside the block."""
  validation.check_choice("default_rule", name, DEFAULT_RULES)
  token = _SCOPED_RULE.set(name)
  try:
    yield
  finally:
    _SCOPED_RULE.reset(token)
