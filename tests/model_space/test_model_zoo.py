"""Zoo save and load, G_model and D_model, weight statistics and the ranker."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from autogan_jax.core import ConfigError
from autogan_jax.model_space import data as data_lib
from autogan_jax.model_space import models_gan
from autogan_jax.model_space import ranking
from autogan_jax.model_space import spec as spec_lib
from autogan_jax.model_space import space as space_lib
from autogan_jax.model_space import zoo as zoo_lib


def test_zoo_save_load_round_trip(tmp_path):
  space = space_lib.SearchSpace(families=("mlp",), depths=(1, 2), widths=(8, 16),
                                model_dims=(4,), heads=(1, 2))
  data, io = data_lib.digits_data()
  trainer = zoo_lib.ZooTrainer(space, data, io, steps=3, population_size=2)
  specs = [spec_lib.ModelSpec("mlp", (8, 16), model_dim=4),
           spec_lib.ModelSpec("mlp", (8,), model_dim=4, norm="rms"),
           spec_lib.ModelSpec("mlp", (16,), norm="layer", model_dim=4)]
  records = trainer.train(specs, jax.random.key(0))
  assert [r.spec for r in records] == specs
  assert records[0].params["layer1_w"].shape == (8, 16)
  assert records[1].params["out_w"].shape == (8, 10)
  assert "layer1_w" not in records[1].params
  zoo_lib.save_zoo(tmp_path / "zoo", records, io, "digits")
  assert len(list((tmp_path / "zoo" / "specs").glob("*.json"))) == 3
  loaded, loaded_io, task = zoo_lib.load_zoo(tmp_path / "zoo")
  assert (loaded_io, task) == (io, "digits")
  for original, copy in zip(records, loaded):
    assert copy.spec == original.spec
    assert copy.metrics == original.metrics
    np.testing.assert_array_equal(copy.curve, original.curve)
    for name in original.params:
      np.testing.assert_array_equal(copy.params[name], original.params[name])
      np.testing.assert_array_equal(copy.init_params[name], original.init_params[name])


def test_g_model_emits_one_hot_slots_with_gradients():
  config = models_gan.GModelConfig(slot_sizes=(3, 2, 4), context_size=5,
                                   weight_shapes=(("w", (2, 3)),), weight_rank=2)
  params = models_gan.g_model_init(jax.random.key(0), config)
  context = jnp.ones(5)
  features, weights = models_gan.g_model_sample(params, config, jax.random.key(1), 6, context)
  assert features.shape == (6, 9)
  np.testing.assert_array_equal(features[:, :3].sum(1), 1.0)
  np.testing.assert_array_equal(features[:, 3:5].sum(1), 1.0)
  assert set(np.unique(np.asarray(features))) <= {0.0, 1.0}
  assert weights["w"].shape == (6, 2, 3)

  target = jnp.arange(9.0)
  grads = jax.grad(lambda p: jnp.sum(models_gan.g_model_sample(
      p, config, jax.random.key(1), 6, context)[0] * target))(params)
  assert float(jnp.abs(grads["spec"][-1]["w"]).sum()) > 0.0


def test_weight_statistics_ignore_unit_order():
  key = jax.random.key(0)
  params = {"a": jax.random.normal(key, (4, 5)), "b": jax.random.normal(key, (5,))}
  permutation = jnp.array([3, 1, 4, 0, 2])
  permuted = {"a": params["a"][:, permutation], "b": params["b"][permutation]}
  np.testing.assert_allclose(models_gan.weight_statistics(params),
                             models_gan.weight_statistics(permuted), rtol=1e-5)
  assert models_gan.weight_statistics(params).shape == (8,)


def test_curve_features_handle_short_curves():
  curve = np.array([2.0, 1.0, np.nan])
  features = models_gan.curve_features(curve, early_steps=3, points=4, num_classes=10)
  assert features.shape == (8,)
  assert np.all(np.isfinite(features))
  np.testing.assert_allclose(features[0], 2.0 / np.log(10.0), rtol=1e-6)


def test_ranker_orders_models_by_accuracy():
  rng = np.random.default_rng(0)
  features = rng.normal(size=(60, 6)).astype(np.float32)
  accuracy = np.tanh(features[:, 0] - 0.5 * features[:, 1]) + 0.05 * rng.normal(size=60)
  params = ranking.train_ranker(features[:40], accuracy[:40], jax.random.key(0),
                                ranking.RankingConfig(steps=400))
  assert ranking.spearman(params, features[40:], accuracy[40:]) > 0.8


def test_pairwise_loss_rewards_correct_order():
  correct = ranking.pairwise_loss(jnp.array([2.0]), jnp.array([0.0]), jnp.array([1.0]),
                                  jnp.array([0.0]))
  reversed_order = ranking.pairwise_loss(jnp.array([0.0]), jnp.array([2.0]), jnp.array([1.0]),
                                         jnp.array([0.0]))
  np.testing.assert_allclose(correct, np.log1p(np.exp(-2.0)), rtol=1e-5)
  np.testing.assert_allclose(reversed_order, np.log1p(np.exp(2.0)), rtol=1e-5)


def test_pairwise_loss_ignores_tied_ranks():
  tied = ranking.pairwise_loss(jnp.array([0.0, 5.0]), jnp.array([3.0, 1.0]),
                               jnp.array([0.5, 0.2]), jnp.array([0.5, 0.2]))
  assert float(tied) == 0.0


def test_ranker_standardises_badly_scaled_features():
  rng = np.random.default_rng(1)
  features = rng.normal(size=(60, 4)).astype(np.float32)
  accuracy = features[:, 0] + 0.3 * features[:, 1]
  features[:, 0] *= 1000.0
  features[:, 2] += 500.0
  ranker = ranking.train_ranker(features[:40], accuracy[:40], jax.random.key(0),
                                ranking.RankingConfig(steps=200, members=2))
  np.testing.assert_allclose(ranker["mean"][2], features[:40, 2].mean(), rtol=1e-5)
  assert ranking.score(ranker, features[40:]).shape == (20,)
  assert ranking.spearman(ranker, features[40:], accuracy[40:]) > 0.8


def test_ranker_keeps_constant_feature_scale():
  rng = np.random.default_rng(4)
  features = rng.normal(size=(30, 3)).astype(np.float32)
  features[:, 2] = 0.0
  ranker = ranking.train_ranker(features, features[:, 0], jax.random.key(0),
                                ranking.RankingConfig(steps=50, members=2))
  assert float(ranker["scale"][2]) == 1.0
  unseen = features[:5].copy()
  unseen[:, 2] = 1.0
  # A one-hot option absent from training shifts the input by one unit, not by 1e6.
  shift = np.abs(ranking.score(ranker, unseen) - ranking.score(ranker, features[:5]))
  assert np.all(shift < 100.0)


def test_ranking_config_rejects_zero_loss():
  with pytest.raises(ConfigError, match="pairwise_weight"):
    ranking.RankingConfig(adversarial_weight=0.0, pairwise_weight=0.0)
  with pytest.raises(ConfigError, match="members"):
    ranking.RankingConfig(members=0)


def _low_group(rng, size):
  # Models fixed far below the rest, ordered among themselves by feature 1 alone.
  features = np.stack([np.full(size, -4.0), rng.normal(size=size), rng.normal(size=size)], 1)
  return features.astype(np.float32), -10.0 + features[:, 1]


def test_pairwise_loss_orders_group_below_threshold():
  # With min_quantile=0.3 the bottom quarter is always fake, so the real/fake loss
  # cannot see its inner order and only the pairwise loss can learn feature 1.
  rng = np.random.default_rng(0)
  upper = rng.normal(size=(90, 3)).astype(np.float32)
  group, group_accuracy = _low_group(rng, 30)
  features = np.concatenate([upper, group])
  accuracy = np.concatenate([1.0 + upper[:, 0], group_accuracy])
  heldout, heldout_accuracy = _low_group(rng, 20)
  spearman = {}
  for name, weights in (("adversarial", {"pairwise_weight": 0.0}),
                        ("pairwise", {"adversarial_weight": 0.0})):
    config = ranking.RankingConfig(steps=200, members=2, min_quantile=0.3, hidden=(64, 64),
                                   **weights)
    ranker = ranking.train_ranker(features, accuracy, jax.random.key(0), config)
    spearman[name] = ranking.spearman(ranker, heldout, heldout_accuracy)
  assert spearman["pairwise"] > 0.9
  assert spearman["adversarial"] < 0.5


def test_early_loss_score_scales_and_caps():
  curve = np.array([3.0, 2.0, 1.0, 0.5, 9.0])
  score = ranking.early_loss_score(curve, early_steps=4, num_classes=10, window=2)
  np.testing.assert_allclose(score, -0.75 / np.log(10.0), rtol=1e-6)
  diverged = np.array([2.0, np.nan, np.inf, 1e6])
  assert ranking.early_loss_score(diverged, early_steps=4, num_classes=10, window=3) == -10.0
  with pytest.raises(ValueError, match="early_steps"):
    ranking.early_loss_score(curve, early_steps=0, num_classes=10)


def _prior_task(rng, size):
  # The prior ranks models well on its own; feature 0 shifts accuracy in a way it misses.
  features = rng.normal(size=(size, 4)).astype(np.float32)
  prior = rng.normal(size=size).astype(np.float32)
  accuracy = prior + 1.2 * np.tanh(2.0 * features[:, 0])
  return features, prior, accuracy


def test_ranker_corrects_prior():
  rng = np.random.default_rng(0)
  features, prior, accuracy = _prior_task(rng, 100)
  heldout, heldout_prior, heldout_accuracy = _prior_task(rng, 60)
  config = ranking.RankingConfig(steps=300, members=2)
  ranker = ranking.train_ranker(features, accuracy, jax.random.key(0), config, prior)
  with_prior = ranking.spearman(ranker, heldout, heldout_accuracy, heldout_prior)
  features_alone = ranking.spearman(
      ranking.train_ranker(features, accuracy, jax.random.key(0), config), heldout,
      heldout_accuracy)
  prior_alone = float(stats.spearmanr(heldout_prior, heldout_accuracy).statistic)
  shuffled = float(stats.spearmanr(rng.permutation(heldout_prior), heldout_accuracy).statistic)
  assert prior_alone < 0.8
  assert with_prior > 0.9
  assert with_prior > prior_alone + 0.1
  assert with_prior > features_alone + 0.2
  assert with_prior > shuffled + 0.5


def test_ranker_rejects_missing_or_bad_prior():
  rng = np.random.default_rng(3)
  features, prior, accuracy = _prior_task(rng, 20)
  config = ranking.RankingConfig(steps=5, members=1)
  with_prior = ranking.train_ranker(features, accuracy, jax.random.key(0), config, prior)
  without_prior = ranking.train_ranker(features, accuracy, jax.random.key(0), config)
  with pytest.raises(ValueError, match="prior"):
    ranking.score(with_prior, features)
  with pytest.raises(ValueError, match="prior"):
    ranking.score(without_prior, features, prior)
  with pytest.raises(ValueError, match="finite"):
    ranking.train_ranker(features, accuracy, jax.random.key(0), config,
                         np.where(np.arange(20) == 3, np.nan, prior))
  with pytest.raises(ValueError, match="shape"):
    ranking.train_ranker(features, accuracy, jax.random.key(0), config, prior[:5])


def test_rank_average_of_scores():
  logits = np.array([10.0, -3.0, 0.5, 0.5])
  losses = np.array([-0.1, -0.9, -0.2, -0.5])
  averaged = ranking.rank_average(logits, losses)
  np.testing.assert_allclose(averaged, [1.0, 0.0, (0.5 + 2.0 / 3.0) / 2.0, (0.5 + 1.0 / 3.0) / 2.0])
  np.testing.assert_allclose(ranking.rank_average(logits), [1.0, 0.0, 0.5, 0.5])
  with pytest.raises(ValueError, match="differ in length"):
    ranking.rank_average(logits, losses[:3])
