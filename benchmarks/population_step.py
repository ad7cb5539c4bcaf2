"""Time one `jit(vmap(scan))` population call against a loop over one member's jitted scan.

Trains `--members` digits MLPs for `--steps` Adam steps (each member with its
own learning rate, injected as data) and evaluates them, in two ways:

- vmapped: one call of `jit(vmap(scan(step)))` over all members, sharded over
  all devices of `jax.devices()`;
- loop: `--members` calls of one member's `jit(scan(step))`, all on the first
  device, as a plain Python loop places them.

Both do the same work: the same members, batches, steps and evaluation. Each
arm is called once to compile before timing, so no timing includes compilation.
The arms are then timed in turn for `--repeats` rounds, and each figure is the
median over rounds, so that busy periods of a shared machine spread over all
arms.

On a CPU, `XLA_FLAGS=--xla_force_host_platform_device_count=2` makes two
devices. A third arm, `loop_spread`, places member `i` on device
`i % device_count`, so that the loop's calls can run on every device at once.
`ratio_spread_loop` compares against it.

It also measures floating-point rates as a fraction of a large jitted f32
matrix product on the same machine:

- `flop_fraction`: the vmapped call. Its FLOP count is XLA's cost analysis of
  one training step and of the evaluation, compiled for the whole population,
  with the step counted `--steps` times.
- `dense_only_flop_fraction`: a vmapped, sharded scan of only the dense
  layers' matrix products of each step (forward, input and weight gradients of
  a linear MLP of the same shapes, on a fixed batch). The vmapped call runs
  these products plus elementwise work, which XLA counts at about one FLOP
  per element, so this fraction estimates the most `flop_fraction` can reach.

    XLA_FLAGS=--xla_force_host_platform_device_count=2 \
      python benchmarks/population_step.py --output=/tmp/population_step.json

NOTE: With jax 0.10.2 on a shared 2-core CPU (load average 9 to 22 from
other processes), the vmapped call used about as much process CPU time as the
loop (medians of 5 runs: 0.44 s and 0.49 s). Its wall-clock advantage
therefore comes from running on both cores, and a ratio of 2 needs both cores
free. In thunk profiles of one call on one CPU device, matrix products took
30% to 45% of the time, and the rest was elementwise work (Adam, activations,
softmax, random bits). `flop_fraction` was 0.36 to 0.52 in those runs, with
a median of 0.43.

NOTE: On the same 2-core machine idle (load average below 1.2), two runs of
the defaults gave `flop_fraction` 0.487 and 0.467 (ratio 2.44 and 2.38), so
the 0.5 target is missed by a few percent. The dense layers' products alone
reached 0.58 of the reference product, which bounds what the full step can
reach on this backend: XLA's CPU kernels run the members' small batched
products at about half the rate of one 2048^2 product. Width 128 (0.439),
batch 128 (0.437) and `--xla_cpu_experimental_xnn_fusion_type=dot` (0.428)
did not raise it.
"""

from __future__ import annotations

import json
import os
import pathlib
import statistics
import time
from collections.abc import Callable

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
REPEATS = flags.DEFINE_integer(
    "repeats", 5, "Timed rounds; each round times every arm once, and the medians count.",
    lower_bound=1)
OUTPUT = flags.DEFINE_string("output", None, "Path of a JSON file for the results.")
UNIFORM_BATCHES = flags.DEFINE_bool(
    "uniform_batches", False,
    "Draw batch indices with one randint over the whole training split instead of the task's "
    "own sampler, which draws uniformly from the task's data subset. A diagnostic: it shows how "
    "much of the time batch sampling takes.")


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


