"""The main job on one CPU machine: text -> minute-long video, trained and evaluated end to end.

  python -m loong_jax.demo --workdir runs/demo                                  # ~20 min, 2 cores
  python -m loong_jax.demo --workdir runs/quick --config configs/demo_cpu.py:quick   # ~3 min
  python -m loong_jax.demo --workdir runs/oracle --config configs/demo_cpu.py:oracle  # LM alone
  python -m loong_jax.demo --workdir runs/base --config configs/demo_cpu.py:baseline  # ~18 min

On the built-in dataset: train the video tokenizer, train the text tokenizer, pre-tokenize
images and 17-/65-frame clips, train the LM through curriculum stages 1 -> 2 -> 3, generate a
60-second video per prompt with and without re-encoding, evaluate (`loong_jax.evaluate`:
report.json) and draw the plots. Steps and outputs: `loong_jax/demo_steps.py`.

Resumable: a finished step leaves `WORKDIR/steps/<step>.done` and is skipped when the command is
run again; an interrupted step (Ctrl-C, a killed job) resumes from its own checkpoints; the steps
share XLA's compilation cache in `WORKDIR/compile_cache` (`step_env`). Wall time
per step, summed over interrupted attempts, goes to `WORKDIR/timings.json` and report.json
(`timings.<step>_s`). A changed config is checked against the run's (`loong_jax/demo_workdir.py`):
`--from_step=STEP` redoes STEP and the later steps with it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from absl import flags

from loong_jax import cli, demo_workdir
from loong_jax.demo_steps import REPO, STEPS

# Flag holders, created by define_flags() when the module runs as a program.
_CONFIG = _WORKDIR = _FROM_STEP = None


def define_flags():
  """Define this entry point's flags (only when run as a program, so that modules that
  define flags of the same names can be imported side by side, e.g. by tests)."""
  global _CONFIG, _WORKDIR, _FROM_STEP
  _CONFIG = cli.define_config_flag(os.path.join(REPO, "configs", "demo_cpu.py"))
  _WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (created; re-run to resume).")
  _FROM_STEP = flags.DEFINE_enum(
      "from_step", None, list(STEPS), "Redo this step and every later one with this command's "
      "config, keeping the earlier steps (their old outputs go to WORKDIR/replaced/<time>/); "
      "needed when the config changed in a block that a finished step read.")

StepRunner = Callable[[str, str], None]


class StepFailed(RuntimeError):
  """A step's process exited with an error."""


# XLA's persistent compilation cache of a run (unless the environment names one): the steps are
# separate processes that compile some of the same programs (the codec in pre-tokenization,
# generation and evaluation; the LM decoder in generation and evaluation), and a resumed step
# loads what the interrupted one compiled. Compiles under this many seconds are not cached.
COMPILE_CACHE_DIR = "compile_cache"
COMPILE_CACHE_MIN_SECS = "0.2"


def step_env(workdir: str) -> dict[str, str]:
  """The environment of a step process: this one's, the repository on PYTHONPATH, and the run's
  compilation cache (`WORKDIR/compile_cache`) unless JAX_COMPILATION_CACHE_DIR is set."""
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      p for p in (REPO, os.environ.get("PYTHONPATH", "")) if p))
  if "JAX_COMPILATION_CACHE_DIR" not in env:
    env["JAX_COMPILATION_CACHE_DIR"] = os.path.join(workdir, COMPILE_CACHE_DIR)
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", COMPILE_CACHE_MIN_SECS)
  return env


def run_in_child(name: str, workdir: str):
  """`python -m loong_jax.demo_steps NAME WORKDIR` (environment: `step_env`); Ctrl-C is passed
  on and waited for, so the step stops where it can resume."""
  env = step_env(workdir)
  proc = subprocess.Popen([sys.executable, "-m", "loong_jax.demo_steps", name, workdir], env=env)
  try:
    code = proc.wait()
  except KeyboardInterrupt:
    proc.send_signal(signal.SIGINT)
    proc.wait()
    raise
  if code:
    raise StepFailed(f"demo step {name!r} failed (exit status {code}); fix the cause and re-run "
                     "the same command to resume")


def run_pipeline(config, workdir: str, steps=tuple(STEPS),
                 runner: StepRunner = run_in_child,
                 from_step: str | None = None) -> dict[str, float]:
  """Run the steps not yet done, in order; returns `{step: seconds}` (timings.json).

  Raises `demo_workdir.ConfigChanged` when `config` differs from the one the run's started
  steps used, unless `from_step` says which step to redo from (`demo_workdir.prepare`).
  """
  marks = os.path.join(workdir, "steps")
  for note in demo_workdir.prepare(config.to_json(indent=1), workdir, tuple(steps), from_step):
    print(note, flush=True)
  timings_path = os.path.join(workdir, "timings.json")
  timings = demo_workdir.read_json(timings_path, {})
  began = time.time()
  for number, name in enumerate(steps, 1):
    head = f"demo [{number}/{len(steps)}] {name}"
    done_mark, spent_path = (os.path.join(marks, f"{name}{ext}") for ext in (".done", ".seconds"))
    if os.path.exists(done_mark):
      print(f"{head}: done in an earlier run ({timings.get(name, 0.0):.0f} s), skipped",
            flush=True)
      continue
    spent = demo_workdir.read_json(spent_path, 0.0)
    print(f"{head}: {'resuming' if spent else 'starting'}", flush=True)
    start = time.time()
    try:
      runner(name, workdir)
    finally:
      spent += time.time() - start
      demo_workdir.write_json(spent_path, spent)
    timings[name] = spent
    demo_workdir.write_json(timings_path, timings)
    demo_workdir.write_json(done_mark, {"seconds": spent, "finished": time.time()})
    print(f"{head}: finished in {spent:.0f} s", flush=True)
  timings["total"] = sum(v for k, v in timings.items() if k != "total")
  demo_workdir.write_json(timings_path, timings)
  print(f"demo: all {len(steps)} steps done ({time.time() - began:.0f} s in this run, "
        f"{timings['total']:.0f} s in all)", flush=True)
  return timings


def add_timings(workdir: str, timings: dict[str, float]):
  """Put every step's time (evaluation and plots included) into report.json."""
  from loong_jax.eval import report  # noqa: PLC0415 -- keeps the demo's start-up light

  path = os.path.join(workdir, "report.json")
  result = demo_workdir.read_json(path, {})
  for name, seconds in timings.items():
    report.set_key(result, f"timings.{name}_s", float(seconds))
  report.write(path, result)
  absent = report.missing(result)
  print(f"demo: {path}" + (f" (lacks {absent})" if absent else " (every required key)"),
        flush=True)


def main(argv):
  del argv
  if not _WORKDIR.value:
    raise SystemExit("error: --workdir is required")
  workdir = os.path.abspath(_WORKDIR.value)
  # Ctrl-C (SIGINT) interrupts resumably even when inherited as ignored (a background job of a
  # non-interactive shell, e.g. some CI runners). Step processes inherit a handled signal as the
  # default one, so they get Python's handler too.
  signal.signal(signal.SIGINT, signal.default_int_handler)
  try:
    timings = run_pipeline(_CONFIG.value, workdir, from_step=_FROM_STEP.value)
  except KeyboardInterrupt:
    raise SystemExit("demo: interrupted; run the same command again to resume") from None
  except (StepFailed, demo_workdir.ConfigChanged) as e:
    raise SystemExit(f"error: {e}") from None
  add_timings(workdir, timings)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
