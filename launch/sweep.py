"""Expand a config file's `get_hyper(h)` into one training run per point; run or print them.

Usage (from the repository root):
  python -m launch.sweep --config configs/sweeps/tiny_lr_x_weighting.py --workdir /tmp/sweep
  python -m launch.sweep --config configs/sweeps/tiny_lr_x_weighting.py --workdir /tmp/sweep \
      -- --config.train.steps=5          # extra overrides for every run go after `--`
  python -m launch.sweep --config FILE:variant --workdir gs://bucket/sweep --mode print \
      --target tpu                       # or --target slurm

Each point gets its own workdir `ROOT/NN_key=value,...` (the swept fields' last names). `local`
runs them one after another with `python -m loong_jax.train_lm`, writes the resolved config
(`config.json`) and the run's command (`run.json`) into each workdir before it starts, the run's
output to `train.log`, and at the end `ROOT/summary.md` and `ROOT/summary.json` with each run's
final loss (from its `metrics.jsonl`). `print` prints the commands that submit the runs with
`launch/tpu_pod.sh` or `launch/gpu_slurm.sbatch` instead.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys

from absl import app, flags

from launch import hyper
from loong_jax import cli

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Run:
  """One point of a sweep."""

  name: str                  # the workdir's base name
  point: dict                # {'config.a.b': value} of the swept fields
  overrides: tuple[str, ...]  # `--config.a.b=value` flags for train_lm, extra ones included


def sweep_points(spec: str) -> list[dict]:
  """The points of `get_hyper(h)` in the config file of `spec` (`FILE` or `FILE:variant`)."""
  path = spec.partition(":")[0]
  module_spec = importlib.util.spec_from_file_location("_loong_sweep_config", path)
  if module_spec is None or not os.path.exists(path):
    raise FileNotFoundError(f"--config: no config file at {path!r}")
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, "get_hyper"):
    raise ValueError(f"--config: {path} defines no get_hyper(h) to sweep over")
  points = module.get_hyper(hyper)
  if not points:
    raise ValueError(f"--config: get_hyper in {path} returned no points")
  return points


def _parse_like(current, text: str):
  """`text` as the type of the field's current value, as a `--config.x=text` flag would be."""
  if isinstance(current, bool):
    return text.lower() in ("1", "true", "yes")
  if isinstance(current, int):
    return int(text)
  if isinstance(current, float):
    return float(text)
  return text


def _field(config, key: str, spec: str):
  """`(parent node, leaf name)` of the field `key` (`'config.a.b'`), naming a missing one."""
  if not key.startswith("config."):
    raise ValueError(f"{spec}: sweep field {key!r} must start with 'config.'")
  parts = key.removeprefix("config.").split(".")
  node, walked = config, "config"
  for part in parts:
    if not hasattr(node, "keys") or part not in node:
      known = sorted(node.keys()) if hasattr(node, "keys") else []
      raise ValueError(f"{spec}: sweep field {key}: {walked} has no field {part!r}; "
                       f"known: {known}")
    parent, node, walked = node, node[part], f"{walked}.{part}"
  return parent, parts[-1]


def split_extra(extra: list[str]) -> dict:
  """`['--config.a.b=v', ...]` -> `{'config.a.b': 'v'}`; anything else is an error naming it."""
  out = {}
  for arg in extra:
    match = re.fullmatch(r"--(config(?:\.\w+)+)=(.*)", arg)
    if not match:
      raise ValueError(f"extra argument {arg!r}: only --config.FIELD=VALUE overrides may follow --")
    out[match.group(1)] = match.group(2)
  return out


def _format(value) -> str:
  return repr(value) if isinstance(value, float) else str(value)


def run_name(index: int, point: dict) -> str:
  """`'01_learning_rate=0.003,loss_weighting=uniform'`: index and the swept fields' last names.

  A last name shared by two swept fields falls back to the whole dotted path.
  """
  leaves = [key.rsplit(".", 1)[-1] for key in point]
  labels = [leaf if leaves.count(leaf) == 1 else key.removeprefix("config.")
            for leaf, key in zip(leaves, point)]
  text = ",".join(f"{label}={_format(v)}" for label, v in zip(labels, point.values()))
  return f"{index:02d}_" + re.sub(r"[^A-Za-z0-9_.,=+-]", "-", text)


def expand(spec: str, extra: list[str] | None = None) -> tuple[list[Run], list]:
  """The runs of a sweep and their resolved configs (every override applied and type-checked)."""
  extra_overrides = split_extra(extra or [])
  runs, configs = [], []
  for index, point in enumerate(sweep_points(spec)):
    config = cli.load_config_file(spec)
    for key, value in point.items():
      parent, leaf = _field(config, key, spec)
      parent[leaf] = value
    flags_out = [f"--{key}={_format(value)}" for key, value in point.items()]
    for key, text in extra_overrides.items():
      parent, leaf = _field(config, key, spec)
      parent[leaf] = _parse_like(parent[leaf], text)
      flags_out.append(f"--{key}={text}")
    runs.append(Run(run_name(index, point), dict(point), tuple(flags_out)))
    configs.append(config)
  return runs, configs


