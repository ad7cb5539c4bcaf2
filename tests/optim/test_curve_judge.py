"""D_optim: curve features, archive ranking and the trained judge's ordering of curves."""

import functools
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from autogan_jax.core import validation
from autogan_jax.optim import curve_judge

STEPS = 120


@functools.partial(jax.jit, static_argnums=1)
def _families(key, n):
  """Constructed loss curves: converging, flat, diverging (half of them to NaN) and noisy."""
  t = jnp.arange(STEPS)
  ks = jax.random.split(key, 6)
  floor = jax.random.uniform(ks[0], (n, 1), minval=0.05, maxval=0.3)
  tau = jax.random.uniform(ks[1], (n, 1), minval=10, maxval=40)
  converging = 2.3 * jnp.exp(-t / tau) + floor + 0.01 * jax.random.normal(ks[2], (n, STEPS))
  flat = 2.3 + 0.02 * jax.random.normal(ks[3], (n, STEPS))
  rate = jax.random.uniform(ks[4], (n, 1), minval=3, maxval=8) / STEPS
  diverging = 0.5 * jnp.exp(t * rate)
  to_nan = (jnp.arange(n) % 2 == 0)[:, None]
  diverging = jnp.where(to_nan & (t >= 3 * STEPS // 4), jnp.nan, diverging)
  noisy = jnp.abs(2.3 * jnp.exp(-t / tau) + 0.3 + 0.6 * jax.random.normal(ks[5], (n, STEPS)))
  return {"converging": converging, "flat": flat, "diverging": diverging, "noisy": noisy}


def test_features_describe_curves():
  curves = _families(jax.random.key(0), 4)
  features = jax.device_get(jax.jit(lambda cs: {name: curve_judge.curve_features(c)
                                                 for name, c in cs.items()})(curves))
  index = {name: i for i, name in enumerate(curve_judge.CURVE_FEATURES)}
  assert np.all(features["converging"][:, index["slope"]] < -1.0)
  assert np.all(np.abs(features["flat"][:, index["slope"]]) < 0.05)
  assert np.all(features["diverging"][:, index["rise"]] > 1.0)
  assert np.all(features["noisy"][:, index["noise"]] > features["converging"][:, index["noise"]])
  assert np.all(features["converging"][:, index["nonfinite"]] == 0.0)
  assert np.any(features["diverging"][:, index["nonfinite"]] > 0.2)
  assert all(np.all(np.isfinite(f)) for f in features.values())


def test_quality_ranks_steady_low_curves_first():
  curves = _families(jax.random.key(1), 8)
  quality = jax.device_get(jax.jit(lambda cs: {name: curve_judge.curve_quality(c)
                                                for name, c in cs.items()})(curves))
  worst_converging = quality["converging"].min()
  for name in ("flat", "diverging", "noisy"):
    assert worst_converging > quality[name].max(), name
  assert np.any(np.isneginf(quality["diverging"]))


@pytest.fixture(scope="module")
def trained_judge():
  archive = jnp.concatenate(list(_families(jax.random.key(2), 12).values()))
  train = jax.jit(lambda key, curves: curve_judge.train_curve_judge(key, curves, steps=150))
  return train(jax.random.key(3), archive)


def test_judge_orders_constructed_curves(trained_judge):
  d_params, metrics = trained_judge
  assert int(metrics["num_real"]) == 12
  assert float(metrics["d_loss"][-1]) < float(metrics["d_loss"][0])
  held_out = _families(jax.random.key(4), 12)
  scores = jax.device_get(jax.jit(lambda d, cs: {name: curve_judge.score_curves(d, c)
                                                  for name, c in cs.items()})(d_params, held_out))
  assert scores["converging"].mean() > 0.8
  for name in ("flat", "diverging", "noisy"):
    assert scores["converging"].mean() > scores[name].mean() + 0.5, name
    # Every held-out converging curve outranks most curves of the other family.
    below = (scores[name][None, :] < scores["converging"][:, None]).mean()
    assert below > 0.9, name


def test_judge_rejects_archive_without_fakes():
  curves = jnp.ones((2, 10))
  with pytest.raises(validation.ConfigError, match="no fake curves"):
    curve_judge.train_curve_judge(jax.random.key(0), curves, top_fraction=0.75)
  with pytest.raises(ValueError, match="at least 2 steps"):
    curve_judge.curve_features(jnp.ones((3, 1)))
