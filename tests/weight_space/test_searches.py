"""The three G/D problems: their merges, hybrids and orders match the direct operations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from autogan_jax.weight_space import combination
from autogan_jax.weight_space import combine_search
from autogan_jax.weight_space import interpolate_search
from autogan_jax.weight_space import interpolation
from autogan_jax.weight_space import network
from autogan_jax.weight_space import permutation
from autogan_jax.weight_space import permute_search


def _three_mlps():
  base = network.init_mlp(jax.random.key(0), (64, 12, 10))
  noise = lambda seed: jax.tree.map(
      lambda leaf: leaf + 0.3 * jax.random.normal(jax.random.key(seed), leaf.shape), base)
  return base, noise(1), noise(2)


def test_uniform_config_matches_merge():
  base, a, b = _three_mlps()
  dare_key = jax.random.key(7)
  basis = interpolate_search.prepare_merge(base, a, b, dare_key)
  merge_all = jax.jit(interpolate_search.merge_network)
  for method in interpolation.METHODS:
    low, high = interpolation.COEFFICIENT_RANGES[method]
    coefficient = low + 0.3 * (high - low)
    choice, unit = interpolate_search.uniform_config(method, coefficient, len(base))
    merged = merge_all(choice, unit, basis)
    for i in range(len(base)):
      for j, name in enumerate(sorted(base[i].params)):
        # prepare_merge draws DARE's mask of array j of layer i from this key.
        key = jax.random.fold_in(jax.random.fold_in(dare_key, i), j)
        expected = interpolation.merge(method, coefficient, base[i].params[name],
                                       a[i].params[name], b[i].params[name], key)
        np.testing.assert_allclose(merged[i].params[name], expected, rtol=1e-5, atol=1e-5,
                                   err_msg=f"{method} layer {i} {name}")


def test_unmerged_choices_keep_networks():
  base, a, b = _three_mlps()
  basis = interpolate_search.prepare_merge(base, a, b, jax.random.key(0))
  choice = jax.nn.one_hot(jnp.array([0, 1, 2])[:len(base)], len(interpolate_search.CHOICES))
  merged = interpolate_search.merge_network(choice, jnp.zeros(len(base)), basis)
  np.testing.assert_array_equal(merged[0].params["w"], base[0].params["w"])
  np.testing.assert_array_equal(merged[1].params["w"], a[1].params["w"])
  assert interpolate_search.describe(choice, jnp.zeros(len(base))) == ["base", "parent_a"]


def _check_problem(problem, key):
  g_params = problem.init_generator(key)
  samples = problem.sample(g_params, jax.random.fold_in(key, 1), 3)
  features = jax.jit(problem.featurize)(samples)
  assert features.shape == (3, problem.feature_dim)
  assert np.all(np.isfinite(features))
  scores = jax.jit(problem.score)(samples)
  assert scores.shape == (3,)
  return samples, scores


def test_interpolate_problem_scores_merges():
  base, a, b = _three_mlps()
  basis = interpolate_search.prepare_merge(base, a, b, jax.random.key(0))
  x = jax.random.uniform(jax.random.key(1), (20, 64))
  y = jnp.arange(20) % 10
  problem = interpolate_search.make_problem(basis, x[:5], x, y)
  samples, scores = _check_problem(problem, jax.random.key(2))
  for i in range(3):
    merged = interpolate_search.merge_network(samples["choice"][i], samples["coefficient"][i],
                                              basis)
    expected = jnp.mean(jnp.argmax(network.apply_network(merged, x), -1) == y)
    assert float(scores[i]) == pytest.approx(float(expected))


def test_interpolate_generator_starts_at_config():
  base, a, b = _three_mlps()
  basis = interpolate_search.prepare_merge(base, a, b, jax.random.key(0))
  choice, coefficient = interpolate_search.uniform_config("ties", 1.5, len(base))
  x = jax.random.uniform(jax.random.key(1), (8, 64))
  problem = interpolate_search.make_problem(basis, x, x, jnp.arange(8) % 10,
                                            initial_config=(choice, coefficient),
                                            initial_confidence=3.0)
  g_params = problem.init_generator(jax.random.key(2))
  np.testing.assert_array_equal(np.argmax(g_params["logits"], -1),
                                [interpolate_search.CHOICES.index("ties")] * len(base))
  np.testing.assert_allclose(jax.nn.sigmoid(g_params["coefficient_mean"]), 0.75, rtol=1e-5)
  samples = problem.sample(g_params, jax.random.key(3), 256)
  share = np.mean(np.argmax(samples["choice"], -1) == interpolate_search.CHOICES.index("ties"))
  # With a logit margin of 3 over 7 other choices, P(ties) = e^3 / (e^3 + 7), about 0.74.
  assert 0.65 < share < 0.83


def _three_deep_mlps():
  base = network.init_mlp(jax.random.key(0), (64, 12, 12, 10))
  noise = lambda seed: jax.tree.map(
      lambda leaf: leaf + 0.3 * jax.random.normal(jax.random.key(seed), leaf.shape), base)
  return base, noise(1), noise(2)


_merge_jit = jax.jit(interpolate_search.merge_network)


def _pre_activations(layers, x, index):
  """Return layer `index`'s pre-activation on inputs `x` of the whole network."""
  for layer in layers[:index]:
    x = network.apply_layer(layer, x)
  return x @ layers[index].params["w"] + layers[index].params["b"]


