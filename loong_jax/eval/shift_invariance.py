"""Do a tokenizer's codes move with the object? `tokenizer.codes.shift_invariance` in report.json.

An LM draws an object by emitting its blocks' codes. If the same object moved by whole latent
blocks keeps the same codes (shifted), the LM learns one code pattern per object and can carry
it from frame to frame by copying; if the codes also depend on where in the frame the object is
(an encoder whose receptive field spans the frame), every position is a pattern of its own. The
demo's tokenizer was measured that way: over 4,096 training images of 96 object classes, 4,087
distinct object code patterns (objects placed anywhere), 1,812 with centres on the 8-px grid.

`measure(encode_fn, ...)`: for `objects` random single objects on a plain background, render an
image with the object's centre on a block corner and again moved by whole blocks (`shifts`),
encode all, and compare the codes of the blocks around the object (its blocks and a ring of
`ring` blocks) with the unmoved image's, shifted back. `same` = the share of those blocks whose
code is identical; 1.0 for a translation-equivariant encoder (the oracle codec), less where the
codes depend on the position in the frame.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from loong_jax.data import synthetic
from loong_jax.data import synthetic_render as render_lib

DEFAULT_SHIFTS = ((1, 0), (0, 1), (-1, 0), (0, -1), (1, 1))  # whole blocks (dx, dy)


def _image(obj: dict, center: np.ndarray, background: np.ndarray) -> np.ndarray:
  """`[1, H, W, 3]` uint8: `obj` (colour, shape, radius) at `center` (x, y) over `background`."""
  one = dict(obj, centers=np.asarray(center, np.float32)[None], radii=np.float32([obj["radius"]]))
  return render_lib.render(background, [one], 1)


def measure(encode_fn: Callable[[np.ndarray], np.ndarray], resolution: int = 64, block: int = 8,
            objects: int = 16, shifts: Sequence[tuple[int, int]] = DEFAULT_SHIFTS,
            ring: int = 1, sizes: Sequence[str] = ("medium", "large"),
            background_color: str = "black", batch_size: int = 8, seed: int = 0) -> dict:
  """`{"same", "pairs", "blocks"}` (module docstring).

  Args:
    encode_fn: float32 `[B, 1, H, W, 3]` in [-1, 1] -> int codes `[B, 1, h, w]` (the contract of
      `data/encoders.py`, images as 1-frame videos); called with batches of `batch_size`.
    resolution, block: the image side and the tokenizer's spatial downsampling.
    objects: random objects (colour, shape, size from `sizes`), each at a random block corner
      with room for every shift.
    shifts: whole-block moves `(dx, dy)` compared with the unmoved image.
    ring: blocks around the object's own that are compared too (the background next to it).
  Returns:
    `same`: share of compared blocks with the identical code; `pairs`: image pairs compared;
    `blocks`: blocks compared.
  """
  if resolution % block:
    raise ValueError(f"shift_invariance: resolution {resolution} is not a multiple of {block}")
  rng = np.random.default_rng(seed)
  bg = render_lib.background("plain", background_color, resolution, resolution, rng)
  reach = max(max(abs(dx), abs(dy)) for dx, dy in shifts) * block
  images, layouts = [], []
  for _ in range(objects):
    size = str(rng.choice(list(sizes)))
    obj = {"color": str(rng.choice(list(render_lib.COLORS))),
           "shape": str(rng.choice(list(render_lib.SHAPES))),
           "radius": synthetic.SIZES[size] * resolution}
    margin = obj["radius"] + reach
    corners = np.arange(block, resolution, block)
    corners = corners[(corners >= margin) & (corners <= resolution - margin)]
    if not len(corners):
      raise ValueError(f"shift_invariance: a {size} object moved by {shifts} blocks does not "
                       f"fit a {resolution}-px image")
    center = rng.choice(corners, 2).astype(np.float32)
    layouts.append((obj, center))
    images.append(_image(obj, center, bg))
    images.extend(_image(obj, center + block * np.asarray(s, np.float32), bg) for s in shifts)
  video = np.stack(images).astype(np.float32) / 127.5 - 1.0
  pad = -len(video) % batch_size
  video = np.concatenate([video, np.repeat(video[:1], pad, 0)])
  codes = np.concatenate([np.asarray(encode_fn(video[i:i + batch_size]))
                          for i in range(0, len(video), batch_size)])[:len(images), 0]
  same = total = 0
  per = 1 + len(shifts)
  for k, (obj, center) in enumerate(layouts):
    base = codes[k * per]
    lo = np.floor((center - obj["radius"]) / block).astype(int) - ring
    hi = np.ceil((center + obj["radius"]) / block).astype(int) + ring
    for j, (dx, dy) in enumerate(shifts):
      moved = codes[k * per + 1 + j]
      ys, xs = np.mgrid[lo[1]:hi[1], lo[0]:hi[0]]
      ok = ((ys >= 0) & (xs >= 0) & (ys < base.shape[0]) & (xs < base.shape[1])
            & (ys + dy >= 0) & (xs + dx >= 0) & (ys + dy < base.shape[0])
            & (xs + dx < base.shape[1]))
      ys, xs = ys[ok], xs[ok]
      same += int(np.sum(base[ys, xs] == moved[ys + dy, xs + dx]))
      total += len(ys)
  return {"same": same / max(total, 1), "pairs": len(layouts) * len(shifts), "blocks": total}
