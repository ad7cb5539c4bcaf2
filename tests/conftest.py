"""Test-wide settings: keep XLA to the CPU and to a predictable thread count."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
