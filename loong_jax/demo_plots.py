"""PNG plots of the CPU demo: line charts with matplotlib (Agg, no display needed), frame strips
and reconstruction grids pasted together with Pillow.

    line_plot({"stage 1": (steps, losses), ...}, "loss.png", title="LM loss")
    frame_strip(video_uint8, "strip.png", count=8, fps=8)
    training_plots(RUN)   # RUN/lm_loss.png, RUN/frame_loss.png, RUN/reconstruction.png,
                          # RUN/faithfulness.png (the short generated clips, held-out | seen)
"""

from __future__ import annotations

import glob
import json
import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw

from loong_jax.data import synthetic

_SIZE_PX, _DPI = (640, 400), 100


def new_figure(size_px: tuple[int, int] = _SIZE_PX) -> Figure:
  """A matplotlib figure of `size_px` (width, height) pixels on the Agg canvas (no pyplot, so
  no global state and no display)."""
  figure = Figure(figsize=(size_px[0] / _DPI, size_px[1] / _DPI), dpi=_DPI)
  FigureCanvasAgg(figure)
  return figure


def save_rgb(figure: Figure, path: str):
  """Write `figure` as an RGB PNG of exactly its pixel size (matplotlib writes RGBA)."""
  canvas = figure.canvas
  canvas.draw()
  Image.fromarray(np.asarray(canvas.buffer_rgba())).convert("RGB").save(path)


def line_plot(series: dict[str, tuple[list[float], list[float]]], path: str, title: str,
              x_label: str = "step", y_label: str = "loss"):
  """Lines `{label: (xs, ys)}` on shared axes with a legend, written to `path` (PNG, 640x400).
  Non-finite points are left out."""
  finite = {label: [(x, y) for x, y in zip(xs, ys) if np.isfinite(y)]
            for label, (xs, ys) in series.items()}
  if not any(finite.values()):
    raise ValueError(f"line_plot {path}: no finite points to draw")
  figure = new_figure()
  axes = figure.add_subplot()
  for label, points in finite.items():
    if points:
      axes.plot(*zip(*points), marker="o", markersize=3, linewidth=2, label=label)
  axes.set(title=title, xlabel=x_label, ylabel=y_label)
  axes.grid(alpha=0.3)
  axes.legend()
  figure.tight_layout()
  save_rgb(figure, path)


def frame_strip(video: np.ndarray, path: str, count: int = 8, fps: float | None = None):
  """`count` evenly spaced frames of a uint8 `[T, H, W, 3]` video side by side, with times."""
  picks = np.unique(np.linspace(0, len(video) - 1, count).round().astype(int))
  h, w = video.shape[1:3]
  label = 14
  image = Image.new("RGB", (w * len(picks) + 2 * (len(picks) - 1), h + label), "white")
  draw = ImageDraw.Draw(image)
  for k, t in enumerate(picks):
    x = k * (w + 2)
    image.paste(Image.fromarray(video[t]), (x, label))
    draw.text((x + 2, 1), f"{t / fps:.0f}s" if fps else str(t), fill="black")
  image.save(path)


def reconstruction_grid(real: np.ndarray, recon: np.ndarray, path: str, clips: int = 4,
                        frames: int = 5):
  """Rows of input frames over their reconstructions: uint8 `[N, T, H, W, 3]` each."""
  clips = min(clips, len(real))
  picks = np.linspace(0, real.shape[1] - 1, frames).round().astype(int)
  h, w = real.shape[2:4]
  image = Image.new("RGB", (frames * (w + 2), clips * (2 * h + 6) + 14), "white")
  ImageDraw.Draw(image).text((2, 1), "per clip: input (top) / reconstruction (bottom)",
                             fill="black")
  for c in range(clips):
    y = 14 + c * (2 * h + 6)
    for k, t in enumerate(picks):
      image.paste(Image.fromarray(real[c, t]), (k * (w + 2), y))
      image.paste(Image.fromarray(recon[c, t]), (k * (w + 2), y + h + 1))
  image.save(path)


