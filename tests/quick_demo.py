"""The quick demo run shared by the tests that need a finished run (`interrupted_quick_demo`,
registered in conftest.py so that one session runs it once)."""

import os
import signal
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = os.path.join(REPO, "configs", "demo_cpu.py") + ":quick"


def demo_command(workdir):
  return [sys.executable, "-m", "loong_jax.demo", "--workdir", str(workdir), "--config", QUICK]


def user_env(**extra) -> dict:
  """The environment a user runs the demo in: the machine's real devices, not the test suite's
  8 fake ones (conftest.py), which the demo's batch sizes need not divide, and XLA's default
  optimisation (the demo trains for minutes). The session's compilation cache stays: the re-run
  after the interruption loads what the first run compiled (tests/compile_settings.py)."""
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  return dict(env, **extra)


@pytest.fixture(scope="session")
def interrupted_quick_demo(tmp_path_factory):
  """The quick demo interrupted with SIGINT in LM stage 2, then re-run to the end (one ~3-minute
  run per session, shared by the tests of the `quick_demo` xdist group).

  Returns `(workdir, first run's output, first run's return code, the re-run)`.
  """
  root = tmp_path_factory.mktemp("quick_demo")
  workdir, log_path = root / "run", root / "first.log"
  with open(log_path, "w") as log:
    # Started with SIGINT ignored, as a background job of a non-interactive shell is: Ctrl-C
    # must still interrupt the demo resumably.
    proc = subprocess.Popen(demo_command(workdir), cwd=REPO, env=user_env(), stdout=log,
                            stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    stage2 = workdir / "lm" / "stage2" / "checkpoints"
    deadline = time.time() + 1500
    # A finished orbax step is a directory named by its number (in-progress ones carry a suffix).
    while proc.poll() is None and not any(
        name.isdigit() for name in (os.listdir(stage2) if stage2.exists() else ())):
      assert time.time() < deadline, "stage 2 never wrote a checkpoint"
      time.sleep(0.5)
    assert proc.poll() is None, log_path.read_text()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=300)
  rerun = subprocess.run(demo_command(workdir), cwd=REPO, env=user_env(), capture_output=True,
                         text=True, timeout=1500)
  return workdir, log_path.read_text(), proc.returncode, rerun
