"""Flags for `jax.distributed.initialize`, so one launcher runs on one host or on many.

A launcher imports this module (which defines the flags) and calls
`initialize_from_flags()` first in its `main`, before any JAX computation.
With the flags unset it does nothing, and the program runs on the local
devices only. On several hosts of a TPU pod or a GPU cluster, every process
gets the same `--coordinator_address` and `--num_processes` and its own
`--process_id`. After that, `jax.devices()` lists the devices of all hosts, so
the population mesh spans them.
"""

from __future__ import annotations

import jax
from absl import flags
from absl import logging

COORDINATOR_ADDRESS = flags.DEFINE_string(
    "coordinator_address", None,
    "host:port of process 0, which coordinates the processes of a multi-host run. Unset for a "
    "single-host run.")
NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Number of processes in a multi-host run, one per host.",
    lower_bound=1)
PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "Index of this process in a multi-host run, from 0 to num_processes - 1.",
    lower_bound=0)


def initialize(coordinator_address: str | None, num_processes: int | None,
               process_id: int | None) -> bool:
  """Join a multi-host run through `jax.distributed.initialize`.

  Returns:
    True when `jax.distributed.initialize` was called, False when all three
    settings are None (a single-host run).

  Raises:
    ValueError: when only some of the settings are given, or `process_id` is
      not below `num_processes`.
  """
  settings = {"coordinator_address": coordinator_address, "num_processes": num_processes,
              "process_id": process_id}
  given = [name for name, value in settings.items() if value is not None]
  if not given:
    return False
  if len(given) != len(settings):
    missing = sorted(set(settings) - set(given))
    raise ValueError(
        f"A multi-host run needs --coordinator_address, --num_processes and --process_id "
        f"together; missing {', '.join('--' + name for name in missing)}.")
  if not 0 <= process_id < num_processes:
    raise ValueError(
        f"Invalid --process_id={process_id}: expected a value in [0, {num_processes - 1}] for "
        f"--num_processes={num_processes}.")
  logging.info("Joining a run of %d processes as process %d, coordinator %s.", num_processes,
               process_id, coordinator_address)
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)
  logging.info("Process %d sees %d local and %d global devices.", jax.process_index(),
               jax.local_device_count(), jax.device_count())
  return True


def initialize_from_flags() -> bool:
  """Call `initialize` with the parsed flags; a no-op returning False when they are unset."""
  return initialize(COORDINATOR_ADDRESS.value, NUM_PROCESSES.value, PROCESS_ID.value)
