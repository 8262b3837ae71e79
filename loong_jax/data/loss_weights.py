"""Per-token loss weights of SPEC §4: re-weighting latent frames so long clips do not drown the
hard first frames.

The video targets of latent frame f are its `<boi>`, its video ids and its `<eoi>`; the final
`<eov>` counts with the last frame (as in `data/token_stream.py`). Schemes (`scheme=`), for one
sequence with F latent frames:
  * `uniform`: every video target 1.
  * `first_frame`: targets of latent frame 0 get `first_frame_weight` (w0, default 5.0), others 1.
  * `linear_decay`: frame f gets `linspace(w0, 1, F)[f]` (Lumos-1's frame decay; F = 1 gives w0).
  * `per_frame_mean`: every video target gets `1 / F`. Frames are equal in size (n targets; the
    last has `<eov>` too), so the row's video loss is, up to that one token, the mean over frames
    of the per-frame mean loss scaled by n: every row carries the weight of one frame, and an
    image and a 65-frame clip count the same in a mixed batch [ours].

Text-id targets get `text_weight` (default 0: text is conditioning, not a target); `<bov>`,
`<no_text>` and `<pad>` targets get 0.

On top of any scheme, `changed_token_weights` multiplies the video ids that differ from their
frame-mate one latent frame earlier by `changed_weight` [ours]: in a clip of a small moving object
on a still background, the few blocks where it moves carry all of the motion, and summed with the
many copied blocks their loss is too small a share for a small LM to learn the prompted direction.

Pure array code: works on NumPy arrays (the data pipeline) and on `jax.numpy` arrays inside a
jitted step (pass `xp=jnp`).
"""

from __future__ import annotations

import numpy as np

from loong_jax import tokens

SCHEMES = ("uniform", "first_frame", "linear_decay", "per_frame_mean")


def target_frame_index(targets, vocab: tokens.Vocab, xp=np):
  """Latent frame of every target position, -1 outside frames: `[..., L]` int32.

  Unlike `tokens.frame_index` it works under `jax.jit` (`xp=jnp`) and on targets, which lack the
  leading `<bos>` (frames are found by `<boi>`/`<eoi>`, so that does not matter).
  """
  starts = xp.cumsum(targets == vocab.boi, axis=-1)
  is_end = targets == vocab.eoi
  ends = xp.cumsum(is_end, axis=-1) - is_end
  return xp.where(starts > ends, starts - 1, -1).astype(xp.int32)


def frame_loss_weights(targets, vocab: tokens.Vocab, scheme: str = "first_frame",
                       first_frame_weight: float = 5.0, text_weight: float = 0.0, xp=np):
  """Loss weight of every target token.

  Args:
    targets: `[..., L]` int32 next-token ids (`sequence[1:]`, padded with `<pad>`); each row holds
      one sequence.
    vocab: the id layout.
    scheme: one of `SCHEMES`.
    first_frame_weight: w0 of `first_frame` and `linear_decay`.
    text_weight: weight of text-id targets.
    xp: `numpy` or `jax.numpy`.
  Returns:
    `[..., L]` float32 weights.
  """
  if scheme not in SCHEMES:
    raise ValueError(f"loss weight scheme {scheme!r} unknown; known: {SCHEMES}")
  targets = xp.asarray(targets)
  is_text = (targets >= 0) & (targets < vocab.text_size)
  is_eov = targets == vocab.eov
  frame = target_frame_index(targets, vocab, xp)
  last = xp.max(frame, axis=-1, keepdims=True)                            # [..., 1]
  frame = xp.where(is_eov, last, frame)
  is_video = frame >= 0
  num_frames = (last + 1).astype(xp.float32)
  if scheme == "uniform":
    video = xp.ones(targets.shape, xp.float32)
  elif scheme == "first_frame":
    video = xp.where(frame == 0, xp.float32(first_frame_weight), xp.float32(1.0))
  elif scheme == "linear_decay":
    # linspace(w0, 1, F)[f] = w0 + (1 - w0) * f / (F - 1); F = 1 leaves w0.
    step = (1.0 - first_frame_weight) / xp.maximum(num_frames - 1.0, 1.0)
    video = first_frame_weight + step * frame.astype(xp.float32)
  else:
    # Every latent frame holds the same number n of video ids (build_sequence writes whole
    # frames), so "mean over frames of the per-frame mean", scaled by n, is 1/F per token.
    video = xp.ones(targets.shape, xp.float32) / xp.maximum(num_frames, 1.0)
  weights = xp.where(is_video, video, xp.where(is_text, xp.float32(text_weight), xp.float32(0.0)))
  return weights.astype(xp.float32)


def changed_token_weights(inputs, targets, vocab: tokens.Vocab,
                          changed_weight: float) -> np.ndarray:
  """`[..., L]` float32 multipliers: `changed_weight` for each video-id target that differs from
  its frame-mate one latent frame earlier (`tokens.previous_frame_inputs` of `inputs`), 1
  elsewhere (latent frame 0, unchanged ids, non-video targets). NumPy only (the data pipeline).

  Args:
    inputs: `[..., L]` int32 model inputs (`sequence[:-1]`).
    targets: `[..., L]` int32 next-token ids (`sequence[1:]`).
    vocab: the id layout.
    changed_weight: > 0; 1 leaves every weight as it is.
  """
  if not changed_weight > 0:
    raise ValueError(f"changed_weight={changed_weight} must be > 0 (1: off)")
  changed = changed_targets(inputs, targets, vocab)
  return np.where(changed, np.float32(changed_weight), np.float32(1.0)).astype(np.float32)


def changed_targets(inputs, targets, vocab: tokens.Vocab) -> np.ndarray:
  """`[..., L]` bool: the video-id targets that differ from their frame-mate one latent frame
  earlier (`tokens.previous_frame_inputs` of `inputs`); False in latent frame 0 and for
  non-video targets. NumPy only."""
  targets = np.asarray(targets)
  before = tokens.previous_frame_inputs(inputs, vocab)
  return (before >= 0) & vocab.is_video(targets) & (targets != before)
