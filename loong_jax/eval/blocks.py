"""A reader of colour and motion in oracle-decoded videos (8x8 blocks of flat colour).

The oracle tokenizer (`loong_jax.data.encoders.pooling_block_decoder`) paints every 8x8 block
with the mean colour of its pixels, so an object becomes a few blocks mixing its colour with the
background's; the palette probe (`probe.py`), built on sharp renders, misreads them. This reader
works on the block means of any video:

- background: a textured background mixes two shades of its colour
  (`synthetic_render.background`), so its block means lie on the segment between them; the
  background is the colour of `BACKGROUND_COLORS` whose segment is nearest (median over the
  clip's blocks, which are mostly background), and a block's distance from the background is
  its distance from that segment;
- off-background blocks: farther than `OFF_BACKGROUND` (Euclidean, uint8 RGB) from the
  background, which any block at least 56% covered by an object passes (the nearest object
  colour to a background segment, brown to black's, is 71 away); a quantised background block
  stays within ~14;
- the background colour under the object (for the colour below): the median block mean;
- colour: each frame's most off-background block votes for the object colour that best explains
  it as a mix of the background and that colour (`bg + f (c - bg)`, f in [0.5, 1]: the block
  most covered by the object is at least half object); the colour with most votes wins;
- position: the centroid of the blocks weighted by their distance from the background beyond
  the median block's (about the area the object covers), so it moves smoothly between block
  centres;
- motion: `still` or one of the eight directions of the least-squares displacement of the
  position (`probe.motion_of` with the caller's `still_px`, e.g. `probe.still_threshold`).

Shape is not read (None): 8x8 blocks of a 64x64 frame cannot show it.
"""

from __future__ import annotations

import numpy as np

from loong_jax.data import synthetic_render as render_lib
from loong_jax.eval import consistency, probe

BLOCK = 8
OFF_BACKGROUND = 40.0
_COLORS = np.asarray([render_lib.COLORS[c] for c in probe.OBJECT_COLORS], np.float32)
_MIN_COVER = 0.5


