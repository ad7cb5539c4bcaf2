"""CTC loss against brute-force enumeration, with repeated labels and too-long targets."""

import itertools

import hypothesis
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import strategies as st

from autogan_jax.alignment import ctc


ctc_loss = jax.jit(ctc.ctc_loss)


def collapse(path):
  """Merge repeats, then drop blanks (class 0)."""
  merged = [c for i, c in enumerate(path) if i == 0 or c != path[i - 1]]
  return tuple(c for c in merged if c != ctc.BLANK_ID)


def brute_force_nll(log_probs: np.ndarray, target: tuple) -> float:
  """-log of the summed probability of every frame path that collapses to `target`."""
  frames, classes = log_probs.shape
  total = 0.0
  for path in itertools.product(range(classes), repeat=frames):
    if collapse(path) == target:
      total += np.exp(sum(log_probs[t, c] for t, c in enumerate(path)))
  return -np.log(total) if total > 0 else np.inf


def one_example(logits, labels, num_frames=None, max_labels=None):
  """Batch of one; labels are right-padded to `max_labels` so that shapes repeat."""
  frames = logits.shape[0]
  num_frames = frames if num_frames is None else num_frames
  max_labels = len(labels) if max_labels is None else max_labels
  logit_paddings = (np.arange(frames) >= num_frames).astype(np.float32)[None]
  label_paddings = (np.arange(max_labels) >= len(labels)).astype(np.float32)[None]
  labels = np.pad(np.asarray(labels, np.int32), (0, max_labels - len(labels)))[None]
  return jnp.asarray(logits)[None], jnp.asarray(logit_paddings), jnp.asarray(labels), \
      jnp.asarray(label_paddings)


@pytest.mark.parametrize("target", [(1, 2), (1, 1), (2, 2, 1), (1,)])
def test_ctc_matches_brute_force(target):
  logits = np.asarray(jax.random.normal(jax.random.key(3), (5, 3)))
  loss, ok = ctc_loss(*one_example(logits, target, max_labels=3))
  expected = brute_force_nll(np.asarray(jax.nn.log_softmax(logits)), target)
  assert bool(ok[0])
  np.testing.assert_allclose(float(loss[0]), expected, rtol=1e-4)


def test_repeated_label_needs_blank():
  logits = np.asarray(jax.random.normal(jax.random.key(0), (3, 3)))
  # Three frames fit "1 1" only as 1, blank, 1.
  loss, ok = ctc_loss(*one_example(logits, (1, 1)))
  log_probs = np.asarray(jax.nn.log_softmax(logits))
  expected = -(log_probs[0, 1] + log_probs[1, 0] + log_probs[2, 1])
  assert bool(ok[0])
  np.testing.assert_allclose(float(loss[0]), expected, rtol=1e-5)
  # Two frames cannot emit "1 1": the loss is masked, not optax's 1e5 placeholder.
  loss, ok = ctc_loss(*one_example(logits[:2], (1, 1)))
  assert not bool(ok[0])
  assert float(loss[0]) == 0.0


def test_target_longer_than_input_masked():
  logits = jax.random.normal(jax.random.key(1), (3, 4))
  args = one_example(np.asarray(logits), (1, 2, 3, 1, 2))
  loss, ok = ctc_loss(*args)
  assert not bool(ok[0])
  assert np.isfinite(np.asarray(loss)).all()
  grads = jax.grad(lambda x: jnp.sum(ctc.ctc_loss(x, *args[1:])[0]))(args[0])
  assert np.isfinite(np.asarray(grads)).all()
  np.testing.assert_array_equal(np.asarray(grads), 0.0)


def test_target_longer_than_input_raises():
  args = one_example(np.zeros((4, 3)), (1, 1, 2))
  ctc.check_lengths(args[1], args[2], args[3])
  args = one_example(np.zeros((4, 3)), (1, 1, 1))
  with pytest.raises(ValueError, match="needs at least 5 frames"):
    ctc.check_lengths(args[1], args[2], args[3])


def test_masked_mean_skips_infeasible():
  logits = jax.random.normal(jax.random.key(2), (2, 4, 3))
  logit_paddings = jnp.asarray([[0, 0, 0, 0], [0, 0, 1, 1]], jnp.float32)
  labels = jnp.asarray([[1, 2, 0], [1, 1, 2]])
  label_paddings = jnp.asarray([[0, 0, 1], [0, 0, 0]], jnp.float32)
  loss, ok = ctc.ctc_loss(logits, logit_paddings, labels, label_paddings)
  np.testing.assert_array_equal(np.asarray(ok), [True, False])
  assert float(ctc.masked_mean(loss, ok)) == pytest.approx(float(loss[0]))


def test_required_frames_counts_repeats():
  labels = jnp.asarray([[1, 1, 2, 2, 2, 0], [3, 1, 3, 0, 0, 0]])
  paddings = jnp.asarray([[0, 0, 0, 0, 0, 1], [0, 0, 0, 1, 1, 1]], jnp.float32)
  np.testing.assert_array_equal(np.asarray(ctc.required_frames(labels, paddings)), [8, 3])


def test_greedy_decode_merges_and_drops_blanks():
  path = np.asarray([1, 1, 0, 1, 2, 2, 0, 0])
  logits = jax.nn.one_hot(path, 3)[None] * 5.0
  paddings = jnp.asarray([[0, 0, 0, 0, 0, 0, 0, 1]], jnp.float32)
  tokens, lengths = ctc.greedy_decode(logits, paddings, 4)
  assert int(lengths[0]) == 3
  np.testing.assert_array_equal(np.asarray(tokens[0]), [1, 1, 2, 0])


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(labels=st.lists(st.integers(1, 3), min_size=1, max_size=6),
                  frames=st.integers(1, 8), seed=st.integers(0, 1000))
def test_ctc_loss_always_finite(labels, frames, seed):
  logits = jax.random.normal(jax.random.key(seed), (8, 4))
  loss, ok = ctc_loss(*one_example(np.asarray(logits), labels, num_frames=frames,
                                        max_labels=6))
  needed = len(labels) + sum(a == b for a, b in zip(labels, labels[1:]))
  assert bool(ok[0]) == (frames >= needed)
  assert np.isfinite(float(loss[0]))
  if ok[0]:
    assert float(loss[0]) > 0.0
    assert float(loss[0]) < 1e3
