"""G_interpolate and D_interpolate: learned per-layer merges of two fine-tunes of one base.

For each layer, G has a categorical over `CHOICES` (keep the base, keep
parent A, keep parent B, or merge with one of `interpolation.METHODS`) and a
Gaussian over the logit of the layer's coefficient in [0, 1], which is
scaled to the method's range in `interpolation.COEFFICIENT_RANGES`. So G
learns which layers to merge, with which method and with which coefficient.
When the basis holds activation statistics (`prepare_merge` with
`x_stats`), G also chooses per layer whether to rescale it: each hidden unit's
pre-activation is shifted and scaled, by folding into the layer's weights and
bias, so that its mean and standard deviation on `x_stats` match the targets
of the chosen merge (the REPAIR correction of Jordan et al., "REPAIR:
REnormalizing Permuted Activations for Interpolation Repair", 2023,
arXiv:2211.08403). Fixed merges have no such step. D's input is the
configuration, the merged network's predictions on a probe batch and the
ratio of each merged layer's norm to its parents' mean norm (a collapsed or
exploded layer shows there). "Real" merges are the archive's
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
# Added to a unit's standard deviation before dividing by it in the rescaling.
_RESCALE_EPSILON = 1e-6


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
    x_stats: inputs [examples, features] on which a rescaled layer's
      statistics are measured, or None when no layer can be rescaled.
    activation_stats: one entry per layer: None for a layer that cannot be
      rescaled, else {"mean", "std"} [3, units] arrays of the pre-activations
      of the base, parent A and parent B on `x_stats`, in that order.
  """

  base: network_lib.Network
  parent_a: network_lib.Network
  parent_b: network_lib.Network
  task_vectors: tuple[dict[str, jax.Array], ...]
  x_stats: jax.Array | None = None
  activation_stats: tuple[dict[str, jax.Array] | None, ...] | None = None

  @property
  def can_rescale(self) -> bool:
    return self.activation_stats is not None


def prepare_merge(base: network_lib.Network, parent_a: network_lib.Network,
                  parent_b: network_lib.Network, dare_key: jax.Array, *,
                  density: float = interpolation.TIES_DENSITY,
                  drop_rate: float = interpolation.DARE_DROP_RATE,
                  x_stats: jax.Array | None = None) -> MergeBasis:
  """Compute the task vectors of both parents relative to `base`.

  `dare_key` sets DARE's drop masks, one per parameter array. With `x_stats`,
  also measure the pre-activation statistics of every rescalable layer (see
  `rescalable_layers`) of the three networks on those inputs.
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
  activation_stats = None
  if x_stats is not None:
    x_stats = jnp.asarray(x_stats)
    rescalable = rescalable_layers(base)
    measured = [_pre_activation_stats(net, x_stats) for net in (base, parent_a, parent_b)]
    activation_stats = tuple(
        {"mean": jnp.stack([m[i][0] for m in measured]),
         "std": jnp.stack([m[i][1] for m in measured])} if rescalable[i] else None
        for i in range(len(base)))
  return MergeBasis(base=tuple(base), parent_a=tuple(parent_a), parent_b=tuple(parent_b),
                    task_vectors=tuple(per_layer), x_stats=x_stats,
                    activation_stats=activation_stats)


def rescalable_layers(layers: network_lib.Network) -> list[bool]:
  """Mark the layers whose units can be rescaled: every dense layer but the last one.

  The last layer returns the logits, whose scale the loss sets, and other
  layer kinds normalise their inputs already.
  """
  return [layer.kind == "dense" and i < len(layers) - 1 for i, layer in enumerate(layers)]


def _pre_activation_stats(layers: network_lib.Network,
                          x: jax.Array) -> list[tuple[jax.Array, jax.Array] | None]:
  """Return the (mean, std) over `x` of each dense layer's pre-activation; None for other kinds."""
  stats = []
  for layer in layers:
    if layer.kind == "dense":
      z = x @ layer.params["w"] + layer.params["b"]
      stats.append((jnp.mean(z, axis=0), jnp.std(z, axis=0)))
    else:
      stats.append(None)
    x = network_lib.apply_layer(layer, x)
  return stats


@functools.partial(jax.jit, static_argnames=("density", "drop_rate"))
def _task_vectors(p_base, p_a, p_b, key, *, density, drop_rate):
  models = jnp.stack([p_a, p_b])
  return jnp.stack([
      jnp.sum(models - p_base[None], axis=0),
      interpolation.ties_task_vector(p_base, models, density),
      interpolation.dare_task_vector(key, p_base, models, drop_rate),
  ])


