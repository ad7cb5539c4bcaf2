"""A hidden Markov language whose exact likelihood is known, and a language model of it.

The language is a fixed random hidden Markov model (HMM) with sparse transition
and emission rows, so it has grammar-like structure. Its sequences have a fixed
length and start from the initial state distribution. Because the forward
algorithm gives the exact probability of any sequence, a sampler's output can be
scored by its true log-likelihood instead of by a learned proxy.

The language model is a context-window perceptron like the character model: it
reads the previous `context` tokens, padded with a beginning-of-sequence token
`BOS = vocab_size`, and predicts the next one. With a short context it cannot
represent the HMM exactly, which is what makes the choice of sampling rule matter.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from autogan_jax.core import validation


@struct.dataclass
class HMM:
  """Log-probabilities of a hidden Markov model with `S` states and `V` tokens.

  Attributes:
    log_initial: log P(z_0), shape [S].
    log_transition: log P(z_{t+1} | z_t), shape [S, S], rows sum to one.
    log_emission: log P(x_t | z_t), shape [S, V], rows sum to one.
  """

  log_initial: jax.Array
  log_transition: jax.Array
  log_emission: jax.Array

  @property
  def num_states(self) -> int:
    return self.log_initial.shape[0]

  @property
  def vocab_size(self) -> int:
    return self.log_emission.shape[1]


def random_hmm(key: jax.Array, num_states: int = 12, vocab_size: int = 24,
               transition_concentration: float = 0.1,
               emission_concentration: float = 0.1) -> HMM:
  """Draw an HMM whose transition and emission rows are Dirichlet samples.

  A concentration well below one makes each row put most of its mass on a few
  entries, so the language has strong, learnable structure.
  """
  validation.check("num_states", num_states, validation.IntRange(1))
  validation.check("vocab_size", vocab_size, validation.IntRange(2))
  validation.check("transition_concentration", transition_concentration,
                   validation.FloatRange(0.0, low_inclusive=False))
  validation.check("emission_concentration", emission_concentration,
                   validation.FloatRange(0.0, low_inclusive=False))
  k_initial, k_transition, k_emission = jax.random.split(key, 3)
  initial = jax.random.dirichlet(k_initial, jnp.ones(num_states))
  transition = jax.random.dirichlet(
      k_transition, jnp.full((num_states, num_states), transition_concentration))
  emission = jax.random.dirichlet(
      k_emission, jnp.full((num_states, vocab_size), emission_concentration))
  # Dirichlet draws with small concentrations can underflow to exact zeros; a
  # floor keeps every sequence possible, so log-likelihoods stay finite.
  floor = 1e-6

  def normalized_log(p):
    p = p + floor
    return jnp.log(p / jnp.sum(p, axis=-1, keepdims=True))

  return HMM(log_initial=normalized_log(initial), log_transition=normalized_log(transition),
             log_emission=normalized_log(emission))


def sample(hmm: HMM, key: jax.Array, num_sequences: int, length: int) -> jax.Array:
  """Draw `num_sequences` token sequences of `length` tokens, shape [N, L], int32."""
  k_initial, k_steps = jax.random.split(key)
  states = jax.random.categorical(k_initial, hmm.log_initial, shape=(num_sequences,))

  def step(states, step_key):
    k_emit, k_move = jax.random.split(step_key)
    tokens = jax.random.categorical(k_emit, hmm.log_emission[states])
    next_states = jax.random.categorical(k_move, hmm.log_transition[states])
    return next_states, tokens

  _, tokens = jax.lax.scan(step, states, jax.random.split(k_steps, length))
  return tokens.T.astype(jnp.int32)


def _forward(hmm: HMM, tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Run the forward algorithm on one sequence [L].

  Returns the per-step predictive log-probabilities log p(x_t | x_<t) over the
  whole vocabulary, shape [L, V], and the log-likelihood of each observed token, [L].
  """

  def step(log_belief, token):
    # log_belief is log P(z_t | x_<t); the predictive is its emission mixture.
    predictive = jax.nn.logsumexp(log_belief[:, None] + hmm.log_emission, axis=0)
    log_joint = log_belief + hmm.log_emission[:, token]
    observed = jax.nn.logsumexp(log_joint)
    posterior = log_joint - observed
    next_belief = jax.nn.logsumexp(posterior[:, None] + hmm.log_transition, axis=0)
    return next_belief, (predictive, observed)

  _, (predictive, observed) = jax.lax.scan(step, hmm.log_initial, tokens)
  return predictive, observed


