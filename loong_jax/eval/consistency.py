"""Long-video consistency: is the prompted object still there, in each 10-second window of a
minute-long generation, with the prompted colour, shape and motion?

The object is the blob holding most of the prompted colour (`probe.track`). For every window:

- presence: in at least half the frames, the blob holds at least `probe.MIN_AREA_FRACTION` of
  the frame in the prompted colour;
- frames: the fraction of the window's frames in which it does (a number, not a yes / no: an
  object that flickers in and out of frames shows here before presence fails);
- shape: present, and the probe's shape reading over the window is the prompted shape;
- motion: present, and the window's motion agrees with the prompt. The dataset spreads a motion
  over a whole clip, so a window of a minute-long video moves slowly; the rules are scale-free:
  a direction holds when the least-squares displacement exceeds 1.5% of the frame side and its
  nearest direction is the prompted one, or when the blob has reached the frame edge on that side
  without moving back; `still` when the displacement is under 5% of the side and the radius
  changes by under 10%; `growing`/`shrinking` when the radius grows/shrinks by more than 3%
  (least-squares slope); `bouncing` when the centroid strays at least 4% of the side from its mean.

Windows: `floor(T / (fps * window_s))` windows of `fps * window_s` frames (at least one); the few
frames left over join the last window (481 frames at 8 fps -> 6 windows, the last of 81 frames).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from loong_jax import demo_plots
from loong_jax.data import synthetic
from loong_jax.eval import probe

CHECKS = ("presence", "frames", "shape", "motion")
MODES = {True: "reencode", False: "no_reencode"}


def windows(num_frames: int, fps: float, window_s: float = 10.0) -> list[tuple[int, int]]:
  """`[start, stop)` frame ranges of the windows of a `num_frames` video at `fps`."""
  if fps <= 0 or window_s <= 0:
    raise ValueError(f"windows: fps={fps} and window_s={window_s} must be positive")
  size = fps * window_s
  count = max(1, int(np.floor(num_frames / size + 1e-9)))
  bounds = [int(round(i * size)) for i in range(count)] + [num_frames]
  return list(zip(bounds[:-1], bounds[1:]))


def _radius_change(tr: probe.Track) -> float:
  """Least-squares relative change of the blob's spread over the present frames of a window."""
  ok = tr.present()
  if ok.sum() < 2:
    return 0.0
  t = np.nonzero(ok)[0].astype(np.float64)
  radius = tr.spreads[ok].astype(np.float64)
  slope = np.polyfit(t, radius, 1)[0]
  return float(slope * (len(tr.areas) - 1) / radius.mean())


def _at_edge(tr: probe.Track, step: np.ndarray) -> bool:
  """Whether the blob, in its last present frame, touches a frame edge that `step` heads to."""
  last = np.nonzero(tr.present())[0][-1]
  ys, xs = np.nonzero(tr.masks[last])
  height, width = tr.masks.shape[1:]
  return bool((step[0] < 0 and xs.min() <= 1) or (step[0] > 0 and xs.max() >= width - 2)
              or (step[1] < 0 and ys.min() <= 1) or (step[1] > 0 and ys.max() >= height - 2))


def motion_holds(tr: probe.Track, motion: str) -> bool:
  """Whether a window's track agrees with the prompted `motion` (rules in the module docstring)."""
  move = probe.displacement(tr)
  distance = float(np.linalg.norm(move)) / tr.side
  change = _radius_change(tr)
  if motion == "growing":
    return change > 0.03
  if motion == "shrinking":
    return change < -0.03
  if motion == "still":
    return distance < 0.05 and abs(change) < 0.1
  if motion == "bouncing":
    centers = tr.centers[tr.present()]
    return float(np.linalg.norm(centers - centers.mean(0), axis=1).max()) >= 0.04 * tr.side
  if motion not in synthetic.DIRECTIONS:
    raise ValueError(f"motion {motion!r} unknown; known: {synthetic.MOTIONS}")
  step = np.asarray(synthetic.DIRECTIONS[motion], np.float64)
  if distance > 0.015 and probe.direction_of(move) == motion:
    return True
  return _at_edge(tr, step) and float(move @ step) >= 0.0


