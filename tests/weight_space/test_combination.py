"""Module, layer-range and mixture hybrids."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from autogan_jax.weight_space import combination
from autogan_jax.weight_space import network


def _parents():
  a = network.init_transformer(jax.random.key(0), width=8, heads=2, hidden=12, blocks=2)
  b = network.init_transformer(jax.random.key(1), width=8, heads=2, hidden=12, blocks=2)
  return a, b


def test_module_hybrid_takes_attention_from_b():
  a, b = _parents()
  child = combination.module_hybrid(a, b, {"attention"})
  for i, layer in enumerate(child):
    source = b if layer.kind == "attention" else a
    for name, value in layer.params.items():
      np.testing.assert_array_equal(value, source[i].params[name])
  kinds = [layer.kind for layer in child]
  assert kinds == ["embed", "attention", "feed_forward", "attention", "feed_forward", "readout"]


def _first_param(layer):
  return layer.params[sorted(layer.params)[0]]


def test_layer_range_hybrid_sources():
  a, b = _parents()
  child = combination.layer_range_hybrid(a, b, 1, 3)
  sources = [a, b, b, a, a, a]
  for i, layer in enumerate(child):
    np.testing.assert_array_equal(_first_param(layer), _first_param(sources[i][i]))


def test_mixture_weights_per_layer():
  a, b = _parents()
  weights = jnp.array([0.0, 0.25, 0.5, 0.75, 1.0, 0.5])
  mixed = combination.mix_modules(a, b, weights)
  for i in range(len(a)):
    expected = (1 - weights[i]) * _first_param(a[i]) + weights[i] * _first_param(b[i])
    np.testing.assert_allclose(_first_param(mixed[i]), expected, rtol=1e-6, atol=1e-7)
  x = jax.random.uniform(jax.random.key(2), (3, 64))
  assert network.apply_network(mixed, x).shape == (3, 10)


def test_hybrid_errors():
  a, b = _parents()
  small = network.init_transformer(jax.random.key(0), width=8, heads=2, hidden=12, blocks=1)
  with pytest.raises(ValueError, match="layers"):
    combination.mix_modules(a, small, np.zeros(len(a)))
  with pytest.raises(ValueError, match="one mixing weight per layer"):
    combination.mix_modules(a, b, np.zeros(3))
  with pytest.raises(ValueError, match="Invalid layer range"):
    combination.layer_range_hybrid(a, b, 4, 2)
  with pytest.raises(ValueError, match="Unknown layer kinds"):
    combination.module_hybrid(a, b, {"convolution"})
  other_width = network.init_transformer(jax.random.key(0), width=4, heads=2, hidden=12,
                                         blocks=2)
  with pytest.raises(ValueError, match="differs"):
    combination.check_same_structure(a, other_width)


def test_mix_modules_traced_weights():
  a, b = _parents()
  x = jax.random.uniform(jax.random.key(3), (2, 64))
  run = jax.jit(jax.vmap(lambda w: network.apply_network(combination.mix_modules(a, b, w), x)))
  weights = jnp.stack([jnp.zeros(6), jnp.ones(6)])
  out = run(weights)
  np.testing.assert_allclose(out[0], network.apply_network(a, x), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out[1], network.apply_network(b, x), rtol=1e-5, atol=1e-6)