def merge_network(choice: jax.Array, coefficient: jax.Array, basis: MergeBasis,
                  rescale: jax.Array | None = None) -> network_lib.Network:
  """Merge the parents layer by layer, then rescale the layers that `rescale` marks.

  Args:
    choice: [layers, len(CHOICES)] weights over the choices, usually one-hot.
    coefficient: [layers] in [0, 1], scaled to the chosen method's range.
    basis: the parents and their task vectors.
    rescale: None, or [layers] weights in [0, 1], usually 0 or 1; see
      `_rescale_layers`. Entries of layers that cannot be rescaled are ignored.

  Raises:
    ValueError: when `rescale` is given but `basis` has no activation statistics.
  """
  merged = _merge_layers(choice, coefficient, basis)
  if rescale is None:
    return merged
  if not basis.can_rescale:
    raise ValueError("Rescaling needs activation statistics; build the basis with "
                     "prepare_merge(..., x_stats=inputs).")
  return _rescale_layers(merged, choice, coefficient, basis, rescale)


def _merge_layers(choice: jax.Array, coefficient: jax.Array,
                  basis: MergeBasis) -> network_lib.Network:
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


def _target_stats(choice: jax.Array, coefficient: jax.Array, stats: dict[str, jax.Array]):
  """Return the target (mean, std) [units] of one layer's units under its merge choice.

  Keeping the base or a parent targets that network's statistics. Linear and
  SLERP with coefficient t target (1 - t) parent A + t parent B, as REPAIR
  does. The task-vector methods add both parents' changes, so they target the
  parents' average.
  """
  t_linear = _LOW[3] + coefficient * (_HIGH[3] - _LOW[3])
  t_slerp = _LOW[4] + coefficient * (_HIGH[4] - _LOW[4])
  weights = jnp.stack([
      jnp.array([1.0, 0.0, 0.0]), jnp.array([0.0, 1.0, 0.0]), jnp.array([0.0, 0.0, 1.0]),
      jnp.array([0.0, 1.0 - t_linear, t_linear]), jnp.array([0.0, 1.0 - t_slerp, t_slerp]),
      jnp.array([0.0, 0.5, 0.5]), jnp.array([0.0, 0.5, 0.5]), jnp.array([0.0, 0.5, 0.5])])
  mix = choice @ weights
  return mix @ stats["mean"], mix @ stats["std"]


def _rescale_layers(merged: network_lib.Network, choice: jax.Array, coefficient: jax.Array,
                    basis: MergeBasis, rescale: jax.Array) -> network_lib.Network:
  """Rescale the marked dense layers of `merged` to their target statistics on `basis.x_stats`.

  Layer i's pre-activation z = h W + b on the merged network's own inputs h
  (after the earlier layers' rescaling) has per-unit mean mu and standard
  deviation sigma. The rescaled layer has W' = W s and b' = (b - mu) s +
  target_mean with s = target_std / (sigma + epsilon), so its units' mean and
  standard deviation on `x_stats` equal the targets. A weight r = rescale[i]
  between 0 and 1 blends W + r (W' - W) and b + r (b' - b).
  """
  out = []
  h = basis.x_stats
  for i, layer in enumerate(merged):
    stats = basis.activation_stats[i]
    if stats is not None:
      w, b = layer.params["w"], layer.params["b"]
      z = h @ w + b
      mean, std = jnp.mean(z, axis=0), jnp.std(z, axis=0)
      target_mean, target_std = _target_stats(choice[i], coefficient[i], stats)
      scale = target_std / (std + _RESCALE_EPSILON)
      w_rescaled, b_rescaled = w * scale, (b - mean) * scale + target_mean
      layer = layer.replace(params={**layer.params,
                                    "w": w + rescale[i] * (w_rescaled - w),
                                    "b": b + rescale[i] * (b_rescaled - b)})
    out.append(layer)
    h = network_lib.apply_layer(layer, h)
  return tuple(out)


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


def describe(choice: jax.Array, coefficient: jax.Array,
             rescale: jax.Array | None = None) -> list[str]:
  """Return one readable entry per layer, such as "ties(coefficient=1.24)" or "parent_a".

  A layer whose `rescale` weight is at least 0.5 gets a " + rescale" suffix.
  """
  entries = []
  for i, index in enumerate(jnp.argmax(choice, axis=-1).tolist()):
    name = CHOICES[index]
    if index < _UNMERGED:
      entry = name
    else:
      scaled = float(_LOW[index] + coefficient[i] * (_HIGH[index] - _LOW[index]))
      entry = f"{name}(coefficient={scaled:.3g})"
    if rescale is not None and float(rescale[i]) >= 0.5:
      entry += " + rescale"
    entries.append(entry)
  return entries


