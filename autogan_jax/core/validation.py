"""Config validation that rejects a bad value before any compute.

A schema maps dotted field names of an `ml_collections.ConfigDict` (or any
nested mapping) to rules. `validate` checks every field and raises one
`ConfigError` that lists each invalid field with its value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping
from typing import Any


class ConfigError(ValueError):
  """An invalid configuration value, raised before any compute starts."""


class Rule:
  """A check of one config value. `problem` returns None when the value is valid."""

  def problem(self, value: Any) -> str | None:
    raise NotImplementedError

  def allowed(self) -> str:
    raise NotImplementedError


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
  return (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value))


@dataclasses.dataclass(frozen=True)
class IntRange(Rule):
  """An integer in the closed range [low, high]; `high=None` leaves it unbounded."""

  low: int
  high: int | None = None

  def allowed(self) -> str:
    if self.high is None:
      return f"an integer >= {self.low}"
    return f"an integer in [{self.low}, {self.high}]"

  def problem(self, value: Any) -> str | None:
    if not _is_int(value):
      return f"expected {self.allowed()}, got {type(value).__name__}"
    if value < self.low or (self.high is not None and value > self.high):
      return f"expected {self.allowed()}"
    return None


@dataclasses.dataclass(frozen=True)
class FloatRange(Rule):
  """A finite number between `low` and `high`; each bound is inclusive unless stated."""

  low: float
  high: float | None = None
  low_inclusive: bool = True
  high_inclusive: bool = True

  def allowed(self) -> str:
    left = "[" if self.low_inclusive else "("
    if self.high is None:
      return f"a finite number in {left}{self.low}, inf)"
    right = "]" if self.high_inclusive else ")"
    return f"a finite number in {left}{self.low}, {self.high}{right}"

  def problem(self, value: Any) -> str | None:
    if not _is_number(value):
      return f"expected {self.allowed()}"
    too_low = value < self.low if self.low_inclusive else value <= self.low
    too_high = False
    if self.high is not None:
      too_high = value > self.high if self.high_inclusive else value >= self.high
    if too_low or too_high:
      return f"expected {self.allowed()}"
    return None


@dataclasses.dataclass(frozen=True)
class OneOf(Rule):
  """One of a fixed set of choices."""

  choices: tuple[Any, ...]

  def allowed(self) -> str:
    return "one of " + ", ".join(repr(c) for c in self.choices)

  def problem(self, value: Any) -> str | None:
    if value not in self.choices:
      return f"expected {self.allowed()}"
    return None


@dataclasses.dataclass(frozen=True)
class SequenceOf(Rule):
  """A non-empty list or tuple whose items each satisfy `item` (and differ, if `distinct`)."""

  item: Rule
  min_length: int = 1
  max_length: int | None = None
  distinct: bool = False

  def allowed(self) -> str:
    bound = f"at least {self.min_length}"
    if self.max_length is not None:
      bound += f" and at most {self.max_length}"
    kind = "distinct items" if self.distinct else "items"
    return f"a list of {bound} {kind}, each {self.item.allowed()}"

  def problem(self, value: Any) -> str | None:
    if not isinstance(value, (list, tuple)):
      return f"expected {self.allowed()}, got {type(value).__name__}"
    if len(value) < self.min_length or (
        self.max_length is not None and len(value) > self.max_length):
      return f"expected {self.allowed()}, got {len(value)} items"
    for i, item in enumerate(value):
      message = self.item.problem(item)
      if message is not None:
        return f"item {i} ({item!r}): {message}"
    if self.distinct and len(set(value)) < len(value):
      repeated = sorted({v for v in value if list(value).count(v) > 1})
      return f"expected {self.allowed()}; repeated: {repeated}"
    return None


def _lookup(config: Mapping[str, Any], dotted: str) -> Any:
  node: Any = config
  for part in dotted.split("."):
    if isinstance(node, Mapping) and part in node:
      node = node[part]
    elif hasattr(node, part) and not isinstance(node, Mapping):
      node = getattr(node, part)
    else:
      try:
        node = node[part]
      except (KeyError, TypeError, AttributeError):
        raise ConfigError(f"Config field {dotted!r} is missing.") from None
  return node


def validate(config: Mapping[str, Any], schema: Mapping[str, Rule]) -> None:
  """Check every field named in `schema`; raise `ConfigError` listing each invalid one.

  Args:
    config: a `ConfigDict` or nested mapping.
    schema: dotted field name (for example "meta.unroll_length") to its rule.

  Raises:
    ConfigError: when a field is missing or invalid. The message names the
      field, its value and what is allowed, one line per field.
  """
  problems = []
  for field, rule in schema.items():
    try:
      value = _lookup(config, field)
    except ConfigError as error:
      problems.append(str(error))
      continue
    message = rule.problem(value)
    if message is not None:
      problems.append(f"Invalid config value {field}={value!r}: {message}.")
  if problems:
    raise ConfigError("\n".join(problems))


def check(field: str, value: Any, rule: Rule) -> None:
  """Check one value against one rule; raise `ConfigError` naming `field` when invalid."""
  message = rule.problem(value)
  if message is not None:
    raise ConfigError(f"Invalid value {field}={value!r}: {message}.")


def check_choice(field: str, value: Any, choices: Collection[Any]) -> None:
  """Raise `ConfigError` unless `value` is one of `choices`."""
  check(field, value, OneOf(tuple(choices)))