def block_means(video: np.ndarray) -> np.ndarray:
  """uint8 `[T, H, W, 3]` -> float32 `[T, H/8, W/8, 3]` block means."""
  video = np.asarray(video)
  if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
    raise ValueError(f"blocks: videos must be uint8 [T, H, W, 3], got {video.dtype} {video.shape}")
  t, h, w, _ = video.shape
  if h % BLOCK or w % BLOCK:
    raise ValueError(f"blocks: frames {h}x{w} are not multiples of {BLOCK}")
  return video.astype(np.float32).reshape(t, h // BLOCK, BLOCK, w // BLOCK, BLOCK, 3).mean((2, 4))


def _background_segments() -> np.ndarray:
  """`[B, 2, 3]` float32: the two shades each background colour is painted with."""
  out = []
  for name in render_lib.BACKGROUND_COLORS:
    tile = render_lib.background("checkered", name, 8, 8, np.random.default_rng(0))
    shades = np.unique(tile.reshape(-1, 3), axis=0).astype(np.float32)
    out.append(shades if len(shades) == 2 else np.concatenate([shades, shades]))
  return np.stack(out)


_SEGMENTS = _background_segments()


def _segment_distance(points: np.ndarray, segment: np.ndarray) -> np.ndarray:
  """Euclidean distance of `[..., 3]` points from a `[2, 3]` segment."""
  a, b = segment
  span = b - a
  s = np.clip(((points - a) * span).sum(-1) / max(float((span * span).sum()), 1e-6), 0.0, 1.0)
  return np.sqrt(((a + s[..., None] * span - points) ** 2).sum(-1))


def background_distance(means: np.ndarray) -> np.ndarray:
  """`[T, h, w]` distance of each block mean from the clip's background segment."""
  dists = [_segment_distance(means, seg) for seg in _SEGMENTS]
  best = int(np.argmin([np.median(d) for d in dists]))
  return dists[best]


def unmixed_color(block: np.ndarray, background: np.ndarray) -> int:
  """Index into `probe.OBJECT_COLORS` of the colour c whose mix `bg + f (c - bg)`, f in
  [0.5, 1], is nearest to the `[3]` block mean."""
  span = _COLORS - background
  f = np.clip(((block - background) * span).sum(-1) / np.maximum((span * span).sum(-1), 1e-6),
              _MIN_COVER, 1.0)
  return int(np.argmin(((background + f[:, None] * span - block) ** 2).sum(-1)))


def frames(video: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Per frame of a uint8 `[T, H, W, 3]` video: `(present [T] bool, colors [T] int (index into
  `probe.OBJECT_COLORS` of the most off-background block, -1 where absent), centers [T, 2] (x, y)
  pixels, NaN where absent)`."""
  means = block_means(video)
  background = np.median(means.reshape(-1, 3), axis=0)
  off = background_distance(means)
  present = (off > OFF_BACKGROUND).any((1, 2))
  # Every block weighs its distance above the background's own (quantisation shifts all blocks
  # alike), so a block the object half covers counts half and the centroid moves smoothly.
  weights = np.maximum(off - np.median(off), 0.0)
  colors = np.full(len(means), -1)
  for t in np.flatnonzero(present):
    y, x = np.unravel_index(np.argmax(off[t]), off[t].shape)
    colors[t] = unmixed_color(means[t, y, x], background)
  ys = (np.arange(means.shape[1], dtype=np.float64) + 0.5) * BLOCK
  xs = (np.arange(means.shape[2], dtype=np.float64) + 0.5) * BLOCK
  mass = np.where(present, weights.sum((1, 2)), np.nan)
  centers = np.stack([(weights.sum(1) * xs).sum(-1), (weights.sum(2) * ys).sum(-1)], -1)
  return present, colors, centers / mass[:, None]


def displacement(present: np.ndarray, centers: np.ndarray) -> np.ndarray:
  """Least-squares centroid velocity times the duration: `[2]` (x, y) pixels (0 with fewer
  than two present frames)."""
  times = np.flatnonzero(present)
  if len(times) < 2:
    return np.zeros(2)
  return np.polyfit(times.astype(np.float64), centers[times], 1)[0] * (len(present) - 1)


def read(video: np.ndarray, still_px: float) -> probe.Reading:
  """Colour and motion of the object of a uint8 `[T, H, W, 3]` video (shape None); all None
  when no block is off the background."""
  present, colors, centers = frames(video)
  if not present.any():
    return probe.Reading(None, None, None)
  votes = np.bincount(colors[present], minlength=len(_COLORS))
  return probe.Reading(probe.OBJECT_COLORS[int(votes.argmax())], None,
                       probe.motion_of(displacement(present, centers), still_px))


def window_checks(video: np.ndarray, fps: float, attributes: dict,
                  window_s: float = 10.0) -> list[dict[str, bool | float]]:
  """Per window of a long uint8 `[T, H, W, 3]` oracle video (`consistency.windows`):
  `{"presence", "frames", "motion"}` for the prompt's `attributes` (`color`, `motion`).

  presence: in at least half the window's frames the most off-background block reads as the
  prompted colour; frames: the fraction of frames in which it does; motion: present, and
  `still` moves under 5% of the side, a direction moves over 1.5% of the side towards it
  (`consistency`'s scale-free window rules; bouncing, growing and shrinking are not read from
  blocks and never hold).
  """
  if attributes["color"] not in probe.OBJECT_COLORS:
    raise ValueError(f"prompt colour {attributes['color']!r} unknown; known: "
                     f"{probe.OBJECT_COLORS}")
  present, colors, centers = frames(video)
  right = present & (colors == probe.OBJECT_COLORS.index(attributes["color"]))
  side = max(video.shape[1:3])
  out = []
  for start, stop in consistency.windows(len(video), fps, window_s):
    frames_right = float(right[start:stop].mean())
    here = frames_right >= 0.5
    move = displacement(right[start:stop], centers[start:stop])
    distance = float(np.linalg.norm(move)) / side
    if attributes["motion"] == "still":
      moves = distance < 0.05
    else:
      moves = distance > 0.015 and probe.direction_of(move) == attributes["motion"]
    out.append({"presence": here, "frames": frames_right, "motion": here and moves})
  return out
