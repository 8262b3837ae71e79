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
"""

from __future__ import annotations

import numpy as np


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
