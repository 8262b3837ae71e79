"""Does the motion word change what the LM *draws*? Greedy latent frame 1 under two captions.

`text_gap.motion_frame1` is teacher-forced: a model can score a small positive gap there and
still draw the same next frame whatever the prompt says. This check generates instead: given the
text and the true latent frame 0 of held-out clips, the LM draws latent frame 1 greedily
(guidance off), once with the true caption and once with the motion phrase swapped for the
opposite one (`text_gap.swap_motion`: left <-> right, up <-> down, still -> right):

  * `changed`: the fraction of the frame's tokens near the object (its blocks in latent frames
    0 and 1, and their 8 neighbours) that differ between the two greedy frames. A model that
    ignores the motion word draws the same frame under both captions (0); one that moves the
    object by the word changes the blocks on either side of it;
  * `changed_far`: the same over the other tokens (the background, which the motion word should
    not change; the default demo tokenizer's codes there depend on where the object is);
  * `changed_paraphrase`: `changed` with the motion phrase replaced by another phrase of the
    *same* motion (`text_gap.paraphrase_motion`), the control: greedy decoding over codes with
    many near-ties flips tokens at any change of the prompt. The word is read where `changed`
    stands clearly above it.

Measured on the demo's stage-3 LMs (64 held-out clips): default oracle run 0.000 (its frame 1
is the same under either word); oracle runs trained on two-latent-frame clips first 0.09-0.14
near, under 0.01 far; the default learned run 0.42 near and 0.28 far, but its paraphrase
control is as high, so on those codes it says nothing.

Codes only, no decoding, so it works for any tokenizer and costs two greedy frames per clip.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from loong_jax import tokens
from loong_jax.eval.continuation import greedy_next_frame
from loong_jax.inference import decode


def measure(decoder: decode.Decoder, params, vocab: tokens.Vocab,
            texts: Sequence[np.ndarray], swapped: Sequence[np.ndarray], codes: np.ndarray,
            token_masks: np.ndarray, max_text_len: int,
            paraphrased: Sequence[np.ndarray] | None = None) -> dict[str, float]:
  """`{"changed", "changed_far", "changed_paraphrase" (with `paraphrased`), "clips"}` (module
  docstring).

  Args:
    decoder: a greedy decoder of the LM without guidance (`temperature=0`, `guidance_scale=1`).
    params: the LM's parameters, as `decoder` takes them.
    vocab: the id layout.
    texts, swapped: per clip, the text ids of the true caption and of the swapped one.
    codes: `[B, F >= 2, h, w]` true codes of the clips (latent frame 0 is the context).
    token_masks: `[B, F, h, w]` bool, the object's tokens (`text_gap.object_tokens`).
    max_text_len: text ids kept, as in training.
    paraphrased: per clip, the text ids of the caption with the motion said in other words.
  """
  codes, masks = np.asarray(codes), np.asarray(token_masks, bool)
  if codes.ndim != 4 or codes.shape[1] < 2 or masks.shape != codes.shape:
    raise ValueError(f"motion effect: need codes and masks [B, F >= 2, h, w], got {codes.shape} "
                     f"and {masks.shape}")
  if len(texts) != len(codes) or len(swapped) != len(codes) or (
      paraphrased is not None and len(paraphrased) != len(codes)):
    raise ValueError(f"motion effect: {len(texts)} and {len(swapped)} captions for "
                     f"{len(codes)} clips")
  if any(np.array_equal(a[:max_text_len], b[:max_text_len]) for a, b in zip(texts, swapped)):
    raise ValueError("motion effect: a swapped caption has the same text ids as the true one "
                     "(the motion phrase lies beyond max_text_len?)")
  def draw(captions):
    return greedy_next_frame(decoder, params, vocab, [t[:max_text_len] for t in captions],
                             codes[:, :1])

  true, other = draw(texts), draw(swapped)
  near = np.stack([ndimage.binary_dilation(m[0] | m[1], np.ones((3, 3), bool)) for m in masks])
  differ = true != other
  out = {"changed": float(differ[near].mean()),
         "changed_far": float(differ[~near].mean()) if (~near).any() else 0.0,
         "clips": int(len(codes))}
  if paraphrased is not None:
    out["changed_paraphrase"] = float((draw(paraphrased) != true)[near].mean())
  return out
