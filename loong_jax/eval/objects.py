"""Does the video tokenizer keep the objects? Ground-truth object masks of the built-in dataset
and two figures measured inside them.

Whole-frame PSNR is dominated by the background (a medium object covers ~6% of a 64x64 frame),
so a tokenizer that paints the background and drops the object scores ~18 dB; these figures
look only where the objects are:

- `object_psnr`: per clip, PSNR over the pixels inside its object masks (all frames together;
  pixels in [0, 1], at most `recon.PSNR_MAX_DB`), averaged over clips.
- `object_visible`: the fraction of clips whose objects are *visible* in the reconstruction: in
  every frame where the mask is not empty, at least half of the mask's pixels *show the object*.
  A reconstructed pixel shows the object when its distance (Euclidean RGB) to the real pixel
  there -- the object's colour, since objects are painted flat -- is (a) under half the distance
  between that colour and the background pixel there (so it is nearer to the object than to the
  background), and (b) under its distance to the reconstruction's own background colour in that
  frame (the median of the reconstructed pixels outside the masks), so that a reconstruction of
  one wrong colour everywhere does not pass (mid-grey lies within half of purple's distance to
  black). A real clip scores 1 (distance 0; no object colour is a background shade) and a
  reconstruction that shows only the background scores 0 (distance = the whole
  object-background distance).

Masks and backgrounds are rebuilt from the dataset's attributes (`synthetic.SyntheticVideos`
gives per-frame centres and radii, `synthetic_render.shape_mask` the inside test), exactly as the
renderer draws them.
"""

from __future__ import annotations

import numpy as np

from loong_jax.data import synthetic, synthetic_render as render_lib
from loong_jax.eval import recon

VISIBLE_FRACTION = 0.5  # of a frame's mask pixels that show the object


def object_masks(data: synthetic.SyntheticVideos, index: int) -> tuple[np.ndarray, np.ndarray]:
  """`(masks [T, H, W] bool, background [H, W, 3] uint8)` of sample `index`: the pixels any
  object covers, and the background the renderer paints under them."""
  attrs, rng = data.attributes(index)
  side = data.config.resolution
  # The same generator draws as `SyntheticVideos.sample`, so the texture is the rendered one.
  background = render_lib.background(attrs["background"]["texture"],
                                     attrs["background"]["color"], side, side, rng)
  ys = np.arange(side, dtype=np.float32)[None, :, None] + 0.5
  xs = np.arange(side, dtype=np.float32)[None, None, :] + 0.5
  masks = np.zeros((attrs["num_frames"], side, side), bool)
  for obj in attrs["objects"]:
    cx = obj["centers"][:, 0, None, None].astype(np.float32)
    cy = obj["centers"][:, 1, None, None].astype(np.float32)
    r = obj["radii"][:, None, None].astype(np.float32)
    masks |= render_lib.shape_mask(obj["shape"], xs - cx, ys - cy, r)
  return masks, background


def _check(real, fake, masks, backgrounds=None):
  if real.shape != fake.shape or real.shape[:-1] != masks.shape:
    raise ValueError(f"object metrics: real {real.shape}, reconstruction {fake.shape} and masks "
                     f"{masks.shape} must be [N, T, H, W, 3] x 2 and [N, T, H, W]")
  if backgrounds is not None and backgrounds.shape != (real.shape[0], *real.shape[2:]):
    raise ValueError(f"object metrics: backgrounds {backgrounds.shape} must be [N, H, W, 3] for "
                     f"clips {real.shape}")


def object_psnr(real: np.ndarray, fake: np.ndarray, masks: np.ndarray) -> float:
  """Mean over clips of the PSNR (dB) inside the masks.

  Args:
    real, fake: `[N, T, H, W, 3]` uint8 (or float in [-1, 1]).
    masks: `[N, T, H, W]` bool; a clip without any mask pixel is an error.
  """
  real, fake, masks = np.asarray(real), np.asarray(fake), np.asarray(masks, bool)
  _check(real, fake, masks)
  real, fake = recon.to_unit_range(real), recon.to_unit_range(fake)
  counts = masks.sum((1, 2, 3))
  if not counts.all():
    raise ValueError(f"object_psnr: clips {np.flatnonzero(counts == 0).tolist()} have no object "
                     "pixels")
  sq = (((real - fake) ** 2).sum(-1) * masks).sum((1, 2, 3)) / (3 * counts)
  floor = 10.0 ** (-recon.PSNR_MAX_DB / 10.0)
  return float(np.mean(-10.0 * np.log10(np.maximum(sq, floor))))


def visible(real: np.ndarray, fake: np.ndarray, masks: np.ndarray,
            backgrounds: np.ndarray) -> np.ndarray:
  """Per clip, whether its objects are visible in `fake` (definition in the module docstring).

  Args:
    real, fake: `[N, T, H, W, 3]` uint8.
    masks: `[N, T, H, W]` bool.
    backgrounds: `[N, H, W, 3]` uint8, the static background of each clip.
  Returns:
    `[N]` bool.
  """
  real, fake, masks = np.asarray(real), np.asarray(fake), np.asarray(masks, bool)
  backgrounds = np.asarray(backgrounds)
  _check(real, fake, masks, backgrounds)
  real, fake = real.astype(np.float32), fake.astype(np.float32)
  to_object = ((fake - real) ** 2).sum(-1)
  contrast = ((real - backgrounds[:, None].astype(np.float32)) ** 2).sum(-1)
  outside = np.where(masks[..., None], np.nan, fake)
  fake_background = np.nanmedian(outside.reshape(*outside.shape[:2], -1, 3), axis=2)
  to_fake_background = ((fake - fake_background[:, :, None, None]) ** 2).sum(-1)
  shows = ((to_object < 0.25 * contrast) & (to_object < to_fake_background) & masks).sum((2, 3))
  area = masks.sum((2, 3))
  ok = (shows >= VISIBLE_FRACTION * area) | (area == 0)
  return ok.all(1)


def object_visible(real, fake, masks, backgrounds) -> float:
  """Fraction of clips whose objects are visible in the reconstruction."""
  return float(np.mean(visible(real, fake, masks, backgrounds)))
