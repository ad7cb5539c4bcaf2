"""Classification of scikit-learn's 8x8 digits with multilayer perceptrons.

The parameters have a fixed maximum shape (`max_width`, `max_depth`), and the
variant masks what it does not use: hidden units past `width`, layers past
`depth`. A masked parameter receives an exactly zero gradient and never
changes the output, so tasks of different widths and depths share one compiled
training step. A held-out task built with `max_width == width` has no padding.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from autogan_jax.core import validation
from autogan_jax.tasks import datasets

ACTIVATIONS = ("relu", "tanh", "gelu", "elu", "swish")


_ACTIVATION_FUNCTIONS = (jax.nn.relu, jnp.tanh, jax.nn.gelu, jax.nn.elu, jax.nn.swish)


def _value_and_slope(function):
  """Return `x -> (function(x), function'(x))` for an elementwise `function`."""
  return lambda x: jax.jvp(function, (x,), (jnp.ones_like(x),))


@jax.custom_jvp
def apply_activation(index: jax.Array, x: jax.Array) -> jax.Array:
  """Apply activation number `index` of `ACTIVATIONS`; `index` may be traced."""
  return jax.lax.switch(index, _ACTIVATION_FUNCTIONS, x)


@apply_activation.defjvp
def _apply_activation_jvp(primals, tangents):
  # Differentiating `lax.switch` directly makes the conditional return the
  # residuals of every branch (eight arrays of x's shape for these five
  # functions, all but one unused), and XLA writes them all at every training
  # step. One switch that returns the value and the slope keeps one residual.
  # The slope comes from each function's own derivative rule, so gradients
  # match those of the plain switch, and this rule can be differentiated again.
  index, x = primals
  _, x_dot = tangents
  value, slope = jax.lax.switch(index, [_value_and_slope(f) for f in _ACTIVATION_FUNCTIONS], x)
  return value, slope * x_dot


@struct.dataclass
class MLPVariant:
  """The array part of a digits task: what differs between tasks of one structure.

  Attributes:
    width: hidden units in use per layer, at most the structure's `max_width`.
    depth: hidden layers in use, at least 1 and at most `max_depth`.
    activation: index into `ACTIVATIONS`.
    batch_size: examples per training batch, at most `max_batch_size`.
    subset_fraction: share of the training split this task may draw from.
    seed: integer that sets the task's data subset and batch order.
  """

  width: jax.Array
  depth: jax.Array
  activation: jax.Array
  batch_size: jax.Array
  subset_fraction: jax.Array
  seed: jax.Array


def make_variant(*, width: int, depth: int, activation: str, batch_size: int,
                 subset_fraction: float = 1.0, seed: int = 0) -> MLPVariant:
  """Build a variant from Python values, rejecting invalid ones."""
  validation.check("width", width, validation.IntRange(1))
  validation.check("depth", depth, validation.IntRange(1))
  validation.check_choice("activation", activation, ACTIVATIONS)
  validation.check("batch_size", batch_size, validation.IntRange(1))
  validation.check("subset_fraction", subset_fraction,
                   validation.FloatRange(0.0, 1.0, low_inclusive=False))
  return MLPVariant(
      width=jnp.asarray(width, jnp.int32),
      depth=jnp.asarray(depth, jnp.int32),
      activation=jnp.asarray(ACTIVATIONS.index(activation), jnp.int32),
      batch_size=jnp.asarray(batch_size, jnp.int32),
      subset_fraction=jnp.asarray(subset_fraction, jnp.float32),
      seed=jnp.asarray(seed, jnp.int32),
  )


def _nll(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Return the negative log-likelihood of integer `labels` under `logits`, per example."""
  # A select against the one-hot labels picks the same value as
  # `take_along_axis`, and its gradient is a select that XLA fuses with its
  # neighbours instead of a separate scatter-add.
  one_hot = labels[:, None] == jnp.arange(logits.shape[-1])
  return -jnp.sum(jnp.where(one_hot, jax.nn.log_softmax(logits), 0.0), axis=-1)


