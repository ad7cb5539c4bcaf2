"""The gated digits task: which parameter groups the gradient reaches, and its test metrics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from autogan_jax.core import validation
from autogan_jax.tasks import gated_digits


def test_gradient_reaches_weights_only():
  task = gated_digits.gated_digits_task(hidden=8, batch_size=16)
  params = task.init(jax.random.key(0))
  assert tuple(params) == gated_digits.GROUPS

  @jax.jit
  def check(params, key):
    batch = task.batch(key, 0)
    grads = jax.grad(task.loss)(params, batch, key)
    losses, log_probs = task.per_example(params, batch, key)
    return grads, losses, log_probs, task.evaluate(params, "test")

  grads, losses, log_probs, metrics = check(params, jax.random.key(1))
  assert float(jnp.max(jnp.abs(grads["thresholds"]))) == 0.0
  assert float(jnp.max(jnp.abs(grads["choice"]))) == 0.0
  assert float(jnp.max(jnp.abs(grads["weights"]["w_out"]))) > 0.0
  assert losses.shape == (16,)
  # Uniform logits over four activations.
  np.testing.assert_allclose(log_probs, np.log(0.25), rtol=1e-6)
  assert 0.0 <= float(metrics["accuracy"]) <= 1.0
  assert np.isfinite(float(metrics["loss"]))


def test_invalid_settings_are_rejected():
  with pytest.raises(validation.ConfigError, match="hidden"):
    gated_digits.gated_digits_task(hidden=0)
  with pytest.raises(validation.ConfigError, match="threshold_high"):
    gated_digits.gated_digits_task(threshold_low=0.8, threshold_high=0.5)