def make_problem(basis: MergeBasis, x_probe: jax.Array, x_valid: jax.Array, y_valid: jax.Array,
                 *, temperature: float = 1.0, objective: str = "accuracy",
                 initial_config: tuple[jax.Array, ...] | None = None,
                 initial_confidence: float = 2.0) -> adversarial.Problem:
  """Build the search over per-layer merge configurations of `basis`'s parents.

  A candidate is {"choice" [layers, len(CHOICES)], "coefficient" [layers],
  "rescale" [layers]}. "rescale" is 0 or 1 per layer, sampled by G when
  `basis.can_rescale` and all zeros otherwise.

  Args:
    basis: the parents and their task vectors.
    x_probe: inputs on which D sees each merge's predictions.
    x_valid: inputs that score a merge.
    y_valid: labels of `x_valid`.
    temperature: of the Gumbel-softmax choices per layer.
    objective: one of `adversarial.OBJECTIVES`.
    initial_config: when given, a (choice [layers, len(CHOICES)], coefficient
      [layers]) pair, such as `uniform_config` of the best fixed merge, at
      which G starts: its choice logits are `initial_confidence` times the
      one-hot choice and its coefficient means are the coefficients' logits.
      Otherwise G starts near uniform over the choices. A third element
      rescale [layers] of 0 and 1 sets the rescaling logits the same way;
      without it G starts with even odds of rescaling each layer.
    initial_confidence: logit margin of the initial choice.
  """
  num_layers = len(basis.base)
  num_classes = network_lib.signature(basis.base[-1])[1][1]
  parent_norms = jnp.array([0.5 * (_parameter_norm(a) + _parameter_norm(b))
                            for a, b in zip(basis.parent_a, basis.parent_b)])

  def merge(choice, coefficient, rescale):
    return merge_network(choice, coefficient, basis, rescale if basis.can_rescale else None)

  def init_generator(key):
    logits = 0.01 * jax.random.normal(key, (num_layers, len(CHOICES)))
    coefficient_mean = jnp.zeros(num_layers)
    rescale_logits = jnp.zeros((num_layers, 2))
    if initial_config is not None:
      choice, coefficient = initial_config[:2]
      logits = logits + initial_confidence * jnp.asarray(choice, jnp.float32)
      # Clipping keeps the mean finite for coefficients at the ends of their range.
      coefficient_mean = jax.scipy.special.logit(jnp.clip(jnp.asarray(coefficient), 0.02, 0.98))
      if len(initial_config) > 2:
        rescale_logits = initial_confidence * jax.nn.one_hot(
            jnp.asarray(initial_config[2]).astype(jnp.int32), 2)
    return {"logits": logits, "coefficient_mean": coefficient_mean,
            "coefficient_log_std": jnp.full(num_layers, jnp.log(0.5)),
            "rescale_logits": rescale_logits}

  def sample(g_params, key, batch_size):
    k_choice, k_coefficient, k_rescale = jax.random.split(key, 3)
    logits = jnp.broadcast_to(g_params["logits"], (batch_size, num_layers, len(CHOICES)))
    choice = discrete.gumbel_softmax(k_choice, logits, temperature, hard=True)
    coefficient_logit = discrete.gaussian_reparameterize(
        k_coefficient, jnp.broadcast_to(g_params["coefficient_mean"], (batch_size, num_layers)),
        jnp.broadcast_to(g_params["coefficient_log_std"], (batch_size, num_layers)))
    if basis.can_rescale:
      rescale_logits = jnp.broadcast_to(g_params["rescale_logits"], (batch_size, num_layers, 2))
      rescale = discrete.gumbel_softmax(k_rescale, rescale_logits, temperature, hard=True)[..., 1]
    else:
      rescale = jnp.zeros((batch_size, num_layers))
    return {"choice": choice, "coefficient": jax.nn.sigmoid(coefficient_logit),
            "rescale": rescale}

  def featurize(candidates):

    def one(choice, coefficient, rescale):
      merged = merge(choice, coefficient, rescale)
      norms = jnp.array([_parameter_norm(layer) for layer in merged])
      probes = adversarial.probe_features(network_lib.apply_network(merged, x_probe))
      return jnp.concatenate([choice.ravel(), coefficient, rescale, probes,
                              norms / parent_norms])

    return jax.vmap(one)(candidates["choice"], candidates["coefficient"], candidates["rescale"])

  def score(candidates):

    def one(choice, coefficient, rescale):
      logits = network_lib.apply_network(merge(choice, coefficient, rescale), x_valid)
      return adversarial.score_logits(logits, y_valid, objective)

    return jax.vmap(one)(candidates["choice"], candidates["coefficient"], candidates["rescale"])

  return adversarial.Problem(
      init_generator=init_generator, sample=sample, featurize=featurize, score=score,
      feature_dim=num_layers * (len(CHOICES) + 3) + num_classes + 2)


def _parameter_norm(layer: network_lib.Layer) -> jax.Array:
  return jnp.sqrt(sum(jnp.sum(jnp.square(v)) for v in layer.params.values()))
