"""The masked forward pass shared by a spec built alone and a padded population member.

`apply(params, x, code, envelope)` is a pure function of a flat dict of arrays.
Every size and choice of the member comes from `code` (a `SpecArrays`), and the
parameter shapes come from `envelope`. Units, heads and layers past the
member's own sizes are multiplied by zero masks or passed through unchanged,
so a member padded to a larger envelope computes the same outputs as the spec
built at its own sizes, and the gradients of its padded entries are zero.

Parameter layouts put the active part of every axis first, so a spec's
parameters embed into a larger envelope by zero-padding each axis at its end.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from autogan_jax.model_space import encoding
from autogan_jax.model_space import spec as spec_lib

Params = dict[str, jax.Array]

NORM_EPS = 1e-5
# Stands in for minus infinity in masked softmax scores, so no gradient is NaN.
MASKED_SCORE = -1e9


def _mask(size: int, active: jax.Array) -> jax.Array:
  return (jnp.arange(size) < active).astype(jnp.float32)


def _fit(x: jax.Array, size: int) -> jax.Array:
  """Zero-pad or truncate the last axis of `x` to `size`."""
  current = x.shape[-1]
  if current >= size:
    return x[..., :size]
  pad = [(0, 0)] * (x.ndim - 1) + [(0, size - current)]
  return jnp.pad(x, pad)


def _activation(index: jax.Array, x: jax.Array) -> jax.Array:
  branches = [jax.nn.relu, jnp.tanh, jax.nn.gelu, jax.nn.elu, jax.nn.swish]
  return jax.lax.switch(index, branches, x)


def _norm(kind: jax.Array, x: jax.Array, mask: jax.Array, scale: jax.Array,
          bias: jax.Array) -> jax.Array:
  """Apply norm number `kind` of `spec.NORMS` over the active units of the last axis."""
  count = jnp.maximum(jnp.sum(mask), 1.0)
  mean = jnp.sum(x * mask, -1, keepdims=True) / count
  centred = (x - mean) * mask
  variance = jnp.sum(centred**2, -1, keepdims=True) / count
  layer = centred * jax.lax.rsqrt(variance + NORM_EPS) * scale + bias
  mean_square = jnp.sum((x * mask) ** 2, -1, keepdims=True) / count
  rms = x * jax.lax.rsqrt(mean_square + NORM_EPS) * scale
  choice = jnp.stack([x, layer, rms])[kind]
  return choice * mask


def _join(connectivity: jax.Array, new: jax.Array, history: list[jax.Array],
          mask: jax.Array) -> jax.Array:
  """Join a layer's output with earlier outputs as `spec.CONNECTIVITY` number `connectivity`."""
  if not history:
    return new * mask
  size = new.shape[-1]
  residual = new + _fit(history[-1], size)
  dense = new + sum(_fit(h, size) for h in history) / len(history)
  return jnp.stack([new, residual, dense])[connectivity] * mask


# Attention.


