"""A sequence model whose temporal structure is array data.

The model reads a window of the `MAX_CONTEXT` newest states (newest first),
keeps those allowed by the structure, and predicts up to `MAX_HORIZON` future
steps in one call:

  features f_k = [phi(x_k), r * (phi(x_k) - phi(x_{k+1}))]   (r = 1 for "delta")
  segment means g_k = mean of f over the segment of lag k
  embeddings e_k = tanh(W_in g_k + lag_k)
  a = attention over lags k < context (last, uniform or learned by content)
  h = MLP([e_0, sum_k a_k e_k])
  outputs: H steps (values added to x_0, or logits) and H commit logits.

`phi` is the identity for continuous states and an embedding for tokens.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from autogan_jax.core import validation
from autogan_jax.temporal import structure as structure_lib

KINDS = ("continuous", "discrete")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """Static shape of a temporal model.

  Attributes:
    kind: "continuous" (states are float vectors of `dim`) or "discrete"
      (states are int tokens below `dim`).
    dim: state dimension, or vocabulary size.
    hidden: width of the embeddings and the MLP.
    embed: token embedding width ("discrete" only).
  """

  kind: str = "continuous"
  dim: int = 3
  hidden: int = 32
  embed: int = 16

  def __post_init__(self):
    validation.check_choice("kind", self.kind, KINDS)
    validation.check("dim", self.dim, validation.IntRange(1))
    validation.check("hidden", self.hidden, validation.IntRange(2))
    validation.check("embed", self.embed, validation.IntRange(1))

  @property
  def feature_dim(self) -> int:
    return self.dim if self.kind == "continuous" else self.embed


def _dense(key, fan_in, fan_out, scale=1.0):
  return {"w": jax.random.normal(key, (fan_in, fan_out)) * scale * jnp.sqrt(1.0 / fan_in),
          "b": jnp.zeros(fan_out)}


def _apply(params, x):
  return x @ params["w"] + params["b"]


def init(key: jax.Array, spec: ModelSpec) -> dict:
  """Return parameters of the one shape every structure shares."""
  k = jax.random.split(key, 8)
  hidden, horizon = spec.hidden, structure_lib.MAX_HORIZON
  params = {
      "in": _dense(k[0], 2 * spec.feature_dim, hidden),
      "lag": jax.random.normal(k[1], (structure_lib.MAX_CONTEXT, hidden)) * 0.1,
      "query": _dense(k[2], hidden, hidden),
      "lag_bias": jnp.zeros(structure_lib.MAX_CONTEXT),
      "mlp1": _dense(k[3], 2 * hidden, hidden),
      "mlp2": _dense(k[4], hidden, hidden),
      "commit": _dense(k[6], hidden, horizon),
  }
  if spec.kind == "continuous":
    # Small outputs at the start, so the first rollouts stay near the last state.
    params["out"] = _dense(k[5], hidden, horizon * spec.dim, scale=0.1)
  else:
    params["out"] = _dense(k[5], hidden, horizon * spec.dim)
    params["embedding"] = jax.random.normal(k[7], (spec.dim, spec.embed))
  return params


def _features(params, spec, window):
  if spec.kind == "continuous":
    return window
  return params["embedding"][window]


def attention_weights(params: dict, spec: ModelSpec, structure: structure_lib.Structure,
                      window: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Return the weights over lags [MAX_CONTEXT] and the lag embeddings [MAX_CONTEXT, hidden]."""
  lags = jnp.arange(structure_lib.MAX_CONTEXT)
  allowed = lags < structure.context
  phi = _features(params, spec, window)
  older = jnp.concatenate([phi[1:], phi[-1:]], axis=0)
  use_delta = (structure.representation == 1).astype(phi.dtype)
  features = jnp.concatenate([phi, use_delta * (phi - older)], axis=-1)

  # Average features over segments of `segment` lags, counting allowed lags only.
  segment_id = lags // structure.segment
  same = (segment_id[:, None] == segment_id[None, :]) & allowed[None, :]
  pooling = same / jnp.maximum(jnp.sum(same, axis=1, keepdims=True), 1)
  pooled = pooling @ features
  # The newest state enters unpooled, so structure never hides the current state.
  pooled = pooled.at[0].set(features[0])
  embedded = jnp.tanh(_apply(params["in"], pooled) + params["lag"][segment_id])

  query = _apply(params["query"], embedded[0])
  scores = embedded @ query / jnp.sqrt(embedded.shape[-1]) + params["lag_bias"]
  learned = jax.nn.softmax(jnp.where(allowed, scores, -1e9))
  uniform = allowed / jnp.sum(allowed)
  last = (lags == 0).astype(embedded.dtype)
  weights = jnp.stack([last, uniform, learned])[structure.attention]
  return weights, embedded


