"""Quality and diversity of sampled sequences, and the quality-diversity front of fixed rules.

Quality is the mean log-likelihood per token under a judge: the true HMM for the
hidden Markov language, a reference n-gram model for text. Diversity is the mean
entropy of the sampling distribution per position (in nats) and the share of
distinct n-grams among all n-grams of a sample set.
"""

from __future__ import annotations

import dataclasses

import numpy as np


def distinct_ngrams(tokens: np.ndarray, n: int) -> float:
  """Return distinct n-grams divided by all n-grams over the rows of `tokens` [N, L]."""
  tokens = np.asarray(tokens)
  if tokens.shape[1] < n:
    return 0.0
  grams = np.stack([tokens[:, i:tokens.shape[1] - n + 1 + i] for i in range(n)], axis=-1)
  grams = grams.reshape(-1, n)
  return float(len(np.unique(grams, axis=0)) / len(grams))


def pareto_front(points: np.ndarray) -> np.ndarray:
  """Return the indices of the Pareto-optimal points among `points` [P, 2].

  A point is left out when another is at least as good on both axes and better on one.

  Both axes are maximised (diversity, quality). The indices are sorted by the first axis.
  """
  points = np.asarray(points, np.float64)
  front = []
  for i, p in enumerate(points):
    dominated = np.any(np.all(points >= p, axis=1) & np.any(points > p, axis=1))
    if not dominated:
      front.append(i)
  return np.asarray(sorted(front, key=lambda i: points[i, 0]), np.int64)


def front_quality_at(front_points: np.ndarray, diversity: float) -> float:
  """Return the front's quality at `diversity`, interpolating linearly between front points.

  Beyond the most diverse front point the front has no quality (-inf), so any
  sampler there lies beyond it. Below the least diverse point, that point's
  quality applies.
  """
  front_points = np.asarray(front_points, np.float64)
  order = np.argsort(front_points[:, 0])
  x, y = front_points[order, 0], front_points[order, 1]
  if diversity > x[-1]:
    return -np.inf
  return float(np.interp(diversity, x, y))


@dataclasses.dataclass(frozen=True)
class NgramReference:
  """An interpolated character n-gram model (orders 1 to 3) fitted on a token stream.

  p(c | a, b) = l3 * p3(c | a, b) + l2 * p2(c | b) + l1 * p1(c), with add-one
  unigram counts and fixed weights (l3, l2, l1) = (0.6, 0.3, 0.1). A context
  never seen in the stream takes the next lower order's distribution in place
  of its own, so every row sums to one. The model is an independent judge of
  text samples because it shares no parameters with the model it scores.
  """

  log_probs: np.ndarray  # [V, V, V]: log p(c | a, b) indexed [a, b, c].

  @classmethod
  def fit(cls, stream: np.ndarray, vocab_size: int,
          weights: tuple[float, float, float] = (0.6, 0.3, 0.1)) -> "NgramReference":
    stream = np.asarray(stream, np.int64)
    v = vocab_size
    unigram = np.bincount(stream, minlength=v).astype(np.float64) + 1.0
    unigram /= unigram.sum()
    bigram = np.bincount(stream[:-1] * v + stream[1:], minlength=v * v).reshape(v, v)
    bigram_totals = bigram.sum(1, keepdims=True)
    bigram = np.where(bigram_totals > 0, bigram / np.maximum(bigram_totals, 1.0),
                      unigram[None, :])
    codes = (stream[:-2] * v + stream[1:-1]) * v + stream[2:]
    trigram = np.bincount(codes, minlength=v**3).reshape(v, v, v).astype(np.float64)
    trigram_totals = trigram.sum(2, keepdims=True)
    trigram = np.where(trigram_totals > 0, trigram / np.maximum(trigram_totals, 1.0),
                       bigram[None, :, :])
    l3, l2, l1 = weights
    probs = l3 * trigram + l2 * bigram[None] + l1 * unigram[None, None]
    return cls(np.log(probs).astype(np.float32))

  def score(self, context: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Return the mean log-likelihood per token of each row of `tokens` [N, L].

    The last two tokens of each row of `context` [N, >= 2] start the trigram history.
    """
    full = np.concatenate([np.asarray(context)[:, -2:], np.asarray(tokens)], axis=1)
    values = self.log_probs[full[:, :-2], full[:, 1:-1], full[:, 2:]]
    return values.mean(axis=1)
