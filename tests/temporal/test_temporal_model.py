"""The temporal model: what each structure reads, how far it predicts, and rollouts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from autogan_jax.core import ConfigError
from autogan_jax.tasks import pendulum
from autogan_jax.temporal import model
from autogan_jax.temporal import structure
from autogan_jax.temporal import training

SPEC = model.ModelSpec(kind="continuous", dim=3, hidden=8)


def make(**choices):
  return structure.from_indices(structure.indices_of(**choices))


def window(seed=0):
  return jax.random.normal(jax.random.key(seed), (structure.MAX_CONTEXT, 3))


@pytest.fixture(scope="module")
def params():
  return model.init(jax.random.key(0), SPEC)


def test_baseline_reads_only_newest_state(params):
  baseline = structure.from_indices(structure.next_step_baseline())
  w = window()
  changed = w.at[1:].set(w[1:] + 5.0)
  out, _ = model.apply(params, SPEC, baseline, w)
  out_changed, _ = model.apply(params, SPEC, baseline, changed)
  np.testing.assert_allclose(np.asarray(out), np.asarray(out_changed), atol=1e-6)
  out_newest, _ = model.apply(params, SPEC, baseline, w.at[0].add(1.0))
  assert not np.allclose(np.asarray(out), np.asarray(out_newest))


@pytest.mark.parametrize("attention", structure.ATTENTIONS)
def test_context_limits_what_is_read(params, attention):
  s = make(context=4, attention=attention, horizon="next", representation="raw", segment=1)
  w = window(1)
  out, _ = model.apply(params, SPEC, s, w)
  beyond, _ = model.apply(params, SPEC, s, w.at[4:].add(3.0))
  np.testing.assert_allclose(np.asarray(out), np.asarray(beyond), atol=1e-6)
  inside, _ = model.apply(params, SPEC, s, w.at[2].add(3.0))
  assert np.allclose(np.asarray(out), np.asarray(inside)) == (attention == "last")


def test_attention_weights_respect_context(params):
  for attention in structure.ATTENTIONS:
    s = make(context=8, attention=attention, horizon="next", representation="raw", segment=2)
    weights, _ = model.attention_weights(params, SPEC, s, window(2))
    weights = np.asarray(weights)
    assert weights.sum() == pytest.approx(1.0, abs=1e-5)
    assert (weights[8:] == 0).all()
  s = make(context=8, attention="uniform", horizon="next", representation="raw", segment=1)
  weights, _ = model.attention_weights(params, SPEC, s, window(2))
  np.testing.assert_allclose(np.asarray(weights)[:8], 1 / 8, atol=1e-6)


def test_delta_representation_reads_previous_state(params):
  s = make(context=1, attention="last", horizon="next", representation="delta", segment=1)
  w = window(3)
  out, _ = model.apply(params, SPEC, s, w)
  moved, _ = model.apply(params, SPEC, s, w.at[1].add(1.0))
  assert not np.allclose(np.asarray(out), np.asarray(moved))


def test_committed_steps():
  fixed = make(context=1, attention="last", horizon="chunk4", representation="raw", segment=1)
  variable = make(context=1, attention="last", horizon="variable", representation="raw",
                  segment=1)
  logits = jnp.asarray([1.0, 2.0, -1.0, 3.0, 1.0, 1.0, 1.0, 1.0])
  assert int(model.committed_steps(fixed, logits)) == 4
  assert int(model.committed_steps(variable, logits)) == 2
  assert int(model.committed_steps(variable, -jnp.ones(8))) == 1
  assert int(model.committed_steps(variable, jnp.ones(8))) == 8


@pytest.mark.parametrize("horizon, calls", [("next", 50), ("chunk4", 13), ("chunk8", 7)])
def test_rollout_uses_chunks(params, horizon, calls):
  s = make(context=2, attention="learned", horizon=horizon, representation="raw", segment=1)
  history = window(4)[::-1]
  states, count = model.rollout(params, SPEC, s, history, 50)
  assert states.shape == (50, 3)
  assert int(count) == calls
  first, _ = model.apply(params, SPEC, s, history[::-1])
  np.testing.assert_allclose(np.asarray(states[0]), np.asarray(first[0]), atol=1e-5)
  if horizon == "next":
    second, _ = model.apply(params, SPEC, s, jnp.concatenate([states[:1], history[::-1][:-1]]))
    np.testing.assert_allclose(np.asarray(states[1]), np.asarray(second[0]), atol=1e-5)
  else:
    np.testing.assert_allclose(np.asarray(states[1]), np.asarray(first[1]), atol=1e-5)


def test_step_errors_by_hand():
  outputs = jnp.zeros((structure.MAX_HORIZON, 2)).at[0].set(jnp.asarray([1.0, 3.0]))
  targets = jnp.zeros((structure.MAX_HORIZON, 2))
  spec = model.ModelSpec(kind="continuous", dim=2)
  errors = np.asarray(model.step_errors(spec, outputs, targets))
  assert errors[0] == pytest.approx(5.0)
  assert (errors[1:] == 0).all()
  token_spec = model.ModelSpec(kind="discrete", dim=4)
  logits = jnp.zeros((structure.MAX_HORIZON, 4))
  nll = np.asarray(model.step_errors(token_spec, logits, jnp.zeros(structure.MAX_HORIZON, int)))
  np.testing.assert_allclose(nll, np.log(4.0), rtol=1e-6)


def test_population_trains_in_one_compile():
  sequences = pendulum.load_pendulum(num_train=16, num_eval=2, length=40).train
  indices = np.stack([structure.next_step_baseline(),
                      structure.indices_of(context=8, attention="learned", horizon="chunk4",
                                           representation="delta", segment=2)])
  before = training._train_segment._cache_size()
  params, losses = training.train_population(SPEC, structure.from_indices(indices), sequences,
                                             jax.random.key(0), num_steps=90, log_every=30)
  assert training._train_segment._cache_size() == before + 1
  assert losses.shape == (3, 2)
  assert (losses[-1] < losses[0]).all()
  assert jax.tree.leaves(params)[0].shape[0] == 2


def test_missing_or_invalid_choice_rejected():
  with pytest.raises(ConfigError, match="Missing"):
    structure.indices_of(context=1)
  with pytest.raises(ConfigError, match="context"):
    structure.indices_of(context=3, attention="last", horizon="next", representation="raw",
                         segment=1)
