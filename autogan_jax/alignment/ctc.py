"""Connectionist temporal classification with explicit handling of infeasible targets.

CTC (Graves et al., "Connectionist Temporal Classification: Labelling
Unsegmented Sequence Data with Recurrent Neural Networks", 2006) sums over
every monotonic alignment of a label sequence to the input frames, where an
alignment may emit a blank or repeat a label. Between two equal adjacent labels
a blank is required, so a target of length L with r adjacent repeats needs at
least L + r frames. `optax.ctc_loss` returns about -log_epsilon (1e5 by
default) for a shorter input, a finite value that would dominate a mean. The
wrapper here reports which targets are feasible and masks the others out.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

BLANK_ID = 0


def required_frames(labels: jax.Array, label_paddings: jax.Array) -> jax.Array:
  """Return L + (adjacent repeats), the fewest frames that can emit each target, shape [B]."""
  valid = 1.0 - label_paddings
  repeats = (labels[:, 1:] == labels[:, :-1]) * valid[:, 1:] * valid[:, :-1]
  return (jnp.sum(valid, axis=1) + jnp.sum(repeats, axis=1)).astype(jnp.int32)


def feasible(logit_paddings: jax.Array, labels: jax.Array,
             label_paddings: jax.Array) -> jax.Array:
  """Return a bool [B]: True where the input has enough frames for the target."""
  frames = jnp.sum(1.0 - logit_paddings, axis=1).astype(jnp.int32)
  return frames >= required_frames(labels, label_paddings)


def check_lengths(logit_paddings, labels, label_paddings) -> None:
  """Raise ValueError naming the first target that is too long for its input.

  Works on concrete arrays only; inside `jit` use `ctc_loss`, which masks.
  """
  frames = np.sum(1.0 - np.asarray(logit_paddings), axis=1).astype(int)
  needed = np.asarray(required_frames(jnp.asarray(labels), jnp.asarray(label_paddings)))
  bad = np.nonzero(frames < needed)[0]
  if bad.size:
    i = int(bad[0])
    raise ValueError(
        f"CTC target {i} needs at least {needed[i]} frames (its labels plus one blank between "
        f"each pair of equal neighbours) but its input has {frames[i]}; {bad.size} of "
        f"{len(frames)} targets are too long. Shorten the target or pool fewer frames.")


def ctc_loss(logits: jax.Array, logit_paddings: jax.Array, labels: jax.Array,
             label_paddings: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Return the per-sequence CTC loss with infeasible targets masked, and the feasibility mask.

  Args:
    logits: [B, T, K] class logits, class `BLANK_ID` is the blank.
    logit_paddings: [B, T], 1.0 on padded frames.
    labels: [B, N] class ids in [1, K), right-padded.
    label_paddings: [B, N], 1.0 on padded labels.

  Returns:
    `(loss, ok)`: `loss` [B] is the negative log-likelihood where `ok` is True
    and exactly 0.0 (with zero gradient) where the target cannot be emitted in
    the available frames. Average with `masked_mean(loss, ok)`.
  """
  ok = feasible(logit_paddings, labels, label_paddings)
  raw = optax.ctc_loss(logits, logit_paddings, labels, label_paddings, blank_id=BLANK_ID)
  return jnp.where(ok, raw, 0.0), ok


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
  """Return the mean of `values` where `mask` is True, and 0.0 when none is."""
  mask = mask.astype(values.dtype)
  return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def greedy_decode(logits: jax.Array, logit_paddings: jax.Array,
                  max_length: int) -> tuple[jax.Array, jax.Array]:
  """Decode best paths: argmax per frame, merge repeats, drop blanks.

  Returns:
    `(tokens, lengths)`: tokens [B, max_length] are class ids left-aligned and
    zero-padded; lengths [B] count the emitted tokens, capped at `max_length`.
  """
  best = jnp.argmax(logits, axis=-1)
  valid = logit_paddings < 0.5
  previous = jnp.pad(best[:, :-1], ((0, 0), (1, 0)), constant_values=BLANK_ID)
  keep = valid & (best != BLANK_ID) & (best != previous)
  # Each kept frame goes to slot (number of kept frames before it); the rest go to a
  # spare slot past the end that is dropped.
  slot = jnp.where(keep, jnp.cumsum(keep, axis=1) - 1, max_length)
  slot = jnp.minimum(slot, max_length)
  tokens = jnp.zeros((logits.shape[0], max_length + 1), best.dtype)
  tokens = jax.vmap(lambda t, s, b: t.at[s].set(b))(tokens, slot, best)
  lengths = jnp.minimum(jnp.sum(keep, axis=1), max_length)
  return tokens[:, :max_length], lengths
