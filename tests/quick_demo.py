"""The quick demo run shared by the tests that need a finished run (`interrupted_quick_demo`,
registered in conftest.py so that one session runs it once)."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import filelock
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


def _run_interrupted(root) -> dict:
  """The quick demo interrupted with SIGINT in LM stage 2, then re-run to the end, in
  `root/run`: `{workdir, first run's output, its return code, the re-run's return code, stdout,
  stderr}`."""
  root.mkdir(parents=True, exist_ok=True)
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
  return dict(workdir=str(workdir), first=log_path.read_text(), first_rc=proc.returncode,
              rerun_rc=rerun.returncode, rerun_stdout=rerun.stdout, rerun_stderr=rerun.stderr)


@pytest.fixture(scope="session")
def interrupted_quick_demo(tmp_path_factory, worker_id):
  """The quick demo interrupted with SIGINT in LM stage 2, then re-run to the end: one ~3-minute
  run per test session, shared by every test that takes this fixture.

  Under xdist each worker is its own session, and the `quick_demo` xdist group (--dist
  loadgroup) does not keep the tests on one worker with pytest 9 and xdist 3.8 (xdist renames
  the nodeid through an attribute pytest 9 no longer reads): the first worker to ask runs the
  demo under a file lock in the workers' shared temporary directory, the others wait for it
  and read its result (pytest-xdist's documented pattern for once-per-session fixtures).

  Returns `(workdir, first run's output, first run's return code, the re-run)`.
  """
  shared = tmp_path_factory.getbasetemp()
  if worker_id != "master":   # xdist: the directory common to this session's workers
    shared = shared.parent
  path = shared / "quick_demo.json"
  with filelock.FileLock(str(path) + ".lock"):
    if not path.is_file():
      try:
        result = _run_interrupted(shared / "quick_demo")
      except BaseException as e:   # the waiting workers fail with it instead of running again
        result = dict(error=f"{type(e).__name__}: {e}")
        raise
      finally:
        path.write_text(json.dumps(result))
    result = json.loads(path.read_text())
  if "error" in result:
    pytest.fail(f"the session's quick demo run failed: {result['error']}")
  rerun = subprocess.CompletedProcess(demo_command(result["workdir"]), result["rerun_rc"],
                                      result["rerun_stdout"], result["rerun_stderr"])
  return pathlib.Path(result["workdir"]), result["first"], result["first_rc"], rerun