def train_command(spec: str, run: Run, workdir: str) -> list[str]:
  """`python -m loong_jax.train_lm ...` for `run`, with the config file's path made absolute."""
  path, sep, variant = spec.partition(":")
  return [sys.executable, "-m", "loong_jax.train_lm", f"--config={os.path.abspath(path)}{sep}"
          f"{variant}", *run.overrides, f"--workdir={workdir}"]


def submit_command(target: str, spec: str, run: Run, workdir: str) -> str:
  """The shell line that submits `run` to a TPU pod (`tpu_pod.sh`) or SLURM (`gpu_slurm.sbatch`)."""
  args = [f"--config={spec}", *run.overrides, f"--workdir={workdir}"]
  if target == "tpu":
    head = ["launch/tpu_pod.sh", "--name", "\"${TPU_NAME}\"", "--zone", "\"${ZONE}\"", "--"]
  else:
    head = ["sbatch", f"--job-name={run.name}", "launch/gpu_slurm.sbatch"]
  return " ".join(h if h.startswith("\"${") else shlex.quote(h) for h in head) + " " + \
      " ".join(shlex.quote(a) for a in args)


def final_metrics(workdir: str) -> dict | None:
  """The last row of `workdir/metrics.jsonl`, or None when there is none."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return None
  rows = [json.loads(line) for line in open(path) if line.strip()]
  return rows[-1] if rows else None


def summarize(root: str, runs: list[Run], returncodes: list[int]) -> list[dict]:
  """Write `root/summary.json` and `root/summary.md` (one row per run: swept values, final loss)."""
  rows = []
  for run, rc in zip(runs, returncodes):
    last = final_metrics(os.path.join(root, run.name)) or {}
    rows.append({"name": run.name, **{k.removeprefix("config."): v for k, v in run.point.items()},
                 "final_step": last.get("step"), "final_loss": last.get("loss"),
                 "returncode": rc})
  with open(os.path.join(root, "summary.json"), "w") as f:
    json.dump(rows, f, indent=1)
  keys = [k for k in rows[0] if k != "name"]
  lines = ["| run | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
  for row in rows:
    cells = [f"{row[k]:.4f}" if k == "final_loss" and row[k] is not None else str(row[k])
             for k in keys]
    lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
  with open(os.path.join(root, "summary.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  return rows


def run_local(spec: str, root: str, runs: list[Run], configs: list) -> list[int]:
  """Run each point with train_lm, one after another; returns their exit codes."""
  returncodes = []
  for run, config in zip(runs, configs):
    workdir = os.path.join(root, run.name)
    os.makedirs(workdir, exist_ok=True)
    command = train_command(spec, run, workdir)
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=1))
    with open(os.path.join(workdir, "run.json"), "w") as f:
      json.dump({"config": spec, "point": run.point, "command": command}, f, indent=1)
    print(f"[{run.name}] {shlex.join(command)}", flush=True)
    with open(os.path.join(workdir, "train.log"), "w") as log:
      rc = subprocess.call(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    last = final_metrics(workdir)
    result = (f"final loss {last['loss']:.4f} at step {last['step']}" if last
              else f"no metrics (see {workdir}/train.log)")
    print(f"[{run.name}] exit {rc}, {result}", flush=True)
    returncodes.append(rc)
  return returncodes


FLAGS = flags.FLAGS


def define_flags():
  """The command line (defined only when run as a program, so the module imports cleanly)."""
  flags.DEFINE_string("config", None, "Config file with get_hyper(h), e.g. FILE:variant.")
  flags.DEFINE_string("workdir", None, "Root directory; one subdirectory per run.")
  flags.DEFINE_enum("mode", "local", ["local", "print"], "Run here, or print submissions.")
  flags.DEFINE_enum("target", "tpu", ["tpu", "slurm"], "Launcher that --mode=print uses.")


def main(argv):
  if not FLAGS.config or not FLAGS.workdir:
    raise SystemExit("error: --config and --workdir are required")
  try:
    runs, configs = expand(FLAGS.config, argv[1:])
  except (ValueError, FileNotFoundError, TypeError) as e:
    raise SystemExit(f"error: {e}") from e
  if FLAGS.mode == "print":
    for run in runs:
      print(submit_command(FLAGS.target, FLAGS.config, run, f"{FLAGS.workdir}/{run.name}"))
    return
  root = os.path.abspath(FLAGS.workdir)
  os.makedirs(root, exist_ok=True)
  returncodes = run_local(FLAGS.config, root, runs, configs)
  summarize(root, runs, returncodes)
  print(open(os.path.join(root, "summary.md")).read(), end="")
  if any(returncodes):
    raise SystemExit(f"{sum(1 for rc in returncodes if rc)} of {len(runs)} runs failed")


if __name__ == "__main__":
  define_flags()
  app.run(main)
