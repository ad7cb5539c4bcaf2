"""A loop of search rounds that checkpoints after each round and resumes from the newest one."""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from absl import logging

from autogan_jax.checkpoint.manager import RunCheckpointer

PyTree = Any
RoundFn = Callable[[dict[str, PyTree], jax.Array], tuple[dict[str, PyTree], Mapping[str, Any]]]


def run_rounds(round_fn: RoundFn, carry: dict[str, PyTree], key: jax.Array, *, rounds: int,
               fields: Sequence[str], checkpoint_dir: str | pathlib.Path | None = None,
               on_round: Callable[[int, dict[str, float]], None] | None = None,
               ) -> tuple[dict[str, PyTree], list[dict[str, float]]]:
  """Run `carry, metrics = round_fn(carry, fold_in(key, r))` for rounds r = 0 .. rounds - 1.

  Args:
    round_fn: one round; its metrics must contain every name in `fields`.
    carry: the state the rounds thread through, a dict of pytrees whose
      shapes do not change from round to round.
    key: round r draws from `jax.random.fold_in(key, r)`, so a resumed loop
      draws the same keys as an uninterrupted one.
    rounds: the number of rounds in all, counting any already checkpointed.
    fields: the metrics kept per round, as floats, in the returned history.
    checkpoint_dir: when given, the carry and the history so far are saved
      after each round under this folder (as `{**carry, "history": table}`),
      and a call that finds a save there starts after its round.
    on_round: called with the number of finished rounds and that round's
      record, after the round's checkpoint.

  Returns:
    The final carry and one record per round, the restored rounds included.
  """
  fields = tuple(fields)
  checkpointer = RunCheckpointer(checkpoint_dir) if checkpoint_dir else None
  table = np.zeros((rounds, len(fields)), np.float32)
  start = 0
  try:
    if checkpointer is not None and checkpointer.latest_step() is not None:
      start = checkpointer.latest_step()
      restored = checkpointer.restore({**carry, "history": table})
      carry = {name: restored[name] for name in carry}
      table = np.array(restored["history"], np.float32)
      logging.info("Resumed from %s after round %d of %d.", checkpointer.directory, start, rounds)
    for index in range(start, rounds):
      carry, metrics = round_fn(carry, jax.random.fold_in(key, index))
      table[index] = [float(metrics[name]) for name in fields]
      if checkpointer is not None:
        checkpointer.save(index + 1, {**carry, "history": table})
      if on_round is not None:
        on_round(index + 1, dict(zip(fields, map(float, table[index]))))
  finally:
    if checkpointer is not None:
      checkpointer.close()
  history = [dict(zip(fields, map(float, row))) for row in table]
  return carry, history
