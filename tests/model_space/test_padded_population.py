"""Padded populations of different specs compute what each spec computes alone."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autogan_jax.core import TraceCounter
from autogan_jax.core import tree as tree_lib
from autogan_jax.model_space import builder
from autogan_jax.model_space import network
from autogan_jax.model_space import population
from autogan_jax.model_space import space as space_lib
from autogan_jax.model_space import spec as spec_lib
from autogan_jax.model_space import zoo

SPACE = space_lib.SearchSpace(depths=(1, 2, 3), widths=(3, 8, 12), model_dims=(4, 8),
                              heads=(1, 2), windows=(1, 2, 3), batch_sizes=(4, 8))
TOKENS = spec_lib.ModelIO("tokens", 6, 11, 5)
FEATURES = spec_lib.ModelIO("features", 6, 3, 4)


def _inputs(io, key):
  if io.input_kind == "tokens":
    return jax.random.randint(key, (3, io.seq_len), 0, io.in_features)
  return jax.random.normal(key, (3, io.seq_len, io.in_features))


@functools.lru_cache(maxsize=None)
def _padded_apply(envelope):
  return jax.jit(jax.vmap(lambda p, x, c: network.apply(p, x, c, envelope),
                          in_axes=(0, None, 0)))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(family=st.sampled_from(spec_lib.FAMILIES),
       seeds=st.lists(st.integers(0, 2**31 - 1), min_size=2, max_size=2))
def test_member_outputs_equal_spec_alone(family, seeds):
  # One interface per family keeps the compiles few; both interfaces are covered.
  io = TOKENS if family in ("transformer", "lstm") else FEATURES
  space = dataclasses_replace(SPACE, families=(family,))
  specs = [space.to_spec(space.sample(np.random.default_rng(s))) for s in seeds]
  envelope = SPACE.envelope(family, io)
  keys = jax.random.split(jax.random.key(seeds[0]), len(specs))
  _, params, codes = builder.build_population(specs, io, keys, envelope)
  x = _inputs(io, jax.random.key(seeds[1] + 1))
  padded = _padded_apply(envelope)(params, x, codes)
  for i, spec in enumerate(specs):
    alone = builder.build(spec, io, keys[i])(x)
    np.testing.assert_allclose(padded[i], alone, rtol=1e-4, atol=1e-5,
                               err_msg=spec.describe())


def dataclasses_replace(space, **changes):
  import dataclasses
  return dataclasses.replace(space, **changes)


def test_every_attention_choice_matches_alone():
  io = TOKENS
  specs = []
  for i, pattern in enumerate(spec_lib.ATTENTION_PATTERNS):
    for j, combine in enumerate(spec_lib.ATTENTION_COMBINES):
      position = spec_lib.POSITIONS[(i + j) % len(spec_lib.POSITIONS)]
      specs.append(spec_lib.ModelSpec(
          family="transformer", widths=(8, 3)[: 1 + (i + j) % 2], model_dim=8, batch_size=8,
          norm=spec_lib.NORMS[j % 3], connectivity=spec_lib.CONNECTIVITY[i % 3],
          attention=spec_lib.AttentionSpec(
              pattern=pattern, window=2, combine=combine, num_heads=(1, 2)[j % 2],
              head_combine=spec_lib.HEAD_COMBINES[i % 3], shared=bool(i % 2),
              position=position, qkv_init=spec_lib.QKV_INITS[j % 3])))
  envelope = SPACE.envelope("transformer", io)
  keys = jax.random.split(jax.random.key(0), len(specs))
  _, params, codes = builder.build_population(specs, io, keys, envelope)
  x = _inputs(io, jax.random.key(1))
  padded = _padded_apply(envelope)(params, x, codes)
  for i, spec in enumerate(specs):
    alone = builder.build(spec, io, keys[i])(x)
    np.testing.assert_allclose(padded[i], alone, rtol=1e-4, atol=1e-5,
                               err_msg=spec.describe())
  # Different choices give different functions, so the test cannot pass trivially.
  assert len({float(jnp.sum(padded[i])) for i in range(len(specs))}) == len(specs)


def test_training_in_population_equals_alone():
  io = FEATURES
  specs = [spec_lib.ModelSpec("mlp", (8, 3), "tanh", "layer", "residual", 8, batch_size=4,
                              learning_rate=3e-2, weight_decay=1e-3),
           spec_lib.ModelSpec("mlp", (12,), "relu", model_dim=8, batch_size=8, learning_rate=1e-2),
           spec_lib.ModelSpec("mlp", (3, 3, 8), "gelu", "rms", "dense", 8, batch_size=8)]
  data = _toy_data(io)
  envelope = SPACE.envelope("mlp", io)
  keys = jax.random.split(jax.random.key(3), len(specs))
  train_keys = jax.random.split(jax.random.key(4), len(specs))
  _, params, codes = builder.build_population(specs, io, keys, envelope)
  counter = TraceCounter()
  member = counter.wrap(population.make_member_trainer(envelope, 5, optax.scale_by_adam()),
                        "member")
  trainer = jax.jit(jax.vmap(member, in_axes=(0, 0, 0, None)))
  trained, losses, finite = trainer(params, codes, train_keys, data)
  trainer(params, codes, train_keys, data)
  assert counter["member"] == 1
  assert bool(jnp.all(finite))
  for i, spec in enumerate(specs):
    own = zoo.extract_params(tree_lib.index(trained, i), spec, io)
    alone_envelope, alone_params, alone_codes = builder.build_population([spec], io,
                                                                         keys[i:i + 1])
    # Alone, a member's batch is the first rows of a batch of the padded size.
    alone_envelope = dataclasses_replace(alone_envelope,
                                         max_batch_size=envelope.max_batch_size)
    alone_trainer = population.make_trainer(alone_envelope, 5, optax.scale_by_adam())
    alone_trained, alone_losses, _ = alone_trainer(alone_params, alone_codes,
                                                   train_keys[i:i + 1], data)
    np.testing.assert_allclose(losses[i], alone_losses[0], rtol=1e-4, atol=1e-5)
    alone_own = zoo.extract_params(tree_lib.index(alone_trained, 0), spec, io)
    for name, value in own.items():
      np.testing.assert_allclose(value, alone_own[name], rtol=1e-4, atol=1e-5,
                                 err_msg=f"{spec.describe()} {name}")
    # Padded entries receive no updates.
    padded = tree_lib.index(trained, i)
    embedded = network.embed_params({k: jnp.asarray(v) for k, v in own.items()}, envelope)
    for name in padded:
      np.testing.assert_array_equal(padded[name], embedded[name])


def _toy_data(io):
  from autogan_jax.model_space import data as data_lib
  key = jax.random.key(5)
  x = jax.random.normal(key, (40, io.seq_len, io.in_features))
  y = jax.random.randint(jax.random.fold_in(key, 1), (40,), 0, io.num_classes)
  return data_lib.ArrayData(x, y, x[:10], y[:10], x[10:20], y[10:20])


def test_nnx_split_gives_state_pytree():
  from flax import nnx
  model = builder.build(spec_lib.ModelSpec("gru", (8,), model_dim=4), TOKENS, jax.random.key(0))
  graphdef, state = nnx.split(model)
  x = _inputs(TOKENS, jax.random.key(1))
  out = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, x)
  np.testing.assert_allclose(out, model(x), rtol=1e-5, atol=1e-6)
  assert set(state.to_pure_dict()) == set(builder.params_of(model))
