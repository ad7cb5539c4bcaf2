"""A multi-input multi-output (MIMO) network: several subnetworks inside one network.

Havasi et al., "Training independent subnetworks for robust prediction", 2021.
The network reads `num_heads` inputs side by side and predicts each one's label
with its own head. During training the inputs are independent examples, so the
heads learn like separately trained members. At test time one input is repeated
in every slot and the heads' probabilities are averaged, an ensemble in one
forward pass. Only the first and last layers grow with `num_heads`; the hidden
layers are the size of one member.

For token inputs (the character model), the network first looks each token up
in an embedding table shared by all heads, then reads the concatenated
embeddings of every head's window.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from autogan_jax import optim
from autogan_jax.core import validation


def init_mimo(key: jax.Array, num_inputs: int, num_classes: int, width: int, depth: int,
              num_heads: int, vocab_size: int | None = None, embed_dim: int = 16
              ) -> dict[str, jax.Array]:
  """Initialise a MIMO network; with `vocab_size`, inputs are `num_inputs` token ids each."""
  keys = jax.random.split(key, depth + 1)
  params = {}
  fan_in = num_inputs * num_heads
  if vocab_size is not None:
    params["embed"] = jax.random.normal(jax.random.fold_in(key, depth + 1),
                                        (vocab_size, embed_dim))
    fan_in *= embed_dim
  for layer in range(depth):
    params[f"w{layer}"] = jax.random.normal(keys[layer], (fan_in, width)) * jnp.sqrt(2.0 / fan_in)
    params[f"b{layer}"] = jnp.zeros(width)
    fan_in = width
  params["w_out"] = jax.random.normal(keys[-1], (width, num_classes * num_heads)) / jnp.sqrt(width)
  params["b_out"] = jnp.zeros(num_classes * num_heads)
  return params


def mimo_logits(params, x: jax.Array, num_heads: int) -> jax.Array:
  """Return per-head logits [N, heads, K] for inputs `x` of shape [N, heads, D]."""
  if "embed" in params:
    x = params["embed"][x]
  h = x.reshape(x.shape[0], -1)
  depth = sum(1 for name in params if name.startswith("b") and name != "b_out")
  for layer in range(depth):
    h = jax.nn.relu(h @ params[f"w{layer}"] + params[f"b{layer}"])
  logits = h @ params["w_out"] + params["b_out"]
  return logits.reshape(x.shape[0], num_heads, -1)


def mimo_probs(params, x: jax.Array, num_heads: int) -> jax.Array:
  """Return the averaged head probabilities for single inputs `x` [N, D], shape [N, K]."""
  repeated = jnp.repeat(x[:, None], num_heads, axis=1)
  return jnp.mean(jax.nn.softmax(mimo_logits(params, repeated, num_heads)), axis=1)


def train_mimo(x_train: jax.Array, y_train: jax.Array, key: jax.Array, *, num_classes: int,
               width: int, depth: int, num_heads: int = 3, batch_size: int = 64,
               steps: int = 3000, repetitions: int = 2, vocab_size: int | None = None,
               embed_dim: int = 16, tx: optax.GradientTransformation | None = None):
  """Train a MIMO network on independent example draws per head.

  Args:
    x_train: inputs [N, D].
    y_train: labels [N].
    key: PRNG key.
    num_classes: output classes per head.
    width: hidden units per layer, as in one ensemble member.
    depth: hidden layers.
    num_heads: subnetworks (M in the paper).
    batch_size: examples per head per step, before repetition.
    steps: training steps.
    repetitions: batch repetition, each example seen this many times per step
      in different slots, which the paper reports improves the heads.
    vocab_size: when set, `x_train` holds integer token windows [N, D] and
      the network embeds each token first.
    embed_dim: embedding size per token, used only with `vocab_size`.
    tx: update rule; defaults to `optim.default_rule(3e-3)` (G*).

  Returns:
    The parameters and the per-step training losses.
  """
  validation.check("num_heads", num_heads, validation.IntRange(1))
  validation.check("steps", steps, validation.IntRange(1))
  validation.check("repetitions", repetitions, validation.IntRange(1))
  tx = tx if tx is not None else optim.default_rule(3e-3)
  x_train = jnp.asarray(x_train)
  y_train = jnp.asarray(y_train)
  k_init, k_data = jax.random.split(key)
  params = init_mimo(k_init, x_train.shape[1], num_classes, width, depth, num_heads,
                     vocab_size=vocab_size, embed_dim=embed_dim)

  def loss_fn(params, index):
    logits = mimo_logits(params, x_train[index], num_heads)
    log_probs = jax.nn.log_softmax(logits)
    labels = y_train[index]
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[..., None], axis=-1))

  def step(carry, i):
    params, opt_state = carry
    base = jax.random.randint(jax.random.fold_in(jax.random.fold_in(k_data, i), 0), (batch_size,),
                              0, x_train.shape[0])
    base = jnp.tile(base, repetitions)
    # Each head gets its own shuffle of the repeated batch, so slots are independent.
    head_keys = jax.random.split(jax.random.fold_in(jax.random.fold_in(k_data, i), 1), num_heads)
    index = jax.vmap(lambda k: jax.random.permutation(k, base))(head_keys).T
    loss, grads = jax.value_and_grad(loss_fn)(params, index)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  run = jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), jnp.arange(steps)))
  (params, _), losses = run(params)
  return params, losses
