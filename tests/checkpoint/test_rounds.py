"""Resumable search rounds: a loop stopped and resumed ends as an uninterrupted one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from autogan_jax import checkpoint


def _round(carry, key):
  """A noisy walk: each round adds a draw to the state and counts rounds in a second entry."""
  state = carry["state"] + jax.random.normal(key, carry["state"].shape)
  count = carry["count"] + 1
  return {"state": state, "count": count}, {"mean": jnp.mean(state), "count": count}


def _start():
  return {"state": jnp.zeros(3), "count": jnp.int32(0)}


def test_uninterrupted_loop_history_and_carry():
  seen = []
  carry, history = checkpoint.run_rounds(_round, _start(), jax.random.key(0), rounds=4,
                                         fields=("mean", "count"),
                                         on_round=lambda n, record: seen.append((n, record)))
  assert int(carry["count"]) == 4
  assert [r["count"] for r in history] == [1.0, 2.0, 3.0, 4.0]
  assert [n for n, _ in seen] == [1, 2, 3, 4]
  expected = sum(jax.random.normal(jax.random.fold_in(jax.random.key(0), i), (3,))
                 for i in range(4))
  np.testing.assert_allclose(carry["state"], expected, rtol=1e-6)
  assert history[-1]["mean"] == pytest.approx(float(jnp.mean(expected)), rel=1e-6)


@pytest.mark.parametrize("stop_after", [1, 3])
def test_resume_after_a_stop_matches_uninterrupted(tmp_path, stop_after):
  key = jax.random.key(7)
  whole, whole_history = checkpoint.run_rounds(_round, _start(), key, rounds=5,
                                               fields=("mean", "count"))

  calls = []

  def stopping_round(carry, round_key):
    if len(calls) == stop_after:
      raise KeyboardInterrupt
    calls.append(1)
    return _round(carry, round_key)

  with pytest.raises(KeyboardInterrupt):
    checkpoint.run_rounds(stopping_round, _start(), key, rounds=5, fields=("mean", "count"),
                          checkpoint_dir=tmp_path)
  resumed_rounds = []
  carry, history = checkpoint.run_rounds(
      _round, _start(), key, rounds=5, fields=("mean", "count"), checkpoint_dir=tmp_path,
      on_round=lambda n, record: resumed_rounds.append(n))
  assert resumed_rounds == list(range(stop_after + 1, 6))
  np.testing.assert_array_equal(carry["state"], whole["state"])
  assert int(carry["count"]) == 5
  assert history == whole_history

  # A finished loop reruns nothing.
  again, again_history = checkpoint.run_rounds(
      lambda c, k: pytest.fail("a finished loop ran a round"), _start(), key, rounds=5,
      fields=("mean", "count"), checkpoint_dir=tmp_path)
  assert again_history == whole_history
  np.testing.assert_array_equal(again["state"], whole["state"])
