"""Post-hoc calibration baselines, each fitted on held-out logits and labels.

- Temperature scaling and vector scaling (Guo et al., "On Calibration of Modern
  Neural Networks", 2017): logits / T, or logits * w + b with per-class w and b,
  fitted by minimising the NLL with L-BFGS.
- Histogram binning (Zadrozny and Elkan, "Obtaining calibrated probability
  estimates from decision trees and naive Bayesian classifiers", 2001): the
  top-label confidence is replaced by the accuracy of its equal-width bin.
- Isotonic regression (Zadrozny and Elkan, "Transforming classifier scores into
  accurate multiclass probability estimates", 2002): a monotone map from
  top-label confidence to accuracy, fitted with pool-adjacent-violators.

Binning and isotonic regression calibrate the top-label confidence only. The
other classes keep their relative probabilities and share the rest of the mass,
so the output is still a distribution over classes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from autogan_jax.calibration import metrics

BASELINES = ("temperature", "vector", "histogram", "isotonic")


def _nll_of_logits(logits: jax.Array, labels: jax.Array) -> jax.Array:
  log_probs = jax.nn.log_softmax(logits)
  return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=-1))


def _minimize(loss_fn: Callable, init, steps: int = 200):
  """Minimise a smooth function of a pytree with optax's L-BFGS inside one `lax.scan`."""
  solver = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(loss_fn)

  def step(carry, _):
    params, state = carry
    value, grad = value_and_grad(params, state=state)
    updates, state = solver.update(grad, state, params, value=value, grad=grad, value_fn=loss_fn)
    return (optax.apply_updates(params, updates), state), value

  (params, _), _ = jax.lax.scan(step, (init, solver.init(init)), None, length=steps)
  return params


@dataclasses.dataclass(frozen=True)
class TemperatureScaling:
  """softmax(logits / temperature)."""

  temperature: float

  def __call__(self, logits: jax.Array) -> jax.Array:
    return jax.nn.softmax(logits / self.temperature)


def fit_temperature(logits: jax.Array, labels: jax.Array) -> TemperatureScaling:
  """Fit one temperature by minimising the NLL over log T."""
  logits, labels = jnp.asarray(logits), jnp.asarray(labels)
  log_t = _minimize(lambda log_t: _nll_of_logits(logits / jnp.exp(log_t), labels), jnp.zeros(()))
  return TemperatureScaling(float(jnp.exp(log_t)))


@dataclasses.dataclass(frozen=True)
class VectorScaling:
  """softmax(logits * weight + bias) with one weight and bias per class."""

  weight: np.ndarray
  bias: np.ndarray

  def __call__(self, logits: jax.Array) -> jax.Array:
    return jax.nn.softmax(logits * self.weight + self.bias)


def fit_vector(logits: jax.Array, labels: jax.Array, l2: float = 1e-3) -> VectorScaling:
  """Fit per-class weights and biases by minimising the NLL, starting from the identity.

  An L2 penalty `l2 * (|w - 1|^2 + |b|^2)` keeps the weights finite when the
  calibration set is perfectly separated, where the unpenalised NLL keeps falling
  as the weights grow.
  """
  logits, labels = jnp.asarray(logits), jnp.asarray(labels)
  num_classes = logits.shape[-1]
  init = {"weight": jnp.ones(num_classes), "bias": jnp.zeros(num_classes)}
  params = _minimize(
      lambda p: (_nll_of_logits(logits * p["weight"] + p["bias"], labels)
                 + l2 * (jnp.sum((p["weight"] - 1.0) ** 2) + jnp.sum(p["bias"] ** 2))), init)
  return VectorScaling(np.asarray(params["weight"]), np.asarray(params["bias"]))