def clip_grid(columns: list[list[tuple[str, np.ndarray]]], path: str, frames: int = 5):
  """Columns of labelled uint8 `[T, H, W, 3]` clips, one row per clip: its label above `frames`
  evenly spaced frames (clips of a column share T, H, W)."""
  clips = [c for column in columns for _, c in column]
  if not clips:
    raise ValueError(f"clip_grid {path}: no clips")
  t, h, w = clips[0].shape[:3]
  picks = np.linspace(0, t - 1, frames).round().astype(int)
  label, gap = 12, 2
  row_h, col_w = label + h + gap, frames * (w + gap) + 3 * gap
  rows = max(len(column) for column in columns)
  image = Image.new("RGB", (len(columns) * col_w, rows * row_h), "white")
  draw = ImageDraw.Draw(image)
  for c, column in enumerate(columns):
    for r, (text, clip) in enumerate(column):
      x, y = c * col_w, r * row_h
      draw.text((x + 1, y), text, fill="black")
      for k, f in enumerate(picks):
        image.paste(Image.fromarray(clip[f]), (x + k * (w + gap), y + label))
  image.save(path)


def faithfulness_grid(run: str, frames: int = 5) -> str | None:
  """`run/faithfulness.png`: the generated short clips (`generated/clip_*.npz`, named by
  `demo_steps.clip_name`: `clip_<i>_<colour>_<shape>_<motion>`), held-out colour-shape pairs on
  the left, seen ones on the right, `frames` frames each; the path, or None when the run has no
  clips."""
  files = sorted(glob.glob(os.path.join(run, "generated", "clip_*.npz")))
  if not files:
    return None
  columns = ([], [])
  for f in files:
    _, _, color, shape, motion = os.path.basename(f)[:-len(".npz")].split("_", 4)
    heldout = (color, shape) in synthetic.HELDOUT_PAIRS
    with np.load(f) as data:
      columns[0 if heldout else 1].append(
          (f"{'held-out' if heldout else 'seen'}: {color} {shape} {motion}", data["video"]))
  path = os.path.join(run, "faithfulness.png")
  clip_grid([c for c in columns if c], path, frames)
  return path


def read_metrics(path: str) -> list[dict]:
  """Training rows (those with a `loss`) of a `metrics.jsonl`; the last row per step wins."""
  rows = {}
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        row = json.loads(line)
        if "loss" in row:
          rows[row["step"]] = row
  return [rows[s] for s in sorted(rows)]


def training_plots(run: str, example_clips: int = 4) -> list[str]:
  """`lm_loss.png` (loss per stage), `frame_loss.png` (first vs later latent frames),
  `reconstruction.png` (from tokenizer_eval.npz) and `faithfulness.png` (`faithfulness_grid`)
  in `run`; the paths written."""
  written = []
  stages = {k: read_metrics(os.path.join(run, "lm", f"stage{k}", "metrics.jsonl"))
            for k in (1, 2, 3)}
  stages = {k: rows for k, rows in stages.items() if rows}
  if stages:
    path = os.path.join(run, "lm_loss.png")
    line_plot({f"stage {k}": ([r["step"] for r in rows], [r["loss"] for r in rows])
               for k, rows in stages.items()}, path, "LM training loss per curriculum stage")
    written.append(path)
    series = {}
    for k, rows in stages.items():
      # Stage 1 trains on images only: it has no later frames (its metric reads 0).
      keys = (("loss_first_frame", "first"),) + ((("loss_later_frames", "later"),) if k > 1
                                                 else ())
      for key, name in keys:
        values = [r.get(key, float("nan")) for r in rows]
        if any(np.isfinite(values)):
          series[f"stage {k} {name}"] = ([r["step"] for r in rows], values)
    path = os.path.join(run, "frame_loss.png")
    line_plot(series, path, "LM loss: first latent frame vs later frames")
    written.append(path)
  npz = os.path.join(run, "tokenizer_eval.npz")
  if os.path.exists(npz):
    with np.load(npz) as data:
      path = os.path.join(run, "reconstruction.png")
      reconstruction_grid(data["real"], data["recon"], path, example_clips)
      written.append(path)
  path = faithfulness_grid(run)
  if path:
    written.append(path)
  for path in written:
    print(f"plots: wrote {path}", flush=True)
  return written
