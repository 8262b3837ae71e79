"""Test-wide set-up: 8 fake CPU devices (before JAX initialises), float32 matmuls, and compiles
kept cheap (tests/compile_settings.py)."""

import os

from tests import compile_settings

compile_settings.apply(device_count=8)
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
from tests.quick_demo import interrupted_quick_demo  # noqa: E402, F401 -- one run per session


def pytest_collection_modifyitems(config, items):
  """The first test that needs the quick-demo run (tests/quick_demo.py: minutes) goes first, the
  others that read it last: under xdist one worker runs the demo while the other works through
  the suite, and the readers find it finished instead of waiting on its lock (with all three at
  the end, the last ~5 minutes ran the demo on one worker alone; the whole suite's time on the
  2-core host did not measurably change: README, the test-suite paragraph)."""
  del config
  users = [item for item in items
           if "interrupted_quick_demo" in getattr(item, "fixturenames", ())]
  if users:
    ids = {id(item) for item in users}
    items[:] = users[:1] + [item for item in items if id(item) not in ids] + users[1:]
