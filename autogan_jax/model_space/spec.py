"""Model specs: frozen, hashable, validated descriptions of a network and its training.

A `ModelSpec` is static: it is hashable, so it can be a static argument of a
jitted function or a dictionary key. An invalid spec raises `ConfigError` in its
constructor, naming the field, the value and what is allowed. Attention choices
are an `AttentionSpec`, present for the Transformer family only.

The family sets the network type:
- "mlp": the input is flattened (token ids embedded first) and passed through
  `depth` dense layers of `widths[i]` units.
- "transformer": tokens (or feature rows) are projected to `model_dim`, then
  `depth` blocks of attention and a feed-forward layer of `widths[i]` units.
- "lstm" and "gru": tokens (or feature rows) are projected to `model_dim`, then
  `depth` recurrent layers of `widths[i]` units each.
Every family reads out class logits from its last representation (the last
position for sequence families).
"""

from __future__ import annotations

import dataclasses

from autogan_jax.core import validation

FAMILIES = ("mlp", "transformer", "lstm", "gru")
SEQUENCE_FAMILIES = ("transformer", "lstm", "gru")
ACTIVATIONS = ("relu", "tanh", "gelu", "elu", "swish")
NORMS = ("none", "layer", "rms")
# How a layer's output joins earlier ones: "none" feeds each layer only the one before,
# "residual" adds the previous layer's output, "dense" adds the mean of all earlier outputs.
CONNECTIVITY = ("none", "residual", "dense")

ATTENTION_PATTERNS = ("dense", "local", "strided", "block_sparse", "learned")
ATTENTION_COMBINES = ("softmax", "relu", "linear", "gated")
# How the heads' outputs join: "concat" sums per-head output projections (the usual
# concatenation), "mean" averages them, "gated" weights each head by a learned sigmoid gate.
HEAD_COMBINES = ("concat", "mean", "gated")
POSITIONS = ("sinusoidal", "learned", "rotary", "alibi", "none")
QKV_INITS = ("glorot", "small_normal", "orthogonal")

INPUT_KINDS = ("features", "tokens")


@dataclasses.dataclass(frozen=True)
class ModelIO:
  """The interface a task gives a model: what goes in and how many classes come out.

  Attributes:
    input_kind: "features" (float rows of `in_features` values) or "tokens"
      (integer ids below `in_features`, the vocabulary size).
    seq_len: rows or tokens per example.
    in_features: features per row, or vocabulary size for tokens.
    num_classes: number of output logits.
  """

  input_kind: str
  seq_len: int
  in_features: int
  num_classes: int

  def __post_init__(self):
    validation.check_choice("input_kind", self.input_kind, INPUT_KINDS)
    validation.check("seq_len", self.seq_len, validation.IntRange(1, 4096))
    validation.check("in_features", self.in_features, validation.IntRange(1))
    validation.check("num_classes", self.num_classes, validation.IntRange(2))


