"""Time the jitted learned-rule update against the jitted `optax.adam` update.

The pytree has about one million parameters in tensors of MLP-like shapes. Both
updates are jitted, warmed up, and timed alternately in one run, so the ratio
is robust to the machine's load. Prints a JSON record; `--output FILE` also
writes it to FILE. The headline `ratio` is learned time / Adam time.
"""

from __future__ import annotations

import json
import time

import jax
import numpy as np
import optax
from absl import app
from absl import flags

from autogan_jax import optim

_OUTPUT = flags.DEFINE_string("output", None, "Write the figures to this JSON file.")
_REPEATS = flags.DEFINE_integer("repeats", 50, "Timed calls of each update per round.")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Alternating rounds; the median round is reported.")
_HIDDEN = flags.DEFINE_integer("hidden_size", 4,
                               "Hidden units of the learned rule; 4 is the main job's default.")


def make_params(key: jax.Array) -> dict[str, jax.Array]:
  """Return about one million float32 parameters in dense-layer shapes."""
  shapes = {"w0": (784, 512), "b0": (512,), "w1": (512, 512), "b1": (512,),
            "w2": (512, 384), "b2": (384,), "w3": (384, 10), "b3": (10,)}
  keys = jax.random.split(key, len(shapes))
  return {name: jax.random.normal(k, shape) for k, (name, shape) in zip(keys, shapes.items())}


def time_update(step, grads, state, params, repeats: int) -> float:
  updates, state = step(grads, state, params)
  jax.block_until_ready((updates, state))
  start = time.perf_counter()
  for _ in range(repeats):
    updates, state = step(grads, state, params)
  jax.block_until_ready((updates, state))
  return (time.perf_counter() - start) / repeats


def main(argv):
  del argv
  key = jax.random.key(0)
  params = make_params(key)
  grads = jax.tree.map(lambda p: 0.01 * p, params)
  num_params = sum(p.size for p in jax.tree.leaves(params))

  learned = optim.learned_optimizer(
      optim.init_meta_params(jax.random.key(1), hidden_size=_HIDDEN.value))
  adam = optax.adam(1e-3)
  learned_step = jax.jit(learned.update)
  adam_step = jax.jit(adam.update)
  learned_state, adam_state = learned.init(params), adam.init(params)

  learned_times, adam_times = [], []
  for _ in range(_ROUNDS.value):
    adam_times.append(time_update(adam_step, grads, adam_state, params, _REPEATS.value))
    learned_times.append(time_update(learned_step, grads, learned_state, params, _REPEATS.value))
  learned_s, adam_s = float(np.median(learned_times)), float(np.median(adam_times))
  record = {
      "benchmark": "optimizer_step",
      "num_params": int(num_params),
      "hidden_size": _HIDDEN.value,
      "learned_update_s": learned_s,
      "adam_update_s": adam_s,
      "ratio": learned_s / adam_s,
      "target_ratio_at_most": 1.5,
      "backend": jax.default_backend(),
      "devices": [str(d) for d in jax.devices()],
  }
  print(json.dumps(record, indent=2))
  if _OUTPUT.value:
    with open(_OUTPUT.value, "w") as f:
      json.dump(record, f, indent=2)


if __name__ == "__main__":
  app.run(main)
