"""G_interpolate and D_interpolate: learned per-layer merges of two fine-tunes of one base.

For each layer, G has a categorical over `CHOICES` (keep the base, keep
parent A, keep parent B, or merge with one of `interpolation.METHODS`) and a
Gaussian over the logit of the layer's coefficient in [0, 1], which is
scaled to the method's range in `interpolation.COEFFICIENT_RANGES`. So G
learns which layers to merge, with which method and with which coefficient.
D sees the configuration, the merged network's predictions on a probe batch
and the ratio of each merged layer's norm to its parents' mean norm (a
collapsed or exploded layer shows there). "Real" merges are the archive's
best by their score (accuracy or minus the loss) on validation data of all ten
digits.

DARE draws one fixed drop mask per parameter array (in `prepare_merge`), so a
configuration names exactly one network.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import struct

from autogan_jax.estimators import discrete
from autogan_jax.weight_space import adversarial
from autogan_jax.weight_space import combination
from autogan_jax.weight_space import interpolation
from autogan_jax.weight_space import network as network_lib

CHOICES = ("base", "parent_a", "parent_b") + interpolation.METHODS
_UNMERGED = 3
_LOW = jnp.array([0.0] * _UNMERGED + [interpolation.COEFFICIENT_RANGES[m][0]
                                      for m in interpolation.METHODS])
_HIGH = jnp.array([0.0] * _UNMERGED + [interpolation.COEFFICIENT_RANGES[m][1]
                                       for m in interpolation.METHODS])


@struct.dataclass
class MergeBasis:
  """The parents and the task vectors of the task-vector methods, computed once.

  The TIES and DARE task vectors do not depend on the coefficient, so they are
  computed once here instead of inside every traced merge.

  Attributes:
    base: the parents' common ancestor.
    parent_a: first parent.
    parent_b: second parent.
    task_vectors: one tuple per layer of {name: [3, ...]} arrays, the task
      vectors of task arithmetic, TIES and DARE in that order.
  """

  base: network_lib.Network
  parent_a: network_lib.Network
  parent_b: network_lib.Network
  task_vectors: tuple[dict[str, jax.Array], ...]


def prepare_merge(base: network_lib.Network, parent_a: network_lib.Network,
                  parent_b: network_lib.Network, dare_key: jax.Array, *,
                  density: float = interpolation.TIES_DENSITY,
                  drop_rate: float = interpolation.DARE_DROP_RATE) -> MergeBasis:
  """Compute the task vectors of both parents relative to `base`.

  `dare_key` sets DARE's drop masks, one per parameter array.
  """
  combination.check_same_structure(base, parent_a)
  combination.check_same_structure(base, parent_b)
  per_layer = []
  for i, (layer_base, layer_a, layer_b) in enumerate(zip(base, parent_a, parent_b)):
    vectors = {}
    for j, name in enumerate(sorted(layer_base.params)):
      key = jax.random.fold_in(jax.random.fold_in(dare_key, i), j)
      vectors[name] = _task_vectors(layer_base.params[name], layer_a.params[name],
                                    layer_b.params[name], key, density=density,
                                    drop_rate=drop_rate)
    per_layer.append(vectors)
  return MergeBasis(base=tuple(base), parent_a=tuple(parent_a), parent_b=tuple(parent_b),
                    task_vectors=tuple(per_layer))


@functools.partial(jax.jit, static_argnames=("density", "drop_rate"))
def _task_vectors(p_base, p_a, p_b, key, *, density, drop_rate):
  models = jnp.stack([p_a, p_b])
  return jnp.stack([
      jnp.sum(models - p_base[None], axis=0),
      interpolation.ties_task_vector(p_base, models, density),
      interpolation.dare_task_vector(key, p_base, models, drop_rate),
  ])


def merge_network(choice: jax.Array, coefficient: jax.Array,
                  basis: MergeBasis) -> network_lib.Network:
  """Merge the parents layer by layer.

  Args:
    choice: [layers, len(CHOICES)] weights over the choices, usually one-hot.
    coefficient: [layers] in [0, 1], scaled to the chosen method's range.
    basis: the parents and their task vectors.
  """
  merged = []
  for i, layer_base in enumerate(basis.base):
    scaled = _LOW + coefficient[i] * (_HIGH - _LOW)
    params = {}
    for name, p_base in layer_base.params.items():
      p_a, p_b = basis.parent_a[i].params[name], basis.parent_b[i].params[name]
      vectors = basis.task_vectors[i][name]
      candidates = [
          p_base, p_a, p_b,
          interpolation.linear(p_a, p_b, scaled[3]),
          interpolation.slerp(p_a, p_b, scaled[4]),
          p_base + scaled[5] * vectors[0],
          p_base + scaled[6] * vectors[1],
          p_base + scaled[7] * vectors[2],
      ]
      params[name] = jnp.tensordot(choice[i], jnp.stack(candidates), axes=1)
    merged.append(layer_base.replace(params=params))
  return tuple(merged)


def uniform_config(method: str, coefficient: jax.typing.ArrayLike,
                   num_layers: int) -> tuple[jax.Array, jax.Array]:
  """Return the (choice, coefficient) of one fixed method and coefficient in every layer.

  `coefficient` is in the method's own range, as in `interpolation.merge`.
  """
  index = CHOICES.index(method)
  low, high = interpolation.COEFFICIENT_RANGES[method]
  unit = (jnp.asarray(coefficient, jnp.float32) - low) / (high - low)
  choice = jnp.tile(jax.nn.one_hot(index, len(CHOICES))[None], (num_layers, 1))
  return choice, jnp.full((num_layers,), unit)


def describe(choice: jax.Array, coefficient: jax.Array) -> list[str]:
  """Return one readable entry per layer, such as "ties(coefficient=1.24)" or "parent_a"."""
  entries = []
  for i, index in enumerate(jnp.argmax(choice, axis=-1).tolist()):
    name = CHOICES[index]
    if index < _UNMERGED:
      entries.append(name)
    else:
      scaled = float(_LOW[index] + coefficient[i] * (_HIGH[index] - _LOW[index]))
      entries.append(f"{name}(coefficient={scaled:.3g})")
  return entries


def make_problem(basis: MergeBasis, x_probe: jax.Array, x_valid: jax.Array, y_valid: jax.Array,
                 *, temperature: float = 1.0, objective: str = "accuracy",
                 initial_config: tuple[jax.Array, jax.Array] | None = None,
                 initial_confidence: float = 2.0) -> adversarial.Problem:
  """Build the search over per-layer merge configurations of `basis`'s parents.

  Args:
    basis: the parents and their task vectors.
    x_probe: inputs on which D sees each merge's predictions.
    x_valid: inputs that score a merge.
    y_valid: labels of `x_valid`.
    temperature: of the Gumbel-softmax choice per layer.
    objective: one of `adversarial.OBJECTIVES`.
    initial_config: when given, a (choice [layers, len(CHOICES)], coefficient
      [layers]) pair, such as `uniform_config` of the best fixed merge, at
      which G starts: its choice logits are `initial_confidence` times the
      one-hot choice and its coefficient means are the coefficients' logits.
      Otherwise G starts near uniform over the choices.
    initial_confidence: logit margin of the initial choice.
  """
  num_layers = len(basis.base)
  num_classes = network_lib.signature(basis.base[-1])[1][1]
  parent_norms = jnp.array([0.5 * (_parameter_norm(a) + _parameter_norm(b))
                            for a, b in zip(basis.parent_a, basis.parent_b)])

  def merge(choice, coefficient):
    return merge_network(choice, coefficient, basis)

  def init_generator(key):
    logits = 0.01 * jax.random.normal(key, (num_layers, len(CHOICES)))
    coefficient_mean = jnp.zeros(num_layers)
    if initial_config is not None:
      choice, coefficient = initial_config
      logits = logits + initial_confidence * jnp.asarray(choice, jnp.float32)
      # Clipping keeps the mean finite for coefficients at the ends of their range.
      coefficient_mean = jax.scipy.special.logit(jnp.clip(jnp.asarray(coefficient), 0.02, 0.98))
    return {"logits": logits, "coefficient_mean": coefficient_mean,
            "coefficient_log_std": jnp.full(num_layers, jnp.log(0.5))}

  def sample(g_params, key, batch_size):
    k_choice, k_coefficient = jax.random.split(key)
    logits = jnp.broadcast_to(g_params["logits"], (batch_size, num_layers, len(CHOICES)))
    choice = discrete.gumbel_softmax(k_choice, logits, temperature, hard=True)
    coefficient_logit = discrete.gaussian_reparameterize(
        k_coefficient, jnp.broadcast_to(g_params["coefficient_mean"], (batch_size, num_layers)),
        jnp.broadcast_to(g_params["coefficient_log_std"], (batch_size, num_layers)))
    return {"choice": choice, "coefficient": jax.nn.sigmoid(coefficient_logit)}

  def featurize(candidates):

    def one(choice, coefficient):
      merged = merge(choice, coefficient)
      norms = jnp.array([_parameter_norm(layer) for layer in merged])
      probes = adversarial.probe_features(network_lib.apply_network(merged, x_probe))
      return jnp.concatenate([choice.ravel(), coefficient, probes, norms / parent_norms])

    return jax.vmap(one)(candidates["choice"], candidates["coefficient"])

  def score(candidates):

    def one(choice, coefficient):
      logits = network_lib.apply_network(merge(choice, coefficient), x_valid)
      return adversarial.score_logits(logits, y_valid, objective)

    return jax.vmap(one)(candidates["choice"], candidates["coefficient"])

  return adversarial.Problem(
      init_generator=init_generator, sample=sample, featurize=featurize, score=score,
      feature_dim=num_layers * (len(CHOICES) + 2) + num_classes + 2)


def _parameter_norm(layer: network_lib.Layer) -> jax.Array:
  return jnp.sqrt(sum(jnp.sum(jnp.square(v)) for v in layer.params.values()))