def time_rounds(arms: dict[str, Callable],
                rounds: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
  """Return the wall times and the process CPU times in seconds of each arm, per round.

  Every arm is called once first, so compilation is never timed. Each round
  then calls every arm once, in turn. CPU time counts all threads of this
  process, so it is less sensitive than wall time to other processes on a
  shared machine, but it also counts threads that spin while they wait.
  """
  for fn in arms.values():
    jax.block_until_ready(fn())
  wall = {name: [] for name in arms}
  cpu = {name: [] for name in arms}
  for _ in range(rounds):
    for name, fn in arms.items():
      start, start_cpu = time.perf_counter(), time.process_time()
      jax.block_until_ready(fn())
      wall[name].append(time.perf_counter() - start)
      cpu[name].append(time.process_time() - start_cpu)
  return wall, cpu


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


def make_dense_only(steps: int) -> Callable:
  """Build `train(params, x, upstream)`: `steps` plain gradient steps of linear MLPs, vmapped.

  Each member's loss is `sum(upstream * mlp(x))` for a linear MLP with the
  weight matrices `params`, so a step is only the forward products and the
  products of the input and weight gradients, with no activation, softmax,
  sampling or optimizer state.
  """

  def member(params, x, upstream):
    def loss(params):
      h = x
      for w in params:
        h = h @ w
      return jnp.sum(upstream * h)

    def step(params, _):
      grads = jax.grad(loss)(params)
      return [w - 1e-6 * g for w, g in zip(params, grads)], None

    return jax.lax.scan(step, params, None, length=steps)[0]

  return jax.vmap(member)


def _dense_only_arm(members: int, steps: int, width: int, depth: int, batch_size: int,
                    mesh) -> tuple[Callable, float]:
  """Return a call of the sharded dense-only scan and its FLOP count from XLA's cost analysis."""
  keys = jax.random.split(jax.random.key(4), depth + 3)
  sizes = [64] + [width] * depth + [10]
  params = [jax.random.normal(keys[i], (members, sizes[i], sizes[i + 1])) * 0.1
            for i in range(depth + 1)]
  x = jax.random.normal(keys[-2], (members, batch_size, 64))
  upstream = jax.random.normal(keys[-1], (members, batch_size, 10))
  # Unsharded arguments, because the cost analysis of a sharded program counts one device's part.
  flops = steps * _flops(jax.jit(make_dense_only(1)).lower(params, x, upstream).compile())
  padded = population.padded_size(members, mesh.devices.size)
  args = population.shard_leading(population.pad_leading((params, x, upstream), padded), mesh)
  train = jax.jit(make_dense_only(steps))
  return lambda: train(*args), flops


def run_benchmark(members: int, steps: int, width: int, depth: int, batch_size: int,
                  matmul_size: int, repeats: int,
                  uniform_batches: bool = False) -> dict[str, float]:
  """Run all timings and the FLOP-rate comparisons; return the figures as a dict."""
  load_before = os.getloadavg()[0]
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

  # The vmapped call shards the population over all devices.
  mesh = population.population_mesh()
  sharded_state, _ = population.distribute(state, mesh)
  padded = sharded_state.fitness.shape[0]
  sharded_keys = population.shard_leading(population.pad_leading(keys, padded), mesh)
  vmapped = jax.jit(population.make_population_trainer(rule, steps, eval_split="valid"))

  def vmapped_call():
    return vmapped(sharded_state.params, sharded_state.opt_state, sharded_state.meta_params,
                   task, sharded_keys, 0)

  # The loops call one member's scan per member: on the first device, or spread over all.
  single = jax.jit(population.make_member_trainer(rule, steps, eval_split="valid"))
  devices = jax.devices()

  def member_args(device_of):
    args = [jax.device_put((jax.tree.map(lambda x, i=i: x[i], state.params),
                            jax.tree.map(lambda x, i=i: x[i], state.opt_state), keys[i]),
                           device_of(i))
            for i in range(members)]
    return jax.block_until_ready(args)

  first_device_args = member_args(lambda i: devices[0])
  spread_args = member_args(lambda i: devices[i % len(devices)])

  def loop(args):
    return [single(params, opt_state, {}, task, key, 0) for params, opt_state, key in args]

  a = jax.random.normal(jax.random.key(2), (matmul_size, matmul_size), jnp.float32)
  b = jax.random.normal(jax.random.key(3), (matmul_size, matmul_size), jnp.float32)
  matmul = jax.jit(jnp.matmul)
  dense_only, dense_only_flops = _dense_only_arm(members, steps, width, depth, batch_size, mesh)

  times, cpu_times = time_rounds({
      "vmapped": vmapped_call,
      "loop": lambda: loop(first_device_args),
      "loop_spread": lambda: loop(spread_args),
      "matmul": lambda: matmul(a, b),
      "dense_only": dense_only,
  }, repeats)
  median = {name: statistics.median(values) for name, values in times.items()}
  median_cpu = {name: statistics.median(values) for name, values in cpu_times.items()}

  flops = _population_flops(rule, task, state, keys, steps)
  matmul_rate = 2.0 * matmul_size**3 / median["matmul"]
  dense = dense_flops(members, steps, width, depth, batch_size,
                      num_eval=task.data.split("valid")[0].shape[0])

  return {
      "members": members, "steps": steps, "width": width, "depth": depth,
      "batch_size": batch_size, "uniform_batches": uniform_batches,
      "devices": jax.device_count(), "padded_members": padded,
      "backend": jax.default_backend(), "repeats": repeats,
      "load_average_before": load_before, "load_average_after": os.getloadavg()[0],
      "vmapped_seconds": median["vmapped"], "loop_seconds": median["loop"],
      "loop_spread_seconds": median["loop_spread"],
      "ratio": median["loop"] / median["vmapped"],
      "ratio_spread_loop": median["loop_spread"] / median["vmapped"],
      "vmapped_flops": flops,
      "vmapped_gflops_per_second": flops / median["vmapped"] / 1e9,
      "matmul_size": matmul_size, "matmul_gflops_per_second": matmul_rate / 1e9,
      "flop_fraction": flops / median["vmapped"] / matmul_rate,
      "dense_flops": dense, "dense_flop_fraction": dense / median["vmapped"] / matmul_rate,
      "dense_only_flops": dense_only_flops,
      "dense_only_flop_fraction": dense_only_flops / median["dense_only"] / matmul_rate,
      "vmapped_cpu_seconds": median_cpu["vmapped"], "loop_cpu_seconds": median_cpu["loop"],
      "cpu_ratio": median_cpu["loop"] / median_cpu["vmapped"],
      "times_seconds": times, "cpu_times_seconds": cpu_times,
  }


def main(argv):
  del argv
  results = run_benchmark(MEMBERS.value, STEPS.value, WIDTH.value, DEPTH.value,
                          BATCH_SIZE.value, MATMUL_SIZE.value, REPEATS.value,
                          UNIFORM_BATCHES.value)
  cores = len(os.sched_getaffinity(0))
  if results["backend"] == "cpu" and results["devices"] < cores:
    print(f"NOTE: {results['devices']} CPU device(s) for {cores} cores, so the vmapped call "
          "cannot use every core. Set XLA_FLAGS=--xla_force_host_platform_device_count="
          f"{cores} to make one device per core.")
  sampler = "uniform batches" if results["uniform_batches"] else "the task's batches"
  print(f"{results['members']} digits MLPs (width {results['width']}, depth {results['depth']}, "
        f"batch {results['batch_size']}, {sampler}), {results['steps']} Adam steps, "
        f"{results['devices']} {results['backend']} device(s); medians of "
        f"{results['repeats']} rounds, load average {results['load_average_before']:.1f} "
        f"before and {results['load_average_after']:.1f} after:")
  print(f"  one jit(vmap(scan)) call:      {results['vmapped_seconds']:.4f} s")
  print(f"  {results['members']} calls of one member's scan: {results['loop_seconds']:.4f} s "
        f"on one device, {results['loop_spread_seconds']:.4f} s spread over all devices")
  print(f"  ratio (loop / vmapped):        {results['ratio']:.2f}x (target >= 2); "
        f"{results['ratio_spread_loop']:.2f}x against the spread loop")
  print(f"  process CPU time:              {results['vmapped_cpu_seconds']:.4f} s vmapped, "
        f"{results['loop_cpu_seconds']:.4f} s loop on one device "
        f"(ratio {results['cpu_ratio']:.2f}x)")
  print(f"  vmapped call: {results['vmapped_gflops_per_second']:.2f} GFLOP/s; "
        f"{results['matmul_size']}^2 matmul: {results['matmul_gflops_per_second']:.2f} GFLOP/s")
  print(f"  flop_fraction:                 {results['flop_fraction']:.3f} (target >= 0.5; "
        "FLOPs from XLA's cost analysis)")
  print(f"  dense_flop_fraction:           {results['dense_flop_fraction']:.3f} (dense-layer "
        "FLOPs counted by hand)")
  print(f"  dense_only_flop_fraction:      {results['dense_only_flop_fraction']:.3f} (the dense "
        "layers' products alone, same shapes and devices)")
  if OUTPUT.value:
    path = pathlib.Path(OUTPUT.value)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
  app.run(main)
