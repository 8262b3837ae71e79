"""A deterministic reader of colour, shape and motion in videos of the built-in dataset.

No learning: every pixel takes the nearest colour of the dataset's palette (the nine object
colours of `synthetic_render.COLORS` and the two shades of each background colour); the object is
the most frequent object colour, tracked per frame as the 8-connected blob of object-coloured
pixels that holds most of that colour. Then:

- shape: the rendered shape (`synthetic_render.shape_mask`) that best overlaps (IoU) the blob in
  its largest frames, with the radius fitted from the blob's area and a small search over centre
  and scale;
- motion (the dataset's `MOTIONS`): `growing`/`shrinking` when the blob's size (radius of
  gyration) changes by more than 25% between the first and last quarters of the clip,
  `bouncing` when the centroid's path is longer than 0.8 of the frame side (straight motions
  travel at most 0.45 * sqrt(2) ~ 0.64 of it, bounces at least 1.0), `still` when the
  least-squares displacement is under 0.08 of the side, otherwise the nearest of the eight
  directions of that displacement. A window shorter than its motion (the first 17 frames of a
  65-frame clip) moves less: `still_threshold` scales the `still` limit to the window's length
  and the dataset's slowest speed.

The motion thresholds are those of a whole clip of the dataset (every motion spans its clip);
`loong_jax.eval.consistency` judges windows of long videos with its own, scale-free rules.
The probe reads one object: it is evaluated on single-object clips (`probe_accuracy`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from loong_jax.data import synthetic, synthetic_render as render_lib

OBJECT_COLORS = tuple(render_lib.COLORS)
MIN_AREA_FRACTION = 0.002  # a blob under 0.2% of the frame (8 px at 64x64) is not an object
_SHAPE_AREA = {"circle": np.pi, "square": 1.7 ** 2, "triangle": 2.0, "diamond": 2.0,
               "ring": np.pi * (1 - 0.55 ** 2), "cross": 20.0 / 9.0}  # area / radius^2
_SHAPE_FRAMES = 5  # largest frames voted over for the shape
_SCALES = np.array([0.85, 0.92, 1.0, 1.08, 1.15], np.float32)
_SHIFTS = np.array([-0.5, 0.0, 0.5], np.float32)
_EIGHT = np.ones((3, 3), bool)


def _palette() -> tuple[np.ndarray, int]:
  """`([P, 3] float32 colours, number of object colours)`: object colours first, then every
  shade that `synthetic_render.background` paints (two per background colour)."""
  shades = []
  for name in render_lib.BACKGROUND_COLORS:
    tile = render_lib.background("checkered", name, 8, 8, np.random.default_rng(0))
    shades.extend(np.unique(tile.reshape(-1, 3), axis=0))
  colors = [render_lib.COLORS[c] for c in OBJECT_COLORS] + shades
  return np.asarray(colors, np.float32), len(OBJECT_COLORS)


PALETTE, NUM_OBJECT_COLORS = _palette()


@dataclasses.dataclass
class Track:
  """One colour's blob through a video.

  Attributes:
    masks: `[T, H, W]` bool, the largest blob of the colour per frame.
    areas: `[T]` pixels of the blob.
    color_areas: `[T]` pixels of the tracked colour in the blob (presence is judged on these,
      so that a stray pixel next to another object does not make it "present").
    centers: `[T, 2]` (x, y) centroid in pixels (pixel centres at +0.5); NaN where area is 0.
    spreads: `[T]` radius of gyration in pixels (a size measure that, unlike sqrt(area), changes
      smoothly for thin shapes such as a small cross); NaN where area is 0.
    side: frame side in pixels (the larger of H and W).
  """

  masks: np.ndarray
  areas: np.ndarray
  color_areas: np.ndarray
  centers: np.ndarray
  spreads: np.ndarray
  side: int

  def present(self) -> np.ndarray:
    """`[T]` bool: the blob is large enough to be an object."""
    return self.color_areas >= MIN_AREA_FRACTION * self.masks.shape[1] * self.masks.shape[2]

  def window(self, start: int, stop: int) -> "Track":
    """The frames `[start, stop)`."""
    return Track(self.masks[start:stop], self.areas[start:stop], self.color_areas[start:stop],
                 self.centers[start:stop], self.spreads[start:stop], self.side)


@dataclasses.dataclass(frozen=True)
class Reading:
  """What the probe reads; `color` is None (and the rest too) when no object is found."""

  color: str | None
  shape: str | None
  motion: str | None


def pixel_labels(video: np.ndarray, chunk: int = 32) -> np.ndarray:
  """Nearest palette entry per pixel: uint8 `[T, H, W, 3]` -> int `[T, H, W]`, an index into
  `OBJECT_COLORS` or -1 for a background shade."""
  video = np.asarray(video)
  if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
    raise ValueError(f"probe: videos must be uint8 [T, H, W, 3], got {video.dtype} {video.shape}")
  sq = (PALETTE ** 2).sum(-1)
  out = np.empty(video.shape[:3], np.int32)
  for i in range(0, len(video), chunk):
    x = video[i:i + chunk].astype(np.float32)
    dist = sq - 2.0 * x @ PALETTE.T  # |x|^2 is the same for every entry
    out[i:i + chunk] = dist.argmin(-1)
  return np.where(out < NUM_OBJECT_COLORS, out, -1)


def dominant_color(labels: np.ndarray) -> int | None:
  """Index of the most frequent object colour in `[T, H, W]` labels, None if too few pixels.

  Interior pixels (same label as their four neighbours) vote when there are enough of them: on a
  blurry video the rim of an object mixes with the background into another palette colour
  (orange over black reads brown), and a thin object's rim can outnumber its core."""
  min_pixels = MIN_AREA_FRACTION * labels[0].size * len(labels)
  counts = np.bincount(labels[labels >= 0], minlength=NUM_OBJECT_COLORS)
  if counts.max() < min_pixels:
    return None
  inner = labels[:, 1:-1, 1:-1]
  same = ((inner == labels[:, :-2, 1:-1]) & (inner == labels[:, 2:, 1:-1])
          & (inner == labels[:, 1:-1, :-2]) & (inner == labels[:, 1:-1, 2:]))
  core = np.bincount(inner[same & (inner >= 0)], minlength=NUM_OBJECT_COLORS)
  return int((core if core.max() >= min_pixels / 4 else counts).argmax())


