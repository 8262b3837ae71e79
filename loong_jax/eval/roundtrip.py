"""Does re-encoding keep the codes? `tokenizer.codes.roundtrip` in report.json.

Long videos re-encode their context at every clip [Loong]: the last latent frames are decoded to
pixels and encoded again (`inference/long_video.py`). Where decode -> encode does not give back
the same codes, the context drifts a little at every clip, and a minute compounds it: the demo's
5-latent-frame clips with 2 of context make 40 clips a minute. Measured on the `motion` variant's
learned codes (encoder_frames='last', local encoder; 16 clips): one round trip kept 71% of the
object's codes and 74% of the background's, five kept 54% / 78% (the decoder's near-black
background went to 9 codes where the renders use 1); its minute-long videos lost objects with
re-encoding (presence 0.8, then 0.4 per window) and not without it (0.8 in every window). The
oracle codec re-encodes exactly (1.0).

`measure(encode, decode, videos, object_blocks, rounds)`: `codes_0 = encode(videos)`, then
`rounds` times `codes_r = encode(decode(codes_{r-1}))`; per round, the share of object blocks
(`object_blocks`) and of the other blocks whose code equals `codes_0`'s, and `psnr`, dB of
`decode(codes_r)` against `decode(codes_0)`: whether the changed codes show (a code may change
to one that decodes to nearly the same pixels).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def measure(encode: Callable[[np.ndarray], np.ndarray], decode: Callable[[np.ndarray], np.ndarray],
            videos: np.ndarray, object_blocks: np.ndarray, rounds: int = 5,
            batch_size: int = 8,
            reencode: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> dict:
  """`{"object": [share per round], "background": [...], "psnr": [dB per round],
  "object_blocks", "blocks"}`.

  Args:
    encode: video `[B, T, H, W, 3]` float in [-1, 1] -> codes `[B, F, h, w]` (the codec that
      re-encoding uses, `long_video.VideoCodec.encode`).
    decode: codes `[B, F, h, w]` -> video `[B, T, H, W, 3]` in [-1, 1].
    videos: `[N, T, H, W, 3]` uint8 real clips.
    object_blocks: `[N, F, h, w]` bool, the blocks holding the object (e.g.
      `text_gap.object_tokens` of the clips' masks).
    rounds: decode -> encode round trips.
    batch_size: clips per codec call.
    reencode: `reencode(video, previous_codes) -> codes`, the round trip's encoder when it keeps
      codes by their latents (`long_video.VideoCodec.reencode` at a margin); None: `encode`.
  """
  if rounds < 1:
    raise ValueError(f"roundtrip: rounds={rounds} must be >= 1")
  videos = np.asarray(videos)
  if videos.ndim != 5 or videos.dtype != np.uint8:
    raise ValueError(f"roundtrip: videos must be uint8 [N, T, H, W, 3], got {videos.dtype} "
                     f"{videos.shape}")

  def batched(fn, x, *more):
    return np.concatenate([np.asarray(fn(x[i:i + batch_size], *(m[i:i + batch_size]
                                                                 for m in more)))
                           for i in range(0, len(x), batch_size)])

  codes0 = batched(encode, videos.astype(np.float32) / 127.5 - 1.0)
  mask = np.asarray(object_blocks, bool)
  if mask.shape != codes0.shape:
    raise ValueError(f"roundtrip: object_blocks {mask.shape} must match the codes "
                     f"{codes0.shape}")
  if not mask.any() or mask.all():
    raise ValueError("roundtrip: need both object and background blocks")
  out = {"object": [], "background": [], "psnr": [], "object_blocks": int(mask.sum()),
         "blocks": int(mask.size)}
  first = pixels = batched(decode, codes0)
  codes = codes0
  for _ in range(rounds):
    codes = (batched(encode, pixels) if reencode is None
             else batched(reencode, pixels, codes))
    pixels = batched(decode, codes)
    same = codes == codes0
    out["object"].append(float(same[mask].mean()))
    out["background"].append(float(same[~mask].mean()))
    mse = float(np.mean(np.square((np.clip(pixels, -1, 1) - np.clip(first, -1, 1)) / 2.0)))
    out["psnr"].append(float(-10 * np.log10(max(mse, 1e-10))))
  return out
