"""Weight matching and the loss barrier."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from autogan_jax.tasks import datasets
from autogan_jax.weight_space import alignment
from autogan_jax.weight_space import network
from autogan_jax.weight_space import permutation
from autogan_jax.weight_space import training


def test_weight_matching_recovers_known_permutation():
  layers = network.init_mlp(jax.random.key(0), (12, 16, 16, 4))
  spec = permutation.mlp_permutation_spec(layers)
  hidden = permutation.random_permutations(jax.random.key(1), spec)
  shuffled = permutation.permute(layers, spec, hidden)
  perms, sweeps = alignment.weight_matching(jax.random.key(2), layers, shuffled, spec)
  aligned = permutation.permute(shuffled, spec, perms)
  for original, recovered in zip(jax.tree.leaves(layers), jax.tree.leaves(aligned)):
    np.testing.assert_allclose(recovered, original, rtol=0, atol=0)
  assert sweeps >= 2  # One sweep that changes something, one that confirms.


def test_weight_matching_transformer_recovers_permutation():
  layers = network.init_transformer(jax.random.key(3), width=8, heads=2, hidden=12, blocks=1)
  # Random layer-norm parameters make the residual permutation identifiable.
  leaves, treedef = jax.tree.flatten(layers)
  keys = jax.random.split(jax.random.key(4), len(leaves))
  layers = jax.tree.unflatten(
      treedef, [leaf + jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, keys)])
  spec = permutation.transformer_permutation_spec(layers)
  shuffled = permutation.permute(layers, spec, permutation.random_permutations(
      jax.random.key(5), spec))
  aligned = alignment.align(jax.random.key(6), layers, shuffled, spec)
  for original, recovered in zip(jax.tree.leaves(layers), jax.tree.leaves(aligned)):
    np.testing.assert_allclose(recovered, original, rtol=1e-6, atol=1e-6)


def test_loss_barrier_hand_computed():
  ts = jnp.array([0.0, 0.25, 0.5, 0.75, 1.0])
  losses = jnp.array([1.0, 2.0, 3.5, 2.0, 2.0])
  # The chord at t = 0.5 is 1.5, so the barrier is 3.5 - 1.5.
  assert float(alignment.loss_barrier(ts, losses)) == 2.0
  assert float(alignment.loss_barrier(ts, jnp.array([1.0, 1.1, 1.2, 1.3, 1.4]))) < 1e-6


def test_interpolation_losses_endpoints():
  a = network.init_mlp(jax.random.key(0), (4, 3, 2))
  b = network.init_mlp(jax.random.key(1), (4, 3, 2))
  x = jax.random.normal(jax.random.key(2), (7, 4))
  loss_fn = lambda p: jnp.mean(network.apply_network(p, x) ** 2)
  losses = alignment.interpolation_losses(a, b, jnp.array([0.0, 0.5, 1.0]), loss_fn)
  np.testing.assert_allclose(losses[0], loss_fn(a), rtol=1e-6)
  np.testing.assert_allclose(losses[2], loss_fn(b), rtol=1e-6)
  np.testing.assert_allclose(losses[1], loss_fn(alignment.lerp_networks(a, b, 0.5)), rtol=1e-6)


def test_alignment_lowers_digits_barrier():
  """Two small MLPs trained on the digits from different seeds: matching shrinks the barrier."""
  data = datasets.load_digits()
  tx = optax.adam(3e-3)
  nets = []
  for seed in (1, 2):
    layers = network.init_mlp(jax.random.key(seed), (64, 48, 10))
    layers, _ = training.train(layers, data, key=jax.random.key(10 + seed), steps=300,
                               batch_size=64, tx=tx)
    nets.append(layers)
  spec = permutation.mlp_permutation_spec(nets[0])
  aligned = alignment.align(jax.random.key(0), nets[0], nets[1], spec)
  x, y = (jnp.asarray(v) for v in data.split("test"))
  loss_fn = lambda p: training.cross_entropy(network.apply_network(p, x), y)
  ts = jnp.linspace(0.0, 1.0, 11)
  before = alignment.loss_barrier(ts, alignment.interpolation_losses(*nets, ts, loss_fn))
  after = alignment.loss_barrier(ts, alignment.interpolation_losses(nets[0], aligned, ts, loss_fn))
  # The aligned network computes the same function as the unaligned one.
  np.testing.assert_allclose(loss_fn(aligned), loss_fn(nets[1]), rtol=1e-5)
  assert float(before) > 0.05
  assert float(after) < 0.5 * float(before)
