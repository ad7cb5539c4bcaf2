"""D_combine's judgement of hybrids against their parents, and G_combine trained on it."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from autogan_jax.tasks import datasets
from autogan_jax.weight_space import hybrid_judge
from autogan_jax.weight_space import network
from autogan_jax.weight_space import training


@functools.lru_cache(maxsize=1)
def _digit_networks():
  """Return a small base MLP trained on all digits and its fine-tunes on digits 0-4 and 5-9."""
  data = datasets.load_digits()
  tx = optax.adam(3e-3)
  base = network.init_mlp(jax.random.key(0), (64, 16, 10))
  base, _ = training.train(base, data, key=jax.random.key(1), steps=100, batch_size=32, tx=tx)
  a, _ = training.train(base, data, key=jax.random.key(2), steps=100, batch_size=32, tx=tx,
                        classes=(0, 1, 2, 3, 4))
  b, _ = training.train(base, data, key=jax.random.key(3), steps=100, batch_size=32, tx=tx,
                        classes=(5, 6, 7, 8, 9))
  x, y = (jnp.asarray(v) for v in data.split("valid"))
  return base, a, b, x, y


def _pairs():
  base, a, b, x, y = _digit_networks()
  return [hybrid_judge.make_pair(first, second, x[:32], x, y)
          for first, second in ((a, b), (base, a), (base, b))]


def test_margin_of_pure_parents():
  base, a, _, x, y = _digit_networks()
  pair = hybrid_judge.make_pair(base, a, x[:32], x, y)
  accuracy = lambda net: float(jnp.mean(jnp.argmax(network.apply_network(net, x), -1) == y))
  expected = np.array([accuracy(base), accuracy(a)])
  np.testing.assert_allclose(pair.parent_scores, expected, atol=1e-6)
  # Weights 0 rebuild the first parent and weights 1 the second, so their
  # margins are each parent's accuracy minus the better one's.
  weights = jnp.array([[0.0, 0.0], [1.0, 1.0]])
  choice = jax.nn.one_hot(jnp.array([[0, 0], [1, 1]]), 3)
  margins = np.asarray(pair.margin({"choice": choice, "weights": weights}))
  np.testing.assert_allclose(margins, expected - expected.max(), atol=1e-6)
  assert np.max(margins) == 0.0
  features = pair.featurize({"choice": choice, "weights": weights})
  assert features.shape == (2, pair.feature_dim)
  # The last two features are the parents' scores, the same for every hybrid.
  np.testing.assert_allclose(features[:, -2:], np.tile(expected, (2, 1)), atol=1e-6)


def test_judge_loss_matches_formula():
  d_params = hybrid_judge.init_judge(jax.random.key(0), 5, 8)
  features = jax.random.normal(jax.random.key(1), (4, 5))
  margins = jnp.array([0.2, -0.1, -jnp.inf, 0.05])
  mask = jnp.array([True, True, True, False])
  loss = hybrid_judge.judge_loss(d_params, features, margins, mask, margin_weight=2.0)
  logits, predicted = (np.asarray(v, np.float64) for v in hybrid_judge.judge(d_params, features))
  labels = np.array([1.0, 0.0, 0.0])
  bce = np.log1p(np.exp(-logits[:3])) * labels + np.log1p(np.exp(logits[:3])) * (1 - labels)
  # The hybrid with a non-finite margin counts as not beating its parents and has no margin error.
  squared = np.array([(predicted[0] - 0.2) ** 2, (predicted[1] + 0.1) ** 2, 0.0])
  assert float(loss) == pytest.approx(np.mean(bce + 2.0 * squared), rel=1e-5)


def test_judge_beats_majority_on_heldout_hybrids():
  pairs = _pairs()
  settings = hybrid_judge.JudgeSettings(rounds=1, d_steps=200, g_steps=1, batch_size=8,
                                        minibatch_size=32, initial_per_pair=48, d_hidden=32)
  result = hybrid_judge.run_judged_search(pairs, jax.random.key(4), settings)
  evidence = result.evidence
  assert int(evidence.size) == 3 * 48 + 8
  train_labels = np.asarray(evidence.scores[:int(evidence.size)]) > 0
  majority = bool(np.mean(train_labels) >= 0.5)

  features, margins = [], []
  for i, pair in enumerate(pairs):
    hybrids = pair.sample(pair.init_generator(jax.random.key(100 + i)), jax.random.key(200 + i),
                          48)
    features.append(pair.featurize(hybrids))
    margins.append(pair.margin(hybrids))
  heldout = hybrid_judge.judge_accuracy(result.state.d_params, jnp.concatenate(features),
                                        jnp.concatenate(margins), majority)
  assert heldout["count"] == 144
  # Both labels occur, so a constant guess cannot reach the accuracy asserted below.
  assert 0.1 < heldout["beats_fraction"] < 0.9
  assert heldout["accuracy"] >= heldout["majority_accuracy"] + 0.02, heldout
  assert heldout["balanced_accuracy"] > 0.6, heldout
  assert heldout["margin_spearman"] > 0.5, heldout


def test_generator_rises_under_fixed_judge():
  pairs = _pairs()[:1]
  settings = hybrid_judge.JudgeSettings(rounds=1, d_steps=1, g_steps=20, batch_size=8,
                                        minibatch_size=8, initial_per_pair=8, d_hidden=8)
  # A zero update rule freezes D, so every G update climbs one fixed judgement.
  result = hybrid_judge.run_judged_search(pairs, jax.random.key(5), settings,
                                          g_tx=optax.adam(0.05), d_tx=optax.set_to_zero())
  d_params = result.state.d_params
  target = pairs[0]

  def judged(g_params):
    hybrids = target.sample(g_params, jax.random.key(6), 256)
    logits, predicted = hybrid_judge.judge(d_params, target.featurize(hybrids))
    return float(jnp.mean(jax.nn.log_sigmoid(logits) + predicted))

  initial = target.init_generator(jax.random.split(jax.random.key(5), 4)[0])
  assert judged(result.state.g_params) > judged(initial) + 0.05


def test_judged_search_rejects_mixed_widths():
  pair = _pairs()[0]
  other = hybrid_judge.ParentPair(pair.init_generator, pair.sample, pair.featurize, pair.margin,
                                  pair.parent_scores, pair.feature_dim + 1)
  with pytest.raises(ValueError, match="feature width"):
    hybrid_judge.run_judged_search([pair, other], jax.random.key(0),
                                   hybrid_judge.JudgeSettings())
