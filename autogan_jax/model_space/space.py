"""A discrete search space over specs: named slots, each a choice among options.

A spec in the space is a tuple of option indices, one per slot. Its features
are the concatenated one-hot vectors of the slots, which is what G_model emits
and D_model reads. Slots that a spec does not use (widths past its depth,
attention slots of a non-Transformer) are set to option 0, so that equal specs
have equal features.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from autogan_jax.core import validation
from autogan_jax.model_space import encoding
from autogan_jax.model_space import spec as spec_lib


@dataclasses.dataclass(frozen=True)
class SearchSpace:
  """The options of every slot. Any combination of options is a valid spec."""

  families: tuple[str, ...] = spec_lib.FAMILIES
  depths: tuple[int, ...] = (1, 2, 3)
  widths: tuple[int, ...] = (16, 32, 64, 128)
  activations: tuple[str, ...] = spec_lib.ACTIVATIONS
  norms: tuple[str, ...] = spec_lib.NORMS
  connectivities: tuple[str, ...] = spec_lib.CONNECTIVITY
  model_dims: tuple[int, ...] = (16, 32)
  learning_rates: tuple[float, ...] = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
  weight_decays: tuple[float, ...] = (0.0, 1e-4, 1e-3)
  batch_sizes: tuple[int, ...] = (16, 32, 64)
  patterns: tuple[str, ...] = spec_lib.ATTENTION_PATTERNS
  windows: tuple[int, ...] = (2, 4)
  combines: tuple[str, ...] = spec_lib.ATTENTION_COMBINES
  heads: tuple[int, ...] = (1, 2, 4)
  head_combines: tuple[str, ...] = spec_lib.HEAD_COMBINES
  shared: tuple[bool, ...] = (False, True)
  positions: tuple[str, ...] = spec_lib.POSITIONS
  qkv_inits: tuple[str, ...] = spec_lib.QKV_INITS

  def __post_init__(self):
    validation.check("families", self.families,
                     validation.SequenceOf(validation.OneOf(spec_lib.FAMILIES)))
    validation.check("depths", self.depths, validation.SequenceOf(validation.IntRange(1, 16)))
    validation.check("widths", self.widths, validation.SequenceOf(validation.IntRange(1)))
    validation.check("model_dims", self.model_dims,
                     validation.SequenceOf(validation.IntRange(1)))
    validation.check("heads", self.heads, validation.SequenceOf(validation.IntRange(1)))
    for dim in self.model_dims:
      for heads in self.heads:
        if dim % heads or (dim // heads) % 2:
          raise validation.ConfigError(
              f"Invalid search space: model_dims value {dim} must be divisible by every heads "
              f"value with an even quotient, got heads={heads}.")
    for name in ("activations", "norms", "connectivities", "learning_rates", "weight_decays",
                 "batch_sizes", "patterns", "windows", "combines", "head_combines", "shared",
                 "positions", "qkv_inits"):
      if not getattr(self, name):
        raise validation.ConfigError(f"Invalid search space: {name} is empty.")

  @property
  def max_depth(self) -> int:
    return max(self.depths)

  def slots(self) -> tuple[tuple[str, tuple], ...]:
    """Return (name, options) of every slot, in feature order."""
    width_slots = tuple((f"width{i}", self.widths) for i in range(self.max_depth))
    return (("family", self.families), ("depth", self.depths)) + width_slots + (
        ("activation", self.activations), ("norm", self.norms),
        ("connectivity", self.connectivities), ("model_dim", self.model_dims),
        ("learning_rate", self.learning_rates), ("weight_decay", self.weight_decays),
        ("batch_size", self.batch_sizes), ("pattern", self.patterns),
        ("window", self.windows), ("combine", self.combines), ("heads", self.heads),
        ("head_combine", self.head_combines), ("shared", self.shared),
        ("position", self.positions), ("qkv_init", self.qkv_inits))

  def slot_sizes(self) -> tuple[int, ...]:
    return tuple(len(options) for _, options in self.slots())

  @property
  def num_features(self) -> int:
    return sum(self.slot_sizes())

  def canonical(self, choice: np.ndarray) -> np.ndarray:
    """Set the slots that the chosen spec does not use to option 0."""
    choice = np.array(choice, np.int64)
    names = [name for name, _ in self.slots()]
    depth = self.depths[choice[names.index("depth")]]
    for i in range(depth, self.max_depth):
      choice[names.index(f"width{i}")] = 0
    if self.families[choice[0]] != "transformer":
      for name in ("pattern", "window", "combine", "heads", "head_combine", "shared",
                   "position", "qkv_init"):
        choice[names.index(name)] = 0
    return choice

  def to_spec(self, choice: np.ndarray) -> spec_lib.ModelSpec:
    """Build the spec of a vector of option indices, one per slot."""
    slots = self.slots()
    if len(choice) != len(slots):
      raise ValueError(f"Expected {len(slots)} option indices, got {len(choice)}.")
    value = {name: options[int(i)] for (name, options), i in zip(slots, choice)}
    family = value["family"]
    attention = None
    if family == "transformer":
      attention = spec_lib.AttentionSpec(
          pattern=value["pattern"], window=value["window"], combine=value["combine"],
          num_heads=value["heads"], head_combine=value["head_combine"],
          shared=bool(value["shared"]), position=value["position"], qkv_init=value["qkv_init"])
    return spec_lib.ModelSpec(
        family=family, widths=tuple(value[f"width{i}"] for i in range(value["depth"])),
        activation=value["activation"], norm=value["norm"],
        connectivity=value["connectivity"], model_dim=value["model_dim"],
        learning_rate=float(value["learning_rate"]), weight_decay=float(value["weight_decay"]),
        batch_size=value["batch_size"], attention=attention)

  def to_choice(self, spec: spec_lib.ModelSpec) -> np.ndarray:
    """Return the option indices of `spec`; numbers off the grid take the nearest option."""

    def nearest(options, value):
      if isinstance(value, str) or isinstance(value, bool):
        if value not in options:
          raise validation.ConfigError(
              f"Invalid spec value {value!r}: the search space allows {options}.")
        return options.index(value)
      return int(np.argmin([abs(np.log(float(o) + 1e-8) - np.log(float(value) + 1e-8))
                            for o in options]))

    a = spec.attention or spec_lib.AttentionSpec(
        pattern=self.patterns[0], window=self.windows[0], combine=self.combines[0],
        num_heads=self.heads[0], head_combine=self.head_combines[0], shared=self.shared[0],
        position=self.positions[0], qkv_init=self.qkv_inits[0])
    widths = list(spec.widths) + [self.widths[0]] * (self.max_depth - spec.depth)
    values = [spec.family, spec.depth, *widths[:self.max_depth], spec.activation, spec.norm,
              spec.connectivity, spec.model_dim, spec.learning_rate, spec.weight_decay,
              spec.batch_size, a.pattern, a.window, a.combine, a.num_heads, a.head_combine,
              a.shared, a.position, a.qkv_init]
    choice = [nearest(options, v) for (_, options), v in zip(self.slots(), values)]
    return self.canonical(np.asarray(choice))

  def features(self, choice: np.ndarray) -> np.ndarray:
    """Return the concatenated one-hot vectors of a choice, float32 [num_features]."""
    parts = [np.eye(n, dtype=np.float32)[int(i)] for n, i in zip(self.slot_sizes(), choice)]
    return np.concatenate(parts)

  def sample(self, rng: np.random.Generator) -> np.ndarray:
    """Draw each slot uniformly; return the canonical choice."""
    return self.canonical(np.array([rng.integers(n) for n in self.slot_sizes()]))

  def mutate(self, choice: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Change one slot that the spec uses to a different option (regularized evolution's step)."""
    while True:
      slot = int(rng.integers(len(choice)))
      size = self.slot_sizes()[slot]
      if size < 2:
        continue
      child = np.array(choice)
      child[slot] = (child[slot] + 1 + rng.integers(size - 1)) % size
      child = self.canonical(child)
      if not np.array_equal(child, self.canonical(choice)):
        return child

  def envelope(self, family: str, io: spec_lib.ModelIO) -> encoding.Envelope:
    """Return the envelope that holds every spec of `family` in this space."""
    transformer = family == "transformer"
    return encoding.Envelope(
        family=family, io=io, max_depth=self.max_depth, max_width=max(self.widths),
        max_model_dim=max(self.model_dims),
        max_heads=max(self.heads) if transformer else 1,
        max_head_dim=max(d // h for d in self.model_dims for h in self.heads) if transformer
        else 1,
        max_batch_size=max(self.batch_sizes))