def replace_top_confidence(probs: jax.Array, confidence: jax.Array) -> jax.Array:
  """Set the top class's probability to `confidence` and rescale the others to fill the rest."""
  num_classes = probs.shape[-1]
  is_top = jax.nn.one_hot(jnp.argmax(probs, axis=-1), num_classes, dtype=bool)
  # The remainder is summed from the other classes, not taken as 1 - p_top, which
  # loses precision in float32 when p_top is close to 1.
  others = jnp.where(is_top, 0.0, probs)
  rest = jnp.sum(others, axis=-1, keepdims=True)
  # When the top class had all the mass, the remainder is shared equally.
  share = jnp.where(rest > 1e-30, others / jnp.maximum(rest, 1e-30), 1.0 / (num_classes - 1))
  return jnp.where(is_top, confidence[:, None], share * (1.0 - confidence)[:, None])


@dataclasses.dataclass(frozen=True)
class HistogramBinning:
  """Top-label confidence replaced by the calibration-set accuracy of its equal-width bin.

  A bin with no calibration examples keeps the original confidence.
  """

  bin_accuracy: np.ndarray
  bin_filled: np.ndarray

  def __call__(self, logits: jax.Array) -> jax.Array:
    probs = jax.nn.softmax(logits)
    confidences = jnp.max(probs, axis=-1)
    index = metrics.bin_assignment(confidences, len(self.bin_accuracy), "equal_width")
    calibrated = jnp.where(jnp.asarray(self.bin_filled)[index],
                           jnp.asarray(self.bin_accuracy)[index], confidences)
    return replace_top_confidence(probs, calibrated)


def fit_histogram(logits: jax.Array, labels: jax.Array,
                  num_bins: int = metrics.NUM_BINS) -> HistogramBinning:
  confidences, correct = metrics.top_label(jax.nn.softmax(jnp.asarray(logits)),
                                           jnp.asarray(labels))
  stats = metrics.bin_statistics(confidences, correct, num_bins, "equal_width")
  return HistogramBinning(np.asarray(stats["accuracy"]), np.asarray(stats["count"] > 0))


def isotonic_fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Fit a non-decreasing step function to (x, y) by pool-adjacent-violators.

  Equal x values are merged first into their mean y, weighted by count. Returns
  the distinct sorted x values and the fitted value at each; predictions between
  them interpolate linearly, as scikit-learn's `IsotonicRegression` does.
  """
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  unique_x, inverse = np.unique(x, return_inverse=True)
  weights = np.bincount(inverse).astype(np.float64)
  means = np.bincount(inverse, weights=y) / weights
  # Each block is [mean, weight, number of distinct x values it covers].
  blocks: list[list[float]] = []
  for mean, weight in zip(means, weights):
    blocks.append([mean, weight, 1])
    while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
      m2, w2, c2 = blocks.pop()
      m1, w1, c1 = blocks.pop()
      blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, c1 + c2])
  fitted = np.concatenate([np.full(int(count), mean) for mean, _, count in blocks])
  return unique_x, fitted


@dataclasses.dataclass(frozen=True)
class IsotonicRegression:
  """Top-label confidence mapped through a fitted monotone function, clipped at the ends."""

  x_thresholds: np.ndarray
  y_thresholds: np.ndarray

  def __call__(self, logits: jax.Array) -> jax.Array:
    probs = jax.nn.softmax(logits)
    confidences = jnp.max(probs, axis=-1)
    calibrated = jnp.interp(confidences, jnp.asarray(self.x_thresholds, jnp.float32),
                            jnp.asarray(self.y_thresholds, jnp.float32))
    return replace_top_confidence(probs, calibrated)


def fit_isotonic(logits: jax.Array, labels: jax.Array) -> IsotonicRegression:
  confidences, correct = metrics.top_label(jax.nn.softmax(jnp.asarray(logits)),
                                           jnp.asarray(labels))
  x, y = isotonic_fit(np.asarray(confidences), np.asarray(correct))
  return IsotonicRegression(x, y)


FITTERS = {"temperature": fit_temperature, "vector": fit_vector, "histogram": fit_histogram,
           "isotonic": fit_isotonic}


def fit_baseline(name: str, logits: jax.Array, labels: jax.Array) -> Callable:
  """Fit the baseline `name`, one of `BASELINES`; return its map from logits to probabilities."""
  if name not in FITTERS:
    raise ValueError(f"Unknown calibration baseline {name!r}; expected one of {BASELINES}.")
  return FITTERS[name](logits, labels)
