"""Evaluate a run directory and write `RUN/report.json` (keys: `loong_jax.eval.report`).

  python -m loong_jax.evaluate --workdir RUN [--i3d_checkpoint i3d.npz] [--require_all]

Every input is optional; a section whose inputs are absent is skipped with a log line:

    RUN/tokenizer_eval.npz    real, recon: uint8 [N, T, H, W, 3] held-out clips and their
                              reconstructions -> tokenizer.psnr, .ssim (+ .rfvd with
                              --i3d_checkpoint), .read_through (each attribute of the
                              real clip's reading kept by the reconstruction's); codes:
                              int ids of any shape and codebook_size: int ->
                              tokenizer.codebook_usage, .codebook_perplexity (clips'
                              codes [N, F >= 3, h, w] also -> tokenizer.codes.*, their
                              temporal stability and, with masks, where they change
                              when the object moves, `eval/codes.py`); masks:
                              bool [N, T, H, W] object masks and backgrounds: uint8 [N, H, W, 3]
                              -> tokenizer.object_psnr, .object_visible (`eval/objects.py`)
    RUN/tokenizer_eval.json   {"psnr": dB, "ssim": x, "codebook_usage": x, ...} measured by the
                              tokenizer trainer; fills the tokenizer keys the npz did not give
    RUN/generated/prompts.jsonl  one JSON object per generated video:
        file        path relative to RUN/generated: .mp4/.gif, or .npz holding video uint8
                    [T, H, W, 3] (and optionally fps)
        prompt      the text prompt
        attributes  {"color", "shape", "motion"} of the object the prompt names (the dataset's
                    names: synthetic_render.COLORS, SHAPES, synthetic.MOTIONS)
        split       "seen" or "heldout" (colour-shape pair held out from training)
        kind        "clip": read by the probe -> faithfulness.*; "long": a minute-long video
                    judged per 10-second window -> long_video.*
        reencode    (long) true if generated with video-token re-encoding, false if without
        fps         (optional) frame rate; else the file's (npz: its fps, else 8)
        frames      (optional) [start, stop): use only these frames of the file (e.g. the first
                    clip of a long video for faithfulness)
        speed_frames  (clip, optional) the longest clip length the model learned motion from:
                    the direction reader's `still` threshold scales to the clip's length and
                    that speed (`probe.still_threshold`); without it, the whole-clip rule
        speed       (clip, optional) a constant-speed world's speed (side fraction per frame,
                    `synthetic.SyntheticConfig.speed`): the `still` threshold is half the
                    clip's travel at it; replaces speed_frames
    RUN/lm_eval.json          {"text_gap": {"color": nats, "motion": nats, ...}} measured on the
                              LM (`eval/text_gap.py`) -> lm.text_gap.*; "continuation":
                              {...} (`eval/continuation.py`) -> lm.continuation.*;
                              "tokenizer_codes": {...} -> tokenizer.codes.* (e.g.
                              `eval/shift_invariance.py` of the codes the LM reads)
    RUN/timings.json          {"step": seconds} of the run -> timings.<step>_s

Clips are read by `--reader`: `probe` (the palette probe, `eval/probe.py`) or `blocks` (videos of
the oracle tokenizer's 8x8 blocks, `eval/blocks.py`: colour and direction; shape is left out of
faithfulness and of the long-video windows). The probe's own accuracy (probe.*) is measured on
freshly rendered held-out clips at the resolution of the generated videos (64 without them). Outputs: RUN/report.json and, with long
videos, RUN/long_video.md (table) and RUN/long_video.png (plot).
"""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np
from absl import flags, logging

from loong_jax import cli
from loong_jax.data import video_io
from loong_jax.eval import blocks, consistency, faithfulness, fvd, objects, probe, recon, report
from loong_jax.eval import codes as codes_lib

READERS = ("probe", "blocks")  # of generated clips: rendered-like videos, oracle 8x8 blocks
# Flag holders, created by define_flags() when the module runs as a program.
_WORKDIR = _I3D = _PROBE_CLIPS = _WINDOW_S = _REQUIRE_ALL = _READER = None


def define_flags():
  """Define this entry point's flags (only when run as a program, so that modules that
  define flags of the same names can be imported side by side, e.g. by tests)."""
  global _WORKDIR, _I3D, _PROBE_CLIPS, _WINDOW_S, _REQUIRE_ALL, _READER
  _WORKDIR = flags.DEFINE_string("workdir", None, "Run directory to evaluate.", required=True)
  _I3D = flags.DEFINE_string("i3d_checkpoint", "", "Local I3D .npz (loong_jax.eval.fvd); rFVD is "
                             "skipped without it.")
  _PROBE_CLIPS = flags.DEFINE_integer("probe_clips", 200, "Rendered held-out clips for the "
                                      "probe's accuracy (0: skip).")
  _WINDOW_S = flags.DEFINE_float("window_s", 10.0, "Window length of the long-video check, s.")
  _REQUIRE_ALL = flags.DEFINE_bool("require_all", False, "Fail unless every required key of "
                                   "report.json was measured.")
  _READER = flags.DEFINE_enum("reader", "probe", READERS, "Reader of the generated clips: "
                              "'probe' (rendered-like videos) or 'blocks' (oracle tokenizer).")
