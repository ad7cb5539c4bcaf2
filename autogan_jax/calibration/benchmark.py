"""The calibration benchmark: every baseline and G_cal fitted on one split and scored on another."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from autogan_jax.calibration import adversarial
from autogan_jax.calibration import baselines
from autogan_jax.calibration import metrics


def compare_calibrators(fit_logits: jax.Array, fit_labels: jax.Array, test_logits: jax.Array,
                        test_labels: jax.Array, key: jax.Array, *, gan_steps: int = 2000,
                        gan_batch_size: int = 4096, gan_d_steps: int = 2,
                        names: Sequence[str] = baselines.BASELINES, g_tx=None, d_tx=None):
  """Fit each baseline and G_cal on the fitting split and score all of them on the test split.

  G_cal starts from the temperature-scaling fit, so it is compared with the
  baseline it begins as.

  Returns:
    `results` (method name to its test metrics, "uncalibrated" included),
    `predictions` (method name to its test probabilities), and `extra`
    (the fitted temperature and G_cal's training history).
  """
  fit_logits = jnp.asarray(fit_logits, jnp.float32)
  test_logits = jnp.asarray(test_logits, jnp.float32)
  fit_labels = jnp.asarray(fit_labels, jnp.int32)
  test_labels = jnp.asarray(test_labels, jnp.int32)
  predictions = {"uncalibrated": jax.nn.softmax(test_logits)}
  fitted = {}
  for name in names:
    fitted[name] = baselines.fit_baseline(name, fit_logits, fit_labels)
    predictions[name] = fitted[name](test_logits)
  temperature = (fitted["temperature"].temperature if "temperature" in fitted
                 else baselines.fit_temperature(fit_logits, fit_labels).temperature)
  g_cal, history = adversarial.train_calibration_gan(
      fit_logits, fit_labels, key, steps=gan_steps, batch_size=gan_batch_size,
      init_temperature=temperature, d_steps=gan_d_steps, g_tx=g_tx, d_tx=d_tx)
  predictions["g_cal"] = g_cal(test_logits)
  results = {name: {k: float(v) for k, v in metrics.calibration_metrics(p, test_labels).items()}
             for name, p in predictions.items()}
  temperatures = np.asarray(adversarial.generator_temperature(g_cal.g_params, test_logits))
  extra = {"temperature": temperature, "history": history,
           "g_cal_temperature_range": [float(temperatures.min()), float(temperatures.max())]}
  return results, predictions, extra
