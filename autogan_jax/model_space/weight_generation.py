"""Generated initial weights of one fixed spec, and whether they are more than copies.

G_model's weight head emits a parameter dict of one spec: a learned mean plus
a learned linear map of Gaussian noise. It trains with the generic
adversarial step against an archive of trained models of that spec: real is
the top of the archive by validation accuracy, and D_model reads
permutation-invariant weight statistics plus the model's loss, accuracy and
entropy on a fixed probe batch of training examples.

`novelty_report` compares G's weights with two baselines at the same short
training: a random archive model plus Gaussian noise whose size matches G's
distance to its nearest archive model, and the average of the archive. It
also gives each candidate's distance to its nearest archive model, relative to
that model's norm.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from autogan_jax import gan
from autogan_jax.core import tree as tree_lib
from autogan_jax.core import validation
from autogan_jax.model_space import builder
from autogan_jax.model_space import encoding
from autogan_jax.model_space import models_gan
from autogan_jax.model_space import network
from autogan_jax.model_space import population
from autogan_jax.model_space import spec as spec_lib


@dataclasses.dataclass(frozen=True)
class WeightGenerationConfig:
  """Settings of the weight-generation experiment.

  Attributes:
    archive_size: trained models of the fixed spec.
    archive_steps: training steps of each archive model.
    top_fraction: share of the archive that counts as real.
    gan_steps, gan_batch: adversarial steps and real samples per step.
    probe_size: training examples D's probe metrics use.
    samples: generated weight sets and baseline draws that are compared.
    short_steps: training steps after which all candidates are compared.
    g_learning_rate, d_learning_rate: Adam step sizes.
  """

  archive_size: int = 16
  archive_steps: int = 150
  top_fraction: float = 0.5
  gan_steps: int = 400
  gan_batch: int = 8
  probe_size: int = 128
  samples: int = 8
  short_steps: int = 20
  g_learning_rate: float = 3e-3
  d_learning_rate: float = 1e-3

  def __post_init__(self):
    for name in ("archive_size", "archive_steps", "gan_steps", "gan_batch", "probe_size",
                 "samples", "short_steps"):
      validation.check(name, getattr(self, name), validation.IntRange(1))
    validation.check("top_fraction", self.top_fraction,
                     validation.FloatRange(0.0, 1.0, low_inclusive=False))


def _flatten(params: network.Params) -> jax.Array:
  return jnp.concatenate([params[k].reshape(-1) for k in sorted(params)])


def nearest_distance(candidate: network.Params, archive: network.Params) -> jax.Array:
  """Return ||candidate - nearest|| / ||nearest|| over archive members (leading axis)."""
  flat = _flatten(candidate)
  members = jax.vmap(_flatten)(archive)
  distances = jnp.linalg.norm(members - flat[None], axis=1)
  nearest = jnp.argmin(distances)
  return distances[nearest] / jnp.linalg.norm(members[nearest])


def probe_metrics(params: network.Params, code: encoding.SpecArrays,
                  envelope: encoding.Envelope, x: jax.Array, y: jax.Array) -> jax.Array:
  """Return [loss, soft accuracy, entropy] of a model on a probe batch."""
  logits = network.apply(params, x, code, envelope)
  log_probs = jax.nn.log_softmax(logits)
  true = jnp.take_along_axis(log_probs, y[:, None], axis=1)[:, 0]
  entropy = -jnp.sum(jnp.exp(log_probs) * log_probs, axis=1)
  return jnp.stack([-jnp.mean(true), jnp.mean(jnp.exp(true)), jnp.mean(entropy)])


def _describe(params, code, envelope, probe_x, probe_y) -> jax.Array:
  return jnp.concatenate([models_gan.weight_statistics(params),
                          probe_metrics(params, code, envelope, probe_x, probe_y)])


# Cached so that every seed of one spec and config shares one compiled adversarial loop.
@functools.lru_cache(maxsize=8)
def _weight_gan_functions(spec: spec_lib.ModelSpec, io: spec_lib.ModelIO,
                          config: WeightGenerationConfig):
  envelope = encoding.Envelope.covering([spec], io)
  code = encoding.encode(spec, envelope)
  shapes = jax.eval_shape(lambda k: network.init_params(spec, io, k), jax.random.key(0))
  weight_shapes = tuple((name, tuple(s.shape)) for name, s in sorted(shapes.items()))
  g_config = models_gan.GModelConfig(slot_sizes=(1,), context_size=1,
                                     weight_shapes=weight_shapes)
  d_config = models_gan.DModelConfig(spec_features=4 * len(weight_shapes) + 3)
  g_tx = optax.adam(config.g_learning_rate, b1=0.5)
  d_tx = optax.adam(config.d_learning_rate, b1=0.5)

  def train(state, real_features, probe_x, probe_y, key):
    def generate(g_params, k, batch_size):
      _, weights = models_gan.g_model_sample(g_params, g_config, k, batch_size, jnp.zeros(1))
      return jax.vmap(lambda p: _describe(p, code, envelope, probe_x, probe_y))(weights), None

    step = gan.make_step(generate, models_gan.d_model_apply, g_tx, d_tx)

    def body(state, index):
      k_real, k_step = jax.random.split(jax.random.fold_in(key, index))
      real = real_features[jax.random.randint(k_real, (config.gan_batch,), 0,
                                              real_features.shape[0])]
      return step(state, real, k_step)

    return jax.lax.scan(body, state, jnp.arange(config.gan_steps))

  return g_config, d_config, g_tx, d_tx, jax.jit(train)


def run_weight_generation(spec: spec_lib.ModelSpec, data, io: spec_lib.ModelIO, seed: int,
                          config: WeightGenerationConfig = WeightGenerationConfig(),
                          tx: optax.GradientTransformation | None = None) -> dict:
  """Build an archive, train G's weight head against it and compare with the baselines.

  Returns:
    A dict of JSON-ready figures: per method ("generated", "archive_plus_noise",
    "archive_average", plus "fresh_init" for reference) the validation accuracy
    before and after `short_steps` steps (mean over `samples` draws), the
    relative distance to the nearest archive model, and the adversarial
    losses at the end.
  """
  key = jax.random.key(seed)
  keys = dict(zip(("archive", "archive_train", "g", "d", "gan", "sample", "noise", "pick",
                   "fresh", "short"), jax.random.split(key, 10)))
  envelope = encoding.Envelope.covering([spec], io)
  code = encoding.encode(spec, envelope)
  evaluate = population.make_evaluator(envelope)
  x_valid, y_valid = data.split("valid")

  def codes(n):
    return jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (n, *leaf.shape)), code)

  # The archive: the same spec trained from different initialisations.
  n = config.archive_size
  _, init, _ = builder.build_population([spec] * n, io, jax.random.split(keys["archive"], n),
                                        envelope)
  trainer = population.make_trainer(envelope, config.archive_steps, tx)
  archive, _, _ = trainer(init, codes(n), jax.random.split(keys["archive_train"], n), data)
  archive_accuracy = np.asarray(evaluate(archive, codes(n), x_valid, y_valid)["accuracy"])
  top = max(2, int(round(config.top_fraction * n)))
  real_pool = tree_lib.index(archive, jnp.asarray(np.argsort(-archive_accuracy)[:top]))

  # G's weight head starts from a fresh initialisation that no archive model shares.
  fresh = builder.params_of(builder.build(spec, io, keys["fresh"]))
  g_config, d_config, g_tx, d_tx, train_gan = _weight_gan_functions(spec, io, config)
  probe_x, probe_y = data.sample(jax.random.fold_in(key, 7), config.probe_size)
  real_features = jax.vmap(lambda p: _describe(p, code, envelope, probe_x, probe_y))(real_pool)
  state = gan.init_state(models_gan.g_model_init(keys["g"], g_config, fresh),
                         models_gan.d_model_init(keys["d"], d_config), g_tx, d_tx)
  state, gan_metrics = train_gan(state, real_features, probe_x, probe_y, keys["gan"])
  _, generated = models_gan.g_model_sample(state.g_params, g_config, keys["sample"],
                                           config.samples, jnp.zeros(1))

  # Baselines at the same distance from the archive as G's weights.
  distances = np.asarray(jax.vmap(lambda c: nearest_distance(c, archive))(generated))
  picks = jax.random.randint(keys["pick"], (config.samples,), 0, n)
  picked = tree_lib.index(archive, picks)
  flat_norms = np.asarray(jax.vmap(lambda p: jnp.linalg.norm(_flatten(p)))(picked))
  size = _flatten(fresh).shape[0]
  sigma = float(np.mean(distances)) * flat_norms / np.sqrt(size)
  noise_keys = jax.random.split(keys["noise"], config.samples)
  leaf_names = sorted(fresh)

  def add_noise(params, k, s):
    ks = jax.random.split(k, len(leaf_names))
    return {name: params[name] + s * jax.random.normal(ks[i], params[name].shape)
            for i, name in enumerate(leaf_names)}

  noisy = jax.vmap(add_noise)(picked, noise_keys, jnp.asarray(sigma))
  average = jax.tree.map(lambda leaf: jnp.broadcast_to(jnp.mean(leaf, 0), leaf.shape[1:]),
                         archive)
  average = jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (config.samples, *leaf.shape)),
                         average)
  _, fresh_population, _ = builder.build_population(
      [spec] * config.samples, io, jax.random.split(jax.random.fold_in(keys["fresh"], 1),
                                                    config.samples), envelope)

  short = population.make_trainer(envelope, config.short_steps, tx)
  short_keys = jax.random.split(keys["short"], config.samples)
  m = config.samples
  report = {"archive_valid_accuracy_mean": float(archive_accuracy.mean()),
            "archive_valid_accuracy_max": float(archive_accuracy.max()),
            "final_d_loss": float(gan_metrics["d_loss"][-1]),
            "final_g_loss": float(gan_metrics["g_loss"][-1]), "methods": {}}
  for name, weights in (("generated", generated), ("archive_plus_noise", noisy),
                        ("archive_average", average), ("fresh_init", fresh_population)):
    before = np.asarray(evaluate(weights, codes(m), x_valid, y_valid)["accuracy"])
    trained, _, _ = short(weights, codes(m), short_keys, data)
    after = np.asarray(evaluate(trained, codes(m), x_valid, y_valid)["accuracy"])
    nearest = np.asarray(jax.vmap(lambda c: nearest_distance(c, archive))(weights))
    report["methods"][name] = {
        "valid_accuracy_before": float(before.mean()),
        "valid_accuracy_after_short_training": float(after.mean()),
        "valid_accuracy_after_short_training_std": float(after.std()),
        "relative_distance_to_nearest_archive_model": float(nearest.mean())}
  return report
