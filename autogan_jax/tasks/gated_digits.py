"""Digits classification whose loss is only partly differentiable.

The classifier has three parameter groups, each reached by a different kind of
computation:

- "weights": a one-hidden-layer perceptron, differentiable as usual.
- "thresholds": one threshold per input pixel. The network receives the binary
  image `x > threshold`, a step function, so `jax.grad` with respect to the
  thresholds is exactly zero everywhere it is defined.
- "choice": logits of a categorical distribution over the hidden activation
  (`CHOICES`). Every example samples its own activation in each step, so the
  loss depends on these logits only through a discrete sample, and `jax.grad`
  through the sample is zero as well.

Test metrics are expectations over the activation distribution: the loss and
accuracy of each activation, weighted by its probability.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from autogan_jax.core import validation
from autogan_jax.tasks import datasets

# The hidden activations the "choice" group chooses between. "zero" switches
# the hidden layer off, so the output is the bias alone.
CHOICES = ("relu", "tanh", "identity", "zero")
GROUPS = ("weights", "thresholds", "choice")


def _all_activations(z: jax.Array) -> jax.Array:
  """Stack every activation of `CHOICES` applied to `z` on a new leading axis."""
  return jnp.stack([jax.nn.relu(z), jnp.tanh(z), z, jnp.zeros_like(z)])


@struct.dataclass
class GatedDigitsTask:
  """Digits classifier with hard input thresholds and a sampled activation.

  Attributes:
    hidden: hidden units.
    batch_size: examples per training batch.
    threshold_low: lower end of the uniform initial thresholds.
    threshold_high: upper end of the uniform initial thresholds. Pixels lie in
      [0, 1], so thresholds near 1 switch most pixels off at the start.
    data: the digits splits.
  """

  hidden: int = struct.field(pytree_node=False, default=32)
  batch_size: int = struct.field(pytree_node=False, default=64)
  threshold_low: float = struct.field(pytree_node=False, default=0.7)
  threshold_high: float = struct.field(pytree_node=False, default=1.0)
  data: datasets.ArraySplits = struct.field(pytree_node=False, default=None)
  name: str = struct.field(pytree_node=False, default="gated_digits")

  @property
  def groups(self) -> tuple[str, ...]:
    return GROUPS

  def init(self, key: jax.Array) -> dict[str, dict[str, jax.Array] | jax.Array]:
    """Return parameters as one subtree per group of `GROUPS`."""
    num_inputs = self.data.x_train.shape[1]
    k_w0, k_w1, k_t = jax.random.split(key, 3)
    weights = {
        "w0": jax.random.normal(k_w0, (num_inputs, self.hidden)) * jnp.sqrt(2.0 / num_inputs),
        "b0": jnp.zeros(self.hidden),
        "w_out": jax.random.normal(k_w1, (self.hidden, 10)) * jnp.sqrt(1.0 / self.hidden),
        "b_out": jnp.zeros(10),
    }
    thresholds = jax.random.uniform(k_t, (num_inputs,), minval=self.threshold_low,
                                    maxval=self.threshold_high)
    return {"weights": weights, "thresholds": thresholds, "choice": jnp.zeros(len(CHOICES))}

  def _logits_per_choice(self, params, x: jax.Array) -> jax.Array:
    """Return class logits [num_choices, batch, 10] of every activation."""
    w = params["weights"]
    binary = (x > params["thresholds"]).astype(x.dtype)
    hidden = _all_activations(binary @ w["w0"] + w["b0"])
    return hidden @ w["w_out"] + w["b_out"]

  def batch(self, key: jax.Array, step: jax.Array | int) -> dict[str, jax.Array]:
    """Draw a uniform training batch; a pure function of `key` and `step`."""
    index = jax.random.randint(jax.random.fold_in(key, step), (self.batch_size,), 0,
                               self.data.x_train.shape[0])
    return {"x": jnp.asarray(self.data.x_train)[index], "y": jnp.asarray(self.data.y_train)[index]}

  def per_example(self, params, batch: dict[str, jax.Array],
                  key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Sample one activation per example; return the losses and the samples' log-probabilities.

    Returns:
      `(losses, log_probs)`, both of shape [batch]. `losses` is the negative
      log-likelihood under each example's sampled activation.
    """
    logits = self._logits_per_choice(params, batch["x"])
    num_examples = batch["x"].shape[0]
    sample = jax.random.categorical(key, params["choice"], shape=(num_examples,))
    chosen = logits[sample, jnp.arange(num_examples)]
    losses = -jnp.take_along_axis(jax.nn.log_softmax(chosen), batch["y"][:, None], axis=1)[:, 0]
    log_probs = jax.nn.log_softmax(params["choice"])[sample]
    return losses, log_probs

  def loss(self, params, batch: dict[str, jax.Array], key: jax.Array) -> jax.Array:
    return jnp.mean(self.per_example(params, batch, key)[0])

  def evaluate(self, params, split: str = "test") -> dict[str, jax.Array]:
    """Return the expected loss and accuracy over the activation distribution on a split."""
    x, y = self.data.split(split)
    logits = self._logits_per_choice(params, jnp.asarray(x))
    y = jnp.asarray(y)
    nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), y[None, :, None], axis=2)[..., 0]
    correct = (jnp.argmax(logits, axis=2) == y[None, :]).astype(jnp.float32)
    probs = jax.nn.softmax(params["choice"])
    return {"loss": probs @ jnp.mean(nll, axis=1), "accuracy": probs @ jnp.mean(correct, axis=1)}


def gated_digits_task(*, hidden: int = 32, batch_size: int = 64, threshold_low: float = 0.7,
                      threshold_high: float = 1.0,
                      data: datasets.ArraySplits | None = None) -> GatedDigitsTask:
  """Build the task, rejecting invalid settings before any compute."""
  validation.check("hidden", hidden, validation.IntRange(1))
  validation.check("batch_size", batch_size, validation.IntRange(2))
  validation.check("threshold_low", threshold_low, validation.FloatRange(0.0, 1.0))
  validation.check("threshold_high", threshold_high, validation.FloatRange(threshold_low, 1.0))
  return GatedDigitsTask(hidden=hidden, batch_size=batch_size, threshold_low=threshold_low,
                         threshold_high=threshold_high,
                         data=data if data is not None else datasets.load_digits())
