"""The multi-host flags: a no-op when unset, a clear error when incomplete."""

import jax
import pytest

from experiments import distributed


def test_unset_flags_do_nothing(monkeypatch):
  calls = []
  monkeypatch.setattr(jax.distributed, "initialize", lambda **kwargs: calls.append(kwargs))
  assert distributed.initialize(None, None, None) is False
  assert calls == []


def test_complete_flags_initialize(monkeypatch):
  calls = []
  monkeypatch.setattr(jax.distributed, "initialize", lambda **kwargs: calls.append(kwargs))
  assert distributed.initialize("localhost:1234", 4, 3) is True
  assert calls == [{"coordinator_address": "localhost:1234", "num_processes": 4,
                    "process_id": 3}]


def test_partial_flags_rejected(monkeypatch):
  monkeypatch.setattr(jax.distributed, "initialize", lambda **kwargs: pytest.fail("called"))
  with pytest.raises(ValueError, match="missing --process_id"):
    distributed.initialize("localhost:1234", 2, None)
  with pytest.raises(ValueError, match="process_id=2"):
    distributed.initialize("localhost:1234", 2, 2)


def test_flags_parse_from_command_line(monkeypatch):
  calls = []
  monkeypatch.setattr(jax.distributed, "initialize", lambda **kwargs: calls.append(kwargs))
  flag_values = distributed.flags.FLAGS
  flag_values(["program", "--coordinator_address=localhost:9999", "--num_processes=2",
               "--process_id=1"])
  try:
    assert distributed.initialize_from_flags() is True
    assert calls[0]["process_id"] == 1
    flag_values.unparse_flags()
    flag_values(["program"])
    assert distributed.initialize_from_flags() is False
  finally:
    flag_values.unparse_flags()
  assert len(calls) == 1
