"""Every alignment mechanism: finite loss and gradients, shapes, one trace, and CIF weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from autogan_jax.alignment import mechanisms
from autogan_jax.alignment import search
from autogan_jax.alignment import training
from autogan_jax.core import ConfigError
from autogan_jax.core import TraceCounter
from autogan_jax.tasks import digit_strings

CONFIGS = search.all_configs(mechanisms.AlignmentConfig(hidden=8, kernel=3))


@pytest.fixture(scope="module")
def strings():
  return digit_strings.load_digit_strings(num_train=64, num_eval=16, seed=2)


def test_space_has_nine_distinct_configs():
  names = [c.describe() for c in CONFIGS]
  assert len(names) == len(set(names)) == 9
  assert {c.mechanism for c in CONFIGS} == set(mechanisms.MECHANISMS)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.describe())
def test_mechanism_loss_grads_and_decode(config, strings):
  params = mechanisms.init(jax.random.key(0), config)
  batch = strings.train.as_batch(np.arange(4))
  counter = TraceCounter()
  value_and_grad = jax.jit(counter.wrap(
      jax.value_and_grad(lambda p, b: mechanisms.loss(p, config, b), has_aux=True), "loss"))
  (value, metrics), grads = value_and_grad(params, batch)
  value_and_grad(params, strings.train.as_batch(np.arange(4, 8)))
  assert counter["loss"] == 1
  assert np.isfinite(float(value))
  assert float(value) > 0.0
  assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
  assert 0.0 <= float(metrics["feasible"]) <= 1.0
  digits, lengths, weights = mechanisms.predict(params, config, batch)
  assert digits.shape == (4, digit_strings.MAX_DIGITS)
  assert weights.shape == (4, digit_strings.MAX_DIGITS, digit_strings.MAX_FRAMES)
  assert ((np.asarray(lengths) >= 0) & (np.asarray(lengths) <= digit_strings.MAX_DIGITS)).all()
  assert ((np.asarray(digits) >= 0) & (np.asarray(digits) <= 9)).all()


def test_cif_weights_hand_case():
  alpha = jnp.asarray([[0.5, 0.5, 0.7, 0.6, 0.7]])
  weights = np.asarray(mechanisms.cif_weights(alpha, num_segments=3))
  expected = np.asarray([[0.5, 0.5, 0.0, 0.0, 0.0],
                         [0.0, 0.0, 0.7, 0.3, 0.0],
                         [0.0, 0.0, 0.0, 0.3, 0.7]])
  np.testing.assert_allclose(weights[0], expected, atol=1e-6)


def test_attention_weights_sum_to_one(strings):
  for mechanism in ("attention", "hierarchical"):
    config = mechanisms.AlignmentConfig(mechanism=mechanism, chunk_size=4, hidden=8)
    params = mechanisms.init(jax.random.key(1), config)
    batch = strings.valid.as_batch(np.arange(3))
    _, _, weights = mechanisms.predict(params, config, batch)
    np.testing.assert_allclose(np.asarray(weights).sum(-1), 1.0, atol=1e-5)
    padded = np.asarray(batch["frame_paddings"]) > 0.5
    assert np.all(np.asarray(weights)[np.broadcast_to(padded[:, None], weights.shape)] == 0.0)


def test_coarse_chunks_make_long_targets_infeasible():
  # Eight distinct digits fit into 96 frames, but chunks of 8 frames leave 6 chunks.
  frames = np.zeros((1, digit_strings.MAX_FRAMES, digit_strings.FRAME_HEIGHT), np.float32)
  batch = digit_strings.batch_arrays(frames, [48], np.arange(8)[None], [8])
  config = mechanisms.AlignmentConfig(mechanism="chunked", chunk_size=8, hidden=8)
  params = mechanisms.init(jax.random.key(0), config)
  value, metrics = mechanisms.loss(params, config, batch)
  assert float(metrics["feasible"]) == 0.0
  assert float(value) == 0.0


def test_training_lowers_error_rate(strings):
  config = mechanisms.AlignmentConfig(mechanism="chunked", chunk_size=4, hidden=32)
  data = digit_strings.load_digit_strings(num_train=512, num_eval=64, seed=0)
  untrained = mechanisms.init(jax.random.split(jax.random.key(0))[0], config)
  before = training.character_error_rate(untrained, config, data.valid)
  params, summary = training.train(config, data.train, jax.random.key(0), num_steps=300,
                                   batch_size=32, log_every=100)
  after = training.character_error_rate(params, config, data.valid)
  assert summary["finite"]
  assert summary["losses"][-1] < 0.5 * summary["losses"][0]
  assert after < before


def test_invalid_config_rejected():
  with pytest.raises(ConfigError, match="mechanism"):
    mechanisms.AlignmentConfig(mechanism="rnn-t")
  with pytest.raises(ConfigError, match="chunk_size"):
    mechanisms.AlignmentConfig(chunk_size=3)
