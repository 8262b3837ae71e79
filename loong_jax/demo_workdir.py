"""The demo's run directory across invocations: a changed config never reuses stale steps.

`python -m loong_jax.demo --workdir DIR` resumes DIR. Its finished steps were computed from the
config saved in `DIR/demo_config.json`; when the new command's config differs in a block that a
started step read (`FIRST_STEP`), resuming would silently mix two configs (e.g. LM stages trained
on tokens of another world), so `prepare` refuses and says which keys changed and which step to
redo from. `--from_step=STEP` redoes STEP and every later one with the new config: their outputs
(`OUTPUTS`) and marks are moved, not deleted, to `DIR/replaced/<time>/`, and the steps before it
are kept as they are (so one tokenizer can serve several LM recipes:
`--from_step=lm_stage1 --config.lm.seed=2`).
"""

from __future__ import annotations

import json
import os
import shutil
import time

import ml_collections

from loong_jax.eval.report import flatten

# The config block each step reads first: a change there invalidates that step and every later
# one ('variant' picks the prompts and the quick settings of every block).
FIRST_STEP = {"variant": "tokenizer", "data": "tokenizer", "tokenizer": "tokenizer",
              "text": "text", "pretokenize": "pretokenize", "lm": "lm_stage1",
              "generate": "generate", "evaluate": "evaluate"}
# What each step writes in the run directory (loong_jax/demo_steps.py, module docstring).
OUTPUTS = {
    "tokenizer": ("tokenizer", "tokenizer_eval.npz", "tokenizer_eval.json"),
    "text": ("text.model", "text.vocab"),
    "pretokenize": ("tokens",),
    "lm_stage1": (os.path.join("lm", "stage1"),),
    "lm_stage2": (os.path.join("lm", "stage2"),),
    "lm_stage3": (os.path.join("lm", "stage3"),),
    "generate": ("generated",),
    "evaluate": ("lm_eval.json", "report.json", "long_video.md", "long_video.png"),
    "plots": ("lm_loss.png", "frame_loss.png", "reconstruction.png"),
}
ORDER = tuple(OUTPUTS)  # the demo's steps in order (demo_steps.STEPS)
CONFIG_FILE = "demo_config.json"
_ABSENT = "<absent>"


class ConfigChanged(ValueError):
  """The command's config differs from the one the run's started steps used."""


def write_json(path: str, value):
  """Atomically: a crash leaves the old file or the new one, never half of one."""
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(value, f, indent=1)
  os.replace(tmp, path)


def read_json(path: str, default):
  """`path`'s JSON value, or `default` when there is no such file."""
  if not os.path.exists(path):
    return default
  with open(path) as f:
    return json.load(f)


def load_run_config(run: str) -> ml_collections.ConfigDict:
  """The config a run's steps use (`RUN/demo_config.json`, saved by `prepare`)."""
  return ml_collections.ConfigDict(read_json(os.path.join(run, CONFIG_FILE), None))


def _same_file(value):
  """A config file spec inside a clone (`/any/clone/configs/x.py:variant`) as the part from
  `configs/` on, so that a run made by another clone of the repository compares equal."""
  if isinstance(value, str) and os.path.isabs(value) and f"{os.sep}configs{os.sep}" in value:
    return value[value.rindex(f"{os.sep}configs{os.sep}") + 1:]
  return value


def changes(old: dict, new: dict) -> dict[str, tuple]:
  """`{dotted key: (old value, new value)}` of the keys that differ (`<absent>` for a missing
  one), both sides compared as JSON (a tuple equals the list it is saved as) and config file
  paths from `configs/` on (`_same_file`)."""
  old, new = flatten(json.loads(json.dumps(old))), flatten(json.loads(json.dumps(new)))
  return {key: (old.get(key, _ABSENT), new.get(key, _ABSENT))
          for key in sorted(old.keys() | new.keys())
          if _same_file(old.get(key, _ABSENT)) != _same_file(new.get(key, _ABSENT))}


def first_step(key: str, steps: tuple[str, ...]) -> str | None:
  """The earliest of `steps` that reads the dotted config `key`: its block's `FIRST_STEP` or
  the first of `steps` after it; None when none of `steps` does (`steps[0]` for a block that
  `FIRST_STEP` does not name)."""
  step = FIRST_STEP.get(key.split(".")[0])
  if step is None or step not in ORDER:
    return steps[0]
  later = ORDER[ORDER.index(step):]
  return next((s for s in steps if s in later), None)


