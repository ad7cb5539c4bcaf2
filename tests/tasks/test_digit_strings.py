"""Digit strings: rendering, splits made of their own images, and the error-rate metric."""

import numpy as np
import pytest

from autogan_jax.tasks import datasets
from autogan_jax.tasks import digit_strings


@pytest.fixture(scope="module")
def strings():
  return digit_strings.load_digit_strings(num_train=64, num_eval=32, seed=5)


def test_shapes_and_lengths(strings):
  for split in ("train", "valid", "test"):
    data = strings.split(split)
    assert data.frames.shape[1:] == (digit_strings.MAX_FRAMES, digit_strings.FRAME_HEIGHT)
    assert data.label_lengths.min() >= digit_strings.MIN_DIGITS
    assert data.label_lengths.max() <= digit_strings.MAX_DIGITS
    assert (data.frame_lengths <= digit_strings.MAX_FRAMES).all()
    assert ((data.frames >= 0) & (data.frames <= 1)).all()


def test_frames_past_length_are_blank(strings):
  data = strings.train
  for i in range(len(data)):
    assert not data.frames[i, data.frame_lengths[i]:].any()


def test_digits_sit_at_recorded_starts():
  digits = datasets.load_digits()
  images, labels = digits.split("test")
  rng = np.random.default_rng(0)
  data = digit_strings.render_strings(images, labels, 20, rng)
  pictures = images.reshape(-1, 8, 8)
  for i in range(len(data)):
    for j in range(data.label_lengths[i]):
      start = data.starts[i, j]
      window = data.frames[i, start:start + 8]
      # Some image of the recorded label is contained (pixel-wise max) in the window.
      candidates = pictures[labels == data.labels[i, j]]
      fits = [any(np.all(window[:, r:r + 8] >= p.T - 1e-6) for r in range(4)) for p in candidates]
      assert any(fits), (i, j)


def _fits(window, pictures):
  """Bool per picture: the picture lies under `window` at some vertical offset."""
  columns = pictures.transpose(0, 2, 1)
  return np.any([np.all(window[None, :, r:r + 8] >= columns - 1e-6, axis=(1, 2))
                 for r in range(digit_strings.MAX_VERTICAL_JITTER + 1)], axis=0)


def test_held_out_strings_use_held_out_images(strings):
  digits = datasets.load_digits()
  test_pictures = digits.x_test.reshape(-1, 8, 8)
  train_pictures = digits.x_train.reshape(-1, 8, 8)
  data = strings.test
  found_in_test, found_in_train, total = 0, 0, 0
  for i in range(len(data)):
    for j in range(data.label_lengths[i]):
      start = data.starts[i, j]
      window = data.frames[i, start:start + 8]
      total += 1
      found_in_test += bool(_fits(window, test_pictures).any())
      found_in_train += bool(_fits(window, train_pictures).any())
  assert found_in_test == total
  # A train image almost never lies under a test digit's columns by chance.
  assert found_in_train <= 0.05 * total


def test_same_seed_same_strings():
  first = digit_strings.render_strings(*datasets.load_digits().split("valid"), 5,
                                       np.random.default_rng(3))
  second = digit_strings.render_strings(*datasets.load_digits().split("valid"), 5,
                                        np.random.default_rng(3))
  np.testing.assert_array_equal(first.frames, second.frames)
  np.testing.assert_array_equal(first.labels, second.labels)


@pytest.mark.parametrize("reference, hypothesis, expected", [
    ([1, 2, 3], [1, 2, 3], 0), ([1, 2, 3], [1, 3], 1), ([1, 2], [2, 1], 2),
    ([], [4, 4], 2), ([7, 7, 7], [7], 2), ([1, 2, 3, 4], [5, 2, 3, 4, 6], 2)])
def test_edit_distance(reference, hypothesis, expected):
  assert digit_strings.edit_distance(np.asarray(reference), np.asarray(hypothesis)) == expected


def test_character_error_rate_pools_edits():
  labels = np.asarray([[1, 2, 3, 0], [4, 5, 0, 0]])
  predictions = np.asarray([[1, 2, 0, 0], [4, 5, 6, 0]])
  cer = digit_strings.character_error_rate(labels, [3, 2], predictions, [2, 3])
  assert cer == pytest.approx(2 / 5)


def test_batch_paddings_match_lengths(strings):
  batch = strings.valid.as_batch(np.arange(4))
  np.testing.assert_array_equal(np.asarray(batch["frame_paddings"]).sum(1),
                                digit_strings.MAX_FRAMES - strings.valid.frame_lengths[:4])
  np.testing.assert_array_equal(np.asarray(batch["label_paddings"]).sum(1),
                                digit_strings.MAX_DIGITS - strings.valid.label_lengths[:4])