def log_likelihood(hmm: HMM, tokens: jax.Array) -> jax.Array:
  """Return the exact log P(sequence) in nats of each row of `tokens` [N, L], shape [N]."""
  _, observed = jax.vmap(lambda seq: _forward(hmm, seq))(tokens)
  return jnp.sum(observed, axis=-1)


def next_token_log_probs(hmm: HMM, tokens: jax.Array) -> jax.Array:
  """Return the true log p(x_t = v | x_<t) for every position and token, shape [N, L, V]."""
  predictive, _ = jax.vmap(lambda seq: _forward(hmm, seq))(tokens)
  return predictive


def entropy_rate_estimate(hmm: HMM, key: jax.Array, num_sequences: int, length: int
                          ) -> jax.Array:
  """Estimate the language's entropy in nats per token by Monte Carlo over samples."""
  tokens = sample(hmm, key, num_sequences, length)
  return -jnp.mean(log_likelihood(hmm, tokens)) / length


@dataclasses.dataclass(frozen=True, eq=False)
class HMMCorpus:
  """An HMM and fixed train, validation and test samples of its language.

  Instances compare and hash by identity, so a task can hold one as a static field.
  """

  hmm: HMM
  train: np.ndarray
  valid: np.ndarray
  test: np.ndarray

  @property
  def vocab_size(self) -> int:
    return self.hmm.vocab_size

  @property
  def length(self) -> int:
    return self.train.shape[1]

  def split(self, name: str) -> np.ndarray:
    validation.check_choice("split", name, ("train", "valid", "test"))
    return getattr(self, name)


@functools.lru_cache(maxsize=4)
def load_hmm_corpus(seed: int = 0, num_states: int = 12, vocab_size: int = 24,
                    length: int = 32, num_train: int = 512, num_eval: int = 256) -> HMMCorpus:
  """Build the HMM of `seed` and sample its train, validation and test sequences."""
  validation.check("length", length, validation.IntRange(1))
  validation.check("num_train", num_train, validation.IntRange(1))
  validation.check("num_eval", num_eval, validation.IntRange(1))
  k_hmm, k_train, k_valid, k_test = jax.random.split(jax.random.key(seed), 4)
  hmm = random_hmm(k_hmm, num_states=num_states, vocab_size=vocab_size)
  return HMMCorpus(hmm=hmm, train=np.asarray(sample(hmm, k_train, num_train, length)),
                   valid=np.asarray(sample(hmm, k_valid, num_eval, length)),
                   test=np.asarray(sample(hmm, k_test, num_eval, length)))


def context_windows(tokens: jax.Array, context: int, bos: int) -> jax.Array:
  """Return the `context` tokens before each position, BOS-padded, shape [N, L, context]."""
  num, length = tokens.shape
  padded = jnp.concatenate([jnp.full((num, context), bos, tokens.dtype), tokens], axis=1)
  index = jnp.arange(length)[:, None] + jnp.arange(context)[None, :]
  return padded[:, index]


