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
import numpy as np


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
# Layouts of the axes over the slots: 'groups' (Lumos) repeats MM_ROPE_GROUP; 'slots' [ours]
# keeps its 4:6:6 shares but interleaves the axes slot by slot. With one group (head_dim 32, the
# CPU models) 'groups' leaves w only the 6 slowest slots: at theta 1e4 one column (8 position
# units) turns w's fastest slot by 0.025 rad, so attention cannot tell neighbouring columns apart.
MM_ROPE_LAYOUTS = ("groups", "slots")


def mm_rope_axes(slots: int, layout: str = "groups") -> np.ndarray:
  """`[slots]` int axis (0 t, 1 h, 2 w) of each frequency slot, fastest first.

  'slots': at each slot the axis furthest behind its share of MM_ROPE_GROUP (ties: t, h, w
  order), so every run of 8 consecutive slots holds every axis.
  """
  group = len(MM_ROPE_GROUP)
  if slots % group:
    raise ValueError(f"MM-RoPE needs head_dim / 2 = {slots} to be a multiple of {group}")
  if layout == "groups":
    return np.tile(np.asarray(MM_ROPE_GROUP), slots // group)
  if layout != "slots":
    raise ValueError(f"config.lm.mm_rope_layout={layout!r}; known: {MM_ROPE_LAYOUTS}")
  share = np.bincount(MM_ROPE_GROUP, minlength=3) / group
  taken = np.zeros(3)
  out = np.zeros(slots, np.int64)
  for i in range(slots):
    axis = int(np.argmax(share * (i + 1) - taken + 1e-9 * np.array([3, 2, 1])))
    out[i], taken[axis] = axis, taken[axis] + 1
  return out


def mm_rope_angles(positions: jax.Array, head_dim: int, theta: float,
                   layout: str = "groups") -> jax.Array:
  """MM-RoPE. positions `[B, L, 3]` (t, h, w) -> angles `[B, L, head_dim // 2]` float32.

  A token whose three positions are equal (text and special tokens: t = h = w = its index) gets
  exactly 1D RoPE. `[B, L]` positions are taken as such text positions. `layout`: see
  MM_ROPE_LAYOUTS.
  """
  if positions.ndim == 2:
    positions = jnp.repeat(positions[..., None], 3, axis=-1)
  axis_of_slot = jnp.asarray(mm_rope_axes(head_dim // 2, layout))
  per_slot = jnp.take(positions.astype(jnp.float32), axis_of_slot, axis=-1)  # [B, L, slots]
  return per_slot * inverse_frequencies(head_dim, theta)


ROPE_KINDS = {"rope_1d": rope_1d_angles, "mm_rope": mm_rope_angles}


def rotary(kind: str, positions: jax.Array, head_dim: int, theta: float,
           mm_rope_layout: str = "groups"):
  """Angles for the configured scheme -> `(sin, cos)`, each `[B, L, head_dim // 2]` float32
  (`mm_rope_layout`: the axes' slots for 'mm_rope', MM_ROPE_LAYOUTS)."""
  if kind not in ROPE_KINDS:
    raise ValueError(f"config.lm.rope={kind!r}; known: {sorted(ROPE_KINDS)}")
  if kind == "mm_rope":
    angles = mm_rope_angles(positions, head_dim, theta, mm_rope_layout)
  else:
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