def _pattern_masks(length: int, window: jax.Array) -> jax.Array:
  """Return the hard masks of `spec.ATTENTION_PATTERNS`, shape [patterns, length, length]."""
  i = jnp.arange(length)[:, None]
  j = jnp.arange(length)[None, :]
  window = jnp.maximum(window, 1)
  dense = jnp.ones((length, length), bool)
  local = jnp.abs(i - j) < window
  strided = (i - j) % window == 0
  block = (i // window) == (j // window)
  return jnp.stack([dense, local, strided, block, dense])


def _sinusoidal(length: int, size: int, active: jax.Array) -> jax.Array:
  """Sinusoidal position encoding over the first `active` features (Vaswani et al., 2017)."""
  position = jnp.arange(length, dtype=jnp.float32)[:, None]
  feature = jnp.arange(size)
  pair_start = (feature - feature % 2).astype(jnp.float32)
  angle = position / jnp.power(10000.0, pair_start / active.astype(jnp.float32))
  encoding_ = jnp.where(feature % 2 == 0, jnp.sin(angle), jnp.cos(angle))
  return encoding_ * _mask(size, active)


def _rotary(x: jax.Array, head_dim: jax.Array) -> jax.Array:
  """Rotate feature pairs (2p, 2p + 1) of `x` [length, heads, dim] by position (RoFormer, Su et al., 2021)."""
  length, _, size = x.shape
  odd = size % 2
  if odd:
    x = jnp.pad(x, ((0, 0), (0, 0), (0, 1)))
  pairs = x.reshape(length, x.shape[1], -1, 2)
  index = jnp.arange(pairs.shape[2], dtype=jnp.float32)
  frequency = jnp.power(10000.0, -2.0 * index / head_dim.astype(jnp.float32))
  angle = jnp.arange(length, dtype=jnp.float32)[:, None, None] * frequency
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  first, second = pairs[..., 0], pairs[..., 1]
  rotated = jnp.stack([first * cos - second * sin, first * sin + second * cos], -1)
  rotated = rotated.reshape(length, x.shape[1], -1)
  return rotated[..., :size] if odd else rotated


def attend(attn: Params, x: jax.Array, code: encoding.SpecArrays) -> jax.Array:
  """Multi-head attention over `x` [length, max_model_dim] with the member's choices.

  Args:
    attn: "wq", "wk", "wv" [max_model_dim, max_heads, max_head_dim], "wo"
      [max_heads, max_head_dim, max_model_dim], "gate" [max_heads] and
      "pattern_logits" [length, length].
    x: the block's normalised input.
    code: the member's spec arrays.
  """
  length = x.shape[0]
  max_heads, max_head_dim = attn["wq"].shape[1:]
  head_dim = code.model_dim // code.num_heads
  head_mask = _mask(max_heads, code.num_heads)
  feature_mask = _mask(max_head_dim, head_dim)
  qkv_mask = head_mask[:, None] * feature_mask[None, :]
  q = jnp.einsum("td,dhk->thk", x, attn["wq"]) * qkv_mask
  k = jnp.einsum("td,dhk->thk", x, attn["wk"]) * qkv_mask
  v = jnp.einsum("td,dhk->thk", x, attn["wv"]) * qkv_mask

  rotary = code.position == spec_lib.POSITIONS.index("rotary")
  q = jnp.where(rotary, _rotary(q, head_dim), q)
  k = jnp.where(rotary, _rotary(k, head_dim), k)

  scores = jnp.einsum("ihk,jhk->hij", q, k) / jnp.sqrt(head_dim.astype(jnp.float32))
  distance = jnp.abs(jnp.arange(length)[:, None] - jnp.arange(length)[None, :])
  heads = code.num_heads.astype(jnp.float32)
  # ALiBi slopes 2^(-8 (h + 1) / H) (Press, Smith and Lewis, "Train Short, Test Long", 2022).
  slopes = jnp.power(2.0, -8.0 * (jnp.arange(max_heads) + 1.0) / heads)
  alibi = code.position == spec_lib.POSITIONS.index("alibi")
  scores = scores - jnp.where(alibi, slopes[:, None, None] * distance[None], 0.0)

  hard = _pattern_masks(length, code.window)[code.pattern]
  learned = code.pattern == spec_lib.ATTENTION_PATTERNS.index("learned")
  soft = jnp.where(learned, jax.nn.sigmoid(attn["pattern_logits"]), 1.0)
  log_soft = jnp.where(learned, jax.nn.log_sigmoid(attn["pattern_logits"]), 0.0)
  softmax = jax.nn.softmax(jnp.where(hard, scores + log_soft, MASKED_SCORE), axis=-1)
  relu = jax.nn.relu(scores) * hard * soft / length
  linear = scores * hard * soft / length
  gated = jax.nn.sigmoid(scores) * hard * soft / length
  weights = jnp.stack([softmax, relu, linear, gated])[code.combine]

  heads_out = jnp.einsum("hij,jhk->ihk", weights, v)
  projected = jnp.einsum("thk,hkd->thd", heads_out, attn["wo"])
  head_weights = jnp.stack([jnp.ones(max_heads), jnp.ones(max_heads) / heads,
                            jax.nn.sigmoid(attn["gate"])])[code.head_combine] * head_mask
  out = jnp.einsum("thd,h->td", projected, head_weights)
  return out * _mask(out.shape[-1], code.model_dim)


# Families.

ATTENTION_KEYS = ("wq", "wk", "wv", "wo", "gate", "pattern_logits")


def _embed_sequence(params: Params, x: jax.Array, io: spec_lib.ModelIO,
                    code: encoding.SpecArrays) -> jax.Array:
  """Embed tokens, or project feature rows, to [length, max_model_dim]."""
  if io.input_kind == "tokens":
    h = params["embed"][x]
  else:
    h = x @ params["in_w"] + params["in_b"]
  return h * _mask(h.shape[-1], code.model_dim)


def _mlp(params: Params, x: jax.Array, code: encoding.SpecArrays,
         envelope: encoding.Envelope) -> jax.Array:
  if envelope.io.input_kind == "tokens":
    x = params["embed"][x] * _mask(envelope.max_model_dim, code.model_dim)
  history: list[jax.Array] = []
  h = jnp.zeros(0)
  for i in range(envelope.max_depth):
    # Sizes come from the parameters, so a spec built at its own sizes runs unpadded.
    mask = _mask(params[f"layer{i}_scale"].shape[0], code.widths[i])
    if i == 0:
      z = jnp.einsum("tf,tfw->w", x, params["layer0_w"]) + params["layer0_b"]
    else:
      z = h @ params[f"layer{i}_w"] + params[f"layer{i}_b"]
    z = _norm(code.norm, z, mask, params[f"layer{i}_scale"], params[f"layer{i}_bias"])
    new = _join(code.connectivity, _activation(code.activation, z), history, mask)
    h = new if i == 0 else jnp.where(i < code.depth, new, _fit(h, new.shape[-1]))
    history.append(h)
  return h @ params["out_w"] + params["out_b"]


def _transformer(params: Params, x: jax.Array, code: encoding.SpecArrays,
                 envelope: encoding.Envelope) -> jax.Array:
  length = envelope.io.seq_len
  d_mask = _mask(envelope.max_model_dim, code.model_dim)
  h = _embed_sequence(params, x, envelope.io, code)
  h = h + jnp.where(code.position == spec_lib.POSITIONS.index("sinusoidal"),
                    _sinusoidal(length, envelope.max_model_dim, code.model_dim), 0.0)
  h = h + jnp.where(code.position == spec_lib.POSITIONS.index("learned"),
                    params["position"] * d_mask, 0.0)
  sublayer_residual = (code.connectivity != spec_lib.CONNECTIVITY.index("none")).astype(
      jnp.float32)
  dense = code.connectivity == spec_lib.CONNECTIVITY.index("dense")
  history = [h]
  first_attention = {name: params[f"block0_{name}"] for name in ATTENTION_KEYS}
  for i in range(envelope.max_depth):
    w_mask = _mask(params[f"block{i}_b1"].shape[0], code.widths[i])
    own = {name: params[f"block{i}_{name}"] for name in ATTENTION_KEYS}
    attention = jax.tree.map(lambda a, b: jnp.where(code.shared == 1, a, b),
                             first_attention, own)
    normed = _norm(code.norm, h, d_mask, params[f"block{i}_scale1"], params[f"block{i}_bias1"])
    u = sublayer_residual * h + attend(attention, normed, code)
    normed = _norm(code.norm, u, d_mask, params[f"block{i}_scale2"], params[f"block{i}_bias2"])
    hidden = _activation(code.activation, normed @ params[f"block{i}_w1"]
                         + params[f"block{i}_b1"]) * w_mask
    u = sublayer_residual * u + (hidden @ params[f"block{i}_w2"] + params[f"block{i}_b2"])
    u = u + jnp.where(dense, sum(history) / len(history), 0.0)
    h = jnp.where(i < code.depth, u * d_mask, h)
    history.append(h)
  last = _norm(code.norm, h[-1], d_mask, params["final_scale"], params["final_bias"])
  return last @ params["out_w"] + params["out_b"]


def _recurrent_layer(params: Params, i: int, xs: jax.Array, mask: jax.Array,
                     lstm: bool) -> jax.Array:
  """Run one LSTM or GRU layer over `xs` [length, features]; return [length, max_width]."""
  wx, wh, b = params[f"rnn{i}_wx"], params[f"rnn{i}_wh"], params[f"rnn{i}_b"]
  width = wh.shape[0]
  inputs = jnp.einsum("tf,fgw->tgw", xs, wx) + b

  def lstm_cell(carry, z):
    h, c = carry
    z = z + jnp.einsum("w,wgv->gv", h, wh)
    gate_in, forget, cell, gate_out = z[0], z[1], z[2], z[3]
    c = (jax.nn.sigmoid(forget) * c + jax.nn.sigmoid(gate_in) * jnp.tanh(cell)) * mask
    h = jax.nn.sigmoid(gate_out) * jnp.tanh(c) * mask
    return (h, c), h

  def gru_cell(carry, z):
    h, c = carry
    recurrent = jnp.einsum("w,wgv->gv", h, wh)
    reset = jax.nn.sigmoid(z[0] + recurrent[0])
    update = jax.nn.sigmoid(z[1] + recurrent[1])
    candidate = jnp.tanh(z[2] + reset * recurrent[2])
    h = ((1.0 - update) * candidate + update * h) * mask
    return (h, c), h

  zero = jnp.zeros(width)
  _, hs = jax.lax.scan(lstm_cell if lstm else gru_cell, (zero, zero), inputs)
  return hs


def _recurrent(params: Params, x: jax.Array, code: encoding.SpecArrays,
               envelope: encoding.Envelope) -> jax.Array:
  h = _embed_sequence(params, x, envelope.io, code)
  history = [h]
  lstm = envelope.family == "lstm"
  for i in range(envelope.max_depth):
    mask = _mask(params[f"rnn{i}_scale"].shape[0], code.widths[i])
    u = _recurrent_layer(params, i, h, mask, lstm)
    u = _norm(code.norm, u, mask, params[f"rnn{i}_scale"], params[f"rnn{i}_bias"])
    new = _join(code.connectivity, u, history, mask)
    h = new if i == 0 else jnp.where(i < code.depth, new, _fit(h, new.shape[-1]))
    history.append(h)
  return h[-1] @ params["out_w"] + params["out_b"]


FORWARD = {"mlp": _mlp, "transformer": _transformer, "lstm": _recurrent, "gru": _recurrent}


def apply(params: Params, x: jax.Array, code: encoding.SpecArrays,
          envelope: encoding.Envelope) -> jax.Array:
  """Return logits [batch, num_classes] of one member for inputs `x` [batch, length, ...].

  Token inputs are int arrays [batch, length]; feature inputs are float arrays
  [batch, length, in_features].
  """
  forward = FORWARD[envelope.family]
  return jax.vmap(lambda example: forward(params, example, code, envelope))(x)


# Initialisation at a spec's own sizes.


def _normal(key: jax.Array, shape: tuple[int, ...], fan_in: int) -> jax.Array:
  return jax.random.normal(key, shape, jnp.float32) / np.sqrt(max(fan_in, 1))


def _qkv(key: jax.Array, kind: str, model_dim: int, heads: int, head_dim: int) -> jax.Array:
  shape = (model_dim, heads * head_dim)
  if kind == "glorot":
    w = jax.nn.initializers.glorot_uniform()(key, shape)
  elif kind == "small_normal":
    w = 0.02 * jax.random.normal(key, shape)
  else:
    w = jax.nn.initializers.orthogonal()(key, shape)
  return w.astype(jnp.float32).reshape(model_dim, heads, head_dim)


def init_params(spec: spec_lib.ModelSpec, io: spec_lib.ModelIO, key: jax.Array) -> Params:
  """Initialise the parameters of `spec` at its own sizes (its exact envelope)."""
  keys = iter(jax.random.split(key, 64))
  w, d = spec.widths, spec.model_dim
  classes = io.num_classes
  params: dict[str, jax.Array] = {}
  zeros, ones = (lambda *s: jnp.zeros(s, jnp.float32)), (lambda *s: jnp.ones(s, jnp.float32))

  if spec.family == "mlp":
    if io.input_kind == "tokens":
      params["embed"] = _normal(next(keys), (io.in_features, d), 1)
      row = d
    else:
      row = io.in_features
    params["layer0_w"] = _normal(next(keys), (io.seq_len, row, w[0]), io.seq_len * row)
    params["layer0_b"] = zeros(w[0])
    for i in range(spec.depth):
      if i > 0:
        params[f"layer{i}_w"] = _normal(next(keys), (w[i - 1], w[i]), w[i - 1])
        params[f"layer{i}_b"] = zeros(w[i])
      params[f"layer{i}_scale"] = ones(w[i])
      params[f"layer{i}_bias"] = zeros(w[i])
    params["out_w"] = _normal(next(keys), (w[-1], classes), w[-1])
    params["out_b"] = zeros(classes)
    return params

  if io.input_kind == "tokens":
    params["embed"] = _normal(next(keys), (io.in_features, d), 1)
  else:
    params["in_w"] = _normal(next(keys), (io.in_features, d), io.in_features)
    params["in_b"] = zeros(d)

  if spec.family == "transformer":
    a = spec.attention
    heads, head_dim = a.num_heads, spec.head_dim
    params["position"] = 0.02 * jax.random.normal(next(keys), (io.seq_len, d), jnp.float32)
    for i in range(spec.depth):
      for name in ("wq", "wk", "wv"):
        params[f"block{i}_{name}"] = _qkv(next(keys), a.qkv_init, d, heads, head_dim)
      params[f"block{i}_wo"] = _normal(next(keys), (heads, head_dim, d), d)
      params[f"block{i}_gate"] = zeros(heads)
      params[f"block{i}_pattern_logits"] = jnp.full((io.seq_len, io.seq_len), 2.0, jnp.float32)
      params[f"block{i}_scale1"], params[f"block{i}_bias1"] = ones(d), zeros(d)
      params[f"block{i}_scale2"], params[f"block{i}_bias2"] = ones(d), zeros(d)
      params[f"block{i}_w1"] = _normal(next(keys), (d, w[i]), d)
      params[f"block{i}_b1"] = zeros(w[i])
      params[f"block{i}_w2"] = _normal(next(keys), (w[i], d), w[i])
      params[f"block{i}_b2"] = zeros(d)
    params["final_scale"], params["final_bias"] = ones(d), zeros(d)
    params["out_w"] = _normal(next(keys), (d, classes), d)
  else:
    gates = 4 if spec.family == "lstm" else 3
    for i in range(spec.depth):
      fan = d if i == 0 else w[i - 1]
      params[f"rnn{i}_wx"] = _normal(next(keys), (fan, gates, w[i]), fan)
      params[f"rnn{i}_wh"] = _normal(next(keys), (w[i], gates, w[i]), w[i])
      bias = zeros(gates, w[i])
      if spec.family == "lstm":
        bias = bias.at[1].set(1.0)  # Forget-gate bias of one (Jozefowicz et al., 2015).
      params[f"rnn{i}_b"] = bias
      params[f"rnn{i}_scale"], params[f"rnn{i}_bias"] = ones(w[i]), zeros(w[i])
    params["out_w"] = _normal(next(keys), (w[-1], classes), w[-1])
  params["out_b"] = zeros(classes)
  return params


def padded_shapes(envelope: encoding.Envelope) -> dict[str, tuple[int, ...]]:
  """Return the parameter shapes of a member padded to `envelope`."""
  io = envelope.io
  layer_spec = spec_lib.ModelSpec(
      family=envelope.family, widths=(envelope.max_width,) * envelope.max_depth,
      model_dim=envelope.max_model_dim,
      attention=(spec_lib.AttentionSpec(num_heads=1) if envelope.family == "transformer"
                 else None))
  shapes = jax.eval_shape(lambda k: init_params(layer_spec, io, k), jax.random.key(0))
  shapes = {name: s.shape for name, s in shapes.items()}
  if envelope.family == "transformer":
    heads, head_dim, d = envelope.max_heads, envelope.max_head_dim, envelope.max_model_dim
    for i in range(envelope.max_depth):
      for name in ("wq", "wk", "wv"):
        shapes[f"block{i}_{name}"] = (d, heads, head_dim)
      shapes[f"block{i}_wo"] = (heads, head_dim, d)
      shapes[f"block{i}_gate"] = (heads,)
  if envelope.family in ("lstm", "gru"):
    # The first recurrent layer reads the embedding; later ones read the layer below.
    gates = 4 if envelope.family == "lstm" else 3
    shapes["rnn0_wx"] = (envelope.max_model_dim, gates, envelope.max_width)
  return shapes


def embed_params(params: Params, envelope: encoding.Envelope) -> Params:
  """Zero-pad a spec's parameters to the shapes of `envelope` (missing layers become zeros)."""
  padded = {}
  for name, shape in padded_shapes(envelope).items():
    if name not in params:
      padded[name] = jnp.zeros(shape, jnp.float32)
      continue
    value = params[name]
    if value.ndim != len(shape) or any(a > b for a, b in zip(value.shape, shape)):
      raise ValueError(f"Parameter {name} of shape {value.shape} does not fit the padded "
                       f"shape {shape} of {envelope}.")
    padded[name] = jnp.pad(value, [(0, b - a) for a, b in zip(value.shape, shape)])
  return padded