@struct.dataclass
class DigitsMLPTask:
  """Digits classifier of one variant, padded to a static maximum shape."""

  variant: MLPVariant
  max_width: int = struct.field(pytree_node=False, default=64)
  max_depth: int = struct.field(pytree_node=False, default=2)
  max_batch_size: int = struct.field(pytree_node=False, default=64)
  data: datasets.ArraySplits = struct.field(pytree_node=False, default=None)
  name: str = struct.field(pytree_node=False, default="digits_mlp")

  def describe(self) -> str:
    """Return a readable name such as `digits_mlp[w64,d2,gelu,b32]` (not under jit)."""
    v = jax.tree.map(np.asarray, self.variant)
    return (f"{self.name}[w{int(v.width)},d{int(v.depth)},{ACTIVATIONS[int(v.activation)]},"
            f"b{int(v.batch_size)}]")

  def _data(self) -> datasets.ArraySplits:
    return self.data if self.data is not None else datasets.load_digits()

  def _unit_mask(self) -> jax.Array:
    return (jnp.arange(self.max_width) < self.variant.width).astype(jnp.float32)

  def init(self, key: jax.Array) -> dict[str, jax.Array]:
    """He-style initialisation scaled by the fan-in in use; masked entries are zero."""
    num_inputs = self._data().x_train.shape[1]
    keys = jax.random.split(key, self.max_depth + 1)
    units = self._unit_mask()
    width = self.variant.width.astype(jnp.float32)
    params = {}
    fan_in_mask = jnp.ones(num_inputs)
    fan_in = jnp.asarray(num_inputs, jnp.float32)
    for layer in range(self.max_depth):
      shape = (fan_in_mask.shape[0], self.max_width)
      w = jax.random.normal(keys[layer], shape) * jnp.sqrt(2.0 / fan_in)
      params[f"w{layer}"] = w * fan_in_mask[:, None] * units[None, :]
      params[f"b{layer}"] = jnp.zeros(self.max_width)
      fan_in_mask, fan_in = units, width
    w_out = jax.random.normal(keys[-1], (self.max_width, 10)) * jnp.sqrt(1.0 / width)
    params["w_out"] = w_out * units[:, None]
    params["b_out"] = jnp.zeros(10)
    return params

  def apply(self, params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    """Return the logits for inputs `x` of shape [batch, 64]."""
    units = self._unit_mask()
    h = x
    for layer in range(self.max_depth):
      z = h @ params[f"w{layer}"] + params[f"b{layer}"]
      new_h = apply_activation(self.variant.activation, z) * units
      if layer == 0:
        h = new_h
      else:
        h = jnp.where(layer < self.variant.depth, new_h, h)
    return h @ params["w_out"] + params["b_out"]

  def _subset_mask(self) -> jax.Array:
    """Return which training examples belong to the task's data subset."""
    n = self._data().x_train.shape[0]
    key = jax.random.fold_in(jax.random.key(17), self.variant.seed)
    draw = jax.random.uniform(key, (n,))
    # The example with the smallest draw is always kept, so no subset is empty.
    return (draw < self.variant.subset_fraction) | (draw == jnp.min(draw))

  def _kept_indices(self) -> tuple[jax.Array, jax.Array]:
    """Return the training indices, kept examples first in increasing order, and the kept count."""
    mask = self._subset_mask()
    # A stable sort on "not kept" moves the kept indices to the front in order.
    return jnp.argsort(~mask, stable=True), jnp.sum(mask.astype(jnp.int32))

  def batch(self, key: jax.Array, step: jax.Array | int) -> dict[str, jax.Array]:
    data = self._data()
    step_key = jax.random.fold_in(jax.random.fold_in(key, self.variant.seed), step)
    # Uniform draws over the subset: rank r picks the r-th kept example.
    # `kept_indices` does not depend on `step`, so XLA hoists its sort out of
    # a training `scan`, and each step costs two small gathers.
    kept_indices, num_kept = self._kept_indices()
    ranks = jax.random.randint(step_key, (self.max_batch_size,), 0, num_kept)
    idx = kept_indices[ranks]
    weight = (jnp.arange(self.max_batch_size) < self.variant.batch_size).astype(jnp.float32)
    return {"x": jnp.asarray(data.x_train)[idx], "y": jnp.asarray(data.y_train)[idx],
            "weight": weight}

  def loss(self, params, batch, key=None) -> jax.Array:
    del key  # The loss is deterministic.
    nll = _nll(self.apply(params, batch["x"]), batch["y"])
    weight = batch.get("weight", jnp.ones_like(nll))
    return jnp.sum(weight * nll) / jnp.sum(weight)

  def evaluate(self, params, split: str = "test") -> dict[str, jax.Array]:
    x, y = self._data().split(split)
    logits = self.apply(params, jnp.asarray(x))
    nll = _nll(logits, jnp.asarray(y))
    accuracy = jnp.mean(jnp.argmax(logits, axis=1) == jnp.asarray(y))
    return {"loss": jnp.mean(nll), "accuracy": accuracy}


def digits_task(*, width: int, depth: int, activation: str, batch_size: int,
                subset_fraction: float = 1.0, seed: int = 0, max_width: int | None = None,
                max_depth: int | None = None, max_batch_size: int | None = None,
                data: datasets.ArraySplits | None = None) -> DigitsMLPTask:
  """Build a digits task; maxima default to the variant itself (no padding)."""
  max_width = width if max_width is None else max_width
  max_depth = depth if max_depth is None else max_depth
  max_batch_size = batch_size if max_batch_size is None else max_batch_size
  for field, value, maximum in (("width", width, max_width), ("depth", depth, max_depth),
                                ("batch_size", batch_size, max_batch_size)):
    if value > maximum:
      raise validation.ConfigError(
          f"Invalid value {field}={value}: expected at most max_{field}={maximum}.")
  variant = make_variant(width=width, depth=depth, activation=activation,
                         batch_size=batch_size, subset_fraction=subset_fraction, seed=seed)
  return DigitsMLPTask(variant=variant, max_width=max_width, max_depth=max_depth,
                       max_batch_size=max_batch_size,
                       data=data if data is not None else datasets.load_digits())



