"""Tests of the hidden Markov language: exact likelihoods against brute-force enumeration."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from autogan_jax.core import ConfigError
from autogan_jax.tasks import hmm


def brute_force_log_prob(model: hmm.HMM, sequence) -> float:
  """Sum the joint probability over every hidden state path, in float64 numpy."""
  initial = np.exp(np.asarray(model.log_initial, np.float64))
  transition = np.exp(np.asarray(model.log_transition, np.float64))
  emission = np.exp(np.asarray(model.log_emission, np.float64))
  total = 0.0
  for path in itertools.product(range(model.num_states), repeat=len(sequence)):
    p = initial[path[0]] * emission[path[0], sequence[0]]
    for t in range(1, len(sequence)):
      p *= transition[path[t - 1], path[t]] * emission[path[t], sequence[t]]
    total += p
  return float(np.log(total))


@pytest.fixture(scope="module")
def small_hmm():
  return hmm.random_hmm(jax.random.key(3), num_states=3, vocab_size=3,
                        transition_concentration=0.5, emission_concentration=0.5)


def test_log_likelihood_matches_enumeration(small_hmm):
  sequences = np.array(list(itertools.product(range(3), repeat=4)), np.int32)
  exact = hmm.log_likelihood(small_hmm, jnp.asarray(sequences))
  for sequence, value in zip(sequences[::7], np.asarray(exact)[::7]):
    np.testing.assert_allclose(value, brute_force_log_prob(small_hmm, sequence), atol=1e-5)


def test_probabilities_sum_to_one(small_hmm):
  sequences = np.array(list(itertools.product(range(3), repeat=5)), np.int32)
  total = jnp.sum(jnp.exp(hmm.log_likelihood(small_hmm, jnp.asarray(sequences))))
  np.testing.assert_allclose(float(total), 1.0, atol=1e-4)


def test_next_token_probs_are_conditionals(small_hmm):
  sequence = np.array([[2, 0, 1, 1]], np.int32)
  predictive = np.asarray(hmm.next_token_log_probs(small_hmm, jnp.asarray(sequence)))[0]
  np.testing.assert_allclose(np.exp(predictive).sum(-1), 1.0, atol=1e-5)
  for t in range(1, 4):
    prefix = brute_force_log_prob(small_hmm, sequence[0, :t])
    extended = brute_force_log_prob(small_hmm, sequence[0, :t + 1])
    np.testing.assert_allclose(predictive[t, sequence[0, t]], extended - prefix, atol=1e-5)


def test_sample_frequencies_match_likelihood(small_hmm):
  tokens = np.asarray(hmm.sample(small_hmm, jax.random.key(0), 40_000, 2))
  codes = tokens[:, 0] * 3 + tokens[:, 1]
  empirical = np.bincount(codes, minlength=9) / len(codes)
  pairs = jnp.asarray(np.array(list(itertools.product(range(3), repeat=2)), np.int32))
  exact = np.exp(np.asarray(hmm.log_likelihood(small_hmm, pairs)))
  # Binomial standard error of a frequency is at most 0.0025 with 40k draws.
  np.testing.assert_allclose(empirical, exact, atol=0.012)


def test_context_windows_pad_with_bos():
  tokens = jnp.array([[5, 6, 7]], jnp.int32)
  windows = np.asarray(hmm.context_windows(tokens, context=2, bos=9))
  np.testing.assert_array_equal(windows[0], [[9, 9], [9, 5], [5, 6]])


def test_random_hmm_rejects_bad_sizes():
  with pytest.raises(ConfigError, match="vocab_size"):
    hmm.random_hmm(jax.random.key(0), vocab_size=1)


def test_language_model_learns_toward_truth():
  corpus = hmm.load_hmm_corpus(seed=0, num_states=6, vocab_size=8, length=16, num_train=128,
                               num_eval=64)
  task = hmm.hmm_lm_task(context=3, width=32, data=corpus)
  params = task.init(jax.random.key(0))
  tx = optax.adam(1e-2)
  opt_state = tx.init(params)
  before = task.evaluate(params, "valid")

  @jax.jit
  def train(params, opt_state):
    def step(carry, i):
      params, opt_state = carry
      grads = jax.grad(task.loss)(params, task.batch(jax.random.key(1), i))
      updates, opt_state = tx.update(grads, opt_state)
      return (optax.apply_updates(params, updates), opt_state), None
    return jax.lax.scan(step, (params, opt_state), jnp.arange(300))[0]

  params, _ = train(params, opt_state)
  after = task.evaluate(params, "valid")
  assert float(after["loss"]) < float(before["loss"]) - 0.3
  # No model beats the true HMM's loss by more than sampling noise on 64 sequences.
  assert float(after["loss"]) > float(after["true_loss"]) - 0.1
