"""PNG plots of the CPU demo, drawn with Pillow (no matplotlib).

    line_plot({"stage 1": (steps, losses), ...}, "loss.png", title="LM loss")
    frame_strip(video_uint8, "strip.png", count=8, fps=8)
    training_plots(RUN)   # RUN/lm_loss.png, RUN/frame_loss.png, RUN/reconstruction.png
"""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image, ImageDraw

COLORS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
          (140, 86, 75))
_WIDTH, _HEIGHT, _MARGIN = 640, 400, 56


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
  return [low + (high - low) * i / (count - 1) for i in range(count)]


def line_plot(series: dict[str, tuple[list[float], list[float]]], path: str, title: str,
              x_label: str = "step", y_label: str = "loss"):
  """Lines `{label: (xs, ys)}` on shared axes with a legend, written to `path` (PNG)."""
  points = [(x, y) for xs, ys in series.values() for x, y in zip(xs, ys) if np.isfinite(y)]
  if not points:
    raise ValueError(f"line_plot {path}: no finite points to draw")
  xs_all, ys_all = zip(*points)
  x0, x1 = min(xs_all), max(xs_all)
  y0, y1 = min(ys_all), max(ys_all)
  x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
  image = Image.new("RGB", (_WIDTH, _HEIGHT), "white")
  draw = ImageDraw.Draw(image)
  left, top, right, bottom = _MARGIN, 32, _WIDTH - 16, _HEIGHT - _MARGIN + 8

  def px(x, y):
    return (left + (x - x0) / (x1 - x0) * (right - left),
            bottom - (y - y0) / (y1 - y0) * (bottom - top))

  draw.rectangle((left, top, right, bottom), outline="black")
  for y in _ticks(y0, y1):
    _, py = px(x0, y)
    draw.line((left - 4, py, left, py), fill="black")
    draw.text((4, py - 6), f"{y:.3g}", fill="black")
  for x in _ticks(x0, x1):
    qx, _ = px(x, y0)
    draw.line((qx, bottom, qx, bottom + 4), fill="black")
    draw.text((qx - 10, bottom + 6), f"{x:.4g}", fill="black")
  draw.text((_WIDTH // 2 - 4 * len(title), 8), title, fill="black")
  draw.text(((left + right) // 2 - 12, _HEIGHT - 20), x_label, fill="black")
  draw.text((4, 12), y_label, fill="black")
  for i, (label, (xs, ys)) in enumerate(series.items()):
    color = COLORS[i % len(COLORS)]
    line = [px(x, y) for x, y in zip(xs, ys) if np.isfinite(y)]
    if len(line) > 1:
      draw.line(line, fill=color, width=2)
    for qx, qy in line:
      draw.ellipse((qx - 2, qy - 2, qx + 2, qy + 2), fill=color)
    draw.line((right - 150, top + 12 + 16 * i, right - 130, top + 12 + 16 * i), fill=color,
              width=3)
    draw.text((right - 124, top + 6 + 16 * i), label, fill="black")
  image.save(path)


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
  """`lm_loss.png` (loss per stage), `frame_loss.png` (first vs later latent frames) and
  `reconstruction.png` (from tokenizer_eval.npz) in `run`; the paths written."""
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
  for path in written:
    print(f"plots: wrote {path}", flush=True)
  return written
