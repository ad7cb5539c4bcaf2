"""Test-wide settings: XLA on the CPU, and compiled programs shared through an on-disk cache."""

import os
import pathlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")

# The experiments' end-to-end tests run the same programs several times (a
# first run, a killed run, its resumption, a rerun), each in a new process.
# With XLA's persistent compilation cache the later processes load what the
# first compiled instead of compiling it again. JAX keys each entry on the
# program, its compile options, the XLA flags and the jaxlib and backend
# versions (jax/_src/cache_key.py), so a loaded program is the one a compile
# would give.
# Subprocesses inherit these variables.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      str(pathlib.Path(__file__).resolve().parents[1] / ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
