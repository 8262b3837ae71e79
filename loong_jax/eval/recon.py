"""Reconstruction metrics of the video tokenizer: PSNR, SSIM (through dm-pix) and codebook usage.

Pixel convention: every function takes videos as uint8 in [0, 255] or as floats in [-1, 1] (the
tokenizer's pixel range), shaped `[..., H, W, 3]` (a frame, a video `[T, H, W, 3]` or a batch
`[N, T, H, W, 3]`). Both are mapped to floats in [0, 1] before measuring, so PSNR is in dB of a
unit peak and SSIM uses `max_val=1`.

PSNR and SSIM are computed per frame and averaged over all frames (every frame weighs the same).
SSIM is `dm_pix.ssim` (Wang et al. 2004): an 11x11 Gaussian window (sigma 1.5), K1 = 0.01,
K2 = 0.03, population covariances, per channel, averaged over the pixels whose window lies inside
the frame; it matches `skimage.metrics.structural_similarity(..., gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=-1)` (tests).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np

PSNR_MAX_DB = 100.0  # identical frames (MSE 0): capped so the value stays a finite number
SSIM_SIGMA = 1.5
SSIM_WINDOW = 11
_FRAMES_PER_CALL = 64  # frames per jitted call: bounds memory for long videos


def to_unit_range(video) -> np.ndarray:
  """uint8 [0, 255] or float [-1, 1] `[..., H, W, C]` -> float32 [0, 1], same shape."""
  video = np.asarray(video)
  if video.dtype == np.uint8:
    return video.astype(np.float32) / 255.0
  if not np.issubdtype(video.dtype, np.floating):
    raise TypeError(f"videos must be uint8 or float in [-1, 1], got dtype {video.dtype}")
  return np.clip((video.astype(np.float32) + 1.0) / 2.0, 0.0, 1.0)


def _frames(real, fake) -> tuple[np.ndarray, np.ndarray]:
  """Both videos as `[F, H, W, C]` float [0, 1] frames; shapes must agree."""
  real, fake = to_unit_range(real), to_unit_range(fake)
  if real.shape != fake.shape:
    raise ValueError(f"real {real.shape} and reconstruction {fake.shape} differ in shape")
  if real.ndim < 3:
    raise ValueError(f"videos must be [..., H, W, C], got shape {real.shape}")
  return real.reshape(-1, *real.shape[-3:]), fake.reshape(-1, *fake.shape[-3:])


def _chunked(fn, real: np.ndarray, fake: np.ndarray) -> np.ndarray:
  """`fn` over frame chunks, concatenated: `[F]`."""
  out = [np.asarray(fn(jnp.asarray(real[i:i + _FRAMES_PER_CALL]),
                       jnp.asarray(fake[i:i + _FRAMES_PER_CALL])))
         for i in range(0, len(real), _FRAMES_PER_CALL)]
  return np.concatenate(out)


@jax.jit
def _psnr_frames(real: jax.Array, fake: jax.Array) -> jax.Array:
  return jnp.minimum(dm_pix.psnr(real, fake), PSNR_MAX_DB)


def psnr_per_frame(real, fake) -> np.ndarray:
  """PSNR in dB of each frame: `[..., H, W, 3]` x 2 -> `[F]` (F = product of leading dims)."""
  return _chunked(_psnr_frames, *_frames(real, fake))


def psnr(real, fake) -> float:
  """Mean per-frame PSNR in dB (peak 1 after mapping to [0, 1]; at most `PSNR_MAX_DB`)."""
  return float(np.mean(psnr_per_frame(real, fake)))


_ssim_frames = jax.jit(functools.partial(dm_pix.ssim, max_val=1.0, filter_size=SSIM_WINDOW,
                                         filter_sigma=SSIM_SIGMA))


def ssim_per_frame(real, fake) -> np.ndarray:
  """SSIM of each frame: `[..., H, W, 3]` x 2 -> `[F]`; frames need H, W >= 11."""
  real, fake = _frames(real, fake)
  if min(real.shape[1:3]) < SSIM_WINDOW:
    raise ValueError(f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got "
                     f"{real.shape[1]}x{real.shape[2]}")
  return _chunked(_ssim_frames, real, fake)


def ssim(real, fake) -> float:
  """Mean per-frame SSIM (Gaussian window, Wang et al. 2004)."""
  return float(np.mean(ssim_per_frame(real, fake)))


def codebook_usage(ids: Iterable, codebook_size: int) -> dict[str, float]:
  """How much of the codebook a set of token id arrays uses.

  Args:
    ids: arrays of code ids in `[0, codebook_size)`, any shapes (e.g. `[T', h, w]` per clip).
    codebook_size: number of codes K.
  Returns:
    `{"usage": fraction of the K codes that occur at least once, "perplexity": exp(entropy) of the
    code histogram in [1, K] (K when every code is equally frequent), "count": ids seen}`.
  """
  counts = np.zeros(codebook_size, np.int64)
  for array in ids:
    flat = np.asarray(array).reshape(-1)
    if flat.size == 0:
      continue
    if flat.min() < 0 or flat.max() >= codebook_size:
      raise ValueError(f"code ids must lie in [0, {codebook_size}), got range "
                       f"[{flat.min()}, {flat.max()}]")
    counts += np.bincount(flat.astype(np.int64), minlength=codebook_size)
  total = counts.sum()
  if total == 0:
    raise ValueError("codebook_usage: no code ids given")
  p = counts[counts > 0] / total
  return {"usage": float((counts > 0).mean()), "perplexity": float(np.exp(-(p * np.log(p)).sum())),
          "count": int(total)}
