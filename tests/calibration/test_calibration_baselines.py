"""Calibration baselines and G_cal against independently computed results."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression

from autogan_jax import calibration
from autogan_jax.calibration import adversarial
from autogan_jax.calibration import baselines
from autogan_jax.calibration import metrics


def overconfident_set(seed: int, n: int, true_temperature: float):
  """Logits whose labels are drawn from softmax(logits / true_temperature)."""
  k_logits, k_labels = jax.random.split(jax.random.key(seed))
  logits = 3.0 * jax.random.normal(k_logits, (n, 5))
  labels = jax.random.categorical(k_labels, logits / true_temperature)
  return logits, labels


def test_temperature_scaling_recovers_true_temperature():
  logits, labels = overconfident_set(0, 6000, 2.0)
  fitted = baselines.fit_temperature(logits, labels)
  assert fitted.temperature == pytest.approx(2.0, rel=0.08)


def test_vector_scaling_beats_identity_nll():
  logits, labels = overconfident_set(1, 3000, 2.0)
  fitted = baselines.fit_vector(logits, labels)
  before = float(metrics.negative_log_likelihood(jax.nn.softmax(logits), labels))
  after = float(metrics.negative_log_likelihood(fitted(logits), labels))
  assert after < before - 0.05


def test_isotonic_fit_matches_scikit_learn():
  rng = np.random.default_rng(0)
  x = np.round(rng.uniform(size=300), 2)  # Rounding creates ties.
  y = (rng.uniform(size=300) < x**2).astype(np.float64)
  thresholds, values = baselines.isotonic_fit(x, y)
  reference = IsotonicRegression(out_of_bounds="clip").fit(x, y)
  queries = np.linspace(-0.1, 1.1, 97)
  np.testing.assert_allclose(np.interp(queries, thresholds, values), reference.predict(queries),
                             atol=1e-9)
  assert np.all(np.diff(values) >= 0)


def test_histogram_binning_uses_bin_accuracy():
  # Two examples land in each of two bins; the top-label confidences become 0.5 and 1.0.
  logits = jnp.log(jnp.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]]))
  labels = jnp.array([0, 1, 0, 0])
  fitted = baselines.fit_histogram(logits, labels)
  probs = np.asarray(fitted(logits))
  np.testing.assert_allclose(probs[:, 0], [0.5, 0.5, 1.0, 1.0], atol=1e-6)
  np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)


def test_replace_top_confidence_keeps_other_ratios():
  probs = jnp.array([[0.6, 0.3, 0.1]])
  out = np.asarray(baselines.replace_top_confidence(probs, jnp.array([0.8])))
  np.testing.assert_allclose(out, [[0.8, 0.15, 0.05]], atol=1e-6)


def test_every_baseline_returns_distributions():
  logits, labels = overconfident_set(2, 500, 1.5)
  for name in calibration.BASELINES:
    probs = np.asarray(calibration.fit_baseline(name, logits, labels)(logits))
    assert probs.shape == (500, 5), name
    assert np.all(np.isfinite(probs)), name
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5, err_msg=name)


def test_unknown_baseline_is_rejected():
  with pytest.raises(ValueError, match="platt"):
    calibration.fit_baseline("platt", jnp.zeros((2, 2)), jnp.zeros(2, jnp.int32))


def test_generator_starts_as_temperature_scaling():
  logits, _ = overconfident_set(3, 64, 1.0)
  g_params = adversarial.init_generator(jax.random.key(0), temperature=1.7)
  np.testing.assert_allclose(np.asarray(adversarial.generator_probs(g_params, logits)),
                             np.asarray(jax.nn.softmax(logits / 1.7)), atol=1e-6)


def test_calibration_gan_lowers_ece_and_keeps_accuracy():
  logits, labels = overconfident_set(4, 2000, 2.5)
  before = metrics.calibration_metrics(jax.nn.softmax(logits), labels)
  g_cal, history = calibration.train_calibration_gan(logits, labels, jax.random.key(5),
                                                     steps=400, init_temperature=1.0,
                                                     batch_size=512)
  after = metrics.calibration_metrics(g_cal(logits), labels)
  assert np.all(np.isfinite(history["g_loss"]))
  assert float(after["accuracy"]) == float(before["accuracy"])
  assert float(after["ece"]) < 0.5 * float(before["ece"])
