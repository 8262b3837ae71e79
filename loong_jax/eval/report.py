"""`report.json`: the run's measured figures as nested dicts of numbers.

Keys are written here in dotted form (`tokenizer.psnr` is `report["tokenizer"]["psnr"]`). Every
leaf is a finite number (bool is not a number here) or a list of them; other keys than the
required ones are welcome. The required keys (issue 7):

- `tokenizer.psnr`, `tokenizer.ssim`, `tokenizer.codebook_usage`
- `probe.accuracy`
- `faithfulness.{color,shape,direction}.{seen,heldout}`
- `long_video.presence.{reencode,no_reencode}`: lists, one value per 10-second window
- `timings.<step>_s`: at least one, every key under `timings` ending in `_s`
"""

from __future__ import annotations

import json
import math
import os

REQUIRED = (
    "tokenizer.psnr", "tokenizer.ssim", "tokenizer.codebook_usage", "probe.accuracy",
    *(f"faithfulness.{a}.{s}" for a in ("color", "shape", "direction")
      for s in ("seen", "heldout")),
    "long_video.presence.reencode", "long_video.presence.no_reencode",
)
LIST_KEYS = ("long_video.presence.reencode", "long_video.presence.no_reencode")


def set_key(report: dict, key: str, value):
  """`report[a][b][c] = value` for `key = "a.b.c"`, making the inner dicts."""
  *parents, leaf = key.split(".")
  node = report
  for part in parents:
    node = node.setdefault(part, {})
  node[leaf] = value


def get_key(report: dict, key: str):
  """`report[a][b][c]` for `key = "a.b.c"`; KeyError naming the key if absent."""
  node = report
  for part in key.split("."):
    if not isinstance(node, dict) or part not in node:
      raise KeyError(key)
    node = node[part]
  return node


def _is_number(value) -> bool:
  return (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value))


def flatten(report: dict, prefix: str = "") -> dict:
  """`{"a.b.c": leaf}` for every leaf of a nested dict."""
  out = {}
  for name, value in report.items():
    key = f"{prefix}{name}"
    if isinstance(value, dict):
      out.update(flatten(value, key + "."))
    else:
      out[key] = value
  return out


def missing(report: dict) -> list[str]:
  """The required keys absent from `report` (timings: when it has no `timings.*_s`)."""
  absent = []
  for key in REQUIRED:
    try:
      get_key(report, key)
    except KeyError:
      absent.append(key)
  if not any(k.startswith("timings.") for k in flatten(report)):
    absent.append("timings.<step>_s")
  return absent


def validate(report: dict, require_all: bool = True, source: str = "report.json"):
  """Check types (always) and presence of the required keys (when `require_all`).

  Raises:
    ValueError: naming `source` and the first offending key: a leaf that is not a finite
      number or a list of them, a timing not named `*_s`, a window key that is not a list, or
      (with `require_all`) a missing required key.
  """
  for key, value in flatten(report).items():
    values = value if isinstance(value, list) else [value]
    bad = [v for v in values if not _is_number(v)]
    if bad:
      raise ValueError(f"{source}: {key} = {bad[0]!r} is not a finite number")
    if key.startswith("timings.") and not key.endswith("_s"):
      raise ValueError(f"{source}: {key}: timings are seconds, named <step>_s")
  for key in LIST_KEYS:
    try:
      value = get_key(report, key)
    except KeyError:
      continue
    if not isinstance(value, list) or not value:
      raise ValueError(f"{source}: {key} must be a non-empty list, one value per window")
  if require_all:
    absent = missing(report)
    if absent:
      raise ValueError(f"{source}: missing {absent[0]}" + (
          f" (and {len(absent) - 1} more: {absent[1:]})" if len(absent) > 1 else ""))


def write(path: str, report: dict):
  """Validate the types, then write `report` as indented JSON (numbers stay numbers)."""
  validate(report, require_all=False, source=path)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    json.dump(report, f, indent=2, sort_keys=True)
    f.write("\n")


def read(path: str, require_all: bool = True) -> dict:
  """Load and validate a `report.json`."""
  with open(path) as f:
    report = json.load(f)
  validate(report, require_all=require_all, source=path)
  return report
