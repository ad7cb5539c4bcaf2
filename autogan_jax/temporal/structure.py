"""The temporal structure of a sequence model, as array data that a generator can propose.

A structure sets
- which past states matter: `context` (how many) and `attention` over them
  ("last" reads only the newest, "uniform" averages, "learned" attends by content);
- how time is segmented: past states are averaged in segments of `segment` steps;
- the state representation: raw observations, or raw plus first differences;
- the prediction horizon: the next step, a chunk of `horizon` steps, or a
  variable horizon, where the model also predicts which steps of its chunk to
  commit and waits for a fresh context (its own newest predictions) after the
  first step it does not commit.

Every structure runs on parameters of one shape (`max_context`, `max_horizon`),
so a population of different structures trains in one `vmap`, and the fixed
next-step autoregressive baseline has exactly as many parameters as any other.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from autogan_jax.core import validation

CONTEXTS = (1, 2, 4, 8, 16)
ATTENTIONS = ("last", "uniform", "learned")
HORIZONS = ("next", "chunk2", "chunk4", "chunk8", "variable")
REPRESENTATIONS = ("raw", "delta")
SEGMENTS = (1, 2, 4)

# Names and options of the discrete choices, in the order of a choice-index vector.
CHOICES = (("context", CONTEXTS), ("attention", ATTENTIONS), ("horizon", HORIZONS),
           ("representation", REPRESENTATIONS), ("segment", SEGMENTS))
MAX_CONTEXT = max(CONTEXTS)
MAX_HORIZON = 8
_HORIZON_STEPS = {"next": 1, "chunk2": 2, "chunk4": 4, "chunk8": 8, "variable": MAX_HORIZON}


@struct.dataclass
class Structure:
  """One temporal structure; every field is an int32 array (scalar, or [P] for a population).

  Attributes:
    context: past states read, in [1, MAX_CONTEXT].
    attention: index into `ATTENTIONS`.
    horizon: steps predicted per call, in [1, MAX_HORIZON].
    variable: 1 when the model decides how many of its `horizon` steps to commit.
    representation: index into `REPRESENTATIONS`.
    segment: past states averaged per segment.
  """

  context: jax.Array
  attention: jax.Array
  horizon: jax.Array
  variable: jax.Array
  representation: jax.Array
  segment: jax.Array


def from_indices(indices) -> Structure:
  """Build a structure (or a population) from choice indices [..., len(CHOICES)]."""
  indices = np.asarray(indices)
  lookup = {name: options for name, options in CHOICES}
  horizon_names = np.asarray(HORIZONS)[indices[..., 2]]
  return Structure(
      context=jnp.asarray(np.asarray(lookup["context"])[indices[..., 0]], jnp.int32),
      attention=jnp.asarray(indices[..., 1], jnp.int32),
      horizon=jnp.asarray(np.vectorize(_HORIZON_STEPS.get)(horizon_names), jnp.int32),
      variable=jnp.asarray(horizon_names == "variable", jnp.int32),
      representation=jnp.asarray(indices[..., 3], jnp.int32),
      segment=jnp.asarray(np.asarray(lookup["segment"])[indices[..., 4]], jnp.int32),
  )


def indices_of(**choices) -> np.ndarray:
  """Return the choice indices of named options, for example `indices_of(context=16, ...)`."""
  missing = [name for name, _ in CHOICES if name not in choices]
  if missing:
    raise validation.ConfigError(f"Missing temporal choices {missing}; give every one of "
                                 f"{[name for name, _ in CHOICES]}.")
  out = []
  for name, options in CHOICES:
    validation.check_choice(name, choices[name], options)
    out.append(options.index(choices[name]))
  return np.asarray(out, np.int32)


def describe(indices) -> str:
  """Return a readable name of one structure's choice indices."""
  parts = [f"{name}={options[int(i)]}" for (name, options), i in zip(CHOICES, indices)]
  return ",".join(parts)


def next_step_baseline() -> np.ndarray:
  """Choice indices of the fixed next-step autoregressive model: newest state, one step ahead."""
  return indices_of(context=1, attention="last", horizon="next", representation="raw",
                    segment=1)
