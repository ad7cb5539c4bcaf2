"""Digit-string transcription built from scikit-learn's bundled 8x8 digit images.

A string of `MIN_DIGITS` to `MAX_DIGITS` digits is drawn by placing digit images
side by side with a random horizontal gap (which may be -1, so that neighbours
overlap by one column and are merged by a pixel-wise maximum) and a random
vertical offset per digit. The picture is read column by column: each column is
one frame of `FRAME_HEIGHT` pixels, and the target is the digit string. Train
strings use only images of the digits training split, and validation and test
strings only images of their own splits, so held-out strings are made of
held-out images.

The generator records where each digit starts, so the true alignment between
frames and output characters is known.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from autogan_jax.core import validation
from autogan_jax.tasks import datasets

MIN_DIGITS = 2
MAX_DIGITS = 8
DIGIT_SIZE = 8
MAX_VERTICAL_JITTER = 3
FRAME_HEIGHT = DIGIT_SIZE + MAX_VERTICAL_JITTER
MIN_GAP = -1
MAX_GAP = 3
# The widest string has MAX_DIGITS * DIGIT_SIZE + (MAX_DIGITS + 1) * MAX_GAP = 91 frames
# (a left margin and a gap after every digit); 96 is a multiple of every chunk size in use.
MAX_FRAMES = 96
NUM_CLASSES = 10


@dataclasses.dataclass(frozen=True, eq=False)
class DigitStrings:
  """One split of digit strings, padded to `MAX_FRAMES` frames and `MAX_DIGITS` labels.

  Attributes:
    frames: pixel columns in [0, 1], float32 [num_strings, MAX_FRAMES, FRAME_HEIGHT].
    frame_lengths: frames in use per string, int32 [num_strings].
    labels: digits 0-9, zero past the string's length, int32 [num_strings, MAX_DIGITS].
    label_lengths: digits per string, int32 [num_strings].
    starts: first frame of each digit, -1 past the length, int32 [num_strings, MAX_DIGITS].
  """

  frames: np.ndarray
  frame_lengths: np.ndarray
  labels: np.ndarray
  label_lengths: np.ndarray
  starts: np.ndarray

  def __len__(self) -> int:
    return self.frames.shape[0]

  def as_batch(self, indices: np.ndarray | None = None) -> dict[str, jax.Array]:
    """Return strings (all, or those at `indices`) as a batch dict of device arrays."""
    take = slice(None) if indices is None else np.asarray(indices)
    return batch_arrays(self.frames[take], self.frame_lengths[take], self.labels[take],
                        self.label_lengths[take])


def batch_arrays(frames, frame_lengths, labels, label_lengths) -> dict[str, jax.Array]:
  """Build a batch dict with the padding indicators that `optax.ctc_loss` expects."""
  frame_lengths = jnp.asarray(frame_lengths)
  label_lengths = jnp.asarray(label_lengths)
  frame_paddings = (jnp.arange(MAX_FRAMES)[None, :] >= frame_lengths[:, None])
  label_paddings = (jnp.arange(MAX_DIGITS)[None, :] >= label_lengths[:, None])
  return {"frames": jnp.asarray(frames), "frame_paddings": frame_paddings.astype(jnp.float32),
          "labels": jnp.asarray(labels), "label_paddings": label_paddings.astype(jnp.float32),
          "label_lengths": label_lengths}


@dataclasses.dataclass(frozen=True, eq=False)
class DigitStringSplits:
  """Train, validation and test digit strings, each from its own images."""

  train: DigitStrings
  valid: DigitStrings
  test: DigitStrings

  def split(self, name: str) -> DigitStrings:
    validation.check_choice("split", name, ("train", "valid", "test"))
    return getattr(self, name)


def render_strings(images: np.ndarray, image_labels: np.ndarray, num_strings: int,
                   rng: np.random.Generator) -> DigitStrings:
  """Draw `num_strings` strings from `images` [n, 64] with labels `image_labels` [n]."""
  frames = np.zeros((num_strings, MAX_FRAMES, FRAME_HEIGHT), np.float32)
  frame_lengths = np.zeros(num_strings, np.int32)
  labels = np.zeros((num_strings, MAX_DIGITS), np.int32)
  label_lengths = np.zeros(num_strings, np.int32)
  starts = np.full((num_strings, MAX_DIGITS), -1, np.int32)
  pictures = images.reshape(-1, DIGIT_SIZE, DIGIT_SIZE)
  for i in range(num_strings):
    length = int(rng.integers(MIN_DIGITS, MAX_DIGITS + 1))
    chosen = rng.integers(0, len(pictures), size=length)
    column = int(rng.integers(0, MAX_GAP + 1))
    for j, image_index in enumerate(chosen):
      if j > 0:
        column += int(rng.integers(MIN_GAP, MAX_GAP + 1))
      row = int(rng.integers(0, MAX_VERTICAL_JITTER + 1))
      # Columns of the picture are frames and rows are the frame's pixels.
      patch = pictures[image_index].T
      window = frames[i, column:column + DIGIT_SIZE, row:row + DIGIT_SIZE]
      np.maximum(window, patch, out=window)
      starts[i, j] = column
      labels[i, j] = image_labels[image_index]
      column += DIGIT_SIZE
    frame_lengths[i] = column + int(rng.integers(0, MAX_GAP + 1))
    label_lengths[i] = length
  return DigitStrings(frames, frame_lengths, labels, label_lengths, starts)


@functools.lru_cache(maxsize=4)
def load_digit_strings(num_train: int = 4096, num_eval: int = 512,
                       seed: int = 0) -> DigitStringSplits:
  """Render train, validation and test strings from the matching digits splits.

  The same arguments always give the same strings.
  """
  validation.check("num_train", num_train, validation.IntRange(1))
  validation.check("num_eval", num_eval, validation.IntRange(1))
  digits = datasets.load_digits()
  rng = np.random.default_rng(seed)
  made = {}
  for split, count in (("train", num_train), ("valid", num_eval), ("test", num_eval)):
    images, image_labels = digits.split(split)
    made[split] = render_strings(images, image_labels, count, rng)
  return DigitStringSplits(**made)


def sample_batch(data: DigitStrings, key: jax.Array, batch_size: int) -> dict[str, jax.Array]:
  """Draw `batch_size` strings of `data` uniformly with replacement; jittable in `key`."""
  index = jax.random.randint(key, (batch_size,), 0, len(data))
  return batch_arrays(jnp.asarray(data.frames)[index], jnp.asarray(data.frame_lengths)[index],
                      jnp.asarray(data.labels)[index], jnp.asarray(data.label_lengths)[index])


def edit_distance(reference: np.ndarray, hypothesis: np.ndarray) -> int:
  """Return the Levenshtein distance (substitutions, insertions, deletions) of two sequences."""
  previous = np.arange(len(hypothesis) + 1)
  for i, ref_item in enumerate(reference, start=1):
    current = np.empty_like(previous)
    current[0] = i
    for j, hyp_item in enumerate(hypothesis, start=1):
      current[j] = min(previous[j] + 1, current[j - 1] + 1,
                       previous[j - 1] + (ref_item != hyp_item))
    previous = current
  return int(previous[-1])


def character_error_rate(labels: np.ndarray, label_lengths: np.ndarray, predictions: np.ndarray,
                         prediction_lengths: np.ndarray) -> float:
  """Return total edit distance over total reference length, for padded label arrays."""
  labels, predictions = np.asarray(labels), np.asarray(predictions)
  label_lengths, prediction_lengths = np.asarray(label_lengths), np.asarray(prediction_lengths)
  errors = sum(
      edit_distance(labels[i, :label_lengths[i]], predictions[i, :prediction_lengths[i]])
      for i in range(len(labels)))
  return errors / max(int(np.sum(label_lengths)), 1)
