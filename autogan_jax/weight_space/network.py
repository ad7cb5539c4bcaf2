"""Networks as plain data: an ordered tuple of layers, each a kind plus a parameter dict.

Kinds and their parameters (d is the model width, h the heads, k the head width):

- "dense": `w` [in, out], `b` [out]; maps vectors to vectors, then applies
  the layer's `activation`.
- "embed": `w` [row_width, d], `pos` [rows, d]; cuts a flat image [rows *
  row_width] into `rows` tokens of one image row each.
- "attention": `ln_scale`, `ln_bias` [d], `wq`, `wk`, `wv` [d, h, k], `wo`
  [h, k, d]; a pre-norm residual block x + MHA(LN(x)) over the tokens.
- "feed_forward": `ln_scale`, `ln_bias` [d], `w1` [d, f], `b1` [f], `w2` [f,
  d], `b2` [d]; a pre-norm residual block x + W2 act(W1 LN(x) + b1) + b2.
- "readout": `ln_scale`, `ln_bias` [d], `w` [d, classes], `b` [classes];
  layer-normalises the tokens, averages them and maps the average to logits.

A network is a tuple of `Layer`s, which is a pytree, so it crosses `jit`,
`vmap` and checkpoints as is.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import struct

KINDS = ("dense", "embed", "attention", "feed_forward", "readout")
ACTIVATIONS = {
    "identity": lambda x: x,
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "tanh": jnp.tanh,
}
# Attention and feed-forward blocks map tokens to tokens of the same width, so
# any order of them is a valid network.
RESIDUAL_KINDS = ("attention", "feed_forward")
LAYER_NORM_EPSILON = 1e-5


@struct.dataclass
class Layer:
  """One layer of a network.

  Attributes:
    params: the layer's arrays, named as in the module docstring.
    kind: one of `KINDS`; static.
    activation: a key of `ACTIVATIONS`; used by "dense" and "feed_forward".
  """

  params: dict[str, jax.Array]
  kind: str = struct.field(pytree_node=False)
  activation: str = struct.field(pytree_node=False, default="identity")


Network = tuple[Layer, ...]


def signature(layer: Layer) -> tuple[tuple[str, int], tuple[str, int]]:
  """Return the (input, output) shape signature of a layer as (form, width) pairs.

  The form is "vector" for [batch, width] activations and "tokens" for
  [batch, tokens, width] ones.
  """
  p = layer.params
  if layer.kind == "dense":
    return ("vector", p["w"].shape[0]), ("vector", p["w"].shape[1])
  if layer.kind == "embed":
    rows, width = p["pos"].shape
    return ("vector", rows * p["w"].shape[0]), ("tokens", width)
  if layer.kind == "attention":
    return ("tokens", p["wq"].shape[0]), ("tokens", p["wo"].shape[-1])
  if layer.kind == "feed_forward":
    return ("tokens", p["w1"].shape[0]), ("tokens", p["w2"].shape[1])
  if layer.kind == "readout":
    return ("tokens", p["w"].shape[0]), ("vector", p["w"].shape[1])
  raise ValueError(f"Unknown layer kind {layer.kind!r}; expected one of {KINDS}.")


def check_network(layers: Sequence[Layer], input_dim: int | None = None,
                  num_classes: int | None = None) -> None:
  """Raise ValueError unless the layers chain into a valid vector-to-logits network.

  Args:
    layers: the network.
    input_dim: when given, the width of the flat input that the first layer must take.
    num_classes: when given, the number of logits that the last layer must return.

  Raises:
    ValueError: naming the first position whose input does not match the
      previous output, an unknown kind or activation, or an empty network.
  """
  if not layers:
    raise ValueError("A network needs at least one layer, got an empty sequence.")
  for position, layer in enumerate(layers):
    if layer.kind not in KINDS:
      raise ValueError(f"Layer {position} has unknown kind {layer.kind!r}; expected one of "
                       f"{KINDS}.")
    if layer.activation not in ACTIVATIONS:
      raise ValueError(f"Layer {position} has unknown activation {layer.activation!r}; "
                       f"expected one of {tuple(ACTIVATIONS)}.")
  first_input = signature(layers[0])[0]
  if first_input[0] != "vector" or (input_dim is not None and first_input[1] != input_dim):
    raise ValueError(f"Layer 0 ({layers[0].kind}) takes {first_input}, but the network input "
                     f"is ('vector', {input_dim}).")
  for position in range(1, len(layers)):
    previous_output = signature(layers[position - 1])[1]
    this_input = signature(layers[position])[0]
    if previous_output != this_input:
      raise ValueError(
          f"Layer {position} ({layers[position].kind}) takes {this_input}, but layer "
          f"{position - 1} ({layers[position - 1].kind}) returns {previous_output}.")
  last_output = signature(layers[-1])[1]
  if last_output[0] != "vector" or (num_classes is not None and last_output[1] != num_classes):
    raise ValueError(f"The last layer ({layers[-1].kind}) returns {last_output}, but the "
                     f"network must return ('vector', {num_classes}) logits.")


def _layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array) -> jax.Array:
  mean = jnp.mean(x, axis=-1, keepdims=True)
  var = jnp.var(x, axis=-1, keepdims=True)
  return (x - mean) * jax.lax.rsqrt(var + LAYER_NORM_EPSILON) * scale + bias


def apply_layer(layer: Layer, x: jax.Array) -> jax.Array:
  """Apply one layer to a batch of activations."""
  p = layer.params
  act = ACTIVATIONS[layer.activation]
  if layer.kind == "dense":
    return act(x @ p["w"] + p["b"])
  if layer.kind == "embed":
    rows, _ = p["pos"].shape
    tokens = x.reshape(x.shape[:-1] + (rows, -1))
    return tokens @ p["w"] + p["pos"]
  if layer.kind == "attention":
    h = _layer_norm(x, p["ln_scale"], p["ln_bias"])
    q = jnp.einsum("btd,dhk->bthk", h, p["wq"])
    k = jnp.einsum("btd,dhk->bthk", h, p["wk"])
    v = jnp.einsum("btd,dhk->bthk", h, p["wv"])
    logits = jnp.einsum("bqhk,bshk->bhqs", q, k) / jnp.sqrt(q.shape[-1]).astype(q.dtype)
    weights = jax.nn.softmax(logits, axis=-1)
    mixed = jnp.einsum("bhqs,bshk->bqhk", weights, v)
    return x + jnp.einsum("bqhk,hkd->bqd", mixed, p["wo"])
  if layer.kind == "feed_forward":
    h = _layer_norm(x, p["ln_scale"], p["ln_bias"])
    return x + act(h @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
  if layer.kind == "readout":
    h = _layer_norm(x, p["ln_scale"], p["ln_bias"])
    return jnp.mean(h, axis=-2) @ p["w"] + p["b"]
  raise ValueError(f"Unknown layer kind {layer.kind!r}; expected one of {KINDS}.")


def apply_network(layers: Sequence[Layer], x: jax.Array) -> jax.Array:
  """Apply the layers in order to flat inputs `x` [batch, input_dim]; return the logits."""
  for layer in layers:
    x = apply_layer(layer, x)
  return x


def init_mlp(key: jax.Array, sizes: Sequence[int], activation: str = "relu") -> Network:
  """Initialise a dense network with He-normal weights and zero biases.

  Args:
    key: PRNG key.
    sizes: widths from input to logits, for example (64, 128, 128, 10).
    activation: of every hidden layer; the last layer is linear.
  """
  if len(sizes) < 2:
    raise ValueError(f"An MLP needs at least an input and an output size, got {tuple(sizes)}.")
  keys = jax.random.split(key, len(sizes) - 1)
  layers = []
  for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
    w = jax.random.normal(keys[i], (fan_in, fan_out)) * jnp.sqrt(2.0 / fan_in)
    is_last = i == len(sizes) - 2
    layers.append(Layer(params={"w": w, "b": jnp.zeros(fan_out)}, kind="dense",
                        activation="identity" if is_last else activation))
  return tuple(layers)


def _init_attention(key: jax.Array, width: int, heads: int) -> Layer:
  head_width = width // heads
  k_q, k_k, k_v, k_o = jax.random.split(key, 4)
  scale = 1.0 / jnp.sqrt(width)
  params = {
      "ln_scale": jnp.ones(width), "ln_bias": jnp.zeros(width),
      "wq": jax.random.normal(k_q, (width, heads, head_width)) * scale,
      "wk": jax.random.normal(k_k, (width, heads, head_width)) * scale,
      "wv": jax.random.normal(k_v, (width, heads, head_width)) * scale,
      "wo": jax.random.normal(k_o, (heads, head_width, width)) * scale,
  }
  return Layer(params=params, kind="attention")


def _init_feed_forward(key: jax.Array, width: int, hidden: int, activation: str) -> Layer:
  k_1, k_2 = jax.random.split(key)
  params = {
      "ln_scale": jnp.ones(width), "ln_bias": jnp.zeros(width),
      "w1": jax.random.normal(k_1, (width, hidden)) * jnp.sqrt(2.0 / width),
      "b1": jnp.zeros(hidden),
      "w2": jax.random.normal(k_2, (hidden, width)) * jnp.sqrt(1.0 / hidden),
      "b2": jnp.zeros(width),
  }
  return Layer(params=params, kind="feed_forward", activation=activation)


def init_transformer(key: jax.Array, *, rows: int = 8, row_width: int = 8, width: int = 32,
                     heads: int = 4, hidden: int = 64, blocks: int = 2, num_classes: int = 10,
                     activation: str = "gelu") -> Network:
  """Initialise embed, `blocks` x (attention, feed_forward) and readout layers.

  The input is a flat image of `rows * row_width` pixels; each image row is a token.
  """
  if width % heads:
    raise ValueError(f"width={width} must be a multiple of heads={heads}.")
  keys = jax.random.split(key, 2 * blocks + 3)
  embed = Layer(params={"w": jax.random.normal(keys[0], (row_width, width))
                        * jnp.sqrt(1.0 / row_width),
                        "pos": jax.random.normal(keys[1], (rows, width)) * 0.1},
                kind="embed")
  layers = [embed]
  for block in range(blocks):
    layers.append(_init_attention(keys[2 + 2 * block], width, heads))
    layers.append(_init_feed_forward(keys[3 + 2 * block], width, hidden, activation))
  readout = Layer(params={"ln_scale": jnp.ones(width), "ln_bias": jnp.zeros(width),
                          "w": jax.random.normal(keys[-1], (width, num_classes))
                          * jnp.sqrt(1.0 / width),
                          "b": jnp.zeros(num_classes)},
                  kind="readout")
  layers.append(readout)
  return tuple(layers)
