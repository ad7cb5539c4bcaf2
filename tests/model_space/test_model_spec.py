"""ModelSpec validation, hashing, round trips and array encoding."""

import jax.numpy as jnp
import numpy as np
import pytest

from autogan_jax.core import ConfigError
from autogan_jax.model_space import encoding
from autogan_jax.model_space import spec as spec_lib

IO = spec_lib.ModelIO("tokens", 8, 128, 128)


def _transformer(**attention):
  return spec_lib.ModelSpec(family="transformer", widths=(32, 16), model_dim=16,
                            attention=spec_lib.AttentionSpec(**attention))


@pytest.mark.parametrize("kwargs, field, allowed", [
    ({"family": "cnn"}, "family", "'mlp'"),
    ({"widths": ()}, "widths", "at least 1"),
    ({"widths": (0,)}, "widths", "integer in [1, 4096]"),
    ({"activation": "sigmoid"}, "activation", "'relu'"),
    ({"norm": "batch"}, "norm", "'layer'"),
    ({"connectivity": "skip"}, "connectivity", "'residual'"),
    ({"learning_rate": 0.0}, "learning_rate", "(0.0, 10.0]"),
    ({"weight_decay": -1.0}, "weight_decay", "[0.0, 1.0]"),
    ({"batch_size": 0}, "batch_size", "integer in [1, 65536]"),
])
def test_invalid_spec_names_field(kwargs, field, allowed):
  with pytest.raises(ConfigError) as error:
    spec_lib.ModelSpec(**kwargs)
  message = str(error.value)
  assert field in message
  assert repr(next(iter(kwargs.values()))) in message
  assert allowed in message


@pytest.mark.parametrize("kwargs, field", [
    ({"pattern": "random"}, "attention.pattern"),
    ({"combine": "tanh"}, "attention.combine"),
    ({"position": "relative"}, "attention.position"),
    ({"head_combine": "max"}, "attention.head_combine"),
    ({"qkv_init": "zeros"}, "attention.qkv_init"),
    ({"num_heads": 0}, "attention.num_heads"),
])
def test_invalid_attention_names_field(kwargs, field):
  with pytest.raises(ConfigError, match=field):
    spec_lib.AttentionSpec(**kwargs)


def test_attention_family_rules():
  with pytest.raises(ConfigError, match="needs an AttentionSpec"):
    spec_lib.ModelSpec(family="transformer")
  with pytest.raises(ConfigError, match="only the transformer family"):
    spec_lib.ModelSpec(family="mlp", attention=spec_lib.AttentionSpec())
  with pytest.raises(ConfigError, match="must divide model_dim=16"):
    _transformer(num_heads=3)
  with pytest.raises(ConfigError, match="even head dimension"):
    spec_lib.ModelSpec(family="transformer", model_dim=6,
                       attention=spec_lib.AttentionSpec(num_heads=2, position="rotary"))


def test_spec_is_hashable_and_round_trips():
  spec = _transformer(pattern="local", position="alibi", shared=True)
  same = _transformer(pattern="local", position="alibi", shared=True)
  assert spec == same
  assert hash(spec) == hash(same)
  assert len({spec, same, _transformer()}) == 2
  assert spec_lib.ModelSpec.from_dict(spec.to_dict()) == spec
  with pytest.raises(AttributeError):
    spec.family = "mlp"


def test_encode_pads_to_envelope():
  spec = _transformer(num_heads=2, pattern="strided", window=3)
  big = spec_lib.ModelSpec(family="transformer", widths=(64, 64, 8), model_dim=32,
                           batch_size=64, attention=spec_lib.AttentionSpec(num_heads=4))
  envelope = encoding.Envelope.covering([spec, big], IO)
  assert (envelope.max_depth, envelope.max_width, envelope.max_model_dim) == (3, 64, 32)
  assert (envelope.max_heads, envelope.max_head_dim) == (4, 8)
  code = encoding.encode(spec, envelope)
  np.testing.assert_array_equal(code.widths, [32, 16, 0])
  assert int(code.depth) == 2
  assert int(code.num_heads) == 2
  assert int(code.pattern) == spec_lib.ATTENTION_PATTERNS.index("strided")
  assert int(code.window) == 3
  assert code.learning_rate.dtype == jnp.float32
  codes = encoding.encode_population([spec, big], envelope)
  assert codes.widths.shape == (2, 3)


def test_envelope_rejects_mixed_families_and_misfits():
  with pytest.raises(ConfigError, match="group the specs by family"):
    encoding.Envelope.covering([spec_lib.ModelSpec(), spec_lib.ModelSpec(family="gru")], IO)
  envelope = encoding.Envelope.covering([spec_lib.ModelSpec(widths=(16,))], IO)
  with pytest.raises(ConfigError, match="does not fit"):
    encoding.encode(spec_lib.ModelSpec(widths=(32,)), envelope)


def test_io_validation():
  with pytest.raises(ConfigError, match="input_kind"):
    spec_lib.ModelIO("images", 8, 8, 10)
  with pytest.raises(ConfigError, match="num_classes"):
    spec_lib.ModelIO("features", 8, 8, 1)
