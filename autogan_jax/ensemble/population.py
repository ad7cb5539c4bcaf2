"""Deep ensembles trained as one vmapped population.

Members differ in their initialisation key, their data order (the task seed),
their architecture (width and activation of a padded digits MLP, so every
member shares one compiled step) and a hyperparameter (a per-member scale on
the update rule's step). Training is `jit(vmap(scan(step)))`: one compile for
the whole ensemble (Lakshminarayanan, Pritzel and Blundell, "Simple and
Scalable Predictive Uncertainty Estimation using Deep Ensembles", 2017).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from autogan_jax import optim
from autogan_jax.core import tree as tree_lib
from autogan_jax.core import validation
from autogan_jax.tasks import char_lm
from autogan_jax.tasks import datasets
from autogan_jax.tasks import mlp


@dataclasses.dataclass(frozen=True)
class EnsembleSpec:
  """Member settings of a digits ensemble; each list is cycled over the members."""

  num_members: int = 8
  widths: tuple[int, ...] = (64, 48, 64, 32)
  depth: int = 2
  activations: tuple[str, ...] = ("relu", "tanh", "gelu", "swish", "elu")
  batch_size: int = 64
  lr_scales: tuple[float, ...] = (1.0, 0.5, 2.0, 1.0)

  def __post_init__(self):
    validation.check("num_members", self.num_members, validation.IntRange(1))
    validation.check("widths", self.widths, validation.SequenceOf(validation.IntRange(1)))
    validation.check("depth", self.depth, validation.IntRange(1))
    validation.check("activations", self.activations,
                     validation.SequenceOf(validation.OneOf(mlp.ACTIVATIONS)))
    validation.check("batch_size", self.batch_size, validation.IntRange(1))
    validation.check("lr_scales", self.lr_scales, validation.SequenceOf(
        validation.FloatRange(0.0, low_inclusive=False)))

  @property
  def max_width(self) -> int:
    return max(self.widths)


def build_members(spec: EnsembleSpec, seed: int = 0,
                  data: datasets.ArraySplits | None = None
                  ) -> tuple[mlp.DigitsMLPTask, jax.Array]:
  """Return the members' tasks stacked on a leading axis, and their step-size scales [M]."""
  data = data if data is not None else datasets.load_digits()
  tasks = []
  for i in range(spec.num_members):
    tasks.append(mlp.digits_task(
        width=spec.widths[i % len(spec.widths)], depth=spec.depth,
        activation=spec.activations[i % len(spec.activations)], batch_size=spec.batch_size,
        seed=seed * 1000 + i, max_width=spec.max_width, data=data))
  # Stack only the array part; the static structure is shared.
  variants = tree_lib.stack([t.variant for t in tasks])
  stacked = dataclasses.replace(tasks[0], variant=variants)
  scales = jnp.asarray([spec.lr_scales[i % len(spec.lr_scales)]
                        for i in range(spec.num_members)], jnp.float32)
  return stacked, scales


def build_char_members(spec: EnsembleSpec, text: datasets.TextSplits, seed: int = 0,
                       context: int = 16, embed_dim: int = 16
                       ) -> tuple[char_lm.CharLMTask, jax.Array]:
  """Return character-model members stacked on a leading axis, and their step-size scales [M].

  The character model has one hidden layer, so `spec.depth` is not used. As on
  digits, the members differ in width, activation, batch order and step size.
  """
  tasks = []
  for i in range(spec.num_members):
    tasks.append(char_lm.char_task(
        width=spec.widths[i % len(spec.widths)],
        activation=spec.activations[i % len(spec.activations)], batch_size=spec.batch_size,
        seed=seed * 1000 + i, context=context, embed_dim=embed_dim, max_width=spec.max_width,
        data=text))
  variants = tree_lib.stack([t.variant for t in tasks])
  stacked = dataclasses.replace(tasks[0], variant=variants)
  scales = jnp.asarray([spec.lr_scales[i % len(spec.lr_scales)]
                        for i in range(spec.num_members)], jnp.float32)
  return stacked, scales


def train_population(tasks: mlp.DigitsMLPTask | char_lm.CharLMTask, lr_scales: jax.Array, key: jax.Array,
                     steps: int, tx: optax.GradientTransformation | None = None):
  """Train every member with `tx`, its updates multiplied by the member's scale.

  Args:
    tasks: member tasks stacked on a leading axis (from `build_members`).
    lr_scales: per-member multipliers of the updates, shape [M].
    key: PRNG key; each member gets its own initialisation and batch keys.
    steps: training steps per member.
    tx: update rule shared by all members; defaults to `optim.default_rule(3e-3)` (G*).

  Returns:
    Member parameters with a leading axis of size M, and the per-step training
    losses, shape [M, steps].
  """
  validation.check("steps", steps, validation.IntRange(1))
  tx = tx if tx is not None else optim.default_rule(3e-3)
  num_members = lr_scales.shape[0]
  member_keys = jax.random.split(key, num_members)

  def train_one(task, scale, member_key):
    k_init, k_data = jax.random.split(member_key)
    params = task.init(k_init)

    def step(carry, i):
      params, opt_state = carry
      loss, grads = jax.value_and_grad(task.loss)(params, task.batch(k_data, i))
      updates, opt_state = tx.update(grads, opt_state, params)
      updates = jax.tree.map(lambda u: scale * u, updates)
      return (optax.apply_updates(params, updates), opt_state), loss

    (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), jnp.arange(steps))
    return params, losses

  return jax.jit(jax.vmap(train_one))(tasks, lr_scales, member_keys)


def member_probs(tasks: mlp.DigitsMLPTask | char_lm.CharLMTask, params, x: jax.Array) -> jax.Array:
  """Return every member's predicted probabilities on `x`, shape [M, N, K]."""
  return jax.vmap(lambda task, p: jax.nn.softmax(task.apply(p, x)))(tasks, params)
