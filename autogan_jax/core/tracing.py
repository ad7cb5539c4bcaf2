"""A trace counter that proves a jitted function is compiled once."""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable
from typing import Any


class TraceCounter:
  """Counts how many times wrapped functions are traced by JAX.

  The count of a function wrapped with `wrap` grows by one each time JAX traces
  it, which under `jax.jit` happens once per compilation. Python side effects
  run only during tracing, so cached calls never increment the counter.

  Example:
    counter = TraceCounter()
    step = jax.jit(counter.wrap(step_fn, "step"))
    ...
    assert counter["step"] == 1
  """

  def __init__(self) -> None:
    self._counts: collections.Counter[str] = collections.Counter()

  def wrap(self, fn: Callable[..., Any], name: str | None = None) -> Callable[..., Any]:
    """Return `fn` with a side effect that counts each trace under `name`."""
    label = name or getattr(fn, "__name__", repr(fn))

    @functools.wraps(fn)
    def counted(*args, **kwargs):
      self._counts[label] += 1
      return fn(*args, **kwargs)

    return counted

  def __getitem__(self, name: str) -> int:
    return self._counts[name]

  def as_dict(self) -> dict[str, int]:
    return dict(self._counts)

  def reset(self) -> None:
    self._counts.clear()