def _blobs(frame: np.ndarray) -> tuple[np.ndarray, int]:
  """8-connected blobs of the object-coloured pixels of `[H, W]` labels: `(ids [H, W], count)`,
  ids 1..count, 0 elsewhere."""
  return ndimage.label(frame >= 0, structure=_EIGHT)


def track(labels: np.ndarray, color: int) -> Track:
  """Per frame of `[T, H, W]` labels, the 8-connected blob of object-coloured pixels that holds
  the most pixels of colour index `color` (the blob keeps its rim, whatever colour blurring
  gave it, so that its shape and size stay whole)."""
  masks = np.zeros(labels.shape, bool)
  color_areas = np.zeros(len(labels), np.float32)
  for t, frame in enumerate(labels):
    blobs, count = _blobs(frame)
    if count:
      hits = np.bincount(blobs[frame == color], minlength=count + 1)[1:]
      if hits.max() > 0:
        masks[t] = blobs == 1 + hits.argmax()
        color_areas[t] = hits.max()
  areas = masks.sum((1, 2)).astype(np.float32)
  ys = np.arange(labels.shape[1], dtype=np.float32) + 0.5
  xs = np.arange(labels.shape[2], dtype=np.float32) + 0.5
  with np.errstate(invalid="ignore", divide="ignore"):
    cx = (masks.sum(1) * xs).sum(-1) / areas
    cy = (masks.sum(2) * ys).sum(-1) / areas
    sq = (masks.sum(1) * xs ** 2).sum(-1) + (masks.sum(2) * ys ** 2).sum(-1)
    spreads = np.sqrt(np.maximum(sq / areas - cx ** 2 - cy ** 2, 0.0))
  return Track(masks, areas, color_areas, np.stack([cx, cy], -1), spreads,
               max(labels.shape[1:]))


