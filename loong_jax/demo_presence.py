"""Long-video presence over many prompts, to compare generation settings on a finished demo run.

report.json's `long_video.presence` reads the demo's five minute-long prompts, so each window's
figure is a multiple of 0.2 and the draw of five decides it. Here the faithfulness prompts (half
held-out colour-shape pairs) and the five are generated for `--seconds` each, in one batch, and
every 10-s window is read by the report's own reader (`eval/consistency.py`; the blocks reader
for the oracle codec), split into seen and held-out pairs:

  python -m loong_jax.demo_presence --workdir runs/demo                     # the run's settings
  python -m loong_jax.demo_presence --workdir runs/demo --name short_clips \\
      --set generate.clip_latent_frames=5 --set generate.cond_latent_frames=2

Writes `WORKDIR/presence/<name>.json`: per split, the per-window presence and frames (as
report.json's `long_video`), the count, the settings changed, and the seconds it took. Measured
with it (issue 13, fourteenth round): 17-latent clips instead of 5 took the fourth draw's LM from
0.39-0.33 to 0.78-0.67 (seen) per window over 35 prompts, while the five prompts' figure stayed.
"""

from __future__ import annotations

import ast
import json
import os
import time

import numpy as np
from absl import flags

from loong_jax import cli, demo_codec, demo_prompts, demo_steps, demo_workdir
from loong_jax import generate as generate_lib
from loong_jax.data import video_io
from loong_jax.eval import blocks, consistency

_WORKDIR = _SECONDS = _REENCODE = _SET = _NAME = None
SPLITS = ("seen", "heldout")


def define_flags():
  global _WORKDIR, _SECONDS, _REENCODE, _SET, _NAME
  _WORKDIR = flags.DEFINE_string("workdir", None, "A finished demo run (its LM stage 3).")
  _SECONDS = flags.DEFINE_float("seconds", 60.0, "Length of each video.")
  _REENCODE = flags.DEFINE_bool("reencode", True, "Video-token re-encoding between clips.")
  _SET = flags.DEFINE_multi_string("set", [], "generate.KEY=VALUE (a Python literal): a "
                                   "generation setting other than the run's.")
  _NAME = flags.DEFINE_string("name", "run", "Output name: WORKDIR/presence/<name>.json.")


def apply_settings(config, settings: list[str]) -> dict:
  """Set each `generate.KEY=VALUE` on `config` (a known key; VALUE a Python literal) and return
  `{key: value}`."""
  out = {}
  for item in settings:
    key, sep, text = item.partition("=")
    block, _, name = key.partition(".")
    if not sep or block != "generate" or name not in config.generate:
      raise ValueError(f"--set {item!r}: expected generate.KEY=VALUE with KEY one of "
                       f"{sorted(config.generate.keys())}")
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as e:
      raise ValueError(f"--set {item!r}: {text!r} is not a Python literal") from e
    config.generate[name] = value
    out[key] = value
  return out


def summarize(rows: list[tuple[str, list[dict]]]) -> dict:
  """`[(split, window checks of one video)]` -> per split `{"presence": [per window],
  "frames": [...], "count": n}` (window k averages the videos that have one)."""
  out = {}
  for split in SPLITS:
    videos = [checks for s, checks in rows if s == split]
    if not videos:
      continue
    windows = max(len(v) for v in videos)
    out[split] = {key: [float(np.mean([v[k][key] for v in videos if len(v) > k]))
                        for k in range(windows)] for key in ("presence", "frames")}
    out[split]["count"] = len(videos)
  return out


def measure(run: str, seconds: float, reencode: bool, settings: list[str]) -> dict:
  """Generate the faithfulness prompts and the minute prompts of the run for `seconds` with the
  run's LM (and `settings`), and read their windows: `summarize`'s result, plus the settings
  and the wall time."""
  start = time.time()
  config = demo_workdir.load_run_config(run)
  if not config:
    raise FileNotFoundError(f"{run}: no {demo_workdir.CONFIG_FILE}; run the demo there first")
  changed = apply_settings(config, settings)
  prompts = demo_prompts.faithfulness_prompts(config) + list(config.generate.prompts)
  ic = demo_steps.inference_config(config, run, reencode)
  mesh, rules, params, codec, encode_text = demo_steps.load_generation(ic, run)
  inf = ic.inference
  out = generate_lib.generate_videos(ic, params, [p["prompt"] for p in prompts], seconds,
                                     config.generate.seed, codec, encode_text, mesh, rules,
                                     demo_prompts.first_frame_branches(config, prompts))
  checks = (blocks.window_checks if demo_codec.tokenizer_kind(config) == "oracle"
            else consistency.window_checks)
  window_s = float(config.evaluate.get("window_s", 10.0))
  rows = [(p["split"], checks(video, inf.fps, p, window_s))
          for p, video in zip(prompts, video_io.to_uint8(out.video))]
  result = summarize(rows)
  result.update(settings=changed, seconds=seconds, reencode=reencode, window_s=window_s,
                wall_s=round(time.time() - start, 1))
  return result


def main(argv):
  del argv
  result = measure(_WORKDIR.value, _SECONDS.value, _REENCODE.value, _SET.value)
  path = os.path.join(_WORKDIR.value, "presence", _NAME.value + ".json")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  demo_workdir.write_json(path, result)
  for split in SPLITS:
    if split in result:
      r = result[split]
      print(f"{split:8s} ({r['count']} videos) presence per window "
            + " ".join(f"{x:.2f}" for x in r["presence"]), flush=True)
  print(f"wrote {path} ({result['wall_s']:.0f} s)", flush=True)


if __name__ == "__main__":
  define_flags()
  flags.mark_flag_as_required("workdir")
  cli.run(main)
