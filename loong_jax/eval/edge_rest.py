"""Does the LM stop a moving object at the frame's edge, as the minute-long data does?

In the demo's constant-speed world a straight motion reaches the edge within a few seconds and
the object rests there for the rest of a long clip (`synthetic._trajectory`). A minute-long video
is mostly that rest, so an LM that only ever saw objects move keeps moving them and they leave
the frame: long-video presence falls while every short clip is right. This check reads it off
real held-out long clips, teacher-forced: over the object tokens of each latent frame k >= 1 of
a moving object, the fraction whose argmax prediction (given the true tokens before it) is the
true code, split by what the object does in the pixel frames latent k stands for:

  * `move`: it moves;
  * `stop`: the first latent frame in which it rests (it moved in the one before);
  * `rest`: it rests, and rested in the one before too.

Measured on the demo's oracle codes (`oracle_frames='last'`, 24 clips of 65 frames; issue 13):
the `oracle` variant's LM, never trained on 65-frame clips: move 0.89, stop 0.10, rest 0.12; the
same LM with stage 3 half on 65-frame clips: 0.86 / 0.80 / 0.96.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from loong_jax import tokens
from loong_jax.eval import text_gap

KINDS = ("move", "stop", "rest")


def frame_kinds(centers: np.ndarray, temporal: int = 4) -> list[str | None]:
  """Per latent frame of a clip whose object follows `centers [T, 2]` (T = 1 + temporal * k):
  None for latent 0 (no motion yet) and for frames of an object that never moved, else one of
  `KINDS` (module docstring)."""
  centers = np.asarray(centers, np.float64)
  steps = np.abs(np.diff(centers, axis=0)).max(-1) > 1e-6  # [T - 1]: moved into frame t + 1
  count = 1 + (len(centers) - 1) // temporal
  kinds: list[str | None] = [None]
  for k in range(1, count):
    moved = steps[temporal * (k - 1):temporal * k].any()
    if moved:
      kinds.append("move")
    elif not steps[:temporal * (k - 1)].any():
      kinds.append(None)  # never moved: a still object, not a stop
    else:
      kinds.append("rest" if kinds[-1] in ("stop", "rest") else "stop")
  return kinds


def measure(logits_fn: text_gap.LogitsFn, vocab: tokens.Vocab, texts: Sequence[np.ndarray],
            codes: np.ndarray, token_masks: np.ndarray, kinds: Sequence[Sequence[str | None]],
            max_text_len: int, batch_size: int) -> dict[str, float | int]:
  """`{"move", "stop", "rest"}` accuracies (a kind that never occurs is left out), `{kind}_frames`
  counts and `clips` (module docstring).

  Args:
    logits_fn: the LM, `inputs [B, L] -> logits [B, L, V]` (`text_gap.model_logits`).
    vocab: the id layout.
    texts: per clip, text ids `[N]`.
    codes: `[B, F, h, w]` true codes of the clips.
    token_masks: `[B, F, h, w]` bool, the object's tokens (`text_gap.object_tokens`).
    kinds: per clip, `frame_kinds` of its object (F entries).
    max_text_len: text ids kept, as in training.
    batch_size: clips per LM call.
  """
  codes, masks = np.asarray(codes), np.asarray(token_masks, bool)
  b, f, h, w = codes.shape
  if masks.shape != codes.shape or len(kinds) != b or any(len(k) != f for k in kinds):
    raise ValueError(f"edge_rest: codes {codes.shape}, token masks {masks.shape} and {len(kinds)} "
                     "kind lists must agree")
  seqs = [tokens.build_sequence(np.asarray(t)[:max_text_len], c, vocab)
          for t, c in zip(texts, codes)]
  length = max(len(s) for s in seqs)
  right = {kind: [] for kind in KINDS}
  for start in range(0, b, batch_size):
    chunk = seqs[start:start + batch_size]
    batch = np.full((len(chunk), length), vocab.pad, np.int32)
    for i, s in enumerate(chunk):
      batch[i, :len(s)] = s
    predicted = np.asarray(logits_fn(batch[:, :-1])).argmax(-1)
    for i, s in enumerate(chunk):
      n = start + i
      slots = np.flatnonzero(vocab.is_video(s))  # F * h * w, frame by frame
      guess = predicted[i, slots - 1].reshape(f, h, w)
      truth = s[slots].reshape(f, h, w)
      for k, kind in enumerate(kinds[n]):
        if kind is not None and masks[n, k].any():
          right[kind].append((guess[k] == truth[k])[masks[n, k]])
  out: dict[str, float | int] = {"clips": int(b)}
  for kind in KINDS:
    if right[kind]:
      out[kind] = float(np.concatenate(right[kind]).mean())
    out[f"{kind}_frames"] = len(right[kind])
  return out
