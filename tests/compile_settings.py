"""How the suite compiles: tests/conftest.py applies these settings to the test processes, and
tests that start Python subprocesses with an environment of their own add `subprocess_env()`.

The suite is compile-bound (tiny models, a few steps each), so two settings cut its time without
changing what any test checks:
- `--xla_backend_optimization_level=0`: LLVM's optimisation of the compiled CPU code is skipped
  (the 8-vs-1-device test of tests/tokenizer/test_tokenizer_step.py: 53 -> 29 s). XLA's own HLO
  passes still run; the generated code is slower, which only tests that run many steps of a
  bigger model notice. Results may differ from the default level's in the
  last bits (where LLVM forms fused multiply-adds); tests compare runs compiled under the same
  flags, or a reference within a tolerance far above float32 rounding.
- a compilation cache shared by the session (its xdist workers and the subprocesses they start):
  a test that trains, stops and resumes builds the same step functions several times, and each
  repeat loads the executable instead of compiling it again. The directory is new for every
  session (made by the controlling process, removed when it exits), so a run on a fresh machine
  is timed as such. Set XLA_FLAGS / JAX_COMPILATION_CACHE_DIR to run the suite without them.
"""

import atexit
import os
import shutil
import tempfile

FAST_COMPILE_FLAGS = "--xla_backend_optimization_level=0"
CACHE_DIR_VAR = "JAX_COMPILATION_CACHE_DIR"
# Cache every compile that takes a measurable time (JAX's default, 1 s, skips most tiny ones).
MIN_COMPILE_SECS_VAR, MIN_COMPILE_SECS = "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2"


def apply(device_count: int):
  """Sets this process's environment before JAX initialises: `device_count` fake CPU devices,
  the fast-compile flags and the session's compilation cache (unless the environment sets them)."""
  os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count={device_count} "
                        f"{FAST_COMPILE_FLAGS}")
  if CACHE_DIR_VAR not in os.environ and "PYTEST_XDIST_WORKER" not in os.environ:
    cache = tempfile.mkdtemp(prefix="loong_jax_test_compile_cache_")
    os.environ[CACHE_DIR_VAR] = cache
    atexit.register(shutil.rmtree, cache, ignore_errors=True)
  os.environ.setdefault(MIN_COMPILE_SECS_VAR, MIN_COMPILE_SECS)


def subprocess_env() -> dict[str, str]:
  """The compile settings for a subprocess's own environment (its device count left to it)."""
  env = {"XLA_FLAGS": FAST_COMPILE_FLAGS, MIN_COMPILE_SECS_VAR: MIN_COMPILE_SECS}
  if CACHE_DIR_VAR in os.environ:
    env[CACHE_DIR_VAR] = os.environ[CACHE_DIR_VAR]
  return env
