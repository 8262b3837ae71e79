"""Video and image files: read, resample the frame rate, choose 1 + 4k clip windows, resize and
centre-crop, write mp4 and gif.

Decoding uses imageio: its FFMPEG plugin (the ffmpeg binary shipped by imageio-ffmpeg; no system
ffmpeg needed) for mp4/webm/avi/mov/mkv, and Pillow for gif and still images. Every failure to
decode (missing, corrupt, truncated, empty) raises `VideoReadError`, the one error type the
pipelines count and skip.
"""

from __future__ import annotations

import os

import imageio.v3 as iio
import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
FFMPEG_EXTENSIONS = (".mp4", ".webm", ".avi", ".mov", ".mkv", ".m4v")
VIDEO_EXTENSIONS = FFMPEG_EXTENSIONS + (".gif",)


class VideoReadError(Exception):
  """A video or image file could not be decoded; `path` names it."""

  def __init__(self, path: str, reason: str):
    super().__init__(f"{path}: {reason}")
    self.path = path
    self.reason = reason


def _last_line(error: Exception) -> str:
  # ffmpeg errors carry its whole banner; the cause is on the last non-empty line.
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  return f"{type(error).__name__}: {lines[-1] if lines else ''}"


def read_video(path: str) -> tuple[np.ndarray, float]:
  """Decode a whole video or image.

  Returns:
    `(frames uint8 [T, H, W, 3], fps)`; an image is one frame with fps 0.
  Raises:
    VideoReadError: for any file that cannot be decoded into at least one RGB frame.
  """
  ext = os.path.splitext(path)[1].lower()
  if ext not in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS:
    raise VideoReadError(path, f"unsupported extension {ext!r}; known: "
                         f"{IMAGE_EXTENSIONS + VIDEO_EXTENSIONS}")
  try:
    if ext in FFMPEG_EXTENSIONS:
      fps = float(iio.immeta(path, plugin="FFMPEG")["fps"])
      frames = iio.imread(path, plugin="FFMPEG")
    elif ext == ".gif":
      frames = iio.imread(path, index=None, mode="RGB", plugin="pillow")
      duration_ms = iio.immeta(path, plugin="pillow").get("duration") or 100
      fps = 1000.0 / duration_ms
    else:
      frames = iio.imread(path, mode="RGB", plugin="pillow")[None]
      fps = 0.0
  except Exception as e:  # noqa: BLE001 -- decoders raise many types; callers need one
    raise VideoReadError(path, _last_line(e)) from e
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[0] == 0 or frames.shape[-1] != 3:
    raise VideoReadError(path, f"decoded to shape {frames.shape}, expected [T>0, H, W, 3]")
  return frames.astype(np.uint8, copy=False), fps


def resample_fps(frames: np.ndarray, src_fps: float, dst_fps: float) -> np.ndarray:
  """Nearest-frame resampling `[T, ...] -> [T', ...]` with T' = floor((T - 1) dst / src) + 1.

  Output frame k is the source frame on screen at time k / dst_fps (each frame shows until the
  next one starts). Images (src_fps 0) and equal rates pass through.
  """
  if src_fps <= 0 or dst_fps <= 0 or abs(src_fps - dst_fps) < 1e-6:
    return frames
  count = int(np.floor((len(frames) - 1) * dst_fps / src_fps + 1e-9)) + 1
  index = np.floor(np.arange(count) * src_fps / dst_fps + 1e-6).astype(int)
  index = np.minimum(index, len(frames) - 1)
  return frames[index]


def clip_frames(available: int, max_frames: int) -> int:
  """Largest `1 + 4k` not above `min(available, max_frames)` (0 if `available` is 0)."""
  limit = min(available, max_frames)
  return 0 if limit < 1 else 1 + 4 * ((limit - 1) // 4)


def clip_window(frames: np.ndarray, num_frames: int, position: str = "start",
                rng: np.random.Generator | None = None) -> np.ndarray:
  """`[num_frames, ...]` window of `frames`; `position` is start | center | random (needs rng)."""
  if (num_frames - 1) % 4:
    raise ValueError(f"clip_window: num_frames={num_frames} is not 1 + 4k")
  if len(frames) < num_frames:
    raise ValueError(f"clip_window: {len(frames)} frames, need {num_frames}")
  slack = len(frames) - num_frames
  if position == "start":
    start = 0
  elif position == "center":
    start = slack // 2
  elif position == "random":
    if rng is None:
      raise ValueError("clip_window: position='random' needs rng")
    start = int(rng.integers(slack + 1))
  else:
    raise ValueError(f"clip_window: position {position!r} unknown; known: start, center, random")
  return frames[start : start + num_frames]


def resize_center_crop(frames: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
  """Scale so the frame covers `size` (H, W), then crop the centre: `[T, H', W', 3]` uint8."""
  out_h, out_w = (size, size) if isinstance(size, int) else size
  height, width = frames.shape[1:3]
  scale = max(out_h / height, out_w / width)
  new_h, new_w = max(out_h, round(height * scale)), max(out_w, round(width * scale))
  top, left = (new_h - out_h) // 2, (new_w - out_w) // 2
  out = np.empty((len(frames), out_h, out_w, 3), np.uint8)
  for i, frame in enumerate(frames):
    image = Image.fromarray(frame)
    if (new_h, new_w) != (height, width):
      # Pillow's BICUBIC on reduction filters over the full footprint (antialiased).
      image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    out[i] = np.asarray(image)[top : top + out_h, left : left + out_w]
  return out


def to_uint8(video: np.ndarray) -> np.ndarray:
  """A float video in [-1, 1] -> uint8 (rounded, clipped)."""
  return np.clip(np.round((np.asarray(video) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def _write_gif(path: str, frames: np.ndarray, fps: float):
  """`[T, H, W, 3]` uint8 as a looping gif with one 256-colour palette for the whole video (a fast
  octree over every frame's pixels), each frame mapped onto it without dithering. Pillow's
  default, a median-cut palette per frame, took 3.6 s for a 480-frame 64 px minute (15x this)."""
  if len(frames) == 0:
    raise ValueError(f"write_video: {path}: no frames")
  palette = Image.fromarray(frames.reshape(-1, *frames.shape[2:])).quantize(
      256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
  images = [Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE)
            for f in frames]
  images[0].save(path, save_all=True, append_images=images[1:], duration=1000.0 / fps, loop=0)


def write_video(path: str, frames: np.ndarray, fps: float):
  """Write `[T, H, W, 3]` uint8 as mp4 (H.264, yuv420p) or gif, chosen by extension."""
  frames = np.asarray(frames, np.uint8)
  ext = os.path.splitext(path)[1].lower()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  if ext == ".gif":
    _write_gif(path, frames, fps)
  elif ext in (".mp4", ".m4v", ".mov", ".mkv"):
    # yuv420p needs even sides; crop one pixel instead of letting imageio rescale.
    even = frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]
    iio.imwrite(path, even, plugin="FFMPEG", fps=fps, codec="libx264", macro_block_size=1,
                pixelformat="yuv420p")
  else:
    raise ValueError(f"write_video: {path}: extension {ext!r} unsupported; use .mp4 or .gif")