def test_rescale_matches_target_statistics():
  base, a, b = _three_deep_mlps()
  x = jax.random.uniform(jax.random.key(3), (200, 64))
  basis = interpolate_search.prepare_merge(base, a, b, jax.random.key(0), x_stats=x)
  assert interpolate_search.rescalable_layers(base) == [True, True, False]
  assert basis.activation_stats[2] is None
  t = 0.3
  choice, unit = interpolate_search.uniform_config("linear", t, len(base))
  plain = _merge_jit(choice, unit, basis)
  rescaled = _merge_jit(choice, unit, basis, jnp.array([1.0, 1.0, 1.0]))
  for i in (0, 1):
    # Each hidden unit's mean and std on x become the parents' interpolated ones.
    pre_a = _pre_activations(a, x, i)
    pre_b = _pre_activations(b, x, i)
    z = _pre_activations(rescaled, x, i)
    expected_mean = (1 - t) * jnp.mean(pre_a, 0) + t * jnp.mean(pre_b, 0)
    expected_std = (1 - t) * jnp.std(pre_a, 0) + t * jnp.std(pre_b, 0)
    np.testing.assert_allclose(jnp.mean(z, 0), expected_mean, atol=1e-4, err_msg=f"layer {i}")
    np.testing.assert_allclose(jnp.std(z, 0), expected_std, rtol=1e-3, atol=1e-4,
                               err_msg=f"layer {i}")
    assert not np.allclose(rescaled[i].params["w"], plain[i].params["w"], atol=1e-4)
  # The logits layer is never rescaled, and a zero weight leaves every layer as merged.
  np.testing.assert_array_equal(rescaled[2].params["w"], plain[2].params["w"])
  untouched = _merge_jit(choice, unit, basis, jnp.zeros(3))
  for layer, expected in zip(untouched, plain):
    np.testing.assert_allclose(layer.params["w"], expected.params["w"], rtol=1e-6)
    np.testing.assert_allclose(layer.params["b"], expected.params["b"], rtol=1e-6, atol=1e-7)
  assert interpolate_search.describe(choice, unit, jnp.array([1.0, 0.0, 0.0]))[0].endswith(
      " + rescale")


def test_rescale_targets_task_vector_mean():
  base, a, b = _three_deep_mlps()
  x = jax.random.uniform(jax.random.key(4), (150, 64))
  basis = interpolate_search.prepare_merge(base, a, b, jax.random.key(0), x_stats=x)
  choice, unit = interpolate_search.uniform_config("ties", 1.2, len(base))
  rescaled = _merge_jit(choice, unit, basis, jnp.array([1.0, 0.0, 0.0]))
  z = _pre_activations(rescaled, x, 0)
  expected_std = 0.5 * (jnp.std(_pre_activations(a, x, 0), 0)
                        + jnp.std(_pre_activations(b, x, 0), 0))
  np.testing.assert_allclose(jnp.std(z, 0), expected_std, rtol=1e-3, atol=1e-4)