@struct.dataclass
class HMMLMTask:
  """Next-token prediction on the HMM language with a context-window perceptron.

  The input vocabulary has `vocab_size + 1` entries because of the BOS token;
  the output vocabulary is the language's `vocab_size`.
  """

  seed: jax.Array
  context: int = struct.field(pytree_node=False, default=4)
  embed_dim: int = struct.field(pytree_node=False, default=16)
  width: int = struct.field(pytree_node=False, default=64)
  batch_size: int = struct.field(pytree_node=False, default=32)
  data: HMMCorpus = struct.field(pytree_node=False, default=None)
  name: str = struct.field(pytree_node=False, default="hmm_lm")

  @property
  def vocab_size(self) -> int:
    return self.data.vocab_size

  @property
  def bos(self) -> int:
    return self.data.vocab_size

  def init(self, key: jax.Array) -> dict[str, jax.Array]:
    k_embed, k_hidden, k_out = jax.random.split(key, 3)
    fan_in = self.context * self.embed_dim
    return {
        "embed": jax.random.normal(k_embed, (self.vocab_size + 1, self.embed_dim)),
        "w_hidden": jax.random.normal(k_hidden, (fan_in, self.width)) * jnp.sqrt(2.0 / fan_in),
        "b_hidden": jnp.zeros(self.width),
        "w_out": jax.random.normal(k_out, (self.width, self.vocab_size))
                 * jnp.sqrt(1.0 / self.width),
        "b_out": jnp.zeros(self.vocab_size),
    }

  def apply(self, params, windows: jax.Array) -> jax.Array:
    """Return next-token logits for integer windows of shape [batch, context]."""
    embedded = params["embed"][windows].reshape(windows.shape[0], -1)
    hidden = jax.nn.relu(embedded @ params["w_hidden"] + params["b_hidden"])
    return hidden @ params["w_out"] + params["b_out"]

  def batch(self, key: jax.Array, step: jax.Array | int) -> dict[str, jax.Array]:
    train = jnp.asarray(self.data.train)
    step_key = jax.random.fold_in(jax.random.fold_in(key, self.seed), step)
    rows = jax.random.randint(step_key, (self.batch_size,), 0, train.shape[0])
    tokens = train[rows]
    windows = context_windows(tokens, self.context, self.bos)
    return {"x": windows.reshape(-1, self.context), "y": tokens.reshape(-1)}

  def _nll(self, params, windows, targets):
    logits = self.apply(params, windows)
    log_probs = jax.nn.log_softmax(logits)
    return -jnp.take_along_axis(log_probs, targets[:, None], axis=1)[:, 0], logits

  def loss(self, params, batch, key=None) -> jax.Array:
    del key  # The loss is deterministic.
    nll, _ = self._nll(params, batch["x"], batch["y"])
    return jnp.mean(nll)

  def evaluate(self, params, split: str = "test") -> dict[str, jax.Array]:
    """Return the model's loss (nats per token), accuracy and the true HMM's loss on a split."""
    tokens = jnp.asarray(self.data.split(split))
    windows = context_windows(tokens, self.context, self.bos).reshape(-1, self.context)
    nll, logits = self._nll(params, windows, tokens.reshape(-1))
    true_loss = -jnp.mean(log_likelihood(self.data.hmm, tokens)) / tokens.shape[1]
    accuracy = jnp.mean(jnp.argmax(logits, 1) == tokens.reshape(-1))
    return {"loss": jnp.mean(nll), "accuracy": accuracy, "true_loss": true_loss}


def hmm_lm_task(*, context: int = 4, embed_dim: int = 16, width: int = 64, batch_size: int = 32,
                seed: int = 0, data: HMMCorpus | None = None) -> HMMLMTask:
  """Build a language-model task on the HMM language (default corpus when `data` is None)."""
  validation.check("context", context, validation.IntRange(1, 1024))
  validation.check("embed_dim", embed_dim, validation.IntRange(1))
  validation.check("width", width, validation.IntRange(1))
  validation.check("batch_size", batch_size, validation.IntRange(1))
  return HMMLMTask(seed=jnp.asarray(seed, jnp.int32), context=context, embed_dim=embed_dim,
                   width=width, batch_size=batch_size,
                   data=data if data is not None else load_hmm_corpus())
