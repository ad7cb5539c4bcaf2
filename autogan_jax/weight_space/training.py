"""Training and evaluation of layer-list networks on the digits splits."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from autogan_jax.tasks import datasets
from autogan_jax.weight_space import network as network_lib

ApplyFn = Callable[[network_lib.Network, jax.Array], jax.Array]


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Return the mean negative log-likelihood of integer `labels` under `logits`."""
  log_probs = jax.nn.log_softmax(logits)
  return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1))


def class_mask(classes: Sequence[int] | None, num_classes: int = 10) -> np.ndarray:
  """Return a boolean mask over classes: all of them when `classes` is None."""
  if classes is None:
    return np.ones(num_classes, bool)
  classes = list(classes)
  if not classes or any(c < 0 or c >= num_classes for c in classes):
    raise ValueError(f"Invalid class subset {classes}: expected a non-empty list of labels "
                     f"in [0, {num_classes}).")
  mask = np.zeros(num_classes, bool)
  mask[classes] = True
  return mask


def train(params: network_lib.Network, data: datasets.ArraySplits, *, key: jax.Array,
          steps: int, batch_size: int, tx: optax.GradientTransformation,
          classes: Sequence[int] | None = None,
          apply_fn: ApplyFn = network_lib.apply_network) -> tuple[network_lib.Network, jax.Array]:
  """Train `params` on the training split, drawing batches from `classes` only.

  Calls with the same `steps`, `batch_size`, `tx` object, `apply_fn` and
  parameter shapes share one compilation, so reuse one `tx` across calls.

  Args:
    params: the network to train.
    data: digits splits; only the training split is used.
    key: sets the batch order.
    steps: number of updates, run in one `lax.scan`.
    batch_size: examples per update, drawn with replacement.
    tx: the update rule.
    classes: labels the batches are drawn from; None means all.
    apply_fn: maps (params, x) to logits.

  Returns:
    The trained network and the training loss of every step.
  """
  x = jnp.asarray(data.x_train)
  y = jnp.asarray(data.y_train)
  allowed = jnp.asarray(class_mask(classes))[y]
  example_logits = jnp.where(allowed, 0.0, -jnp.inf)
  return _train(params, x, y, example_logits, key, steps=steps, batch_size=batch_size, tx=tx,
                apply_fn=apply_fn)


@functools.partial(jax.jit, static_argnames=("steps", "batch_size", "tx", "apply_fn"))
def _train(params, x, y, example_logits, key, *, steps, batch_size, tx, apply_fn):

  def loss_fn(p, xb, yb):
    return cross_entropy(apply_fn(p, xb), yb)

  def step(carry, step_index):
    p, opt_state = carry
    idx = jax.random.categorical(jax.random.fold_in(key, step_index), example_logits,
                                 shape=(batch_size,))
    loss, grads = jax.value_and_grad(loss_fn)(p, x[idx], y[idx])
    updates, opt_state = tx.update(grads, opt_state, p)
    return (optax.apply_updates(p, updates), opt_state), loss

  (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), jnp.arange(steps))
  return params, losses


def evaluate(params: network_lib.Network, data: datasets.ArraySplits, split: str = "test",
             apply_fn: ApplyFn = network_lib.apply_network) -> dict[str, jax.Array]:
  """Return the mean loss and the accuracy of `params` on all ten digits of `split`."""
  x, y = data.split(split)
  logits = apply_fn(params, jnp.asarray(x))
  labels = jnp.asarray(y)
  return {"loss": cross_entropy(logits, labels),
          "accuracy": jnp.mean(jnp.argmax(logits, axis=1) == labels)}
