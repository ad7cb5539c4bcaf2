"""Training and evaluation data of the digits and character tasks, in model-space form.

Both tasks give models sequences: a digit image is 8 rows of 8 pixels, and a
character example is a window of `context` character ids whose label is the
character that follows. The data are pytrees, so they enter jitted functions as
arguments and are never baked in as constants.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from autogan_jax.core import validation
from autogan_jax.model_space import spec as spec_lib
from autogan_jax.tasks import datasets

SPLITS = ("train", "valid", "test")


@struct.dataclass
class ArrayData:
  """Examples stored whole: inputs [n, length, features] and integer labels [n]."""

  x_train: jax.Array
  y_train: jax.Array
  x_valid: jax.Array
  y_valid: jax.Array
  x_test: jax.Array
  y_test: jax.Array

  def sample(self, key: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
    index = jax.random.randint(key, (batch_size,), 0, self.y_train.shape[0])
    return self.x_train[index], self.y_train[index]

  def split(self, name: str) -> tuple[jax.Array, jax.Array]:
    validation.check_choice("split", name, SPLITS)
    return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")


@struct.dataclass
class StreamData:
  """A character stream for training and fixed windows of the held-out streams."""

  train: jax.Array
  x_valid: jax.Array
  y_valid: jax.Array
  x_test: jax.Array
  y_test: jax.Array
  context: int = struct.field(pytree_node=False, default=16)

  def sample(self, key: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
    positions = jax.random.randint(key, (batch_size,), self.context, self.train.shape[0])
    offsets = jnp.arange(-self.context, 0)
    return self.train[positions[:, None] + offsets[None, :]], self.train[positions]

  def split(self, name: str) -> tuple[jax.Array, jax.Array]:
    validation.check_choice("split", name, ("valid", "test"))
    return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")


def digits_data() -> tuple[ArrayData, spec_lib.ModelIO]:
  """Return scikit-learn's digits as 8 rows of 8 pixels, and the model interface."""
  splits = datasets.load_digits()
  rows = lambda x: jnp.asarray(x.reshape(-1, 8, 8))  # noqa: E731
  data = ArrayData(rows(splits.x_train), jnp.asarray(splits.y_train),
                   rows(splits.x_valid), jnp.asarray(splits.y_valid),
                   rows(splits.x_test), jnp.asarray(splits.y_test))
  return data, spec_lib.ModelIO("features", 8, 8, 10)


def _windows(stream: np.ndarray, context: int, count: int) -> tuple[jax.Array, jax.Array]:
  positions = np.linspace(context, len(stream) - 1, count).astype(np.int64)
  windows = stream[positions[:, None] + np.arange(-context, 0)[None, :]]
  return jnp.asarray(windows, jnp.int32), jnp.asarray(stream[positions], jnp.int32)


def char_data(context: int = 16, eval_windows: int = 2048, max_chars: int = 2_000_000,
              ) -> tuple[StreamData, spec_lib.ModelIO]:
  """Return the standard-library character streams and the model interface.

  Held-out metrics use `eval_windows` evenly spaced windows of the validation
  and test streams.
  """
  validation.check("context", context, validation.IntRange(1, 1024))
  validation.check("eval_windows", eval_windows, validation.IntRange(1))
  text = datasets.load_stdlib_text(max_chars=max_chars)
  x_valid, y_valid = _windows(text.valid, context, eval_windows)
  x_test, y_test = _windows(text.test, context, eval_windows)
  data = StreamData(jnp.asarray(text.train), x_valid, y_valid, x_test, y_test, context=context)
  vocab = datasets.CHAR_VOCAB_SIZE
  return data, spec_lib.ModelIO("tokens", context, vocab, vocab)


def load_task(name: str, context: int = 16) -> tuple[ArrayData | StreamData, spec_lib.ModelIO]:
  """Return the data and interface of task "digits" or "chars"."""
  validation.check_choice("task", name, ("digits", "chars"))
  return digits_data() if name == "digits" else char_data(context)