_DEFAULT_FPS = 8.0
_KINDS = ("clip", "long")


def tokenizer_section(run: str, i3d_checkpoint: str = "", reader: str = "probe") -> dict:
  """Tokenizer figures from `tokenizer_eval.npz` and/or `tokenizer_eval.json` (empty if none);
  `read_through` reads the reconstructions with `reader` (`clip_reader`)."""
  out = {}
  npz_path = os.path.join(run, "tokenizer_eval.npz")
  if os.path.exists(npz_path):
    with np.load(npz_path) as data:
      arrays = {k: data[k] for k in data.files}
    if "real" in arrays and "recon" in arrays:
      real, fake = arrays["real"], arrays["recon"]
      out["psnr"] = recon.psnr(real, fake)
      out["ssim"] = recon.ssim(real, fake)
      out["eval_clips"] = int(len(real))
      keys = ("color", "direction") if reader == "blocks" else tuple(faithfulness.ATTRIBUTES)
      out["read_through"] = faithfulness.read_through(real, fake, clip_reader(reader, None), keys)
      if i3d_checkpoint:
        out["rfvd"] = fvd.fvd(fvd.load_variables(i3d_checkpoint), real, fake)
      else:
        logging.warning("evaluate: no --i3d_checkpoint; rFVD skipped")
    if "masks" in arrays and "backgrounds" in arrays:
      out["object_psnr"] = objects.object_psnr(arrays["real"], arrays["recon"], arrays["masks"])
      out["object_visible"] = objects.object_visible(arrays["real"], arrays["recon"],
                                                     arrays["masks"], arrays["backgrounds"])
    if "codes" in arrays:
      if "codebook_size" not in arrays:
        raise ValueError(f"{npz_path}: has codes but no codebook_size")
      usage = recon.codebook_usage([arrays["codes"]], int(arrays["codebook_size"]))
      out["codebook_usage"], out["codebook_perplexity"] = usage["usage"], usage["perplexity"]
      if arrays["codes"].ndim == 4 and arrays["codes"].shape[1] >= 3:  # clips' codes
        out["codes"] = codes_lib.stability(arrays["codes"])
        if "masks" in arrays:
          where = codes_lib.locality(arrays["codes"], arrays["masks"])
          # NaN (no moving object, or no token far from it) is not a report number.
          out["codes"].update({k: v for k, v in where.items() if math.isfinite(v)})
  json_path = os.path.join(run, "tokenizer_eval.json")
  if os.path.exists(json_path):
    with open(json_path) as f:
      measured = json.load(f)
    for key, value in measured.items():
      out.setdefault(key, value)
  if not out:
    logging.warning(f"evaluate: neither {npz_path} nor {json_path}; tokenizer section skipped")
  return out


def read_prompts(run: str) -> list[dict]:
  """The entries of `RUN/generated/prompts.jsonl`, checked; [] if the file is absent."""
  path = os.path.join(run, "generated", "prompts.jsonl")
  if not os.path.exists(path):
    return []
  entries = []
  with open(path) as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      entry = json.loads(line)
      where = f"{path}:{number}"
      for field in ("file", "attributes", "split", "kind"):
        if field not in entry:
          raise ValueError(f"{where}: missing field {field!r}")
      if entry["kind"] not in _KINDS:
        raise ValueError(f"{where}: kind {entry['kind']!r} unknown; known: {_KINDS}")
      if entry["split"] not in faithfulness.SPLITS:
        raise ValueError(f"{where}: split {entry['split']!r} unknown; known: "
                         f"{faithfulness.SPLITS}")
      if entry["kind"] == "long" and not isinstance(entry.get("reencode"), bool):
        raise ValueError(f"{where}: field 'reencode' must be true or false for a long video")
      entry["where"] = where
      entries.append(entry)
  return entries


def load_video(run: str, entry: dict) -> tuple[np.ndarray, float]:
  """`(uint8 [T, H, W, 3], fps)` of one prompts.jsonl entry."""
  path = os.path.join(run, "generated", entry["file"])
  if path.endswith(".npz"):
    with np.load(path) as data:
      if "video" not in data.files:
        raise ValueError(f"{path}: no array 'video' (named by {entry['where']})")
      video = data["video"]
      fps = float(data["fps"]) if "fps" in data.files else _DEFAULT_FPS
  else:
    video, fps = video_io.read_video(path)
  if "frames" in entry:
    start, stop = entry["frames"]
    video = video[start:stop]
  if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3 or not len(video):
    raise ValueError(f"{path}: video must be uint8 [T>0, H, W, 3], got {video.dtype} "
                     f"{video.shape}")
  return video, float(entry.get("fps", fps))


