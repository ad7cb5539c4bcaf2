"""Task families: distributions over task variants, split into meta-training and held-out.

A family's `sample(key)` is jittable and returns a task whose variant is array
data, so a meta-training step can draw new tasks without recompiling. The
held-out tasks differ from every meta-training variant in at least one of
width, depth or activation, and none is used for meta-training or tuning of
the learned rule.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from autogan_jax.core import validation
from autogan_jax.tasks import char_lm
from autogan_jax.tasks import datasets
from autogan_jax.tasks import mlp


def _choose(key: jax.Array, values: tuple) -> jax.Array:
  return jnp.asarray(values)[jax.random.randint(key, (), 0, len(values))]


@dataclasses.dataclass(frozen=True)
class DigitsFamily:
  """Digits MLP variants for meta-training, all padded to one structure."""

  widths: tuple[int, ...] = (16, 32, 64)
  depths: tuple[int, ...] = (1, 2)
  activations: tuple[str, ...] = ("relu", "tanh", "swish")
  batch_sizes: tuple[int, ...] = (32, 64)
  min_subset_fraction: float = 0.5

  def __post_init__(self):
    validation.check("widths", self.widths, validation.SequenceOf(validation.IntRange(1)))
    validation.check("depths", self.depths, validation.SequenceOf(validation.IntRange(1)))
    validation.check("activations", self.activations,
                     validation.SequenceOf(validation.OneOf(mlp.ACTIVATIONS)))
    validation.check("batch_sizes", self.batch_sizes,
                     validation.SequenceOf(validation.IntRange(1)))
    validation.check("min_subset_fraction", self.min_subset_fraction,
                     validation.FloatRange(0.0, 1.0, low_inclusive=False))

  def sample(self, key: jax.Array) -> mlp.DigitsMLPTask:
    keys = jax.random.split(key, 6)
    activation_ids = tuple(mlp.ACTIVATIONS.index(a) for a in self.activations)
    variant = mlp.MLPVariant(
        width=_choose(keys[0], self.widths).astype(jnp.int32),
        depth=_choose(keys[1], self.depths).astype(jnp.int32),
        activation=_choose(keys[2], activation_ids).astype(jnp.int32),
        batch_size=_choose(keys[3], self.batch_sizes).astype(jnp.int32),
        subset_fraction=jax.random.uniform(keys[4], (), minval=self.min_subset_fraction,
                                           maxval=1.0),
        seed=jax.random.randint(keys[5], (), 0, 2**30).astype(jnp.int32),
    )
    return mlp.DigitsMLPTask(variant=variant, max_width=max(self.widths),
                             max_depth=max(self.depths), max_batch_size=max(self.batch_sizes),
                             data=datasets.load_digits())


@dataclasses.dataclass(frozen=True)
class CharFamily:
  """Character-model variants for meta-training, all padded to one structure."""

  widths: tuple[int, ...] = (64, 128)
  activations: tuple[str, ...] = ("relu", "tanh")
  batch_sizes: tuple[int, ...] = (32, 64)
  context: int = 16

  def sample(self, key: jax.Array) -> char_lm.CharLMTask:
    keys = jax.random.split(key, 4)
    activation_ids = tuple(mlp.ACTIVATIONS.index(a) for a in self.activations)
    variant = char_lm.CharVariant(
        width=_choose(keys[0], self.widths).astype(jnp.int32),
        activation=_choose(keys[1], activation_ids).astype(jnp.int32),
        batch_size=_choose(keys[2], self.batch_sizes).astype(jnp.int32),
        seed=jax.random.randint(keys[3], (), 0, 2**30).astype(jnp.int32),
    )
    return char_lm.CharLMTask(variant=variant, context=self.context,
                              max_width=max(self.widths), max_batch_size=max(self.batch_sizes),
                              data=datasets.load_stdlib_text())


META_TRAIN_FAMILIES = {"digits": DigitsFamily, "stdlib_chars": CharFamily}


def meta_train_family(name: str):
  """Return the meta-training family registered under `name`."""
  validation.check_choice("family", name, tuple(META_TRAIN_FAMILIES))
  return META_TRAIN_FAMILIES[name]()


def heldout_digits_tasks(seed: int = 0) -> list[mlp.DigitsMLPTask]:
  """Held-out digits tasks: widths, depths and activations outside the meta-training family."""
  return [
      mlp.digits_task(width=96, depth=2, activation="gelu", batch_size=64, seed=seed),
      mlp.digits_task(width=48, depth=3, activation="elu", batch_size=32, seed=seed),
  ]


def heldout_char_tasks(seed: int = 0) -> list[char_lm.CharLMTask]:
  """Return the held-out character model.

  The default bootstrap never meta-trains on the character family, so the whole
  family is held out unless the config sets `family="stdlib_chars"`.
  """
  return [char_lm.char_task(width=128, activation="relu", batch_size=64, seed=seed)]
