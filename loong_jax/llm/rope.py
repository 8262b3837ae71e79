"""Rotary position embeddings.

Convention: "rotate half" (the first and second halves of each head are the two coordinates of a
rotated pair), as Hugging Face LLaMA, so imported checkpoints need no weight permutation.
Frequency slot i (of head_dim / 2) rotates at `theta ** (-2i / head_dim)`.

`rotary(kind, ...)` is the seam for new position schemes: a scheme maps the model's positions
input to per-token angles `[B, L, head_dim // 2]`; `apply_rope` is shared by all of them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def inverse_frequencies(head_dim: int, theta: float) -> jax.Array:
  """`[head_dim // 2]` float32 rotation speeds, fastest first."""
  if head_dim % 2:
    raise ValueError(f"head_dim={head_dim} must be even for rotary embeddings")
  return 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))


def rope_1d_angles(positions: jax.Array, head_dim: int, theta: float) -> jax.Array:
  """1D RoPE. positions `[B, L]` (int or float) -> angles `[B, L, head_dim // 2]` float32."""
  return positions.astype(jnp.float32)[..., None] * inverse_frequencies(head_dim, theta)


# MM-RoPE [Lumos]: the frequency slots come in groups of 16 (from fast to slow), and inside every
# group 4 slots rotate with t, 6 with h and 6 with w, so each axis gets frequencies from the whole
# spectrum (interleaved) rather than one band of it.
MM_ROPE_GROUP = (0,) * 4 + (1,) * 6 + (2,) * 6


def mm_rope_angles(positions: jax.Array, head_dim: int, theta: float) -> jax.Array:
  """MM-RoPE. positions `[B, L, 3]` (t, h, w) -> angles `[B, L, head_dim // 2]` float32.

  A token whose three positions are equal (text and special tokens: t = h = w = its index) gets
  exactly 1D RoPE. `[B, L]` positions are taken as such text positions.
  """
  slots = head_dim // 2
  if slots % len(MM_ROPE_GROUP):
    raise ValueError(f"config.lm.head_dim={head_dim}: MM-RoPE needs head_dim / 2 to be a "
                     f"multiple of {len(MM_ROPE_GROUP)}")
  if positions.ndim == 2:
    positions = jnp.repeat(positions[..., None], 3, axis=-1)
  axis_of_slot = jnp.tile(jnp.asarray(MM_ROPE_GROUP), slots // len(MM_ROPE_GROUP))
  per_slot = jnp.take(positions.astype(jnp.float32), axis_of_slot, axis=-1)  # [B, L, slots]
  return per_slot * inverse_frequencies(head_dim, theta)


ROPE_KINDS = {"rope_1d": rope_1d_angles, "mm_rope": mm_rope_angles}


def rotary(kind: str, positions: jax.Array, head_dim: int, theta: float):
  """Angles for the configured scheme -> `(sin, cos)`, each `[B, L, head_dim // 2]` float32."""
  if kind not in ROPE_KINDS:
    raise ValueError(f"config.lm.rope={kind!r}; known: {sorted(ROPE_KINDS)}")
  angles = ROPE_KINDS[kind](positions, head_dim, theta)
  return jnp.sin(angles), jnp.cos(angles)


def apply_rope(x: jax.Array, sin: jax.Array, cos: jax.Array) -> jax.Array:
  """Rotate `x` `[B, L, H, head_dim]` by per-token angles (sin/cos `[B, L, head_dim // 2]`).

  Computed in float32, returned in x's dtype.
  """
  dtype = x.dtype
  x = x.astype(jnp.float32)
  x1, x2 = jnp.split(x, 2, axis=-1)
  sin, cos = sin[:, :, None, :], cos[:, :, None, :]
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(dtype)
