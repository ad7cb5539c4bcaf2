"""Time one `jit(vmap(scan))` population call against a loop over one member's jitted scan.

Trains `--members` digits MLPs for `--steps` Adam steps (each member with its
own learning rate, injected as data) and evaluates them, in two ways:

- vmapped: one call of `jit(vmap(scan(step)))` over all members;
- loop: `--members` calls of one member's `jit(scan(step))`, one per member.

It also measures the floating-point rate of the vmapped call as a fraction of
a large jitted f32 matrix product on the same machine. Each timing is the
minimum over `--repeats` runs, after one compiling run.

The vmapped call shards the population over all devices of `jax.devices()`.
On a CPU, `XLA_FLAGS=--xla_force_host_platform_device_count=2` makes two
devices, one per core; the loop always runs on the first device. The FLOP count of the
vmapped call is XLA's cost analysis of one training step and of the
evaluation, compiled for the whole population, with the step counted `--steps`
times.

    python benchmarks/population_step.py --output=/tmp/population_step.json

NOTE: on a shared 2-core CPU with jax 0.10.2, the digits task's own batch
sampler took about 97% of the vmapped call's time (50 s against 1.3 s with
`--uniform_batches`), so the default figures mostly measure batch sampling.
"""

from __future__ import annotations

import json
import pathlib
import time

import jax
import jax.numpy as jnp
import optax
from absl import app
from absl import flags
from flax import struct

from autogan_jax import population
from autogan_jax import tasks
from autogan_jax.tasks import mlp

MEMBERS = flags.DEFINE_integer("members", 64, "Population size.", lower_bound=1)
STEPS = flags.DEFINE_integer("steps", 100, "Training steps of each member.", lower_bound=1)
WIDTH = flags.DEFINE_integer("width", 64, "Hidden units per layer of each MLP.", lower_bound=1)
DEPTH = flags.DEFINE_integer("depth", 2, "Hidden layers of each MLP.", lower_bound=1)
BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Examples per training batch.",
                                  lower_bound=1)
MATMUL_SIZE = flags.DEFINE_integer(
    "matmul_size", 2048, "Side of the square f32 matrices of the reference matrix product.",
    lower_bound=1)
REPEATS = flags.DEFINE_integer("repeats", 3, "Timed runs of each measurement; the minimum counts.",
                               lower_bound=1)
OUTPUT = flags.DEFINE_string("output", None, "Path of a JSON file for the results.")
UNIFORM_BATCHES = flags.DEFINE_bool(
    "uniform_batches", False,
    "Draw batch indices with one randint per example instead of the task's own sampler, which "
    "draws a Gumbel variate per training example for each batch entry. A diagnostic: it shows "
    "how much of the time batch sampling takes.")


@struct.dataclass
class UniformBatchDigitsTask(mlp.DigitsMLPTask):
  """The digits task with batches drawn uniformly from the whole training split."""

  def batch(self, key: jax.Array, step: jax.Array | int) -> dict[str, jax.Array]:
    data = self._data()
    step_key = jax.random.fold_in(jax.random.fold_in(key, self.variant.seed), step)
    idx = jax.random.randint(step_key, (self.max_batch_size,), 0, data.x_train.shape[0])
    weight = (jnp.arange(self.max_batch_size) < self.variant.batch_size).astype(jnp.float32)
    return {"x": jnp.asarray(data.x_train)[idx], "y": jnp.asarray(data.y_train)[idx],
            "weight": weight}


def _best_time(fn, repeats: int) -> float:
  """Return the minimum wall time in seconds of `fn()` over `repeats` runs, after a warm-up."""
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return min(times)


def _flops(compiled) -> float:
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0]
  return float(analysis.get("flops", 0.0))


def _population_flops(rule, task, state, keys, steps: int) -> float:
  """Count the vmapped call's FLOPs: one compiled step times `steps`, plus one evaluation.

  XLA's cost analysis counts a `while` loop's body once, so the scan itself
  cannot be analysed directly.
  """
  one_step = jax.jit(population.make_population_trainer(rule, 1, eval_split="valid"))
  with_eval = _flops(one_step.lower(state.params, state.opt_state, state.meta_params, task, keys,
                                    0).compile())
  evaluate = jax.jit(jax.vmap(lambda params: task.evaluate(params, "valid")))
  eval_only = _flops(evaluate.lower(state.params).compile())
  return steps * (with_eval - eval_only) + eval_only


def dense_flops(members: int, steps: int, width: int, depth: int, batch_size: int,
                num_inputs: int = 64, num_classes: int = 10, num_eval: int = 359) -> float:
  """Count the multiply-adds of the dense layers by hand, as 2 FLOPs each.

  A training step costs three forward passes: the forward pass itself, and a
  backward pass that computes gradients for both activations and weights. The
  evaluation is one forward pass over the validation split. Elementwise work
  and batch sampling are not counted.
  """
  per_example = num_inputs * width + (depth - 1) * width * width + width * num_classes
  return members * 2.0 * per_example * (3 * steps * batch_size + num_eval)


