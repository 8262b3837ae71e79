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

Contrasts add the LM's own reading of a candidate [ours]: for each attribute (e.g. the colour),
the caption and its alternatives (the same caption naming each other colour) score the candidate,
and `w * log p(caption | x)` joins the score, the log-posterior of the prompted caption among them
under a uniform prior,

    log p(caption | x) = log p(x | caption) - logsumexp_c' log p(x | c'),

so that a candidate the LM itself would caption with another colour loses, however likely its
pixels. A caption the LM was never shown (a held-out colour-shape pair) is still scored word by
word through the text, which is what `lm.text_gap` measures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import numpy as np

from loong_jax.inference import decode as decode_lib

# `jax.random.fold_in` data of the candidates' key; clips use 0, 1, ... (long_video.generate).
CANDIDATE_STREAM = 0x7FFFFFFF
# Rows per teacher-forced scoring call: bounds the logits' memory ([rows, L, vocab] float32).
SCORE_ROWS = 256
# One contrast: `(weight, per prompt the alternative captions' text ids)`.
Contrast = tuple[float, Sequence[Sequence[np.ndarray]]]


def guided_score(cond: np.ndarray, uncond: np.ndarray, guidance: float) -> np.ndarray:
  """`g * cond + (1 - g) * uncond`, elementwise (log-likelihoods in nats)."""
  return guidance * np.asarray(cond) + (1.0 - guidance) * np.asarray(uncond)


def caption_posterior(cond: np.ndarray, alternatives: Sequence[np.ndarray]) -> np.ndarray:
  """`[R]` log-posterior of the caption among itself and its alternatives (uniform prior): `cond
  [R]` its log-likelihoods, `alternatives[r]` `[A_r]` those of row r's alternatives (nats)."""
  out = np.empty(len(cond), np.float64)
  for r, (c, alt) in enumerate(zip(np.asarray(cond, np.float64), alternatives)):
    out[r] = c - np.logaddexp.reduce(np.concatenate([[c], np.asarray(alt, np.float64)]))
  return out


def contrast_posterior(decoder: decode_lib.Decoder, params, cond: np.ndarray, frames: np.ndarray,
                       alternatives: Sequence[Sequence[np.ndarray]], candidates: int,
                       width: int) -> np.ndarray:
  """`caption_posterior` of R = B x `candidates` rows (`frames [R, N]`, `cond [R]` their
  caption's log-likelihoods), row r scored against `alternatives[r // candidates]` (text ids)."""
  rows = [(r, a) for r in range(len(cond)) for a in alternatives[r // candidates]]
  alt = log_likelihood(decoder, params, [decode_lib.prompt_ids(decoder.vocab, a) for _, a in rows],
                       np.asarray(frames)[[r for r, _ in rows]], width)
  sizes = [len(alternatives[r // candidates]) for r in range(len(cond))]
  return caption_posterior(cond, np.split(alt, np.cumsum(sizes)[:-1]))


def log_likelihood(decoder: decode_lib.Decoder, params, prompts: Sequence[np.ndarray],
                   frames: np.ndarray, width: int, rows: int = SCORE_ROWS) -> np.ndarray:
  """`decoder.log_likelihood` in calls of at most `rows` rows (the last padded to `rows`, so one
  shape compiles): `[R]` nats."""
  frames = np.asarray(frames)
  out = []
  for start in range(0, len(prompts), rows):
    chunk, block = list(prompts[start:start + rows]), frames[start:start + rows]
    n = len(chunk)
    if len(prompts) > rows and n < rows:  # pad with copies of the first row
      chunk += [chunk[0]] * (rows - n)
      block = np.concatenate([block, np.repeat(block[:1], rows - n, axis=0)])
    out.append(np.asarray(decoder.log_likelihood(params, chunk, block, width))[:n])
  return np.concatenate(out) if out else np.zeros((0,), np.float32)


def best_first_frames(decoder: decode_lib.Decoder, params, text_ids: Sequence[np.ndarray | None],
                      height: int, width: int, candidates: int, guidance: float,
                      key: jax.Array,
                      branches: Sequence[tuple[float, Sequence[np.ndarray | None]]] | None = None,
                      accept: Callable[[np.ndarray], np.ndarray] | None = None,
                      contrasts: Sequence[Contrast] | None = None,
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
    contrasts: `[(w, B lists of alternative text ids)]`: `w * log p(caption | x)` among the
      caption and the prompt's alternatives joins the score (module docstring). None: off.
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
  cond_ll = log_likelihood(decoder, params, cond, flat, width)
  scores = guided_score(cond_ll, log_likelihood(decoder, params, uncond, flat, width), guidance)
  for weight, alternatives in contrasts or ():
    if len(alternatives) != batch:
      raise ValueError(f"first-frame contrasts: {len(alternatives)} prompts' alternatives for "
                       f"{batch} prompts")
    scores = scores + weight * contrast_posterior(decoder, params, cond_ll, flat, alternatives,
                                                  candidates, width)
  scores = np.asarray(scores, np.float32).reshape(batch, candidates)
  ranked = scores
  if accept is not None:
    ok = np.asarray(accept(frames[:, None]), bool).reshape(batch, candidates)
    ranked = np.where(ok | ~ok.any(axis=1, keepdims=True), scores, -np.inf)
  best = ranked.argmax(axis=1)
  chosen = frames.reshape(batch, candidates, height, width)[np.arange(batch), best]
  return chosen[:, None], scores
