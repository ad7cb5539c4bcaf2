import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from autogan_jax import core


class TestValidation:

  def test_rejects_negative_int_naming_field_value_range(self):
    config = ml_collections.ConfigDict({"meta": {"unroll_length": -3}})
    with pytest.raises(core.ConfigError) as error:
      core.validate(config, {"meta.unroll_length": core.IntRange(1)})
    message = str(error.value)
    assert "meta.unroll_length" in message
    assert "-3" in message
    assert "an integer >= 1" in message

  def test_lists_every_invalid_field(self):
    config = {"a": 0.0, "b": "sgd", "c": 5}
    schema = {"a": core.FloatRange(0.0, 1.0, low_inclusive=False),
              "b": core.OneOf(("adam", "learned")), "c": core.IntRange(1, 10)}
    with pytest.raises(core.ConfigError) as error:
      core.validate(config, schema)
    lines = str(error.value).splitlines()
    assert len(lines) == 2
    assert "a=0.0" in lines[0]
    assert "(0.0, 1.0]" in lines[0]
    assert "b='sgd'" in lines[1]
    assert "'adam'" in lines[1]

  def test_missing_field(self):
    with pytest.raises(core.ConfigError, match="'x.y' is missing"):
      core.validate({"x": {}}, {"x.y": core.IntRange(0)})

  @pytest.mark.parametrize("value", [True, 1.5, "3", None])
  def test_int_range_rejects_non_integers(self, value):
    assert core.IntRange(0).problem(value) is not None

  @pytest.mark.parametrize("value", [float("nan"), float("inf"), True])
  def test_float_range_rejects_non_finite(self, value):
    assert core.FloatRange(0.0).problem(value) is not None

  def test_sequence_names_bad_item(self):
    rule = core.SequenceOf(core.FloatRange(0.0, low_inclusive=False), min_length=2)
    assert rule.problem([1e-3, 1e-2]) is None
    assert "item 1" in rule.problem([1e-3, -1.0])
    assert "got 1 items" in rule.problem([1e-3])

  def test_sequence_distinct_names_repeats(self):
    rule = core.SequenceOf(core.IntRange(0), distinct=True)
    assert rule.problem([0, 1, 2]) is None
    assert "repeated: [1]" in rule.problem([1, 0, 1])
    assert core.SequenceOf(core.IntRange(0)).problem([1, 1]) is None

  def test_accepts_valid_config(self):
    core.validate({"n": 3, "lr": 0.1}, {"n": core.IntRange(1, 3), "lr": core.FloatRange(0.0)})


class TestTraceCounter:

  def test_counts_one_trace_for_new_values(self):
    counter = core.TraceCounter()
    step = jax.jit(counter.wrap(lambda x, lr: x - lr * x, "step"))
    for lr in (0.1, 0.2, 0.3):
      step(jnp.ones(3), jnp.float32(lr))
    assert counter["step"] == 1

  def test_counts_retrace_on_new_shape(self):
    counter = core.TraceCounter()
    step = jax.jit(counter.wrap(lambda x: 2 * x, "step"))
    step(jnp.ones(3))
    step(jnp.ones(4))
    assert counter["step"] == 2

  def test_counts_retrace_for_python_float_in_static_position(self):
    counter = core.TraceCounter()
    step = jax.jit(counter.wrap(lambda x, lr: x * lr, "step"), static_argnums=1)
    step(jnp.ones(3), 0.1)
    step(jnp.ones(3), 0.2)
    assert counter["step"] == 2


class TestKeys:

  def test_split_named_gives_distinct_keys(self):
    keys = core.split_named(jax.random.key(0), ["init", "data", "noise"])
    data = [tuple(np.asarray(jax.random.key_data(k))) for k in keys.values()]
    assert len(set(data)) == 3

  def test_split_named_rejects_duplicates(self):
    with pytest.raises(ValueError, match="unique"):
      core.split_named(jax.random.key(0), ["a", "a"])

  def test_as_key_accepts_seed_raw_and_typed(self):
    typed = core.as_key(3)
    raw = core.as_key(jax.random.PRNGKey(3))
    np.testing.assert_array_equal(jax.random.key_data(typed), jax.random.key_data(raw))
    assert core.as_key(typed) is typed

  def test_as_key_rejects_float_array(self):
    with pytest.raises(TypeError, match="PRNG key"):
      core.as_key(jnp.ones(2))

  def test_step_key_is_pure(self):
    key = jax.random.key(1)
    a = jax.random.key_data(core.step_key(key, 5))
    b = jax.random.key_data(core.step_key(key, 5))
    c = jax.random.key_data(core.step_key(key, 6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


class TestTree:

  def test_all_finite(self):
    assert bool(core.tree.all_finite({"a": jnp.ones(2), "b": jnp.zeros(3)}))
    assert not bool(core.tree.all_finite({"a": jnp.ones(2), "b": jnp.array([0.0, jnp.inf])}))

  def test_select_rows(self):
    mask = jnp.array([True, False, True])
    a = {"x": jnp.ones((3, 2))}
    b = {"x": jnp.zeros((3, 2))}
    out = core.tree.select_rows(mask, a, b)
    np.testing.assert_array_equal(out["x"][:, 0], [1.0, 0.0, 1.0])
