"""Test-wide set-up: 8 fake CPU devices (before JAX initialises), float32 matmuls, and compiles
kept cheap.

The suite is compile-bound (tiny models, a few steps each), so two settings cut its time without
changing what any test checks:
- `--xla_backend_optimization_level=0`: LLVM's optimisation of the compiled CPU code is skipped
  (about half of a tokenizer step's compile time). XLA's own HLO passes still run, and LLVM does
  not reassociate float arithmetic at any level, so results are the same IEEE operations; every
  test compares runs compiled under the same flags.
- a compilation cache shared by the session (its xdist workers and the subprocesses they start):
  a test that trains, stops and resumes builds the same step functions several times, and each
  repeat loads the executable instead of compiling it again. The directory is new for every
  session, so a run on a fresh machine is timed as such. Remove the set-up from XLA_FLAGS /
  JAX_COMPILATION_CACHE_DIR in the environment to run the suite without them.
"""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8 "
                      "--xla_backend_optimization_level=0")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ and "PYTEST_XDIST_WORKER" not in os.environ:
  # The controlling process makes the directory; xdist workers and subprocesses inherit it.
  _cache = tempfile.mkdtemp(prefix="loong_jax_test_compile_cache_")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
# Cache every compile that takes a measurable time (the default, 1 s, skips most tiny ones).
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