def started(workdir: str, steps: tuple[str, ...]) -> list[str]:
  """The steps that finished or began (a `.done` or `.seconds` mark) in `workdir`."""
  marks = os.path.join(workdir, "steps")
  return [s for s in steps
          if any(os.path.exists(os.path.join(marks, s + ext)) for ext in (".done", ".seconds"))]


def move_aside(workdir: str, names: list[str]) -> str | None:
  """Move the outputs and marks of the steps `names` to `workdir/replaced/<time>/` (the same
  relative paths); drop their entries from timings.json. Returns the folder (None: nothing
  to move)."""
  stamp = time.strftime("%Y%m%d-%H%M%S")
  dest = os.path.join(workdir, "replaced", stamp)
  suffix = 1
  while os.path.exists(dest):
    suffix += 1
    dest = os.path.join(workdir, "replaced", f"{stamp}-{suffix}")
  paths = [p for name in names for p in OUTPUTS.get(name, ())]
  paths += [os.path.join("steps", name + ext) for name in names for ext in (".done", ".seconds")]
  moved = False
  for rel in paths:
    src = os.path.join(workdir, rel)
    if os.path.lexists(src):
      os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
      shutil.move(src, os.path.join(dest, rel))
      moved = True
  timings_path = os.path.join(workdir, "timings.json")
  timings = read_json(timings_path, {})
  kept = {k: v for k, v in timings.items() if k not in names and k != "total"}
  if kept != timings:
    write_json(timings_path, kept)
  return dest if moved else None


def _read_by(step: str | None, these: list[str], steps: tuple[str, ...]) -> bool:
  """Whether one of `these` steps comes at or after `step` (so it read what `step` reads)."""
  return step is not None and any(steps.index(s) >= steps.index(step) for s in these)


def _show(value) -> str:
  text = json.dumps(value)
  return text if len(text) <= 60 else text[:57] + "..."


def prepare(config_json: str, workdir: str, steps: tuple[str, ...],
            from_step: str | None = None) -> list[str]:
  """Check the run directory against the command's config (JSON text) and save the config.

  Raises `ConfigChanged` when a key differs in a block read by a step that already started
  (unless `from_step` is given); with `from_step`, moves that step's and every later step's
  outputs aside first (`move_aside`). Returns the lines to print (what was moved, which
  changed keys the kept steps did not see).
  """
  if from_step is not None and from_step not in steps:
    raise ValueError(f"--from_step={from_step!r} is not a step; steps: {list(steps)}")
  os.makedirs(os.path.join(workdir, "steps"), exist_ok=True)
  path = os.path.join(workdir, CONFIG_FILE)
  new = json.loads(config_json)
  old = read_json(path, None)
  done = started(workdir, steps)
  diff = changes(old, new) if old is not None else {}
  notes = []
  if from_step is not None:
    redo = steps[steps.index(from_step):]
    dest = move_aside(workdir, [s for s in steps if s in redo])
    if dest:
      notes.append(f"demo: steps from {from_step} on will run again; their earlier outputs "
                   f"are in {dest}")
    kept = [s for s in done if s not in redo]
    unseen = [k for k in diff if _read_by(first_step(k, steps), kept, steps)]
    if unseen:
      notes.append("demo: kept steps " + ", ".join(kept) + " were made with the earlier "
                   "value of " + ", ".join(f"{k}={_show(diff[k][0])}" for k in unseen))
  else:
    stale = {k: v for k, v in diff.items() if _read_by(first_step(k, steps), done, steps)}
    if stale:
      redo_from = min((first_step(k, steps) for k in stale), key=steps.index)
      lines = "\n".join(f"  {k}: {_show(a)} -> {_show(b)}" for k, (a, b) in stale.items())
      raise ConfigChanged(
          f"{workdir} holds steps made with another config ({CONFIG_FILE}):\n{lines}\n"
          f"Re-run with --from_step={redo_from} to redo that step and the later ones with the "
          f"new config (their outputs are moved to {os.path.join(workdir, 'replaced')}), or "
          "use a new --workdir.")
  write_json(path, new)
  return notes