def test_rescale_without_statistics_raises():
  base, a, b = _three_mlps()
  basis = interpolate_search.prepare_merge(base, a, b, jax.random.key(0))
  choice, unit = interpolate_search.uniform_config("linear", 0.5, len(base))
  with pytest.raises(ValueError, match="x_stats"):
    _merge_jit(choice, unit, basis, jnp.ones(len(base)))


def test_interpolate_problem_samples_rescaling():
  base, a, b = _three_deep_mlps()
  x = jax.random.uniform(jax.random.key(1), (30, 64))
  y = jnp.arange(30) % 10
  basis = interpolate_search.prepare_merge(base, a, b, jax.random.key(0), x_stats=x[10:])
  choice, coefficient = interpolate_search.uniform_config("slerp", 0.4, len(base))
  problem = interpolate_search.make_problem(
      basis, x[:5], x, y, objective="neg_loss",
      initial_config=(choice, coefficient, jnp.array([1.0, 0.0, 1.0])), initial_confidence=3.0)
  g_params = problem.init_generator(jax.random.key(2))
  np.testing.assert_array_equal(np.argmax(g_params["rescale_logits"], -1), [1, 0, 1])
  samples, scores = _check_problem(problem, jax.random.key(5))
  assert set(np.unique(samples["rescale"]).tolist()) <= {0.0, 1.0}
  for i in range(3):
    merged = _merge_jit(samples["choice"][i], samples["coefficient"][i],
                                              basis, samples["rescale"][i])
    log_probs = jax.nn.log_softmax(network.apply_network(merged, x))
    expected = jnp.mean(jnp.take_along_axis(log_probs, y[:, None], 1))
    assert float(scores[i]) == pytest.approx(float(expected), rel=1e-5)
  many = problem.sample(g_params, jax.random.key(6), 512)
  # A logit margin of 3 between two options gives P = e^3 / (e^3 + 1), about 0.95.
  share = np.mean(many["rescale"], axis=0)
  assert share[0] > 0.9
  assert share[1] < 0.1


def test_combine_problem_scores_hybrids():
  a = network.init_transformer(jax.random.key(0), width=8, heads=2, hidden=8, blocks=1)
  b = network.init_transformer(jax.random.key(1), width=8, heads=2, hidden=8, blocks=1)
  x = jax.random.uniform(jax.random.key(2), (20, 64))
  y = jnp.arange(20) % 10
  problem = combine_search.make_problem(a, b, x[:5], x, y, objective="neg_loss")
  samples, scores = _check_problem(problem, jax.random.key(3))
  weights = samples["weights"]
  assert np.all((weights >= 0.0) & (weights <= 1.0))
  # A module chosen from parent A or B has weight exactly 0 or 1.
  chosen = np.argmax(samples["choice"], -1)
  np.testing.assert_array_equal(weights[chosen == 0], 0.0)
  np.testing.assert_array_equal(weights[chosen == 1], 1.0)
  child = combination.mix_modules(a, b, weights[0])
  logits = network.apply_network(child, x)
  expected = jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))
  assert float(scores[0]) == pytest.approx(float(expected), rel=1e-5)


def test_permute_problem_scores_orders():
  layers = network.init_transformer(jax.random.key(0), width=8, heads=2, hidden=8, blocks=2)
  pool = permutation.module_pool(layers)
  x = jax.random.uniform(jax.random.key(1), (20, 64))
  y = jnp.arange(20) % 10
  problem = permute_search.make_problem(pool, x[:5], x, y, slots=3)
  samples, scores = _check_problem(problem, jax.random.key(2))
  ids = np.argmax(samples, -1)
  for i in range(3):
    order = permutation.module_sequence_to_order(pool, ids[i])
    logits = network.apply_network(
        permutation.reorder(permutation.pool_layers(pool), order), x)
    assert float(scores[i]) == pytest.approx(float(jnp.mean(jnp.argmax(logits, -1) == y)))
  sequences = permute_search.all_sequences(pool.num_choices, 3)
  assert sequences.shape == (125, 3)
  assert len({tuple(s) for s in sequences.tolist()}) == 125
