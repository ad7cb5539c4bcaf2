"""Fixed sampling rules on hand-computed distributions, their validation and a shared battery."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from autogan_jax import sampling
from autogan_jax.core import ConfigError
from autogan_jax.core import TraceCounter
from autogan_jax.sampling import rules

PROBS = np.array([0.5, 0.3, 0.15, 0.05])


def kept(name, parameter, probs=PROBS):
  out = np.asarray(rules.apply_rule(name, parameter, jnp.log(jnp.asarray(probs))[None]))[0]
  return set(np.flatnonzero(np.isfinite(out)).tolist())


@pytest.mark.parametrize("name, parameter, expected", [
    ("top_k", 1, {0}),
    ("top_k", 2, {0, 1}),
    ("top_k", 4, {0, 1, 2, 3}),
    ("top_p", 0.5, {0}),  # The top token alone reaches 0.5.
    ("top_p", 0.7, {0, 1}),
    ("top_p", 0.85, {0, 1, 2}),
    ("top_p", 1.0, {0, 1, 2, 3}),
    ("min_p", 0.4, {0, 1}),  # Threshold 0.2.
    ("min_p", 0.3, {0, 1, 2}),  # Threshold 0.15, kept because the test is >=.
    ("epsilon", 0.1, {0, 1, 2}),
    ("epsilon", 0.6, {0}),  # Nothing passes, so the top token alone stays.
])
def test_truncation_hand_cases(name, parameter, expected):
  assert kept(name, parameter) == expected


def test_eta_threshold_uses_entropy():
  entropy = -np.sum(PROBS * np.log(PROBS))
  eta = 0.2
  threshold = min(eta, np.sqrt(eta) * np.exp(-entropy))
  assert kept("eta", eta) == set(np.flatnonzero(PROBS > threshold).tolist())


def test_typical_keeps_lowest_deviation_first():
  entropy = -np.sum(PROBS * np.log(PROBS))
  order = np.argsort(np.abs(-np.log(PROBS) - entropy), kind="stable")
  mass = 0.6
  cumulative_before = np.cumsum(PROBS[order]) - PROBS[order]
  expected = set(order[cumulative_before < mass].tolist()) | {0}
  assert kept("typical", mass) == expected


def test_temperature_powers_probabilities():
  out = rules.apply_rule("temperature", 0.5, jnp.log(jnp.asarray(PROBS))[None])
  expected = PROBS**2 / np.sum(PROBS**2)
  np.testing.assert_allclose(np.asarray(jax.nn.softmax(out))[0], expected, rtol=1e-5)


@pytest.mark.parametrize("name, parameter", [
    ("temperature", 0.0), ("top_k", 0), ("top_k", 5), ("top_p", 0.0), ("top_p", 1.5),
    ("min_p", -0.1), ("typical", 0.0), ("epsilon", 1.0), ("eta", 1.0), ("top_k", 2.5),
])
def test_invalid_parameters_are_rejected(name, parameter):
  with pytest.raises(ConfigError, match=name):
    rules.validate_rule(name, parameter, vocab_size=4)


def test_unknown_rule_is_rejected():
  with pytest.raises(ConfigError, match="nucleus"):
    rules.validate_rule("nucleus", 0.9)


@pytest.mark.parametrize("name", rules.RULES)
def test_every_rule_battery(name):
  """Jitted, finite where kept, argmax kept, a distribution, one compile for the sweep."""
  logits = jax.random.normal(jax.random.key(0), (16, 12)) * 2.0
  counter = TraceCounter()
  fn = jax.jit(counter.wrap(lambda p, x: rules.apply_rule(name, p, x), name))
  for parameter in rules.default_sweep(name, 12):
    out = np.asarray(fn(jnp.asarray(parameter, jnp.float32), logits))
    probs = np.asarray(jax.nn.softmax(jnp.asarray(out)))
    assert not np.any(np.isnan(out))
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    top = np.argmax(np.asarray(logits), -1)
    assert np.all(np.isfinite(out[np.arange(16), top]))
  assert counter[name] == 1


def test_rule_by_index_matches_named_rule():
  logits = jax.random.normal(jax.random.key(1), (4, 9))
  for index, name in enumerate(rules.RULES):
    parameter = rules.default_sweep(name, 9)[3]
    np.testing.assert_array_equal(
        np.asarray(rules.apply_rule_by_index(jnp.int32(index), parameter, logits)),
        np.asarray(rules.apply_rule(name, parameter, logits)))


def test_greedy_generation_is_deterministic():
  table = jax.random.normal(jax.random.key(2), (6, 6))

  def next_logits(windows):
    return table[windows[:, -1]]

  greedy = sampling.memoryless(lambda logits: rules.apply_rule("top_k", 1, logits))
  windows = jnp.array([[0], [3]], jnp.int32)
  out = sampling.generate(next_logits, greedy, jax.random.key(0), windows, 5)
  expected = []
  for start in (0, 3):
    token, row = start, []
    for _ in range(5):
      token = int(np.argmax(np.asarray(table[token])))
      row.append(token)
    expected.append(row)
  np.testing.assert_array_equal(np.asarray(out["tokens"]), expected)
  np.testing.assert_allclose(np.asarray(out["log_prob"]), 0.0, atol=1e-6)
  np.testing.assert_allclose(np.asarray(out["entropy"]), 0.0, atol=1e-6)
