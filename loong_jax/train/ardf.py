"""AR-DF training [Lumos]: autoregressive discrete diffusion forcing.

Instead of next-token prediction, video tokens are masked (input `<mask>`) and the model predicts
each masked token *at its own position*, attending to its whole latent frame (frame-bidirectional
mask) and to earlier frames. Masks are sampled per example inside the jitted step:

- `tube`: ratio r = max(cos(pi/2 * u), min_ratio), u ~ U(0, 1); round(N * r) of the N spatial
  positions are chosen once and masked in every latent frame (the same tube through time), so a
  frame cannot be copied from the same position of the previous frame.
- `random`: every video token masked independently with the example's ratio r.
- `per_frame`: each latent frame draws its own ratio and its own positions.

The loss covers masked video tokens only; text is conditioning.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

MASK_KINDS = ("tube", "random", "per_frame")


def mask_ratio(key, shape, min_ratio: float) -> jax.Array:
  """r = max(cos(pi/2 u), min_ratio), u ~ U(0, 1): float32 of `shape`, in [min_ratio, 1]."""
  u = jax.random.uniform(key, shape)
  return jnp.maximum(jnp.cos(jnp.pi / 2 * u), min_ratio)


def choose_positions(key, ratio, n: int) -> jax.Array:
  """`[..., n]` booleans with exactly round(n * ratio) True per row, at random places."""
  ranks = jnp.argsort(jnp.argsort(jax.random.uniform(key, ratio.shape + (n,)), axis=-1), axis=-1)
  return ranks < jnp.round(n * ratio)[..., None]


def frame_offsets(inputs, boi_id: int) -> jax.Array:
  """`[B, L]` position of each token after its frame's `<boi>` (0 = first video token)."""
  slots = jnp.arange(inputs.shape[-1])
  last_boi = jax.lax.cummax(jnp.where(inputs == boi_id, slots, -1), axis=inputs.ndim - 1)
  return slots - last_boi - 1


def video_mask(key, inputs, frames, *, kind: str, min_ratio: float, tokens_per_frame: int,
               video_range: tuple[int, int], boi_id: int, max_frames: int) -> jax.Array:
  """Which input positions to mask: `[B, L]` bool, only ever on video ids.

  Args:
    inputs: `[B, L]` int32 unified sequence. frames: `[B, L]` latent frame of each input (-1 out).
    kind: one of `MASK_KINDS`. min_ratio: lower bound of the mask ratio (0.7 in Lumos).
    tokens_per_frame: N, video ids per latent frame. video_range: `[lo, hi)` of video ids.
    boi_id: the `<boi>` id. max_frames: an upper bound of latent frames per sequence.
  """
  if kind not in MASK_KINDS:
    raise ValueError(f"config.train.ardf.mask_kind={kind!r}; known: {MASK_KINDS}")
  batch = inputs.shape[0]
  is_video = (inputs >= video_range[0]) & (inputs < video_range[1])
  offsets = jnp.clip(frame_offsets(inputs, boi_id), 0, tokens_per_frame - 1)
  ratio_key, pick_key = jax.random.split(key)
  if kind == "tube":
    spatial = choose_positions(pick_key, mask_ratio(ratio_key, (batch,), min_ratio),
                               tokens_per_frame)
    chosen = jnp.take_along_axis(spatial, offsets, axis=1)
  elif kind == "per_frame":
    per_frame = choose_positions(pick_key,
                                 mask_ratio(ratio_key, (batch, max_frames), min_ratio),
                                 tokens_per_frame)                       # [B, F, N]
    frame = jnp.clip(frames, 0, max_frames - 1)
    chosen = per_frame[jnp.arange(batch)[:, None], frame, offsets]
  else:
    ratio = mask_ratio(ratio_key, (batch,), min_ratio)
    chosen = jax.random.uniform(pick_key, inputs.shape) < ratio[:, None]
  return chosen & is_video


def ardf_batch(key, batch, *, mask_id: int, **mask_kwargs):
  """Turn an LM batch into an AR-DF batch: masked inputs, same-position targets, masked weights.

  `batch` needs `inputs` and `input_frame` `[B, L]`; `targets` becomes the unmasked inputs and
  `weights` 1 exactly on masked video tokens; `frame` (for the per-frame loss metrics) becomes
  `input_frame`.
  """
  masked = video_mask(key, batch["inputs"], batch["input_frame"], **mask_kwargs)
  out = dict(batch)
  out["targets"] = batch["inputs"]
  out["inputs"] = jnp.where(masked, mask_id, batch["inputs"])
  out["weights"] = masked.astype(jnp.float32)
  if "frame" in batch:
    out["frame"] = batch["input_frame"]
  return out
