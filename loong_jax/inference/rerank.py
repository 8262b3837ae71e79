"""Best-of-N first frames: sample N candidate first latent frames per prompt, keep the one the
prompt explains best.

A video's first latent frame is drawn from the text alone; every later frame mostly carries it on
(previous-frame inputs, the copy head), so a first frame with the wrong shape or a half-drawn
object spoils the whole video. Each candidate `x` is scored teacher-forced
(`decode.Decoder.log_likelihood`, one forward pass per branch) by a guided log-likelihood,

    score(x) = g * log p(x | text) + (1 - g) * log p(x | <no_text>),

the combination classifier-free guidance applies to logits: `g = 1` is the conditional likelihood;
a larger `g` adds `g - 1` times the pointwise mutual information `log p(x | text) - log p(x)`,
which rewards what the text explains (the prompted colour and shape) over what any frame has (the
background). Candidates are drawn with the decoder's own sampling settings, optionally from
composed conditioning (`branches`, `decode.Decoder`): e.g. the caption's logits averaged with
those of the caption without its shape word, so that the colour word is not overruled by the
colour-shape pairs that training showed together (README, "Composed first frames").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import numpy as np

from loong_jax.inference import decode as decode_lib

# `jax.random.fold_in` data of the candidates' key; clips use 0, 1, ... (long_video.generate).
CANDIDATE_STREAM = 0x7FFFFFFF


def guided_score(cond: np.ndarray, uncond: np.ndarray, guidance: float) -> np.ndarray:
  """`g * cond + (1 - g) * uncond`, elementwise (log-likelihoods in nats)."""
  return guidance * np.asarray(cond) + (1.0 - guidance) * np.asarray(uncond)


def best_first_frames(decoder: decode_lib.Decoder, params, text_ids: Sequence[np.ndarray | None],
                      height: int, width: int, candidates: int, guidance: float,
                      key: jax.Array,
                      branches: Sequence[tuple[float, Sequence[np.ndarray | None]]] | None = None,
                      accept: Callable[[np.ndarray], np.ndarray] | None = None,
                      ) -> tuple[np.ndarray, np.ndarray]:
  """Draw `candidates` first latent frames per prompt and keep the best scored.

  Args:
    decoder: the token-by-token decoder (its sampling settings draw the candidates).
    params: LM parameters.
    text_ids: B prompts as text ids (None or empty: unconditional).
    height, width: latent frame size in tokens.
    candidates: N >= 1 frames drawn per prompt.
    guidance: g of the score (module docstring).
    key: PRNG key of the draw.
    branches: composed conditioning of the draw, `[(weight, B text ids)]` (`decode.Decoder`;
      the prompts get `1 - sum(weights)`); the score stays the one above.
    accept: `frames [M, 1, height, width] -> bool [M]`: candidates it rejects are kept only when
      it rejects every candidate of their prompt (e.g. `long_video.object_check`: a frame with
      no object, which the likelihood may prefer for a caption it cannot draw). None: all.
  Returns:
    `(frames [B, 1, height, width] int32, scores [B, N] float32)`: the chosen frame of each
    prompt and every candidate's score.
  """
  if decoder.model.config.attention_mask != "causal":
    raise ValueError("first-frame candidates are scored by their causal likelihood, teacher-"
                     "forced; a model with attention_mask="
                     f"{decoder.model.config.attention_mask!r} has none: set "
                     "inference.first_frame_candidates=1")
  if candidates < 1:
    raise ValueError(f"first_frame_candidates={candidates} must be >= 1")
  vocab = decoder.vocab
  batch = len(text_ids)
  cond = [decode_lib.prompt_ids(vocab, t) for t in text_ids for _ in range(candidates)]
  uncond = [decode_lib.prompt_ids(vocab, None)] * len(cond)
  plan = decode_lib.frame_plan(vocab, 1, height * width, end_video=False, frame_width=width)
  composed = [(w, [decode_lib.prompt_ids(vocab, t) for t in texts for _ in range(candidates)])
              for w, texts in branches or ()]
  ids = decoder(params, cond, plan, key, uncond_prompts=uncond, branches=composed or None)
  frames = decode_lib.frame_codes(ids, vocab, 1, height, width)[:, 0].astype(np.int32)
  flat = frames.reshape(len(cond), -1)
  scores = guided_score(decoder.log_likelihood(params, cond, flat, width),
                        decoder.log_likelihood(params, uncond, flat, width), guidance)
  scores = np.asarray(scores, np.float32).reshape(batch, candidates)
  ranked = scores
  if accept is not None:
    ok = np.asarray(accept(frames[:, None]), bool).reshape(batch, candidates)
    ranked = np.where(ok | ~ok.any(axis=1, keepdims=True), scores, -np.inf)
  best = ranked.argmax(axis=1)
  chosen = frames.reshape(batch, candidates, height, width)[np.arange(batch), best]
  return chosen[:, None], scores
