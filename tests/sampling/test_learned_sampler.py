"""G_sampler, D_quality and the quality-diversity evaluation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from autogan_jax import sampling
from autogan_jax.core import ConfigError
from autogan_jax.sampling import benchmark
from autogan_jax.sampling import evaluation
from autogan_jax.sampling import learned
from autogan_jax.tasks import hmm


def test_generator_starts_as_ancestral_sampling():
  g_params = learned.init_generator(jax.random.key(0), vocab_size=7, input_vocab_size=8)
  logits = jax.random.normal(jax.random.key(1), (3, 7))
  windows = jnp.array([[7, 1], [2, 3], [4, 5]], jnp.int32)
  out, memory = learned.make_transform(g_params, 10)(
      logits, windows, 0, learned.initial_state(g_params, 3))
  np.testing.assert_allclose(np.asarray(out), np.asarray(jax.nn.log_softmax(logits)), atol=1e-6)
  assert memory.shape == (3, 16)


def test_discriminator_scores_each_sequence():
  d_params = learned.init_discriminator(jax.random.key(0), vocab_size=5)
  one_hot = jax.nn.one_hot(jnp.array([[0, 1, 2], [4, 4, 4]]), 5)
  logits = learned.discriminate(d_params, one_hot)
  assert logits.shape == (2,)
  assert not np.isclose(float(logits[0]), float(logits[1]))


@pytest.mark.parametrize("estimator", sampling.ESTIMATORS)
def test_train_sampler_updates_generator(estimator):
  corpus = hmm.load_hmm_corpus(seed=1, num_states=3, vocab_size=5, length=6, num_train=16,
                               num_eval=8)
  table = jax.random.normal(jax.random.key(0), (6, 5))

  def next_logits(windows):
    return table[windows[:, -1]]

  snapshots, history = sampling.train_sampler(
      next_logits, lambda key, size: jnp.full((size, 1), 5, jnp.int32),
      lambda key, size: hmm.sample(corpus.hmm, key, size, 6), jax.random.key(2),
      vocab_size=5, input_vocab_size=6, length=6, steps=4, batch_size=4, estimator=estimator,
      snapshot_every=2)
  assert all(np.all(np.isfinite(v)) for v in history.values())
  assert all(v.shape == (4,) for v in history.values())
  assert snapshots["w2"].shape[0] == 2
  assert float(np.max(np.abs(snapshots["w2"][-1]))) > 0.0
  assert float(np.max(np.abs(snapshots["w2"][1] - snapshots["w2"][0]))) > 0.0


def test_snapshot_interval_must_divide_steps():
  with pytest.raises(ConfigError, match="snapshot_every=3"):
    sampling.train_sampler(None, None, None, jax.random.key(0), vocab_size=2,
                           input_vocab_size=3, length=2, steps=4, snapshot_every=3)


def test_train_sampler_rejects_unknown_estimator():
  with pytest.raises(ConfigError, match="estimator"):
    sampling.train_sampler(None, None, None, jax.random.key(0), vocab_size=2,
                           input_vocab_size=2, length=2, estimator="reinforce")


def test_distinct_ngrams_hand_case():
  tokens = np.array([[1, 2, 1, 2], [3, 3, 3, 3]])
  # Bigrams: (1,2) (2,1) (1,2) (3,3) (3,3) (3,3): 3 distinct out of 6.
  assert evaluation.distinct_ngrams(tokens, 2) == pytest.approx(0.5)
  assert evaluation.distinct_ngrams(tokens, 1) == pytest.approx(3 / 8)
  assert evaluation.distinct_ngrams(tokens, 5) == 0.0


def test_pareto_front_and_interpolation():
  points = np.array([[0.0, -1.0], [1.0, -2.0], [0.5, -1.8], [2.0, -3.0], [1.0, -2.5]])
  front = evaluation.pareto_front(points)
  # (0.5, -1.8) is more diverse than (0, -1) and of higher quality than (1, -2), so it stays.
  np.testing.assert_array_equal(front, [0, 2, 1, 3])
  front_points = points[front]
  assert evaluation.front_quality_at(front_points, 1.5) == pytest.approx(-2.5)
  assert evaluation.front_quality_at(front_points, 2.5) == -np.inf


def test_compare_to_front_counts_dominating_points():
  records = [{"rule": "a", "entropy": 1.0, "quality": -2.0},
             {"rule": "b", "entropy": 2.0, "quality": -3.0}]
  beyond = benchmark.compare_to_front(records, {"entropy": 1.5, "quality": -2.2})
  assert beyond["on_or_beyond_front"]
  assert beyond["margin"] == pytest.approx(0.3)
  behind = benchmark.compare_to_front(records, {"entropy": 0.9, "quality": -2.1})
  assert behind["dominated_by"] == 1
  assert not behind["on_or_beyond_front"]


def test_ngram_reference_is_normalized():
  stream = np.array([0, 1, 2, 1, 0, 1, 2, 2, 1, 0] * 5)
  reference = evaluation.NgramReference.fit(stream, vocab_size=4)
  np.testing.assert_allclose(np.exp(reference.log_probs).sum(-1), 1.0, atol=1e-5)
  # After (0, 1) the stream always continues with 2.
  assert reference.log_probs[0, 1, 2] > reference.log_probs[0, 1, 0]


def test_sweep_scores_every_setting_with_exact_likelihood():
  corpus = hmm.load_hmm_corpus(seed=2, num_states=3, vocab_size=5, length=6, num_train=16,
                               num_eval=8)
  predictive_model = corpus.hmm
  table = jax.random.normal(jax.random.key(0), (6, 5))

  def next_logits(windows):
    return table[windows[:, -1]]

  def judge(_, tokens):
    return np.asarray(hmm.log_likelihood(predictive_model, jnp.asarray(tokens))) / 6

  prompts = jnp.full((32, 1), 5, jnp.int32)
  records = benchmark.sweep_fixed_rules(next_logits, prompts, jax.random.key(1), 6, judge, 5,
                                        sweeps={"top_k": (5, 1)})
  by_setting = {(r["rule"], r["parameter"]): r for r in records}
  assert len(records) == sum(len(sampling.rules.default_sweep(n, 5)) for n in sampling.RULES
                             if n != "top_k") + 2
  assert by_setting[("top_k", 1.0)]["entropy"] == pytest.approx(0.0, abs=1e-6)
  assert by_setting[("top_k", 5.0)]["entropy"] > 0.5
  # Top-k 5 over a vocabulary of 5 is ancestral sampling, the same as temperature 1.
  assert by_setting[("top_k", 5.0)]["quality"] == pytest.approx(
      by_setting[("temperature", 1.0)]["quality"], abs=1e-5)


def test_select_snapshot_skips_noisy_logits():
  corpus = hmm.load_hmm_corpus(seed=2, num_states=3, vocab_size=5, length=6, num_train=16,
                               num_eval=8)
  table = jax.random.normal(jax.random.key(0), (6, 5))

  def next_logits(windows):
    return table[windows[:, -1]]

  def judge(_, tokens):
    return np.asarray(hmm.log_likelihood(corpus.hmm, jnp.asarray(tokens))) / 6

  # Snapshot 0 is ancestral sampling, the same draws as the temperature-1 rule.
  # Snapshot 1 adds large random token offsets, which lowers quality at its entropy.
  ancestral = learned.init_generator(jax.random.key(3), 5, 6)
  noisy = dict(ancestral, w2=8.0 * jax.random.normal(jax.random.key(4), ancestral["w2"].shape))
  snapshots = jax.tree.map(lambda a, b: jnp.stack([a, b]), ancestral, noisy)
  prompts = jnp.full((64, 1), 5, jnp.int32)
  chosen, candidates = benchmark.select_snapshot(next_logits, snapshots, prompts,
                                                 jax.random.key(5), 6, judge, 5)
  assert chosen == 0
  assert len(candidates) == 2
  assert candidates[1]["margin"] < candidates[0]["margin"] - 0.05
  assert candidates[1]["dominated_by"] > candidates[0]["dominated_by"]


def test_best_margin_ranks_finite_first():
  assert benchmark.best_margin_index([0.1, np.inf, np.nan, 0.2]) == 3
  assert benchmark.best_margin_index([-0.5, np.inf, -0.1]) == 2
  assert benchmark.best_margin_index([np.nan, np.inf]) == 1
  assert benchmark.best_margin_index([np.nan, np.nan]) == 0