def fit_shape(mask: np.ndarray) -> dict[str, float]:
  """IoU of the best-fitting rendering of every shape with a `[H, W]` bool blob."""
  yy, xx = np.nonzero(mask)
  area = float(len(xx))
  cx, cy = xx.mean() + 0.5, yy.mean() + 0.5
  # A crop around the blob with room for the largest candidate.
  reach = int(np.ceil(1.3 * np.sqrt(area / 2.0))) + 2
  y0, x0 = max(0, int(cy) - reach), max(0, int(cx) - reach)
  crop = mask[y0:int(cy) + reach + 1, x0:int(cx) + reach + 1]
  ys = np.arange(y0, y0 + crop.shape[0], dtype=np.float32)[None, :, None] + 0.5
  xs = np.arange(x0, x0 + crop.shape[1], dtype=np.float32)[None, None, :] + 0.5
  sx, sy, sc = (a.ravel()[:, None, None] for a in np.meshgrid(_SHIFTS, _SHIFTS, _SCALES))
  scores = {}
  for shape, coef in _SHAPE_AREA.items():
    r = np.sqrt(area / coef) * sc
    # The shape's centre: a triangle's centroid sits r / 3 below it (apex at -r, base at +r).
    centre_y = cy - (r / 3.0 if shape == "triangle" else 0.0) + sy
    candidates = render_lib.shape_mask(shape, xs - (cx + sx), ys - centre_y, r)
    inter = (candidates & crop).sum((1, 2))
    union = (candidates | crop).sum((1, 2)) + (area - crop.sum())
    scores[shape] = float((inter / union).max())
  return scores


def read_shape(tr: Track) -> str | None:
  """The shape with the highest IoU summed over the blob's largest frames."""
  frames = [t for t in np.argsort(-tr.areas)[:_SHAPE_FRAMES] if tr.present()[t]]
  if not frames:
    return None
  total = {shape: 0.0 for shape in _SHAPE_AREA}
  for t in frames:
    for shape, score in fit_shape(tr.masks[t]).items():
      total[shape] += score
  return max(total, key=total.get)


