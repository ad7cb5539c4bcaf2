"""Five ways to align a sequence of frames with a shorter sequence of characters.

All mechanisms share one frame encoder (two convolutions over time, then one
self-attention layer that gives every frame global context) and differ in how
frames are mapped to output characters:

- "ctc": monotonic; one class per frame, summed over alignments by CTC.
- "attention": soft and non-monotonic. Output slot j attends over all frames
  with a learned slot query in place of a decoder state (Bahdanau et al.,
  "Neural Machine Translation by Jointly Learning to Align and Translate", 2015).
- "chunked": frames are pooled into chunks of `chunk_size`, then CTC runs over
  chunks. Coarser chunks cost less but cannot emit more than one character per
  chunk, so long targets may become infeasible (their loss is masked).
- "hierarchical": attention over two timescales. Slot j attends over
  segments of `chunk_size` frames and, separately, over the frames within each
  segment. A frame's weight is the product of the two.
- "boundaries": learned segmentation by continuous integrate-and-fire (Dong and
  Xu, "CIF: Continuous Integrate-and-Fire for End-to-End Speech Recognition",
  2020); each frame emits a weight in (0, 1), a segment closes each time the
  running sum crosses an integer, and each segment is classified.

Class ids are 0 for the blank or end-of-string symbol and digit + 1 otherwise.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from autogan_jax.alignment import ctc
from autogan_jax.core import validation
from autogan_jax.tasks import digit_strings

MECHANISMS = ("ctc", "attention", "chunked", "hierarchical", "boundaries")
CHUNK_SIZES = (2, 4, 8)
NUM_OUTPUT_CLASSES = digit_strings.NUM_CLASSES + 1
MAX_LENGTH = digit_strings.MAX_DIGITS


@dataclasses.dataclass(frozen=True)
class AlignmentConfig:
  """A mechanism and its settings; hashable, used as a static argument.

  Attributes:
    mechanism: one of `MECHANISMS`.
    chunk_size: frames per chunk ("chunked") or per coarse segment ("hierarchical");
      ignored by the other mechanisms.
    hidden: width of the encoder and heads.
    kernel: frames seen by each convolution of the encoder.
    quantity_weight: weight of the length loss of "boundaries".
  """

  mechanism: str = "ctc"
  chunk_size: int = 4
  hidden: int = 64
  kernel: int = 5
  quantity_weight: float = 1.0

  def __post_init__(self):
    validation.check_choice("mechanism", self.mechanism, MECHANISMS)
    validation.check_choice("chunk_size", self.chunk_size, CHUNK_SIZES)
    validation.check("hidden", self.hidden, validation.IntRange(4))
    validation.check("kernel", self.kernel, validation.IntRange(1, 15))
    validation.check("quantity_weight", self.quantity_weight, validation.FloatRange(0.0))

  def canonical(self) -> AlignmentConfig:
    """Return the config with ignored settings reset, so equal mechanisms compare equal."""
    if self.mechanism in ("chunked", "hierarchical"):
      return self
    return dataclasses.replace(self, chunk_size=CHUNK_SIZES[0])

  def describe(self) -> str:
    if self.mechanism in ("chunked", "hierarchical"):
      return f"{self.mechanism}(chunk={self.chunk_size})"
    return self.mechanism


def _dense(key, fan_in, fan_out):
  return {"w": jax.random.normal(key, (fan_in, fan_out)) * jnp.sqrt(1.0 / fan_in),
          "b": jnp.zeros(fan_out)}


def _apply_dense(params, x):
  return x @ params["w"] + params["b"]


def _windows(x: jax.Array, kernel: int) -> jax.Array:
  """Concatenate each frame with its neighbours: [B, T, C] -> [B, T, kernel * C]."""
  radius = kernel // 2
  padded = jnp.pad(x, ((0, 0), (radius, kernel - 1 - radius), (0, 0)))
  length = x.shape[1]
  return jnp.concatenate([padded[:, i:i + length] for i in range(kernel)], axis=-1)


def _positions(length: int, dim: int) -> jax.Array:
  """Sinusoidal position encodings (Vaswani et al., "Attention Is All You Need", 2017)."""
  position = jnp.arange(length)[:, None]
  rate = jnp.exp(-jnp.log(1e4) * (jnp.arange(0, dim, 2) / dim))
  angles = position * rate[None, :]
  encoding = jnp.zeros((length, dim))
  encoding = encoding.at[:, 0::2].set(jnp.sin(angles))
  return encoding.at[:, 1::2].set(jnp.cos(angles[:, : dim // 2]))


def _masked_softmax(scores: jax.Array, mask: jax.Array) -> jax.Array:
  """Softmax over the last axis where `mask` is True; all-False rows give zeros."""
  scores = jnp.where(mask, scores, -1e9)
  weights = jax.nn.softmax(scores, axis=-1)
  return jnp.where(mask, weights, 0.0)


def init(key: jax.Array, config: AlignmentConfig) -> dict:
  """Return encoder and head parameters for `config.mechanism`."""
  d = config.hidden
  names = ("conv1", "conv2", "query", "key", "value", "mix", "head", "out", "slots",
           "slots_coarse", "key_coarse", "value_head", "boundary")
  keys = dict(zip(names, jax.random.split(key, len(names))))
  params = {
      "conv1": _dense(keys["conv1"], config.kernel * digit_strings.FRAME_HEIGHT, d),
      "conv2": _dense(keys["conv2"], config.kernel * d, d),
      "query": _dense(keys["query"], d, d),
      "key": _dense(keys["key"], d, d),
      "value": _dense(keys["value"], d, d),
      "mix": _dense(keys["mix"], d, d),
      "head": _dense(keys["head"], d, d),
      "out": _dense(keys["out"], d, NUM_OUTPUT_CLASSES),
  }
  if config.mechanism in ("attention", "hierarchical"):
    params["slots"] = jax.random.normal(keys["slots"], (MAX_LENGTH, d))
    params["slot_key"] = _dense(keys["value_head"], d, d)
    params["slot_value"] = _dense(keys["key_coarse"], d, d)
  if config.mechanism == "hierarchical":
    params["slots_coarse"] = jax.random.normal(keys["slots_coarse"], (MAX_LENGTH, d))
    params["coarse_key"] = _dense(jax.random.fold_in(keys["key_coarse"], 1), d, d)
  if config.mechanism == "boundaries":
    params["boundary"] = _dense(keys["boundary"], d, 1)
  return params


def encode(params: dict, config: AlignmentConfig, frames: jax.Array,
           frame_paddings: jax.Array) -> jax.Array:
  """Map frames [B, T, FRAME_HEIGHT] to features [B, T, hidden], zero on padded frames."""
  mask = (1.0 - frame_paddings)[..., None]
  h = jax.nn.relu(_apply_dense(params["conv1"], _windows(frames, config.kernel))) * mask
  h = jax.nn.relu(_apply_dense(params["conv2"], _windows(h, config.kernel))) * mask
  h = h + _positions(h.shape[1], h.shape[2])[None]
  q = _apply_dense(params["query"], h)
  k = _apply_dense(params["key"], h)
  v = _apply_dense(params["value"], h)
  scores = jnp.einsum("btd,bsd->bts", q, k) / jnp.sqrt(h.shape[-1])
  weights = _masked_softmax(scores, (frame_paddings < 0.5)[:, None, :])
  h = h + jax.nn.relu(_apply_dense(params["mix"], jnp.einsum("bts,bsd->btd", weights, v)))
  return h * mask


def _classify(params, features):
  return _apply_dense(params["out"], jax.nn.relu(_apply_dense(params["head"], features)))


def _pool(features, paddings, size):
  """Mean-pool [B, T, D] over non-overlapping windows of `size` frames, ignoring padding."""
  batch, length, dim = features.shape
  mask = (1.0 - paddings).reshape(batch, length // size, size)
  grouped = features.reshape(batch, length // size, size, dim)
  count = jnp.sum(mask, axis=-1)
  pooled = jnp.sum(grouped * mask[..., None], axis=2) / jnp.maximum(count, 1.0)[..., None]
  return pooled, (count < 0.5).astype(jnp.float32)


def _slot_weights(params, config, h, frame_paddings):
  """Return [B, MAX_LENGTH, T] attention weights of the output slots over frames."""
  valid = frame_paddings < 0.5
  keys = _apply_dense(params["slot_key"], h)
  scale = jnp.sqrt(h.shape[-1])
  fine = jnp.einsum("jd,btd->bjt", params["slots"], keys) / scale
  if config.mechanism == "attention":
    return _masked_softmax(fine, valid[:, None, :])
  # Two timescales: a distribution over segments times one over frames in each segment.
  size = config.chunk_size
  batch, length, _ = h.shape
  pooled, segment_paddings = _pool(h, frame_paddings, size)
  coarse_scores = jnp.einsum("jd,bsd->bjs", params["slots_coarse"],
                             _apply_dense(params["coarse_key"], pooled)) / scale
  coarse = _masked_softmax(coarse_scores, (segment_paddings < 0.5)[:, None, :])
  fine = fine.reshape(batch, MAX_LENGTH, length // size, size)
  within = _masked_softmax(fine, valid.reshape(batch, 1, length // size, size))
  return (coarse[..., None] * within).reshape(batch, MAX_LENGTH, length)


def cif_weights(alpha: jax.Array, num_segments: int = MAX_LENGTH) -> jax.Array:
  """Return integrate-and-fire weights [B, num_segments, T] of firing weights `alpha` [B, T].

  Frame t covers the interval [c_{t-1}, c_t) of the running sum c of `alpha`,
  and its weight in segment j is the overlap of that interval with [j, j + 1).
  A frame whose interval crosses an integer is split between two segments.
  """
  end = jnp.cumsum(alpha, axis=1)
  start = end - alpha
  slots = jnp.arange(num_segments, dtype=alpha.dtype)[None, :, None]
  overlap = jnp.minimum(end[:, None, :], slots + 1.0) - jnp.maximum(start[:, None, :], slots)
  return jnp.maximum(overlap, 0.0)


def _boundary_weights(params, h, frame_paddings, target_lengths=None):
  """Return CIF weights [B, MAX_LENGTH, T] and the summed firing weight [B].

  With `target_lengths`, the firing weights are rescaled to sum to the target
  length (as in CIF training) so that segments and labels line up.
  """
  alpha = jax.nn.sigmoid(_apply_dense(params["boundary"], h)[..., 0]) * (1.0 - frame_paddings)
  total = jnp.sum(alpha, axis=1)
  if target_lengths is not None:
    alpha = alpha * (target_lengths / jnp.maximum(total, 1e-6))[:, None]
  return cif_weights(alpha), total


def _slot_targets(batch):
  """Class ids per output slot: digit + 1 inside the string, 0 (end) after it."""
  inside = batch["label_paddings"] < 0.5
  return jnp.where(inside, batch["labels"] + 1, 0)


def _cross_entropy(logits, targets, weight):
  log_probs = jax.nn.log_softmax(logits)
  nll = -jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
  return jnp.sum(nll * weight, axis=-1) / jnp.maximum(jnp.sum(weight, axis=-1), 1.0)


def loss(params: dict, config: AlignmentConfig, batch: dict) -> tuple[jax.Array, dict]:
  """Return the mean training loss over the batch and metrics (including the feasible share)."""
  h = encode(params, config, batch["frames"], batch["frame_paddings"])
  targets = _slot_targets(batch)
  ctc_labels = batch["labels"] + 1
  mechanism = config.mechanism
  if mechanism in ("ctc", "chunked"):
    features, paddings = h, batch["frame_paddings"]
    if mechanism == "chunked":
      features, paddings = _pool(h, paddings, config.chunk_size)
    per_example, ok = ctc.ctc_loss(_classify(params, features), paddings, ctc_labels,
                                   batch["label_paddings"])
    return ctc.masked_mean(per_example, ok), {"feasible": jnp.mean(ok)}
  if mechanism in ("attention", "hierarchical"):
    weights = _slot_weights(params, config, h, batch["frame_paddings"])
    context = jnp.einsum("bjt,btd->bjd", weights, _apply_dense(params["slot_value"], h))
    value = _cross_entropy(_classify(params, context), targets, jnp.ones(targets.shape))
    return jnp.mean(value), {"feasible": jnp.ones(())}
  lengths = batch["label_lengths"].astype(h.dtype)
  weights, total = _boundary_weights(params, h, batch["frame_paddings"], lengths)
  segments = jnp.einsum("bjt,btd->bjd", weights, h)
  inside = (batch["label_paddings"] < 0.5).astype(h.dtype)
  value = _cross_entropy(_classify(params, segments), targets, inside)
  quantity = jnp.abs(total - lengths)
  return jnp.mean(value + config.quantity_weight * quantity), {"feasible": jnp.ones(())}


def predict(params: dict, config: AlignmentConfig,
            batch: dict) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Decode digit strings; return digits [B, MAX_LENGTH], lengths [B] and alignment weights.

  The alignment weights [B, MAX_LENGTH, T] give, for each output position, the
  weight of each frame. For CTC mechanisms they mark the frames whose best-path
  label starts each emitted character (one-hot per output position).
  """
  h = encode(params, config, batch["frames"], batch["frame_paddings"])
  mechanism = config.mechanism
  length = h.shape[1]
  if mechanism in ("ctc", "chunked"):
    features, paddings, size = h, batch["frame_paddings"], 1
    if mechanism == "chunked":
      size = config.chunk_size
      features, paddings = _pool(h, paddings, size)
    logits = _classify(params, features)
    tokens, lengths = ctc.greedy_decode(logits, paddings, MAX_LENGTH)
    weights = _ctc_alignment(logits, paddings, size, length)
    inside = jnp.arange(MAX_LENGTH)[None, :] < lengths[:, None]
    return jnp.where(inside, tokens - 1, 0), lengths, weights
  if mechanism in ("attention", "hierarchical"):
    weights = _slot_weights(params, config, h, batch["frame_paddings"])
    context = jnp.einsum("bjt,btd->bjd", weights, _apply_dense(params["slot_value"], h))
    classes = jnp.argmax(_classify(params, context), axis=-1)
    ended = jnp.cumsum(classes == 0, axis=1) > 0
    lengths = jnp.sum(~ended, axis=1)
    return jnp.where(ended, 0, classes - 1), lengths, weights
  weights, total = _boundary_weights(params, h, batch["frame_paddings"])
  lengths = jnp.clip(jnp.round(total), 0, MAX_LENGTH).astype(jnp.int32)
  logits = _classify(params, jnp.einsum("bjt,btd->bjd", weights, h))
  # Slot 0 of the classifier is the end symbol, which a CIF segment never is.
  digits = jnp.argmax(logits[..., 1:], axis=-1)
  inside = jnp.arange(MAX_LENGTH)[None, :] < lengths[:, None]
  return jnp.where(inside, digits, 0), lengths, weights


def _ctc_alignment(logits, paddings, size, length):
  """One-hot [B, MAX_LENGTH, T]: the frame where the best path starts each output character."""
  best = jnp.argmax(logits, axis=-1)
  valid = paddings < 0.5
  previous = jnp.pad(best[:, :-1], ((0, 0), (1, 0)))
  emit = valid & (best != ctc.BLANK_ID) & (best != previous)
  slot = jnp.where(emit, jnp.cumsum(emit, axis=1) - 1, -1)
  one_hot = (slot[:, None, :] == jnp.arange(MAX_LENGTH)[None, :, None]).astype(jnp.float32)
  return jnp.repeat(one_hot, size, axis=2)[..., :length] / size
