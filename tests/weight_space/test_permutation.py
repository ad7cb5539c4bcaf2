"""Layer orders, shared repeated layers and neuron permutations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from autogan_jax.weight_space import network
from autogan_jax.weight_space import permutation


def _small_transformer(seed=0):
  return network.init_transformer(jax.random.key(seed), width=16, heads=4, hidden=24, blocks=2)


def _perturb(layers, seed):
  """Add noise to every parameter, so zero biases and unit norms do not hide a bad permutation."""
  leaves, treedef = jax.tree.flatten(layers)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  noisy = [leaf + 0.1 * jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, keys)]
  return jax.tree.unflatten(treedef, noisy)


def test_mlp_permutation_invariance():
  layers = _perturb(network.init_mlp(jax.random.key(0), (64, 32, 24, 10)), 1)
  spec = permutation.mlp_permutation_spec(layers)
  perms = permutation.random_permutations(jax.random.key(2), spec)
  permuted = permutation.permute(layers, spec, perms)
  x = jax.random.normal(jax.random.key(3), (50, 64))
  np.testing.assert_allclose(network.apply_network(permuted, x), network.apply_network(layers, x),
                             rtol=1e-5, atol=1e-5)
  # The permutation really moved the weights.
  assert not np.allclose(permuted[0].params["w"], layers[0].params["w"])


def test_transformer_permutation_invariance():
  layers = _perturb(_small_transformer(), 4)
  spec = permutation.transformer_permutation_spec(layers)
  assert set(spec.sizes) == {"residual", "heads_1", "hidden_2", "heads_3", "hidden_4"}
  perms = permutation.random_permutations(jax.random.key(5), spec)
  permuted = permutation.permute(layers, spec, perms)
  x = jax.random.uniform(jax.random.key(6), (20, 64))
  np.testing.assert_allclose(network.apply_network(permuted, x), network.apply_network(layers, x),
                             rtol=1e-4, atol=1e-5)
  assert not np.allclose(permuted[1].params["wq"], layers[1].params["wq"])


def test_wrong_permutation_changes_outputs():
  layers = _perturb(network.init_mlp(jax.random.key(0), (8, 6, 3)), 1)
  spec = permutation.mlp_permutation_spec(layers)
  # Permuting only the first layer's units, without the next layer's rows, is not a symmetry.
  w = layers[0].params["w"][:, ::-1]
  broken = (layers[0].replace(params={"w": w, "b": layers[0].params["b"]}), layers[1])
  x = jax.random.normal(jax.random.key(2), (10, 8))
  assert not np.allclose(network.apply_network(broken, x), network.apply_network(layers, x))
  with pytest.raises(ValueError, match="Missing permutations"):
    permutation.permute(layers, spec, {})


def test_reorder_checks_shapes():
  layers = network.init_mlp(jax.random.key(0), (64, 32, 32, 10))
  assert permutation.reorder(layers, [0, 1, 1, 2], input_dim=64, num_classes=10)[2] is layers[1]
  with pytest.raises(ValueError, match="takes"):
    permutation.reorder(layers, [0, 2, 1])
  with pytest.raises(ValueError, match="outside the pool"):
    permutation.reorder(layers, [0, 3])
  with pytest.raises(ValueError, match="empty"):
    permutation.reorder(layers, [])
  with pytest.raises(ValueError, match="logits"):
    permutation.reorder(layers, [0, 1], num_classes=10)


def test_repeated_layer_shares_weights_and_gradient():
  pool = network.init_mlp(jax.random.key(0), (8, 8, 8, 3), activation="tanh")
  order = (0, 1, 1, 2)
  x = jax.random.normal(jax.random.key(1), (5, 8))
  loss = lambda p: jnp.sum(permutation.apply_ordered(p, x, order) ** 2)
  grads = jax.grad(loss)(pool)

  # The same network with the repeated layer as two independent copies.
  unshared = (pool[0], pool[1], pool[1], pool[2])
  copy_grads = jax.grad(lambda p: jnp.sum(network.apply_network(p, x) ** 2))(unshared)
  expected = copy_grads[1].params["w"] + copy_grads[2].params["w"]
  np.testing.assert_allclose(grads[1].params["w"], expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(permutation.apply_ordered(pool, x, order),
                             network.apply_network(unshared, x), rtol=1e-6)


def test_module_sequence_matches_reorder():
  layers = _perturb(_small_transformer(), 7)
  pool = permutation.module_pool(layers)
  assert (pool.num_attention, pool.num_feed_forward, pool.num_choices) == (2, 2, 5)
  layer_pool = permutation.pool_layers(pool)
  x = jax.random.uniform(jax.random.key(8), (6, 64))
  run = jax.jit(lambda ids: permutation.apply_module_sequence(pool, ids, x))
  for modules in ([0, 2, 1, 3], [3, 3, 1, 4], [4, 4, 4, 4], [1, 0, 2, 0]):
    order = permutation.module_sequence_to_order(pool, modules)
    expected = network.apply_network(permutation.reorder(layer_pool, order), x)
    np.testing.assert_allclose(run(jnp.array(modules)), expected, rtol=1e-4, atol=1e-5)
    one_hot = jax.nn.one_hot(jnp.array(modules), pool.num_choices)
    np.testing.assert_allclose(permutation.apply_module_mixture(pool, one_hot, x), expected,
                               rtol=1e-4, atol=1e-5)
  # The original order [attention 0, ff 0, attention 1, ff 1] is the trained network.
  np.testing.assert_allclose(run(jnp.array([0, 2, 1, 3])), network.apply_network(layers, x),
                             rtol=1e-4, atol=1e-5)


def test_module_pool_rejects_non_residual_middle():
  mlp = network.init_mlp(jax.random.key(0), (64, 10))
  with pytest.raises(ValueError, match="embed"):
    permutation.module_pool(mlp)