def clip_reader(kind: str, speed_frames: int | None,
                speed: float | None = None) -> faithfulness.Reader:
  """The reader of generated clips: `probe.read` or `blocks.read` with the `still` threshold of
  the clip's length at the speed of `speed_frames`-frame clips, or at a constant `speed` (side
  fraction per frame) (both None: the whole-clip rule, 0.08 of the side)."""
  if kind not in READERS:
    raise ValueError(f"evaluate: reader {kind!r} unknown; known: {READERS}")

  def still_px(video):
    side = max(video.shape[1:3])
    if speed:
      return probe.still_threshold(len(video), side, speed=speed)
    if speed_frames is None:
      return 0.08 * side
    return probe.still_threshold(len(video), side, speed_frames)

  if kind == "blocks":
    return lambda video: blocks.read(video, still_px(video))
  return lambda video: probe.read(video, still_px(video))


def evaluate(run: str, i3d_checkpoint: str = "", probe_clips: int = 200, window_s: float = 10.0,
             require_all: bool = False, reader: str = "probe") -> dict:
  """Measure what `run` holds (layout in the module docstring); write and return the report."""
  result, timings = {}, {}

  def timed(name, fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    timings[f"evaluate_{name}_s"] = time.perf_counter() - start
    return value

  tokenizer = timed("tokenizer", tokenizer_section, run, i3d_checkpoint, reader)
  if tokenizer:
    result["tokenizer"] = tokenizer
  lm_path = os.path.join(run, "lm_eval.json")
  if os.path.exists(lm_path):
    with open(lm_path) as f:
      result["lm"] = json.load(f)
    codes = result["lm"].pop("tokenizer_codes", None)  # measured with the LM's encoder
    if codes:
      result.setdefault("tokenizer", {}).setdefault("codes", {}).update(codes)
  entries = read_prompts(run)
  if not entries:
    logging.warning(f"evaluate: no {os.path.join(run, 'generated', 'prompts.jsonl')}; "
                    "faithfulness and long-video sections skipped")
  resolution = load_video(run, entries[0])[0].shape[1] if entries else 64
  if probe_clips > 0:
    result["probe"] = timed("probe", probe.probe_accuracy, probe_clips, resolution)
    result["probe"]["resolution"] = resolution
    print(f"evaluate: probe on {probe_clips} rendered held-out clips: " + ", ".join(
        f"{k} {result['probe'][k]:.3f}" for k in ("color", "shape", "direction", "accuracy")),
          flush=True)
  clips = [e for e in entries if e["kind"] == "clip"]
  if clips:
    speeds = {(e.get("speed_frames"), e.get("speed")) for e in clips}
    if len(speeds) > 1:
      raise ValueError(f"{clips[0]['where']}: clips of one run share one speed_frames and speed, "
                       f"got {sorted(speeds, key=str)}")
    items = ((load_video(run, e)[0], e["attributes"], e["split"]) for e in clips)
    keys = ("color", "direction") if reader == "blocks" else tuple(faithfulness.ATTRIBUTES)
    result["faithfulness"] = timed("faithfulness", faithfulness.faithfulness, items,
                                   clip_reader(reader, *speeds.pop()), keys)
  elif entries:
    logging.warning("evaluate: no generated clips (kind 'clip'); faithfulness skipped")
  longs = [e for e in entries if e["kind"] == "long"]
  if longs:
    def long_items():
      for e in longs:
        video, fps = load_video(run, e)
        yield video, fps, e["attributes"], e["reencode"]

    checks = blocks.window_checks if reader == "blocks" else consistency.window_checks
    windows = timed("long_video", consistency.consistency, long_items(), window_s, checks)
    windows["window_s"] = window_s
    result["long_video"] = windows
    table = consistency.markdown_table(windows, window_s)
    with open(os.path.join(run, "long_video.md"), "w") as f:
      f.write(table)
    consistency.plot(windows, os.path.join(run, "long_video.png"), window_s)
    print(table, flush=True)
  elif entries:
    logging.warning("evaluate: no long generated videos (kind 'long'); long-video section "
                    "skipped")
  timings_path = os.path.join(run, "timings.json")
  if os.path.exists(timings_path):
    with open(timings_path) as f:
      timings.update({f"{step}_s": seconds for step, seconds in json.load(f).items()})
  result["timings"] = timings
  report.validate(result, require_all=require_all, source=os.path.join(run, "report.json"))
  absent = report.missing(result)
  if absent:
    logging.warning(f"evaluate: report.json lacks {absent}")
  report.write(os.path.join(run, "report.json"), result)
  return result


def main(argv):
  del argv
  evaluate(_WORKDIR.value, _I3D.value, _PROBE_CLIPS.value, _WINDOW_S.value, _REQUIRE_ALL.value,
           _READER.value)
  print(f"wrote {os.path.join(_WORKDIR.value, 'report.json')}", flush=True)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
