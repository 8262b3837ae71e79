"""Test-wide set-up: 8 fake CPU devices (before JAX initialises), float32 matmuls, and compiles
kept cheap (tests/compile_settings.py)."""

import os

from tests import compile_settings

compile_settings.apply(device_count=8)
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
from tests.quick_demo import interrupted_quick_demo  # noqa: E402, F401 -- one run per session
