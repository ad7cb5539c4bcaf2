"""Time to train 32 different architectures: one padded vmapped step against one jit per spec.

  python -m benchmarks.heterogeneous_population --output=/tmp/hetero.json

Both sides train the same 32 MLP specs (different depths, widths,
activations, norms, skip connections, learning rates and batch sizes) on the
digits data for `--steps` steps, and both times include compilation. Building
the initial parameters is done once, before either timer starts, because it is
the same work for both. `ratio` in the JSON output is the per-spec loop time
divided by the padded vmapped time, measured in one run.
"""

import json
import os
import time

import jax
import numpy as np
from absl import app
from absl import flags

from autogan_jax.model_space import builder
from autogan_jax.model_space import data as data_lib
from autogan_jax.model_space import population
from autogan_jax.model_space import space as space_lib

_OUTPUT = flags.DEFINE_string("output", None, "Optional path of a JSON file with the timings.")
_MODELS = flags.DEFINE_integer("models", 32, "Number of different specs.")
_STEPS = flags.DEFINE_integer("steps", 100, "Training steps per spec.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the sampled specs.")


def _distinct_specs(count: int, seed: int):
  space = space_lib.SearchSpace(families=("mlp",), depths=(1, 2, 3), widths=(16, 32, 64))
  rng = np.random.default_rng(seed)
  specs, seen = [], set()
  while len(specs) < count:
    spec = space.to_spec(space.sample(rng))
    if spec not in seen:
      seen.add(spec)
      specs.append(spec)
  return specs


def main(argv):
  del argv
  data, io = data_lib.digits_data()
  specs = _distinct_specs(_MODELS.value, _SEED.value)
  steps = _STEPS.value
  keys = jax.random.split(jax.random.key(_SEED.value), len(specs))
  train_keys = jax.random.split(jax.random.key(_SEED.value + 1), len(specs))
  envelope, params, codes = builder.build_population(specs, io, keys)
  alone = [builder.build_population([s], io, keys[i:i + 1]) for i, s in enumerate(specs)]

  start = time.perf_counter()
  trainer = population.make_trainer(envelope, steps)
  padded_out = trainer(params, codes, train_keys, data)
  jax.block_until_ready(padded_out)
  padded_seconds = time.perf_counter() - start

  start = time.perf_counter()
  loop_losses = []
  for i, (own_envelope, own_params, own_codes) in enumerate(alone):
    # Each spec is padded to its own batch envelope only; one compile per spec.
    own_trainer = population.make_trainer(own_envelope, steps)
    out = own_trainer(own_params, own_codes, train_keys[i:i + 1], data)
    jax.block_until_ready(out)
    loop_losses.append(float(out[1][0, -1]))
  loop_seconds = time.perf_counter() - start

  result = {
      "models": len(specs), "steps": steps, "task": "digits", "family": "mlp",
      "padded_vmapped_seconds": padded_seconds, "per_spec_loop_seconds": loop_seconds,
      "ratio": loop_seconds / padded_seconds, "compile_included": True,
      "devices": [str(d) for d in jax.devices()], "cpu_count": os.cpu_count(),
      "padded_final_loss_mean": float(np.mean(np.asarray(padded_out[1][:, -1]))),
      "loop_final_loss_mean": float(np.mean(loop_losses)),
      "envelope": str(envelope)}
  print(f"{len(specs)} specs x {steps} steps: padded vmapped {padded_seconds:.2f} s, "
        f"one jit per spec {loop_seconds:.2f} s, ratio {result['ratio']:.2f}x")
  if _OUTPUT.value:
    with open(_OUTPUT.value, "w") as f:
      json.dump(result, f, indent=2)


if __name__ == "__main__":
  app.run(main)
