"""The shared G/D search loop: archive, quarantine, learning and resume."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from autogan_jax.estimators import discrete
from autogan_jax.weight_space import adversarial


def test_archive_add_and_quarantine():
  archive = adversarial.new_archive({"x": jnp.arange(3.0)}, jnp.array([1.0, jnp.nan, 3.0]), 6)
  assert int(archive.size) == 3
  assert int(archive.quarantined) == 1
  archive = adversarial.add_to_archive(archive, {"x": jnp.array([7.0, 8.0])},
                                       jnp.array([jnp.inf, 5.0]))
  np.testing.assert_array_equal(archive.samples["x"], [0.0, 1.0, 2.0, 7.0, 8.0, 0.0])
  np.testing.assert_array_equal(archive.scores,
                                [1.0, -np.inf, 3.0, -np.inf, 5.0, -np.inf])
  assert int(archive.quarantined) == 2
  assert int(archive.size) == 5
  with pytest.raises(ValueError, match="do not fit"):
    adversarial.new_archive({"x": jnp.arange(3.0)}, jnp.zeros(3), 2)


def test_score_logits():
  logits = jnp.array([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
  labels = jnp.array([0, 1, 1])
  assert float(adversarial.score_logits(logits, labels, "accuracy")) == pytest.approx(2 / 3)
  expected = np.mean([np.log(np.exp(2) / (np.exp(2) + 1)), np.log(np.e / (np.e + 1)),
                      np.log(1 / (np.exp(3) + 1))])
  assert float(adversarial.score_logits(logits, labels, "neg_loss")) == pytest.approx(
      expected, rel=1e-5)
  bad = logits.at[0, 0].set(jnp.nan)
  assert np.isnan(float(adversarial.score_logits(bad, labels, "accuracy")))
  with pytest.raises(ValueError, match="objective"):
    adversarial.score_logits(logits, labels, "f1")


def _toy_problem(num_choices=6):
  """Pick one of `num_choices` items; item i scores i, so the last is best."""

  def sample(g_params, key, batch_size):
    logits = jnp.broadcast_to(g_params["logits"], (batch_size, num_choices))
    return discrete.gumbel_softmax(key, logits, 1.0, hard=True)

  return adversarial.Problem(
      init_generator=lambda key: {"logits": jnp.zeros(num_choices)},
      sample=sample,
      featurize=lambda one_hot: one_hot,
      score=lambda one_hot: jnp.argmax(one_hot, axis=-1).astype(jnp.float32),
      feature_dim=num_choices)


SETTINGS = adversarial.SearchSettings(rounds=4, steps_per_round=25, batch_size=32, top_k=8,
                                      initial_candidates=32, d_hidden=16)


def test_search_moves_generator_to_best_items():
  problem = _toy_problem()
  # A fast G update rule, so that 100 steps move G's logits far from zero.
  result = adversarial.run_search(problem, jax.random.key(0), SETTINGS,
                                  g_tx=optax.adam(3e-2))
  probs = jax.nn.softmax(result.state.g_params["logits"])
  # Real samples are the top 8 of the archive, almost all items 4 and 5, so G
  # moves probability from the worst items to the best, away from uniform 1/6 each.
  assert float(probs[4] + probs[5]) > 0.5
  assert float(probs[0] + probs[1]) < 2 / 6 - 0.1
  assert len(result.history) == SETTINGS.rounds
  assert result.history[-1]["proposal_mean"] > result.history[0]["proposal_mean"] - 0.5
  best, score = result.best()
  assert score == 5.0
  assert int(jnp.argmax(best)) == 5


def test_search_resume_matches_uninterrupted(tmp_path):
  problem = _toy_problem()
  full = adversarial.run_search(problem, jax.random.key(1), SETTINGS)

  class Interrupted(Exception):
    pass

  def stop_after_two(round_index, metrics):
    del metrics
    if round_index == 2:
      raise Interrupted()

  # A run killed after its second round's checkpoint, then rerun with the same folder.
  with pytest.raises(Interrupted):
    adversarial.run_search(problem, jax.random.key(1), SETTINGS, checkpoint_dir=tmp_path,
                           on_round=stop_after_two)
  seen = []
  resumed = adversarial.run_search(problem, jax.random.key(1), SETTINGS,
                                   checkpoint_dir=tmp_path,
                                   on_round=lambda r, m: seen.append(r))
  assert seen == [3, 4]
  np.testing.assert_allclose(resumed.state.g_params["logits"], full.state.g_params["logits"],
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(resumed.archive.scores, full.archive.scores)
  assert [h["archive_best"] for h in resumed.history] == [h["archive_best"] for h in full.history]


def test_search_rejects_top_k_above_initial():
  settings = adversarial.SearchSettings(top_k=10, initial_candidates=5)
  with pytest.raises(ValueError, match="top_k"):
    adversarial.run_search(_toy_problem(), jax.random.key(0), settings)
