"""A character-level language model of the Python standard library's own source.

The model reads the previous `context` characters, embeds each, and predicts the
next one with a one-hidden-layer perceptron over the concatenated embeddings. It
is small enough to train in seconds on a CPU, and its loss is in nats per
character. Hidden units past the variant's `width` are masked, as in the digits
task, so variants of one structure share one compiled step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from autogan_jax.core import validation
from autogan_jax.tasks import datasets
from autogan_jax.tasks import mlp

# Positions scored by `evaluate`: a fixed, evenly spaced sample of each split.
EVAL_POSITIONS = 4096


@struct.dataclass
class CharVariant:
  """The array part of a character task.

  Attributes:
    width: hidden units in use, at most the structure's `max_width`.
    activation: index into `mlp.ACTIVATIONS`.
    batch_size: sequences positions per training batch, at most `max_batch_size`.
    seed: integer that sets the batch order.
  """

  width: jax.Array
  activation: jax.Array
  batch_size: jax.Array
  seed: jax.Array


@struct.dataclass
class CharLMTask:
  """Next-character prediction over the standard library's source files."""

  variant: CharVariant
  context: int = struct.field(pytree_node=False, default=16)
  embed_dim: int = struct.field(pytree_node=False, default=16)
  max_width: int = struct.field(pytree_node=False, default=128)
  max_batch_size: int = struct.field(pytree_node=False, default=64)
  data: datasets.TextSplits = struct.field(pytree_node=False, default=None)
  name: str = struct.field(pytree_node=False, default="stdlib_chars")

  def describe(self) -> str:
    v = jax.tree.map(np.asarray, self.variant)
    return (f"{self.name}[c{self.context},w{int(v.width)},{mlp.ACTIVATIONS[int(v.activation)]},"
            f"b{int(v.batch_size)}]")

  def _data(self) -> datasets.TextSplits:
    return self.data if self.data is not None else datasets.load_stdlib_text()

  def _unit_mask(self) -> jax.Array:
    return (jnp.arange(self.max_width) < self.variant.width).astype(jnp.float32)

  def init(self, key: jax.Array) -> dict[str, jax.Array]:
    k_embed, k_hidden, k_out = jax.random.split(key, 3)
    vocab = datasets.CHAR_VOCAB_SIZE
    fan_in = self.context * self.embed_dim
    units = self._unit_mask()
    width = self.variant.width.astype(jnp.float32)
    return {
        "embed": jax.random.normal(k_embed, (vocab, self.embed_dim)),
        "w_hidden": jax.random.normal(k_hidden, (fan_in, self.max_width))
                    * jnp.sqrt(2.0 / fan_in) * units[None, :],
        "b_hidden": jnp.zeros(self.max_width),
        "w_out": jax.random.normal(k_out, (self.max_width, vocab))
                 * jnp.sqrt(1.0 / width) * units[:, None],
        "b_out": jnp.zeros(vocab),
    }

  def apply(self, params, windows: jax.Array) -> jax.Array:
    """Return next-character logits for integer windows of shape [batch, context]."""
    embedded = params["embed"][windows].reshape(windows.shape[0], -1)
    z = embedded @ params["w_hidden"] + params["b_hidden"]
    h = mlp.apply_activation(self.variant.activation, z) * self._unit_mask()
    return h @ params["w_out"] + params["b_out"]

  def _windows(self, stream: jax.Array, positions: jax.Array):
    offsets = jnp.arange(-self.context, 0)
    return stream[positions[:, None] + offsets[None, :]], stream[positions]

  def batch(self, key: jax.Array, step: jax.Array | int) -> dict[str, jax.Array]:
    stream = jnp.asarray(self._data().train)
    step_key = jax.random.fold_in(jax.random.fold_in(key, self.variant.seed), step)
    positions = jax.random.randint(step_key, (self.max_batch_size,), self.context,
                                   stream.shape[0])
    windows, targets = self._windows(stream, positions)
    weight = (jnp.arange(self.max_batch_size) < self.variant.batch_size).astype(jnp.float32)
    return {"x": windows, "y": targets, "weight": weight}

  def _nll(self, params, windows, targets):
    logits = self.apply(params, windows)
    nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), targets[:, None], axis=1)[:, 0]
    return nll, logits

  def loss(self, params, batch, key=None) -> jax.Array:
    del key  # The loss is deterministic.
    nll, _ = self._nll(params, batch["x"], batch["y"])
    weight = batch.get("weight", jnp.ones_like(nll))
    return jnp.sum(weight * nll) / jnp.sum(weight)

  def evaluate(self, params, split: str = "test") -> dict[str, jax.Array]:
    stream = self._data().split(split)
    positions = np.linspace(self.context, len(stream) - 1, EVAL_POSITIONS).astype(np.int32)
    windows, targets = self._windows(jnp.asarray(stream), jnp.asarray(positions))
    nll, logits = self._nll(params, windows, targets)
    return {"loss": jnp.mean(nll), "accuracy": jnp.mean(jnp.argmax(logits, 1) == targets)}


def char_task(*, width: int = 128, activation: str = "relu", batch_size: int = 64,
              seed: int = 0, context: int = 16, embed_dim: int = 16,
              max_width: int | None = None, max_batch_size: int | None = None,
              data: datasets.TextSplits | None = None) -> CharLMTask:
  """Build a character task; maxima default to the variant itself (no padding)."""
  validation.check("width", width, validation.IntRange(1))
  validation.check_choice("activation", activation, mlp.ACTIVATIONS)
  validation.check("batch_size", batch_size, validation.IntRange(1))
  validation.check("context", context, validation.IntRange(1, 1024))
  validation.check("embed_dim", embed_dim, validation.IntRange(1))
  max_width = width if max_width is None else max_width
  max_batch_size = batch_size if max_batch_size is None else max_batch_size
  if width > max_width or batch_size > max_batch_size:
    raise validation.ConfigError(
        f"Invalid char task: width={width} must be <= max_width={max_width} and "
        f"batch_size={batch_size} <= max_batch_size={max_batch_size}.")
  variant = CharVariant(width=jnp.asarray(width, jnp.int32),
                        activation=jnp.asarray(mlp.ACTIVATIONS.index(activation), jnp.int32),
                        batch_size=jnp.asarray(batch_size, jnp.int32),
                        seed=jnp.asarray(seed, jnp.int32))
  return CharLMTask(variant=variant, context=context, embed_dim=embed_dim,
                    max_width=max_width, max_batch_size=max_batch_size,
                    data=data if data is not None else datasets.load_stdlib_text())