def radius_ratio(tr: Track) -> float:
  """Mean spread of the last quarter of present frames over that of the first quarter."""
  spreads = tr.spreads[tr.present()]
  quarter = max(1, len(spreads) // 4)
  return float(spreads[-quarter:].mean() / max(spreads[:quarter].mean(), 0.5))


def displacement(tr: Track) -> np.ndarray:
  """Least-squares centroid velocity times the duration: `[2]` (x, y) pixels over the track."""
  ok = tr.present() & np.isfinite(tr.centers[:, 0])
  t = np.nonzero(ok)[0].astype(np.float64)
  if len(t) < 2:
    return np.zeros(2)
  slope = np.polyfit(t, tr.centers[ok].astype(np.float64), 1)[0]
  return slope * (len(tr.areas) - 1)


def direction_of(vector: np.ndarray) -> str:
  """The nearest of the dataset's eight directions to an (x, y) vector (y down)."""
  names = list(synthetic.DIRECTIONS)
  steps = np.asarray([synthetic.DIRECTIONS[n] for n in names], np.float64)
  steps /= np.linalg.norm(steps, axis=1, keepdims=True)
  return names[int(np.argmax(steps @ vector))]


def still_threshold(num_frames: int, side: int, speed_frames: int = 0,
                    speed: float = 0.0) -> float:
  """Pixels under which a `num_frames` window's displacement reads as `still`: half the
  displacement of the dataset's slowest straight motion over the window.

  `speed` > 0: a constant-speed world (`synthetic.SyntheticConfig.speed`, side fraction per
  frame): half of `speed * side * (num_frames - 1)` (17 frames at 1/32 of 64 px: 16 px).
  Otherwise the slowest motion travels `synthetic.TRAVEL[0]` of the side over a clip of
  `speed_frames` frames (the longest clip the model learned from). Whole clips of their own speed
  (`num_frames == speed_frames`): 8 px at 64 px; the first 17 frames of a 65-frame clip: 2 px
  (they move 4-7 px, under the whole-clip 0.08 side).
  """
  if num_frames < 2:
    raise ValueError(f"still_threshold: num_frames={num_frames} must be at least 2")
  if speed > 0:
    return 0.5 * speed * side * (num_frames - 1)
  if speed_frames < 2:
    raise ValueError(f"still_threshold: speed_frames={speed_frames} must be at least 2 "
                     "(or give a constant speed)")
  return 0.5 * synthetic.TRAVEL[0] * side * (num_frames - 1) / (speed_frames - 1)


def motion_of(move: np.ndarray, still_px: float) -> str:
  """`still` for a displacement `[2]` (x, y) shorter than `still_px`, else its direction."""
  return "still" if np.linalg.norm(move) < still_px else direction_of(move)


def read_motion(tr: Track, still_px: float | None = None) -> str:
  """One of `synthetic.MOTIONS` for a whole clip (thresholds in the module docstring);
  `still_px` replaces the whole-clip `still` threshold (e.g. `still_threshold` for a window)."""
  ok = tr.present()
  if ok.sum() < 2:
    return "still"
  ratio = radius_ratio(tr)
  if ratio > 1.25:
    return "growing"
  if ratio < 0.8:
    return "shrinking"
  centers = tr.centers[ok]
  path = float(np.linalg.norm(np.diff(centers, axis=0), axis=1).sum())
  if path > 0.8 * tr.side:
    return "bouncing"
  return motion_of(displacement(tr), 0.08 * tr.side if still_px is None else still_px)


def read(video: np.ndarray, still_px: float | None = None) -> Reading:
  """Colour, shape and motion of the dominant object of a uint8 `[T, H, W, 3]` video
  (`still_px`: see `read_motion`)."""
  labels = pixel_labels(video)
  color = dominant_color(labels)
  if color is None:
    return Reading(None, None, None)
  tr = track(labels, color)
  return Reading(OBJECT_COLORS[color], read_shape(tr), read_motion(tr, still_px))


def parts(video: np.ndarray) -> np.ndarray:
  """`[T]` int: per frame of a uint8 `[T, H, W, 3]` video, the separate 8-connected blobs of
  object-coloured pixels of at least `MIN_AREA_FRACTION` of the frame. A clip of the demo's
  dataset (one object) shows 1 in every frame where the object is inside it; stray blocks that a
  sampler scatters over the background add parts (`faithfulness.objects`)."""
  labels = pixel_labels(video)
  min_pixels = MIN_AREA_FRACTION * labels.shape[1] * labels.shape[2]
  out = np.zeros(len(labels), np.int32)
  for t, frame in enumerate(labels):
    blobs, count = _blobs(frame)
    if count:
      out[t] = int((np.bincount(blobs.reshape(-1), minlength=count + 1)[1:] >= min_pixels).sum())
  return out


def probe_accuracy(num_clips: int = 200, resolution: int = 64, num_frames: int = 17,
                   seed: int = 0) -> dict[str, float]:
  """The probe's accuracy on rendered single-object clips of the `heldout` split.

  Returns:
    `{"color", "shape", "direction", "accuracy", "clips"}`: per-attribute accuracies (direction
    = the motion label), `accuracy` = the fraction of clips with all three read right.
  """
  data = synthetic.SyntheticVideos(synthetic.SyntheticConfig(
      seed=seed, resolution=resolution, num_frames=(num_frames,), max_objects=1,
      num_heldout=num_clips), "heldout")
  hits = {"color": 0, "shape": 0, "direction": 0, "accuracy": 0}
  for i in range(num_clips):
    sample = data.sample(i)
    truth = sample["attributes"]["objects"][0]
    got = read(sample["video"])
    right = {"color": got.color == truth["color"], "shape": got.shape == truth["shape"],
             "direction": got.motion == truth["motion"]}
    for key, ok in right.items():
      hits[key] += ok
    hits["accuracy"] += all(right.values())
  out = {k: v / num_clips for k, v in hits.items()}
  out["clips"] = num_clips
  return out