def apply(params: dict, spec: ModelSpec, structure: structure_lib.Structure,
          window: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Predict from one window of `MAX_CONTEXT` states, newest first.

  Returns:
    `(outputs, commit_logits)`: outputs [MAX_HORIZON, dim] are predicted states
    (continuous) or next-token logits (discrete) of steps 1..MAX_HORIZON ahead;
    commit_logits [MAX_HORIZON] score whether each step is worth committing.
  """
  weights, embedded = attention_weights(params, spec, structure, window)
  context = weights @ embedded
  h = jax.nn.relu(_apply(params["mlp1"], jnp.concatenate([embedded[0], context])))
  h = jax.nn.relu(_apply(params["mlp2"], h)) + h
  outputs = _apply(params["out"], h).reshape(structure_lib.MAX_HORIZON, spec.dim)
  if spec.kind == "continuous":
    outputs = window[0][None, :] + outputs
  return outputs, _apply(params["commit"], h)


def horizon_weights(structure: structure_lib.Structure) -> jax.Array:
  """Return 1.0 for the steps a structure is trained on, [MAX_HORIZON]."""
  return (jnp.arange(structure_lib.MAX_HORIZON) < structure.horizon).astype(jnp.float32)


def step_errors(spec: ModelSpec, outputs: jax.Array, targets: jax.Array) -> jax.Array:
  """Per-step error [MAX_HORIZON]: mean squared error, or token negative log-likelihood."""
  if spec.kind == "continuous":
    return jnp.mean((outputs - targets) ** 2, axis=-1)
  log_probs = jax.nn.log_softmax(outputs)
  return -jnp.take_along_axis(log_probs, targets[:, None], axis=-1)[:, 0]


def loss(params: dict, spec: ModelSpec, structure: structure_lib.Structure, windows: jax.Array,
         targets: jax.Array, commit_tolerance: float) -> jax.Array:
  """Return the mean training loss over a batch of windows and their next MAX_HORIZON states.

  The horizon term averages the step errors of the trained steps. Variable
  horizons also train the commit logits by binary cross-entropy towards
  "the step's error is below `commit_tolerance`".
  """
  outputs, commit_logits = jax.vmap(lambda w: apply(params, spec, structure, w))(windows)
  errors = jax.vmap(lambda o, t: step_errors(spec, o, t))(outputs, targets)
  weights = horizon_weights(structure)
  horizon_term = jnp.mean(jnp.sum(errors * weights, axis=1) / jnp.sum(weights))
  commit_target = jax.lax.stop_gradient((errors < commit_tolerance).astype(jnp.float32))
  bce = jnp.mean(jnp.maximum(commit_logits, 0) - commit_logits * commit_target
                 + jnp.log1p(jnp.exp(-jnp.abs(commit_logits))))
  return horizon_term + structure.variable * bce


def committed_steps(structure: structure_lib.Structure, commit_logits: jax.Array) -> jax.Array:
  """Steps used from one call: `horizon`, or for variable horizons the committed prefix (>= 1)."""
  confident = jnp.cumprod((commit_logits > 0).astype(jnp.int32))
  variable_steps = jnp.clip(jnp.sum(confident), 1, structure_lib.MAX_HORIZON)
  return jnp.where(structure.variable == 1, variable_steps, structure.horizon)


def rollout(params: dict, spec: ModelSpec, structure: structure_lib.Structure,
            history: jax.Array, num_steps: int) -> tuple[jax.Array, jax.Array]:
  """Roll the model forward from `history` (oldest first, MAX_CONTEXT states).

  The model is called whenever its committed steps are used up and then reads
  its own predictions as context. Continuous rollouts return predicted states
  [num_steps, dim]; discrete ones return greedy tokens [num_steps]. The second
  output is the number of model calls.
  """
  window = history[::-1]
  outputs, _ = apply(params, spec, structure, window)

  def body(carry, _):
    window, chunk, index, available, calls = carry
    fresh, commit_logits = apply(params, spec, structure, window)
    need = index >= available
    chunk = jnp.where(need, fresh, chunk)
    available = jnp.where(need, committed_steps(structure, commit_logits), available)
    index = jnp.where(need, 0, index)
    step_output = chunk[index]
    state = step_output if spec.kind == "continuous" else jnp.argmax(step_output)
    window = jnp.concatenate([state[None], window[:-1]], axis=0)
    return (window, chunk, index + 1, available, calls + need), state

  init = (window, outputs, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32),
          jnp.zeros((), jnp.int32))
  (_, _, _, _, calls), states = jax.lax.scan(body, init, None, length=num_steps)
  return states, calls