@dataclasses.dataclass(frozen=True)
class AttentionSpec:
  """Attention choices of a Transformer.

  Attributes:
    pattern: which positions attend to which: "dense" (all), "local" (|i - j| <
      window), "strided" (i - j divisible by window), "block_sparse" (same block of
      `window` positions), or "learned" (dense with a trained soft mask).
    window: window, stride or block size of the pattern; ignored by "dense".
    combine: the function from scores to weights: "softmax", "relu" and
      "linear" (both divided by the sequence length), or "gated" (sigmoid).
    num_heads: attention heads; `model_dim` must be divisible by it.
    head_combine: how head outputs join (`HEAD_COMBINES`).
    shared: whether every block uses the first block's attention weights.
    position: position encoding: "sinusoidal" and "learned" are added to the
      input, "rotary" rotates queries and keys, "alibi" adds a linear distance
      bias per head, "none" adds nothing.
    qkv_init: initialisation of the query, key and value projections.
  """

  pattern: str = "dense"
  window: int = 4
  combine: str = "softmax"
  num_heads: int = 2
  head_combine: str = "concat"
  shared: bool = False
  position: str = "sinusoidal"
  qkv_init: str = "glorot"

  def __post_init__(self):
    validation.check_choice("attention.pattern", self.pattern, ATTENTION_PATTERNS)
    validation.check("attention.window", self.window, validation.IntRange(1, 4096))
    validation.check_choice("attention.combine", self.combine, ATTENTION_COMBINES)
    validation.check("attention.num_heads", self.num_heads, validation.IntRange(1, 64))
    validation.check_choice("attention.head_combine", self.head_combine, HEAD_COMBINES)
    validation.check_choice("attention.shared", self.shared, (False, True))
    validation.check_choice("attention.position", self.position, POSITIONS)
    validation.check_choice("attention.qkv_init", self.qkv_init, QKV_INITS)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """A network and its training hyperparameters.

  Attributes:
    family: one of `FAMILIES`.
    widths: units of each layer (hidden units of the feed-forward part for a
      Transformer); its length is the depth.
    activation: one of `ACTIVATIONS`, used by every dense hidden layer. The
      LSTM and GRU cells keep their sigmoid and tanh gates, so recurrent
      families ignore it.
    norm: "none", "layer" (LayerNorm) or "rms" (RMSNorm).
    connectivity: one of `CONNECTIVITY`.
    model_dim: width of the input projection or token embedding (and the
      residual stream of a Transformer).
    learning_rate: step size of the update rule.
    weight_decay: decoupled weight decay coefficient.
    batch_size: examples per training step.
    attention: attention choices; required for "transformer", None otherwise.
  """

  family: str = "mlp"
  widths: tuple[int, ...] = (64,)
  activation: str = "relu"
  norm: str = "none"
  connectivity: str = "none"
  model_dim: int = 16
  learning_rate: float = 1e-2
  weight_decay: float = 0.0
  batch_size: int = 32
  attention: AttentionSpec | None = None

  def __post_init__(self):
    validation.check_choice("family", self.family, FAMILIES)
    if isinstance(self.widths, list):
      object.__setattr__(self, "widths", tuple(self.widths))
    validation.check("widths", self.widths,
                     validation.SequenceOf(validation.IntRange(1, 4096), 1, 16))
    validation.check_choice("activation", self.activation, ACTIVATIONS)
    validation.check_choice("norm", self.norm, NORMS)
    validation.check_choice("connectivity", self.connectivity, CONNECTIVITY)
    validation.check("model_dim", self.model_dim, validation.IntRange(1, 4096))
    validation.check("learning_rate", self.learning_rate,
                     validation.FloatRange(0.0, 10.0, low_inclusive=False))
    validation.check("weight_decay", self.weight_decay, validation.FloatRange(0.0, 1.0))
    validation.check("batch_size", self.batch_size, validation.IntRange(1, 65536))
    if self.family == "transformer":
      if not isinstance(self.attention, AttentionSpec):
        raise validation.ConfigError(
            f"Invalid value attention={self.attention!r}: the transformer family needs an "
            "AttentionSpec.")
      heads = self.attention.num_heads
      if self.model_dim % heads:
        raise validation.ConfigError(
            f"Invalid value attention.num_heads={heads}: it must divide model_dim="
            f"{self.model_dim}.")
      if self.attention.position == "rotary" and (self.model_dim // heads) % 2:
        raise validation.ConfigError(
            f"Invalid value attention.position='rotary': it needs an even head dimension, "
            f"got model_dim={self.model_dim} // num_heads={heads} = {self.model_dim // heads}.")
    elif self.attention is not None:
      raise validation.ConfigError(
          f"Invalid value attention={self.attention!r}: only the transformer family takes "
          "attention; pass None.")

  @property
  def depth(self) -> int:
    return len(self.widths)

  @property
  def head_dim(self) -> int:
    return self.model_dim // self.attention.num_heads if self.attention else 0

  def to_dict(self) -> dict:
    """Return the spec as JSON-ready nested dicts and lists."""
    return dataclasses.asdict(self) | {"widths": list(self.widths)}

  @classmethod
  def from_dict(cls, data: dict) -> ModelSpec:
    """Rebuild a spec from `to_dict` output, validating it again."""
    data = dict(data)
    attention = data.pop("attention", None)
    attention = AttentionSpec(**attention) if attention is not None else None
    return cls(**data | {"widths": tuple(data["widths"]), "attention": attention})

  def describe(self) -> str:
    """Return a short human-readable summary."""
    text = (f"{self.family}[w={'x'.join(map(str, self.widths))},{self.activation},"
            f"norm={self.norm},{self.connectivity},d={self.model_dim},lr={self.learning_rate:g},"
            f"wd={self.weight_decay:g},b={self.batch_size}")
    if self.attention is not None:
      a = self.attention
      text += (f",attn={a.pattern}/{a.window},{a.combine},h={a.num_heads},{a.head_combine},"
               f"{'shared,' if a.shared else ''}{a.position},{a.qkv_init}")
    return text + "]"
