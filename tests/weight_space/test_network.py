"""Layer-list networks: shapes, checks and training on the digits."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from autogan_jax.tasks import datasets
from autogan_jax.weight_space import network
from autogan_jax.weight_space import training


def test_shapes_and_signatures():
  mlp = network.init_mlp(jax.random.key(0), (64, 16, 10))
  transformer = network.init_transformer(jax.random.key(1), width=8, heads=2, hidden=12)
  x = jax.random.uniform(jax.random.key(2), (5, 64))
  assert network.apply_network(mlp, x).shape == (5, 10)
  assert network.apply_network(transformer, x).shape == (5, 10)
  assert network.signature(transformer[0]) == (("vector", 64), ("tokens", 8))
  assert network.signature(transformer[-1]) == (("tokens", 8), ("vector", 10))
  network.check_network(transformer, input_dim=64, num_classes=10)


def test_check_network_errors():
  mlp = network.init_mlp(jax.random.key(0), (64, 16, 10))
  with pytest.raises(ValueError, match="empty"):
    network.check_network(())
  with pytest.raises(ValueError, match="network input"):
    network.check_network(mlp, input_dim=32)
  with pytest.raises(ValueError, match="unknown kind"):
    network.check_network((mlp[0].replace(kind="conv"),))
  with pytest.raises(ValueError, match="multiple of heads"):
    network.init_transformer(jax.random.key(0), width=6, heads=4)


def test_attention_matches_hand_computation():
  layer = network.init_transformer(jax.random.key(0), width=4, heads=1, hidden=4)[1]
  x = jax.random.normal(jax.random.key(1), (1, 3, 4))
  p = layer.params
  h = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
  q, k, v = (h[0] @ p[n][:, 0, :] for n in ("wq", "wk", "wv"))
  weights = jax.nn.softmax(q @ k.T / 2.0, axis=-1)
  expected = x[0] + (weights @ v) @ p["wo"][0]
  np.testing.assert_allclose(network.apply_layer(layer, x)[0], expected, rtol=1e-5, atol=1e-5)


def test_train_on_digit_subset():
  data = datasets.load_digits()
  layers = network.init_mlp(jax.random.key(0), (64, 32, 10))
  trained, losses = training.train(layers, data, key=jax.random.key(1), steps=150,
                                   batch_size=32, tx=optax.adam(3e-3), classes=(0, 1))
  assert float(losses[-10:].mean()) < float(losses[:10].mean())
  x, y = data.split("test")
  predictions = np.asarray(jnp.argmax(network.apply_network(trained, jnp.asarray(x)), -1))
  # Trained on zeros and ones only, it predicts little else and gets those right.
  assert np.mean(np.isin(predictions, (0, 1))) > 0.9
  mask = np.isin(y, (0, 1))
  assert np.mean(predictions[mask] == y[mask]) > 0.9
  with pytest.raises(ValueError, match="class subset"):
    training.class_mask([10])
