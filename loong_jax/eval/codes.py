"""Are a tokenizer's codes easy for the LM? Temporal stability of the video codes.

The LM predicts every latent frame token by token. Where the content of a block does not change
(a still background), an LM-friendly code stays the same from one latent frame to the next, and
the next frame's code is nearly determined by the previous one at the same position. A CNN
encoder whose receptive field spans the frame can instead spread an object over every token: on
the CPU demo's black background, a moving object changed about 64% of a frame's codes, background
included, so the LM's loss on later frames (2.05 nats a token) stayed above its first-frame loss,
and sampled clips jumped from one latent frame to the next (issue 13). The oracle codec (8x8
block means) and the local encoder (`config.tokenizer.local_encoder`) keep ~84% unchanged.

`stability(codes)` of clips' codes `[N, F, h, w]` (F >= 3 latent frames), over the transitions
k-1 -> k for k >= 2 (latent frame 1 summarises 4 pixel frames, latent frame 0 one, so their codes
differ in kind even for a still clip):
  * `unchanged`: the fraction of tokens equal to the token at the same position one frame before;
  * `conditional_entropy`: H(code_k | code_{k-1} at the same position), nats, the plug-in estimate
    (biased low when the pairs are few next to the codes they use; compare runs at equal N);
    the loss floor of an LM that only copies from the same position;
  * `entropy`: H(code) over those tokens, nats; `top_share`: the most common code's share.

`locality(codes, masks)` says *where* codes change when the object moves (k >= 2 as above, only
transitions whose object blocks moved): `changed_near`, the fraction of tokens within `radius`
blocks of the object (in either frame) that change, and `changed_far`, the fraction of the
others. A local code changes near the object only (oracle and local encoder: 0 far); the demo's
default encoder changed 50% of the far tokens (and 94% of the near ones) on its 32 held-out clips,
so on its codes a one-block move is a change of most of the frame, not a shift of a few tokens.

`digit_information(codes, labels, levels)` asks whether an attribute has digits of its own: the
mutual information (nats) between an attribute (the object's colour, or its shape) and each FSQ
digit of the object's codes, and with the whole code. A code whose colour sat in digits apart
from its shape's would let digit-factorised embeddings and logits (`lm.digit_codes`) compose a
held-out colour-shape pair from its parts. Measured on the default demo's tokenizer (fresh clone
of 53d56ff; report.json tokenizer.codes.digit_information, 4,304 object tokens of 384 training
images): colour 0.16 / 0.30 / 0.36 / 0.19 nats in digits 0-3 (the whole code 1.51 of the
colour's 2.20), shape 0.05 / 0.03 / 0.03 / 0.03 (the code 0.80 of 1.79): every digit carries some
colour and mostly the block's place on the object, so colour is spread over all four digits,
not held apart.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _entropy(values: np.ndarray) -> float:
  """Plug-in entropy (nats) of the empirical distribution of `values` (any int array)."""
  _, counts = np.unique(values, return_counts=True)
  p = counts / counts.sum()
  return float(-(p * np.log(p)).sum())


def stability(codes: np.ndarray) -> dict[str, float]:
  """`{"unchanged", "conditional_entropy", "entropy", "top_share", "pairs"}` of int codes
  `[N, F, h, w]` (module docstring)."""
  codes = np.asarray(codes)
  if codes.ndim != 4 or codes.shape[1] < 3:
    raise ValueError(f"code stability: need codes [N, F >= 3, h, w], got shape {codes.shape}")
  prev = codes[:, 1:-1].reshape(-1).astype(np.int64)
  cur = codes[:, 2:].reshape(-1).astype(np.int64)
  if prev.min() < 0 or cur.min() < 0:
    raise ValueError("code stability: codes must be non-negative ids")
  pairs = prev * (int(cur.max()) + 1) + cur
  _, counts = np.unique(cur, return_counts=True)
  return {
      "unchanged": float(np.mean(prev == cur)),
      "conditional_entropy": _entropy(pairs) - _entropy(prev),
      "entropy": _entropy(cur),
      "top_share": float(counts.max() / counts.sum()),
      "pairs": int(cur.size),
  }


def block_occupancy(masks: np.ndarray, grid: tuple[int, int], temporal: int = 4) -> np.ndarray:
  """bool `[N, F, h, w]`: the latent blocks an object covers in any pixel frame a latent frame
  stands for (frame 0 for latent 0, frames 4k-3..4k for latent k), from pixel masks
  `[N, T, H, W]` (T = 1 + 4(F - 1))."""
  masks = np.asarray(masks, bool)
  n, t, height, width = masks.shape
  h, w = grid
  if (t - 1) % temporal or height % h or width % w:
    raise ValueError(f"block occupancy: masks {masks.shape} do not fit a {h}x{w} grid and "
                     f"{temporal}-frame latent frames")
  groups = [masks[:, :1]] + [masks[:, 1 + temporal * k:1 + temporal * (k + 1)]
                             for k in range((t - 1) // temporal)]
  frames = np.stack([g.any(axis=1) for g in groups], axis=1)  # [N, F, H, W]
  return frames.reshape(n, len(groups), h, height // h, w, width // w).any(axis=(3, 5))


def locality(codes: np.ndarray, masks: np.ndarray, radius: int = 2) -> dict[str, float]:
  """`{"changed_near", "changed_far", "far_share", "moved_transitions"}` of int codes
  `[N, F, h, w]` (F >= 3) and the clips' object masks `[N, T, H, W]` (module docstring);
  NaN fractions when no object moved."""
  codes = np.asarray(codes)
  if codes.ndim != 4 or codes.shape[1] < 3:
    raise ValueError(f"code locality: need codes [N, F >= 3, h, w], got shape {codes.shape}")
  occupied = block_occupancy(masks, codes.shape[2:])
  if occupied.shape[:2] != codes.shape[:2]:
    raise ValueError(f"code locality: masks {np.shape(masks)} do not match codes {codes.shape}")
  structure = np.ones((2 * radius + 1,) * 2, bool)
  near_sum = far_sum = near_n = far_n = moved = 0
  for i in range(codes.shape[0]):
    for k in range(2, codes.shape[1]):
      if np.array_equal(occupied[i, k], occupied[i, k - 1]):
        continue
      moved += 1
      near = ndimage.binary_dilation(occupied[i, k] | occupied[i, k - 1], structure)
      changed = codes[i, k] != codes[i, k - 1]
      near_sum, near_n = near_sum + changed[near].sum(), near_n + near.sum()
      far_sum, far_n = far_sum + changed[~near].sum(), far_n + (~near).sum()
  return {
      "changed_near": float(near_sum / near_n) if near_n else float("nan"),
      "changed_far": float(far_sum / far_n) if far_n else float("nan"),
      "far_share": float(far_n / (near_n + far_n)) if moved else float("nan"),
      "moved_transitions": int(moved),
  }


def digit_information(codes: np.ndarray, labels: np.ndarray,
                      levels: tuple[int, ...]) -> dict[str, object]:
  """`{"digits": [I(label; digit_i) per digit], "code": I(label; code)}` in nats (plug-in
  estimates, biased high when the tokens are few next to the codes they use) over object tokens:
  `codes` int `[N]` in [0, prod(levels)) (channel 0 the lowest digit, `llm/code_digits.py`),
  `labels` `[N]` the attribute of each token's object (any hashable values: colour names)."""
  from loong_jax.llm import code_digits  # noqa: PLC0415 -- numpy only; keeps eval free of llm

  codes, labels = np.asarray(codes).reshape(-1), np.asarray(labels).reshape(-1)
  if codes.shape != labels.shape or not codes.size:
    raise ValueError(f"digit information: need as many labels as codes (> 0), got "
                     f"{codes.shape} and {labels.shape}")
  if codes.min() < 0 or codes.max() >= int(np.prod(levels)):
    raise ValueError(f"digit information: codes outside [0, {int(np.prod(levels))})")
  _, label_ids = np.unique(labels, return_inverse=True)
  label_ids = label_ids.reshape(-1).astype(np.int64)

  def information(values):
    values = np.asarray(values, np.int64)
    joint = values * (int(label_ids.max()) + 1) + label_ids
    return _entropy(values) + _entropy(label_ids) - _entropy(joint)

  digits = code_digits.digits(codes, tuple(levels))
  return {"digits": [information(digits[:, i]) for i in range(len(levels))],
          "code": information(codes)}
