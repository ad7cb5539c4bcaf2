"""Calibration metrics on hand-computed cases: empty bins, all-correct and all-wrong sets."""

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from autogan_jax.calibration import metrics


def test_equal_width_ece_hand_case():
  # 0.9 falls in bin 13 of 15 and 0.2 in bin 2; the other 13 bins are empty.
  confidences = jnp.array([0.9, 0.9, 0.9, 0.9, 0.2])
  correct = jnp.array([1.0, 1.0, 1.0, 0.0, 1.0])
  ece = metrics.expected_calibration_error(confidences, correct)
  # Bin 13 has accuracy 0.75, confidence 0.9 and weight 4/5.
  # Bin 2 has accuracy 1, confidence 0.2 and weight 1/5.
  np.testing.assert_allclose(float(ece), 0.8 * 0.15 + 0.2 * 0.8, atol=1e-6)
  mce = metrics.maximum_calibration_error(confidences, correct)
  np.testing.assert_allclose(float(mce), 0.8, atol=1e-6)


def test_equal_width_bin_edges():
  confidences = jnp.array([0.0, 1.0 / 15.0, 1.0 / 15.0 + 1e-4, 1.0])
  index = metrics.bin_assignment(confidences, 15, "equal_width")
  np.testing.assert_array_equal(np.asarray(index), [0, 0, 1, 14])


def test_equal_mass_ece_hand_case():
  confidences = jnp.array([0.4, 0.1, 0.3, 0.2])
  correct = jnp.array([1.0, 0.0, 1.0, 1.0])
  # Bins by rank: {0.1, 0.2} has accuracy 0.5 and confidence 0.15; {0.3, 0.4} has 1 and 0.35.
  ece = metrics.expected_calibration_error(confidences, correct, 2, "equal_mass")
  np.testing.assert_allclose(float(ece), 0.5 * 0.35 + 0.5 * 0.65, atol=1e-6)
  mce = metrics.maximum_calibration_error(confidences, correct, 2, "equal_mass")
  np.testing.assert_allclose(float(mce), 0.65, atol=1e-6)


def test_equal_mass_uneven_split():
  # 7 examples in 3 bins: the first bin takes the extra example.
  index = metrics.bin_assignment(jnp.arange(7) / 10.0, 3, "equal_mass")
  np.testing.assert_array_equal(np.asarray(index), [0, 0, 0, 1, 1, 2, 2])


def test_equal_mass_with_fewer_examples_than_bins():
  confidences = jnp.array([0.3, 0.9, 0.6])
  correct = jnp.array([0.0, 1.0, 1.0])
  stats = metrics.bin_statistics(confidences, correct, 15, "equal_mass")
  np.testing.assert_array_equal(np.asarray(stats["count"]), [1, 1, 1] + [0] * 12)
  ece = metrics.expected_calibration_error(confidences, correct, 15, "equal_mass")
  np.testing.assert_allclose(float(ece), (0.3 + 0.1 + 0.4) / 3, atol=1e-6)


@pytest.mark.parametrize("binning", metrics.BINNINGS)
def test_all_correct_confident_set_is_calibrated(binning):
  probs = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
  labels = jnp.array([0, 1])
  result = metrics.calibration_metrics(probs, labels)
  for name, value in result.items():
    assert np.isfinite(float(value)), name
  confidences, correct = metrics.top_label(probs, labels)
  assert float(metrics.expected_calibration_error(confidences, correct, 15, binning)) == 0.0
  assert float(result["accuracy"]) == 1.0
  assert float(result["nll"]) == pytest.approx(0.0, abs=1e-6)
  assert float(result["brier"]) == 0.0


def test_all_wrong_confident_set_has_finite_worst_scores():
  probs = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  labels = jnp.array([1, 0])
  result = metrics.calibration_metrics(probs, labels)
  assert float(result["ece"]) == pytest.approx(1.0)
  assert float(result["ece_equal_mass"]) == pytest.approx(1.0)
  assert float(result["mce"]) == pytest.approx(1.0)
  assert float(result["accuracy"]) == 0.0
  # The NLL floors p at 1e-12, so it is -log(1e-12), not infinity.
  assert float(result["nll"]) == pytest.approx(-np.log(1e-12), rel=1e-5)
  assert float(result["brier"]) == pytest.approx(2.0)


def test_nll_and_brier_hand_case():
  probs = jnp.array([[0.5, 0.5], [0.8, 0.2]])
  labels = jnp.array([0, 1])
  np.testing.assert_allclose(float(metrics.negative_log_likelihood(probs, labels)),
                             -(np.log(0.5) + np.log(0.2)) / 2, rtol=1e-6)
  np.testing.assert_allclose(float(metrics.brier_score(probs, labels)),
                             ((0.25 + 0.25) + (0.64 + 0.64)) / 2, rtol=1e-6)


def test_empty_bins_do_not_raise_mce():
  # One populated bin, perfectly calibrated: empty bins must not contribute a gap.
  confidences = jnp.full((10,), 0.5)
  correct = jnp.array([1.0] * 5 + [0.0] * 5)
  assert float(metrics.maximum_calibration_error(confidences, correct)) == pytest.approx(0.0)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 1.0), st.booleans()), min_size=1, max_size=40),
       st.integers(1, 20), st.sampled_from(metrics.BINNINGS))
def test_ece_is_bounded_by_mce(pairs, num_bins, binning):
  confidences = jnp.asarray([p for p, _ in pairs], jnp.float32)
  correct = jnp.asarray([float(c) for _, c in pairs], jnp.float32)
  ece = float(metrics.expected_calibration_error(confidences, correct, num_bins, binning))
  mce = float(metrics.maximum_calibration_error(confidences, correct, num_bins, binning))
  assert 0.0 <= ece <= 1.0
  assert ece <= mce + 1e-6
  stats = metrics.bin_statistics(confidences, correct, num_bins, binning)
  assert float(jnp.sum(stats["count"])) == len(pairs)
