"""Does the LM carry the object from one latent frame to the next when it generates?

Teacher-forced, an LM can predict a frame's object tokens well from the tokens before them in the
same frame (its raster neighbours), yet, generating, fail to start the object at all: the first
object token of a frame has only the previous frame (and the prompt) to go on. Then the object
vanishes or jumps at every latent frame and at every clip of a long video, while the training
loss looks fine. This check measures both sides on real held-out clips:

  * `teacher_forced`: over the object tokens of latent frame `context` (the frame after the
    context frames), the fraction whose argmax prediction, given the true tokens before it,
    is the true code;
  * `free_running`: the same frame generated greedily (guidance off) after the text and the first
    `context` true latent frames: the fraction of its object tokens equal to the true code;
  * `object_started`: the fraction of clips whose greedy frame has any non-background code where
    the true frame has the object, the background code being the clip's most common code. Only
    meaningful where the background has one code (oracle codes, the local encoder: see
    `tokenizer.codes.top_share`); the default demo tokenizer's background takes many codes.

`free_running` far below `teacher_forced` means the model leans on the frame's own earlier tokens
instead of copying from the previous frame. Measured on the demo (issue 13, 64 held-out clips):
oracle codes, clips-only stage 2: 0.24 vs 0.04, the object started in 8% of clips (so the
minute-long oracle videos lose or move the object at every clip); default learned tokenizer:
0.12 vs 0.00; local-encoder tokenizer: 0.23 vs 0.13, started in 73%.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

from loong_jax import tokens
from loong_jax.eval import text_gap
from loong_jax.inference import decode


def _background(codes: np.ndarray) -> int:
  """The most common code of a clip `[F, h, w]`."""
  values, counts = np.unique(codes, return_counts=True)
  return int(values[np.argmax(counts)])


def greedy_next_frame(decoder: decode.Decoder, params, vocab: tokens.Vocab,
                      texts: Sequence[np.ndarray], codes: np.ndarray) -> np.ndarray:
  """`[B, h, w]`: the latent frame a greedy `decoder` draws after the text ids and the true
  frames `codes [B, F, h, w]`."""
  h, w = codes.shape[2:]
  prompts = [decode.prompt_ids(vocab, np.asarray(t), c) for t, c in zip(texts, codes)]
  ids = decoder(params, prompts, decode.frame_plan(vocab, 1, h * w, frame_width=w),
                jax.random.key(0))
  return decode.frame_codes(np.asarray(ids), vocab, 1, h, w)[:, 0]


def measure(logits_fn: text_gap.LogitsFn, decoder: decode.Decoder, params, vocab: tokens.Vocab,
            texts: Sequence[np.ndarray], codes: np.ndarray, token_masks: np.ndarray,
            max_text_len: int, context: int = 2) -> dict[str, float]:
  """`{"teacher_forced", "free_running", "object_started", "clips"}` (module docstring).

  Args:
    logits_fn: the LM, `inputs [B, L] -> logits [B, L, V]` (`text_gap.model_logits`).
    decoder: a greedy decoder of the same LM without guidance (`temperature=0`,
      `guidance_scale=1`).
    params: the LM's parameters, as `decoder` takes them.
    vocab: the id layout.
    texts: per clip, text ids `[N]`.
    codes: `[B, F, h, w]` true codes of the clips (F > context).
    token_masks: `[B, F, h, w]` bool, the object's tokens (`text_gap.object_tokens`).
    max_text_len: text ids kept, as in training.
    context: true latent frames given before the frame judged.
  """
  codes = np.asarray(codes)
  b, f, h, w = codes.shape
  if not 1 <= context < f:
    raise ValueError(f"continuation: context={context} must lie in [1, {f}) latent frames")
  mask = np.asarray(token_masks, bool)[:, context]
  if not mask.any():
    raise ValueError("continuation: the judged frame has no object tokens")
  texts = [np.asarray(t)[:max_text_len] for t in texts]
  # Teacher-forced: the whole true clip, argmax at the judged frame's code positions.
  seqs = [tokens.build_sequence(t, c[:context + 1], vocab) for t, c in zip(texts, codes)]
  length = max(len(s) for s in seqs)
  batch = np.full((b, length), vocab.pad, np.int32)
  for i, s in enumerate(seqs):
    batch[i, :len(s)] = s
  predicted = np.asarray(logits_fn(batch[:, :-1])).argmax(-1)
  teacher = []
  for i, s in enumerate(seqs):
    # The judged frame's h * w codes sit just before its closing `<eoi>` and the final `<eov>`.
    end = len(s) - 2
    truth, guess = s[end - h * w:end], predicted[i, end - h * w - 1:end - 1]
    teacher.append((guess == truth)[mask[i].reshape(-1)])
  # Free-running: greedy frame after the true context.
  generated = greedy_next_frame(decoder, params, vocab, texts, codes[:, :context])
  true = codes[:, context]
  free = (generated == true)[mask]
  started = [bool((generated[i][mask[i]] != _background(codes[i])).any()) for i in range(b)]
  return {"teacher_forced": float(np.concatenate(teacher).mean()),
          "free_running": float(free.mean()),
          "object_started": float(np.mean(started)),
          "clips": int(b)}
