"""Vmapped ensembles, MIMO and G_ensemble's distribution pieces."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from autogan_jax import ensemble
from autogan_jax.calibration import metrics
from autogan_jax.core import ConfigError
from autogan_jax.ensemble import benchmark
from autogan_jax.ensemble import mimo


def small_spec():
  return ensemble.EnsembleSpec(num_members=3, widths=(8, 4), depth=1,
                               activations=("relu", "tanh"), lr_scales=(1.0, 0.5))


def test_members_differ_in_architecture_order_and_step_size():
  tasks, scales = ensemble.build_members(small_spec(), seed=0)
  np.testing.assert_array_equal(np.asarray(tasks.variant.width), [8, 4, 8])
  np.testing.assert_array_equal(np.asarray(tasks.variant.activation), [0, 1, 0])
  assert len(set(np.asarray(tasks.variant.seed).tolist())) == 3
  np.testing.assert_allclose(np.asarray(scales), [1.0, 0.5, 1.0])
  assert tasks.max_width == 8


def test_population_training_lowers_every_loss():
  tasks, scales = ensemble.build_members(small_spec(), seed=0)
  params, losses = ensemble.train_population(tasks, scales, jax.random.key(0), steps=40)
  assert losses.shape == (3, 40)
  assert np.all(np.asarray(losses[:, -5:].mean(1)) < np.asarray(losses[:, :5].mean(1)))
  # Member 0 and member 2 share an architecture but not their weights.
  assert not np.allclose(np.asarray(params["w0"][0]), np.asarray(params["w0"][2]))
  # Masked hidden units of the width-4 member stay exactly zero.
  assert float(jnp.max(jnp.abs(params["w0"][1][:, 4:]))) == 0.0


def test_member_probs_are_distributions():
  tasks, scales = ensemble.build_members(small_spec(), seed=0)
  params, _ = ensemble.train_population(tasks, scales, jax.random.key(0), steps=2)
  probs = ensemble.member_probs(tasks, params, jnp.asarray(tasks.data.x_test[:7]))
  assert probs.shape == (3, 7, 10)
  np.testing.assert_allclose(np.asarray(probs.sum(-1)), 1.0, atol=1e-5)


def test_spec_rejects_bad_activation():
  with pytest.raises(ConfigError, match="activations"):
    ensemble.EnsembleSpec(activations=("sigmoid",))


def test_dirichlet_log_prob_matches_scipy():
  alpha = np.array([2.0, 0.5, 3.0])
  probs = np.array([0.2, 0.3, 0.5])
  value = ensemble.dirichlet_log_prob(jnp.log(jnp.asarray(alpha)), jnp.asarray(probs))
  np.testing.assert_allclose(float(value), stats.dirichlet.logpdf(probs, alpha), rtol=1e-5)


def test_dirichlet_spread_matches_sampled_variance():
  log_alpha = jnp.log(jnp.array([[4.0, 2.0, 1.0]]))
  samples = jax.random.dirichlet(jax.random.key(0), jnp.exp(log_alpha[0]), (40_000,))
  sampled = float(jnp.sum(jnp.var(samples, axis=0)))
  np.testing.assert_allclose(float(ensemble.dirichlet_spread(log_alpha)[0]), sampled, rtol=0.03)


def test_augment_inputs_stay_in_pixel_range():
  x = jax.random.uniform(jax.random.key(0), (20, 64))
  batch = ensemble.augment_inputs(jax.random.key(1), x, 10)
  assert batch.shape == (10, 64)
  assert float(batch.min()) >= 0.0
  assert float(batch.max()) <= 1.0


def test_mimo_probs_average_heads():
  params = mimo.init_mimo(jax.random.key(0), num_inputs=4, num_classes=3, width=5, depth=2,
                          num_heads=2)
  x = jax.random.uniform(jax.random.key(1), (6, 4))
  probs = ensemble.mimo_probs(params, x, 2)
  per_head = jax.nn.softmax(mimo.mimo_logits(params, jnp.stack([x, x], axis=1), 2))
  np.testing.assert_allclose(np.asarray(probs), np.asarray(per_head.mean(1)), atol=1e-6)
  np.testing.assert_allclose(np.asarray(probs.sum(-1)), 1.0, atol=1e-5)


def test_mimo_training_lowers_loss():
  rng = np.random.default_rng(0)
  x = rng.uniform(size=(64, 6)).astype(np.float32)
  y = (x[:, 0] > 0.5).astype(np.int32)
  _, losses = ensemble.train_mimo(x, y, jax.random.key(0), num_classes=2, width=8, depth=1,
                                  num_heads=2, batch_size=16, steps=60)
  assert float(np.mean(losses[-10:])) < float(np.mean(losses[:10])) - 0.1


def test_benchmark_ece_agrees_with_calibration_metrics():
  probs = jax.nn.softmax(jax.random.normal(jax.random.key(0), (200, 10)) * 3.0)
  labels = jax.random.randint(jax.random.key(1), (200,), 0, 10)
  confidences, correct = metrics.top_label(probs, labels)
  expected = float(metrics.expected_calibration_error(confidences, correct))
  assert benchmark._metrics(probs, labels)["ece"] == pytest.approx(expected, abs=1e-6)
  assert benchmark._metrics(probs, labels)["nll"] == pytest.approx(
      float(metrics.negative_log_likelihood(probs, labels)), rel=1e-5)


def test_multiply_adds_hand_case():
  # 64*32 + 1*32*32 + 32*10
  assert benchmark.mlp_multiply_adds(64, 32, 2, 10) == 2048 + 1024 + 320


def test_char_multiply_adds_hand_case():
  # One window: 16 tokens * 16 embedding dims * 32 units + 32 units * 128 outputs.
  assert benchmark.char_multiply_adds(16, 16, 32, 128) == 8192 + 4096
  # MIMO with 3 heads reads 3 windows and has 3 output heads.
  assert benchmark.char_multiply_adds(16, 16, 32, 128, num_heads=3) == 3 * 8192 + 3 * 4096


def test_token_windows_corrupt_only_second_half():
  stream = jnp.arange(1000) % 50 + 60
  windows = ensemble.draw_token_windows(jax.random.key(0), stream, 8, 64, vocab_size=50,
                                        corrupt_rate=0.5)
  assert windows.shape == (64, 8)
  # Plain windows are consecutive runs of the stream, which steps by +1 modulo 50.
  steps = np.diff(np.asarray(windows), axis=1)
  assert np.all(np.isin(steps[:32], [1, -49]))
  # Replaced tokens are drawn from range(50), below every token of the stream.
  assert int(jnp.sum(windows[32:] < 50)) > 0
  assert int(jnp.sum(windows[:32] < 50)) == 0


def test_mimo_embeds_token_windows():
  params = mimo.init_mimo(jax.random.key(0), num_inputs=5, num_classes=7, width=6, depth=1,
                          num_heads=2, vocab_size=7, embed_dim=3)
  assert params["embed"].shape == (7, 3)
  assert params["w0"].shape == (2 * 5 * 3, 6)
  windows = jax.random.randint(jax.random.key(1), (4, 5), 0, 7)
  probs = ensemble.mimo_probs(params, windows, 2)
  assert probs.shape == (4, 7)
  np.testing.assert_allclose(np.asarray(probs.sum(-1)), 1.0, atol=1e-5)


def test_char_members_differ_in_width_and_order():
  from autogan_jax.tasks import datasets
  text = datasets.load_stdlib_text(max_chars=20_000, max_eval_chars=20_000)
  tasks, scales = ensemble.build_char_members(small_spec(), text, seed=2)
  np.testing.assert_array_equal(np.asarray(tasks.variant.width), [8, 4, 8])
  np.testing.assert_array_equal(np.asarray(tasks.variant.seed), [2000, 2001, 2002])
  np.testing.assert_allclose(np.asarray(scales), [1.0, 0.5, 1.0])
  params, losses = ensemble.train_population(tasks, scales, jax.random.key(0), steps=3)
  assert losses.shape == (3, 3)
  windows = jnp.asarray(text.test[:16 * 5]).reshape(5, 16)
  probs = ensemble.member_probs(tasks, params, windows)
  assert probs.shape == (3, 5, 128)


def distill_linear(valid_loss, eval_every=5):
  """Distill a fixed linear "ensemble" of 2 members into a linear student for 20 steps."""
  x = jax.random.normal(jax.random.key(0), (32, 3))
  teachers = jax.random.normal(jax.random.key(1), (2, 3, 4))

  def apply(params, inputs):
    return inputs @ params

  def members_fn(inputs):
    return jax.nn.softmax(jnp.einsum("nd,mdk->mnk", inputs, teachers), axis=-1)

  init = jnp.zeros((3, 4))
  return init, ensemble.distill(apply, init, members_fn, None, jax.random.key(2), steps=20,
                                batch_size=8, draw_inputs=lambda key, size: x[:size],
                                valid_loss=valid_loss, eval_every=eval_every)


def test_distill_keeps_lowest_validation_loss():
  # A validation loss that grows with the distance from the start is lowest at the first check.
  init, (params, history) = distill_linear(lambda p: jnp.sum(jnp.square(p)))
  assert history["valid_loss"].shape == (4,)
  assert history["loss"].shape == (20,)
  assert int(history["best_step"]) == 5
  assert np.all(np.diff(history["valid_loss"]) > 0)
  np.testing.assert_allclose(float(jnp.sum(jnp.square(params))), history["valid_loss"][0],
                             rtol=1e-5)
  # Its negative is lowest at the last check, which returns the final parameters.
  _, (last, history) = distill_linear(lambda p: -jnp.sum(jnp.square(p)))
  assert int(history["best_step"]) == 20
  assert float(jnp.sum(jnp.square(last))) > float(jnp.sum(jnp.square(params)))


def test_distill_with_nan_validation_returns_final():
  init, (params, history) = distill_linear(lambda p: jnp.float32(jnp.nan))
  _, (final, _) = distill_linear(None)
  assert int(history["best_step"]) == 20
  assert float(jnp.max(jnp.abs(params - init))) > 0.0
  np.testing.assert_allclose(np.asarray(params), np.asarray(final), rtol=1e-6)


def test_distill_rejects_check_interval_not_dividing_steps():
  with pytest.raises(ConfigError, match="eval_every=3"):
    distill_linear(None, eval_every=3)
