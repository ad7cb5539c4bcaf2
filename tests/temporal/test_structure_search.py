"""The G/D pairs over discrete choices: G learns the archive's best, D_temporal runs."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from autogan_jax import optim
from autogan_jax.alignment import mechanisms
from autogan_jax.alignment import search as alignment_search
from autogan_jax.gan import choices
from autogan_jax.tasks import pendulum
from autogan_jax.temporal import judge
from autogan_jax.temporal import model
from autogan_jax.temporal import structure

SPACE = choices.ChoiceSpace(names=("a", "b"), sizes=(3, 4))


def test_encode_decode_round_trip():
  indices = jnp.asarray([[0, 3], [2, 1]])
  encoded = SPACE.encode(indices)
  assert encoded.shape == (2, 7)
  np.testing.assert_array_equal(np.asarray(encoded.sum(-1)), 2.0)
  np.testing.assert_array_equal(np.asarray(SPACE.decode(encoded)), np.asarray(indices))


def test_sample_log_probs_match_logits():
  g_params = {"a": jnp.asarray([0.0, 1.0, 2.0]), "b": jnp.asarray([0.5, 0.0, -1.0, 3.0])}
  indices, log_probs = choices.sample(SPACE, g_params, jax.random.key(0), 16)
  expected = (jax.nn.log_softmax(g_params["a"])[indices[:, 0]]
              + jax.nn.log_softmax(g_params["b"])[indices[:, 1]])
  np.testing.assert_allclose(np.asarray(log_probs), np.asarray(expected), rtol=1e-6)


def test_generator_moves_to_real_choice():
  step = jax.jit(choices.make_search_step(SPACE, optax.adam(0.1), optax.adam(1e-2)))
  state = choices.init_search(SPACE, jax.random.key(1), 8, optax.adam(0.1),
                              optax.adam(1e-2))["gan"]
  real = SPACE.encode(jnp.asarray([[2, 1]] * 8))
  for i in range(60):
    state, metrics = step(state, real, jax.random.key(i))
  np.testing.assert_array_equal(choices.mode(SPACE, state.g_params), [2, 1])
  assert np.isfinite(float(metrics["d_loss"]))


def test_search_round_quarantines_non_finite():
  g_tx, d_tx = optax.adam(0.1), optax.adam(1e-2)
  state = choices.init_search(SPACE, jax.random.key(0), 8, g_tx, d_tx)
  step = jax.jit(choices.make_search_step(SPACE, g_tx, d_tx))

  def evaluate(indices):
    fitness = -indices[:, 0].astype(float)
    fitness[0] = np.nan
    return fitness

  state, record = choices.search_round(SPACE, state, jax.random.key(1), evaluate, population=4,
                                       top_k=2, gan_steps=2, step_fn=step)
  fitness = np.asarray(state["archive_fitness"])
  assert fitness[0] == -np.inf
  assert np.isfinite(fitness[1:4]).all()
  assert (fitness[4:] == -np.inf).all()
  assert int(state["round"]) == 1
  assert record["indices"].shape == (4, 2)


def test_alignment_search_finds_lowest_error_config():
  base = mechanisms.AlignmentConfig(hidden=8)
  configs = alignment_search.all_configs(base)
  target = configs[5]
  table = {c: (0.05 if c == target else 0.5 + 0.01 * i) for i, c in enumerate(configs)}
  # The experiment's default search settings and update rule (Adam, which its
  # preset names); keys 0 to 3 all end on the target.
  with optim.default_rule_scope("adam"):
    state, records = alignment_search.run_search(table, jax.random.key(0), base=base, rounds=10,
                                                 population=8, top_k=4, gan_steps=5)
  learned = alignment_search.config_of(choices.mode(alignment_search.SPACE,
                                                    state["gan"].g_params), base)
  assert learned == target
  assert len(records) == 10


def test_alignment_search_rejects_missing_configs():
  base = mechanisms.AlignmentConfig(hidden=8)
  with pytest.raises(ValueError, match="missing"):
    alignment_search.run_search({base: 0.1}, jax.random.key(0), base=base, rounds=1,
                                population=2, top_k=1, gan_steps=1)


def test_rollout_discriminator_trains_and_scores():
  spec = model.ModelSpec(kind="continuous", dim=3, hidden=8)
  data = pendulum.load_pendulum(num_train=16, num_eval=4, length=40)
  indices = np.stack([structure.next_step_baseline()])
  structures = structure.from_indices(indices)
  params = jax.vmap(lambda k: model.init(k, spec))(jax.random.split(jax.random.key(0), 1))
  tuned, d_params, metrics = judge.adversarial_finetune(
      spec, params, structures, data.train, jax.random.key(1), num_steps=5, batch_size=8,
      rollout_steps=4)
  assert metrics["d_loss"].shape == (5, 1)
  assert np.isfinite(metrics["d_loss"]).all()
  assert np.isfinite(metrics["g_loss"]).all()
  changed = jax.tree.leaves(jax.tree.map(lambda a, b: jnp.any(a != b), params, tuned))
  assert any(bool(c) for c in changed)
  scores = judge.realism(spec, tuned, d_params, structures, jnp.asarray(data.valid),
                         jax.random.key(2), batch_size=8, rollout_steps=4)
  assert 0.0 < float(scores["real"][0]) < 1.0
  assert 0.0 < float(scores["fake"][0]) < 1.0


def test_rollout_discriminator_rejects_tokens():
  spec = model.ModelSpec(kind="discrete", dim=8)
  structures = structure.from_indices(np.stack([structure.next_step_baseline()]))
  with pytest.raises(ValueError, match="continuous"):
    judge.adversarial_finetune(spec, None, structures, np.zeros((2, 40), int),
                               jax.random.key(0), num_steps=1)