def window_checks(video: np.ndarray, fps: float, attributes: dict,
                  window_s: float = 10.0) -> list[dict[str, bool | float]]:
  """Per window of a uint8 `[T, H, W, 3]` video: `{"presence", "shape", "motion"}` booleans and
  `"frames"` (fraction of frames holding the object) for the prompt's `attributes` (`color`,
  `shape`, `motion`)."""
  color = attributes["color"]
  if color not in probe.OBJECT_COLORS:
    raise ValueError(f"prompt colour {color!r} unknown; known: {probe.OBJECT_COLORS}")
  tr = probe.track(probe.pixel_labels(video), probe.OBJECT_COLORS.index(color))
  out = []
  for start, stop in windows(len(video), fps, window_s):
    win = tr.window(start, stop)
    frames = float(win.present().mean())
    present = frames >= 0.5
    out.append({"presence": present, "frames": frames,
                "shape": present and probe.read_shape(win) == attributes["shape"],
                "motion": present and motion_holds(win, attributes["motion"])})
  return out


def consistency(items: Iterable[tuple[np.ndarray, float, dict, bool]],
                window_s: float = 10.0, checks_fn: Callable = window_checks) -> dict:
  """Per-window fractions of prompts whose object holds, with re-encoding on and off.

  Args:
    items: `(video uint8 [T, H, W, 3], fps, attributes, reencode)`.
    window_s: window length in seconds.
    checks_fn: `window_checks` or a reader's own with its signature and a subset of `CHECKS`
      (`blocks.window_checks` for oracle videos: presence and motion).
  Returns:
    `{"presence": {"reencode": [w0, w1, ...], "no_reencode": [...]}, "shape": ..., "motion": ...,
    "count": {"reencode": n, "no_reencode": n}}`: window k averages over the videos that have a
    window k; a mode without videos is left out.
  """
  rows = {mode: [] for mode in MODES.values()}
  for video, fps, attributes, reencode in items:
    rows[MODES[bool(reencode)]].append(checks_fn(video, fps, attributes, window_s))
  checks = [c for c in CHECKS if any(c in v[0] for videos in rows.values() for v in videos)]
  out = {check: {} for check in checks}
  for mode, videos in rows.items():
    if not videos:
      continue
    for check in checks:
      out[check][mode] = [float(np.mean([v[k][check] for v in videos if len(v) > k]))
                          for k in range(max(len(v) for v in videos))]
  out["count"] = {mode: len(v) for mode, v in rows.items() if v}
  return out


def markdown_table(result: dict, window_s: float = 10.0) -> str:
  """The `consistency` result as a markdown table, one row per window."""
  modes = [m for m in MODES.values() if m in result["presence"]]
  checks = [c for c in CHECKS if c in result]
  header = ["window"] + [f"{check} ({mode})" for check in checks for mode in modes]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  num = max(len(result["presence"][m]) for m in modes) if modes else 0
  for k in range(num):
    cells = [f"{k * window_s:g}-{(k + 1) * window_s:g} s"]
    for check in checks:
      for mode in modes:
        values = result[check][mode]
        cells.append(f"{values[k]:.2f}" if k < len(values) else "-")
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


_BLUE, _ORANGE = "#1f77b4", "#ff7f0e"
_STYLE = {("presence", "reencode"): (_BLUE, 3), ("presence", "no_reencode"): (_ORANGE, 3),
          ("motion", "reencode"): (_BLUE, 1), ("motion", "no_reencode"): (_ORANGE, 1)}


def plot(result: dict, path: str, window_s: float = 10.0, size: tuple[int, int] = (640, 400)):
  """A PNG line chart (`size` pixels, RGB) of presence (thick) and motion (thin) per window,
  re-encoding on (blue) and off (orange), drawn with matplotlib."""
  figure = demo_plots.new_figure(size)
  axes = figure.add_subplot()
  num = max((len(v) for check in ("presence", "motion") for v in result[check].values()),
            default=1)
  for (check, mode), (color, line_width) in _STYLE.items():
    values = result[check].get(mode)
    if values:
      axes.plot(range(len(values)), values, color=color, linewidth=line_width, marker="o",
                markersize=2 * line_width, label=f"{check}, {mode}")
  axes.set_xticks(range(num), [f"{k * window_s:g}-{(k + 1) * window_s:g}s" for k in range(num)])
  axes.set_ylim(-0.05, 1.05)
  axes.set_title("fraction of prompts whose object holds, per window")
  axes.grid(alpha=0.3)
  axes.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
  figure.tight_layout()
  demo_plots.save_rgb(figure, path)
