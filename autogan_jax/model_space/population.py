"""Training a population of different specs in one `jit(vmap(scan(step)))`.

Every member has its own learning rate, weight decay and batch size (from its
`SpecArrays`). The caller supplies the update rule as an optax transform that
returns unscaled directions, for example `optax.scale_by_adam()`; by default
it is the direction of the framework's default rule (G*). Each
member then steps by `-learning_rate * (direction + weight_decay * params)`
(decoupled weight decay, Loshchilov and Hutter, "Decoupled Weight Decay
Regularization", 2019). A member's batch is the first `batch_size` rows of a
batch of `max_batch_size` rows; the other rows have zero weight.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from autogan_jax import optim
from autogan_jax.core import tree as tree_lib
from autogan_jax.model_space import encoding
from autogan_jax.model_space import network

Data = object


def member_loss(params: network.Params, code: encoding.SpecArrays, x: jax.Array, y: jax.Array,
                envelope: encoding.Envelope) -> jax.Array:
  """Return the mean cross-entropy over the first `code.batch_size` rows of a batch."""
  logits = network.apply(params, x, code, envelope)
  nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1)[:, 0]
  weight = (jnp.arange(y.shape[0]) < code.batch_size).astype(jnp.float32)
  return jnp.sum(weight * nll) / jnp.sum(weight)


def make_member_trainer(envelope: encoding.Envelope, steps: int,
                        tx: optax.GradientTransformation | None = None) -> Callable:
  """Build `train(params, code, key, data) -> (params, losses[steps], finite)` for one member.

  The function is pure and unjitted; vmap and jit it (see `make_trainer`).
  """
  if tx is None:
    # The rule's step direction: the default rule at step size 1, negated back.
    tx = optax.chain(optim.default_rule(1.0, horizon=steps), optax.scale(-1.0))
  batch_size = envelope.max_batch_size

  def train(params, code, key, data):
    opt_state = tx.init(params)

    def step(carry, index):
      params, opt_state = carry
      x, y = data.sample(jax.random.fold_in(key, index), batch_size)
      loss, grads = jax.value_and_grad(member_loss)(params, code, x, y, envelope)
      directions, opt_state = tx.update(grads, opt_state, params)
      updates = jax.tree.map(
          lambda d, p: -code.learning_rate * (d + code.weight_decay * p), directions, params)
      return (optax.apply_updates(params, updates), opt_state), loss

    (params, _), losses = jax.lax.scan(step, (params, opt_state), jnp.arange(steps))
    finite = tree_lib.all_finite(params) & jnp.all(jnp.isfinite(losses))
    return params, losses, finite

  return train


# Cached so that every caller with the same envelope, steps and update rule shares one
# compiled function instead of compiling its own copy.
@functools.lru_cache(maxsize=64)
def make_trainer(envelope: encoding.Envelope, steps: int,
                 tx: optax.GradientTransformation | None = None) -> Callable:
  """Build the jitted population trainer `train(params, codes, keys, data)`.

  Arguments carry a leading population axis except `data`, which all members
  share. It returns the trained parameters, the training losses [members,
  steps] and whether each member stayed finite.
  """
  member = make_member_trainer(envelope, steps, tx)
  return jax.jit(jax.vmap(member, in_axes=(0, 0, 0, None)))


@functools.lru_cache(maxsize=64)
def make_evaluator(envelope: encoding.Envelope) -> Callable:
  """Build the jitted `evaluate(params, codes, x, y) -> {"loss", "accuracy"}` per member."""

  def evaluate(params, code, x, y):
    logits = network.apply(params, x, code, envelope)
    nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1)[:, 0]
    return {"loss": jnp.mean(nll), "accuracy": jnp.mean(jnp.argmax(logits, -1) == y)}

  return jax.jit(jax.vmap(evaluate, in_axes=(0, 0, None, None)))