def run_benchmark(members: int, steps: int, width: int, depth: int, batch_size: int,
                  matmul_size: int, repeats: int,
                  uniform_batches: bool = False) -> dict[str, float]:
  """Run both timings and the FLOP-rate comparison; return the figures as a dict."""
  task = tasks.digits_task(width=width, depth=depth, activation="relu", batch_size=batch_size)
  if uniform_batches:
    task = UniformBatchDigitsTask(variant=task.variant, max_width=task.max_width,
                                  max_depth=task.max_depth, max_batch_size=task.max_batch_size,
                                  data=task.data)
  rule = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)
  state = population.init_population(
      jax.random.key(0), task, rule, members,
      hyperparams={"learning_rate": jnp.geomspace(1e-4, 1e-2, members)})
  keys = jax.random.split(jax.random.key(1), members)

  # The vmapped call shards the population over all devices; the loop runs on one.
  mesh = population.population_mesh()
  sharded_state, _ = population.distribute(state, mesh)
  padded = sharded_state.fitness.shape[0]
  sharded_keys = population.shard_leading(population.pad_leading(keys, padded), mesh)
  vmapped = jax.jit(population.make_population_trainer(rule, steps, eval_split="valid"))
  vmapped_time = _best_time(
      lambda: vmapped(sharded_state.params, sharded_state.opt_state, sharded_state.meta_params,
                      task, sharded_keys, 0), repeats)

  single = jax.jit(population.make_member_trainer(rule, steps, eval_split="valid"))
  first_device = jax.devices()[0]
  member_args = [jax.device_put((jax.tree.map(lambda x, i=i: x[i], state.params),
                                 jax.tree.map(lambda x, i=i: x[i], state.opt_state), keys[i]),
                                first_device)
                 for i in range(members)]
  jax.block_until_ready(member_args)

  def loop():
    return [single(params, opt_state, {}, task, key, 0) for params, opt_state, key in member_args]

  loop_time = _best_time(loop, repeats)

  flops = _population_flops(rule, task, state, keys, steps)
  a = jax.random.normal(jax.random.key(2), (matmul_size, matmul_size), jnp.float32)
  b = jax.random.normal(jax.random.key(3), (matmul_size, matmul_size), jnp.float32)
  matmul = jax.jit(jnp.matmul)
  matmul_time = _best_time(lambda: matmul(a, b), repeats)
  matmul_rate = 2.0 * matmul_size**3 / matmul_time
  vmapped_rate = flops / vmapped_time
  dense = dense_flops(members, steps, width, depth, batch_size,
                      num_eval=task.data.split("valid")[0].shape[0])

  return {
      "members": members, "steps": steps, "width": width, "depth": depth,
      "batch_size": batch_size, "uniform_batches": uniform_batches,
      "devices": jax.device_count(), "padded_members": padded,
      "backend": jax.default_backend(),
      "vmapped_seconds": vmapped_time, "loop_seconds": loop_time,
      "ratio": loop_time / vmapped_time,
      "vmapped_flops": flops, "vmapped_gflops_per_second": vmapped_rate / 1e9,
      "matmul_size": matmul_size, "matmul_gflops_per_second": matmul_rate / 1e9,
      "flop_fraction": vmapped_rate / matmul_rate,
      "dense_flops": dense, "dense_flop_fraction": dense / vmapped_time / matmul_rate,
  }


def main(argv):
  del argv
  results = run_benchmark(MEMBERS.value, STEPS.value, WIDTH.value, DEPTH.value,
                          BATCH_SIZE.value, MATMUL_SIZE.value, REPEATS.value,
                          UNIFORM_BATCHES.value)
  sampler = "uniform batches" if results["uniform_batches"] else "the task's batches"
  print(f"{results['members']} digits MLPs (width {results['width']}, depth {results['depth']}, "
        f"batch {results['batch_size']}, {sampler}), {results['steps']} Adam steps, "
        f"{results['devices']} {results['backend']} device(s):")
  print(f"  one jit(vmap(scan)) call:      {results['vmapped_seconds']:.4f} s")
  print(f"  {results['members']} calls of one member's scan: {results['loop_seconds']:.4f} s")
  print(f"  ratio (loop / vmapped):        {results['ratio']:.2f}x (target >= 2)")
  print(f"  vmapped call: {results['vmapped_gflops_per_second']:.2f} GFLOP/s; "
        f"{results['matmul_size']}^2 matmul: {results['matmul_gflops_per_second']:.2f} GFLOP/s")
  print(f"  flop_fraction:                 {results['flop_fraction']:.3f} (target >= 0.5; "
        "FLOPs from XLA's cost analysis)")
  print(f"  dense_flop_fraction:           {results['dense_flop_fraction']:.3f} (dense-layer "
        "FLOPs counted by hand)")
  if OUTPUT.value:
    path = pathlib.Path(OUTPUT.value)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
  app.run(main)
