"""Clips for tokenizer training: procedural moving shapes, or a folder of video files.

`make_clip_iterator(config, seed)` is the one entry point the trainer uses; it yields float32
batches `[B, T, H, W, 3]` in [-1, 1] (T = `config.data.frames`, H = W = `config.data.resolution`).
The shapes source is deterministic from the seed and needs no files; the folder source
(`config.data.folder`) reads any video imageio can decode, and skips unreadable or too-short files
with a logged count.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import imageio.v3 as iio
import numpy as np
from absl import logging
from PIL import Image

# Shape sizes as fractions of the frame side; speeds are in pixels per frame at 64 px.
MIN_SIZE, MAX_SIZE = 0.12, 0.3
REFERENCE_RESOLUTION = 64


def to_model_range(clips: np.ndarray) -> np.ndarray:
  """uint8 `[..., 3]` -> float32 in [-1, 1]."""
  return clips.astype(np.float32) / 127.5 - 1.0


def bounce(position: np.ndarray, limit: float) -> np.ndarray:
  """Reflect positions off the walls 0 and `limit` (a triangle wave)."""
  period = 2.0 * limit
  p = np.mod(position, period)
  return np.where(p > limit, period - p, p)


def moving_shapes_clip(rng: np.random.Generator, frames: int, resolution: int, num_shapes: int,
                       max_speed: float) -> np.ndarray:
  """One clip `[frames, resolution, resolution, 3]` uint8: shapes gliding over a colour gradient.

  Background: a linear blend of two random colours along a random direction. Shapes: discs and
  squares of random colour and size, constant velocity, bouncing off the borders, 1-pixel soft edges.
  """
  grid = (np.arange(resolution, dtype=np.float32) + 0.5)
  yy, xx = np.meshgrid(grid, grid, indexing="ij")
  angle = rng.uniform(0, 2 * np.pi)
  ramp = ((np.cos(angle) * xx + np.sin(angle) * yy) / resolution + 1.0) / 2.0
  c0, c1 = rng.uniform(0, 255, (2, 3))
  background = c0 + (c1 - c0) * ramp[..., None]
  video = np.broadcast_to(background, (frames, resolution, resolution, 3)).copy()
  speed_scale = resolution / REFERENCE_RESOLUTION
  t = np.arange(frames, dtype=np.float32)[:, None, None]
  for _ in range(num_shapes):
    size = rng.uniform(MIN_SIZE, MAX_SIZE) * resolution
    start = rng.uniform(0, resolution, 2)
    velocity = rng.uniform(-max_speed, max_speed, 2) * speed_scale
    cy = bounce(start[0] + velocity[0] * t, resolution)
    cx = bounce(start[1] + velocity[1] * t, resolution)
    if rng.random() < 0.5:
      distance = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) - size / 2
    else:
      distance = np.maximum(np.abs(yy - cy), np.abs(xx - cx)) - size / 2
    alpha = np.clip(0.5 - distance, 0.0, 1.0)[..., None]
    colour = rng.uniform(0, 255, 3)
    video = video * (1 - alpha) + colour * alpha
  return np.clip(np.round(video), 0, 255).astype(np.uint8)


def shapes_clips(data_config, seed: int) -> Iterator[np.ndarray]:
  """Endless deterministic stream of uint8 clips `[T, H, W, 3]`."""
  rng = np.random.default_rng(seed)
  while True:
    yield moving_shapes_clip(rng, data_config.frames, data_config.resolution,
                             data_config.num_shapes, data_config.max_speed)


def fit_frame(frame: np.ndarray, resolution: int) -> np.ndarray:
  """Centre-crop to a square and resize to `resolution` (uint8 RGB `[H, W, 3]`)."""
  if frame.ndim == 2:
    frame = np.stack([frame] * 3, axis=-1)
  frame = frame[..., :3]
  h, w = frame.shape[:2]
  side = min(h, w)
  top, left = (h - side) // 2, (w - side) // 2
  crop = Image.fromarray(frame[top:top + side, left:left + side].astype(np.uint8))
  return np.asarray(crop.resize((resolution, resolution), Image.BICUBIC))


def read_clip(path: str, frames: int, resolution: int) -> np.ndarray:
  """The first `frames` frames of a video file as uint8 `[frames, R, R, 3]`; raises if it cannot."""
  out = []
  for frame in iio.imiter(path):
    out.append(fit_frame(np.asarray(frame), resolution))
    if len(out) == frames:
      return np.stack(out)
  raise ValueError(f"{path}: only {len(out)} frames, need {frames}")


def folder_clips(data_config, seed: int) -> Iterator[np.ndarray]:
  """Clips from every readable video in `data_config.folder`, reshuffled each pass.

  Unreadable, corrupt or too-short files are skipped; each pass logs how many were skipped.
  """
  folder = data_config.folder
  if not os.path.isdir(folder):
    raise FileNotFoundError(f"config.data.folder: {folder!r} is not a directory")
  paths = sorted(os.path.join(folder, n) for n in os.listdir(folder)
                 if os.path.isfile(os.path.join(folder, n)))
  rng = np.random.default_rng(seed)
  while True:
    yielded = skipped = 0
    for i in rng.permutation(len(paths)):
      try:
        clip = read_clip(paths[i], data_config.frames, data_config.resolution)
      except Exception as e:  # noqa: BLE001 -- any decoder error means "skip this file"
        skipped += 1
        logging.warning("skipping %s: %s: %s", paths[i], type(e).__name__, e)
        continue
      yielded += 1
      yield clip
    logging.info("config.data.folder=%s: %d clips read, %d files skipped (unreadable or shorter "
                 "than %d frames)", folder, yielded, skipped, data_config.frames)
    if not yielded:
      raise ValueError(f"config.data.folder: none of the {len(paths)} files in {folder!r} is a "
                       f"readable video of at least {data_config.frames} frames")


def clip_source(data_config, seed: int) -> Iterator[np.ndarray]:
  return folder_clips(data_config, seed) if data_config.folder else shapes_clips(data_config, seed)


def make_clip_iterator(config, seed: int, batch_size: int | None = None) -> Iterator[np.ndarray]:
  """Batches float32 `[B, T, H, W, 3]` in [-1, 1]; B = `config.train.batch_size` by default."""
  batch_size = batch_size or config.train.batch_size
  clips = clip_source(config.data, seed)
  while True:
    yield to_model_range(np.stack([next(clips) for _ in range(batch_size)]))
