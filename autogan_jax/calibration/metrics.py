"""Calibration metrics: ECE with equal-width or equal-mass bins, MCE, NLL and the Brier score.

Expected calibration error (ECE; Naeini, Cooper and Hauskrecht, "Obtaining Well
Calibrated Probabilities Using Bayesian Binning", 2015; Guo et al., "On
Calibration of Modern Neural Networks", 2017) sorts top-label confidences into
bins and averages |accuracy - mean confidence| over bins, weighted by the share of
examples in each bin:

  ECE = sum_b (n_b / n) |acc_b - conf_b|,    MCE = max_{b : n_b > 0} |acc_b - conf_b|.

Equal-width bins split (0, 1] into `num_bins` intervals with open lower ends, so
a confidence of exactly 1/15 falls in the first of 15 bins. A confidence of 0
joins the first bin. Equal-mass bins give each bin the same number of examples
in order of confidence, the first `n mod num_bins` bins taking one extra. An
empty bin has weight zero and is left out of the MCE, so no metric is NaN.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

BINNINGS = ("equal_width", "equal_mass")
NUM_BINS = 15
# Probabilities are floored here before the log, so the NLL of a probability of 0 is finite.
LOG_FLOOR = 1e-12


def top_label(probs: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Return the top-label confidence and whether the top label is correct (as 0/1 floats)."""
  confidences = jnp.max(probs, axis=-1)
  correct = (jnp.argmax(probs, axis=-1) == labels).astype(jnp.float32)
  return confidences, correct


def bin_assignment(confidences: jax.Array, num_bins: int = NUM_BINS,
                   binning: str = "equal_width") -> jax.Array:
  """Return the bin index in [0, num_bins) of each confidence."""
  if binning == "equal_width":
    index = jnp.ceil(confidences * num_bins).astype(jnp.int32) - 1
    return jnp.clip(index, 0, num_bins - 1)
  if binning == "equal_mass":
    n = confidences.shape[0]
    order = jnp.argsort(confidences, stable=True)
    rank = jnp.empty_like(order).at[order].set(jnp.arange(n))
    # Bin b contains ranks [start_b, start_{b+1}) with start_b = b * n // num_bins
    # rounded so that the first n mod num_bins bins take the extra example.
    base, extra = divmod(n, num_bins)
    starts = jnp.arange(num_bins) * base + jnp.minimum(jnp.arange(num_bins), extra)
    return (jnp.searchsorted(starts, rank, side="right") - 1).astype(jnp.int32)
  raise ValueError(f"Unknown binning {binning!r}; expected one of {BINNINGS}.")


def bin_statistics(confidences: jax.Array, correct: jax.Array, num_bins: int = NUM_BINS,
                   binning: str = "equal_width") -> dict[str, jax.Array]:
  """Return per-bin `count`, `confidence` (mean) and `accuracy`; both means are 0 in empty bins."""
  index = bin_assignment(confidences, num_bins, binning)
  counts = jnp.zeros(num_bins).at[index].add(1.0)
  conf_sums = jnp.zeros(num_bins).at[index].add(confidences)
  correct_sums = jnp.zeros(num_bins).at[index].add(correct)
  safe = jnp.maximum(counts, 1.0)
  return {"count": counts, "confidence": conf_sums / safe, "accuracy": correct_sums / safe}


def expected_calibration_error(confidences: jax.Array, correct: jax.Array,
                               num_bins: int = NUM_BINS, binning: str = "equal_width"
                               ) -> jax.Array:
  """Return the ECE of top-label confidences against 0/1 correctness."""
  stats = bin_statistics(confidences, correct, num_bins, binning)
  gaps = jnp.abs(stats["accuracy"] - stats["confidence"])
  return jnp.sum(stats["count"] * gaps) / jnp.maximum(jnp.sum(stats["count"]), 1.0)


def maximum_calibration_error(confidences: jax.Array, correct: jax.Array,
                              num_bins: int = NUM_BINS, binning: str = "equal_width"
                              ) -> jax.Array:
  """Return the largest |accuracy - confidence| over non-empty bins (0 with no examples)."""
  stats = bin_statistics(confidences, correct, num_bins, binning)
  gaps = jnp.abs(stats["accuracy"] - stats["confidence"])
  return jnp.max(jnp.where(stats["count"] > 0, gaps, 0.0))


def negative_log_likelihood(probs: jax.Array, labels: jax.Array) -> jax.Array:
  """Return the mean -log p(label), with p floored at `LOG_FLOOR`."""
  p = jnp.take_along_axis(probs, labels[:, None], axis=-1)[:, 0]
  return -jnp.mean(jnp.log(jnp.maximum(p, LOG_FLOOR)))


def brier_score(probs: jax.Array, labels: jax.Array) -> jax.Array:
  """Return the multi-class Brier score, mean over examples of sum_k (p_k - 1[k = label])^2."""
  one_hot = jax.nn.one_hot(labels, probs.shape[-1], dtype=probs.dtype)
  return jnp.mean(jnp.sum((probs - one_hot) ** 2, axis=-1))


def calibration_metrics(probs: jax.Array, labels: jax.Array, num_bins: int = NUM_BINS
                        ) -> dict[str, jax.Array]:
  """Return accuracy, both ECEs, both MCEs, NLL and Brier score of predicted probabilities."""
  confidences, correct = top_label(probs, labels)
  return {
      "accuracy": jnp.mean(correct),
      "ece": expected_calibration_error(confidences, correct, num_bins, "equal_width"),
      "ece_equal_mass": expected_calibration_error(confidences, correct, num_bins, "equal_mass"),
      "mce": maximum_calibration_error(confidences, correct, num_bins, "equal_width"),
      "mce_equal_mass": maximum_calibration_error(confidences, correct, num_bins, "equal_mass"),
      "nll": negative_log_likelihood(probs, labels),
      "brier": brier_score(probs, labels),
  }
