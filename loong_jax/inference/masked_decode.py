"""AR-DF inference [Lumos]: latent frames one after another, each by MaskGIT-style parallel
decoding, for models trained with `train.objective='ardf'` (frame-bidirectional attention).

    decoder = MaskedDecoder(model, vocab, SamplingConfig(top_k=50, guidance_scale=15.0),
                            MaskedConfig(steps=50))
    plan = frame_plan(vocab, num_frames=5, tokens_per_frame=256, frame_width=16)
    ids = decoder(params, prompts, plan, key, uncond_prompts=uncond)   # [B, len(plan)] int32

Per latent frame f, the model sees the span `<boi> x_1 .. x_N <eoi>` after the prompt and the
frames before it, with the frame-bidirectional mask (every token of the span sees the whole span)
and the MM-RoPE (or 1D) positions of the planned layout (`decode.layout`, the training helpers).
At the start every x_i is `<mask>`. Step s of `S = min(steps, N)`:

1. one forward of the span on the cache of the earlier frames (the span's own cache writes are
   thrown away); the logits at x_i predict x_i (AR-DF predicts a token at its own position);
2. guidance `uncond + g (cond - uncond)` (cond and uncond rows in one batch), restriction to the
   video ids, then temperature / top-k / top-p sampling of every position (`sampling.sample`);
3. confidence of position i = log-probability of its sampled token (under the logits sampled
   from, before top-k) + `gumbel_temperature * (1 - (s + 1) / S)` * Gumbel noise (MaskGIT's
   annealed noise, 0 at the last step); positions revealed earlier keep their token;
4. the most confident positions are revealed until only `mask_schedule(N, S)[s]` stay masked:
   `floor(N cos(pi/2 (s + 1) / S))`, lowered where needed so that every step reveals at least
   one token, and 0 after the last step.

The finished frame then enters the KV cache as history with a fixed `history_mask_ratio` (0.7)
of its tokens replaced by `<mask>`, as AR-DF training always sees masked earlier frames: exactly
`round(0.7 N)` positions, chosen once per call and example from the key (`history_mask`), the
same positions in every frame (the tube of `train/ardf.py`'s default masks). Video frames inside
a prompt (the context of a long-video continuation) are history too, masked the same way. The
returned ids are the generated tokens, never the masks.

Everything after the host-side layout is one jit-compiled program: a `lax.scan` over frames
around a `lax.scan` over steps; batches shard over ('data', 'fsdp') as in `decode.Decoder`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from loong_jax import tokens as tokens_lib
from loong_jax.inference import decode
from loong_jax.inference import sampling as sampling_lib
from loong_jax.llm import attention as attn_lib
from loong_jax.llm import transformer
from loong_jax.train import ardf


@dataclasses.dataclass(frozen=True)
class MaskedConfig:
  """Per-frame parallel decoding settings (hashable: a static argument of the program).

  Attributes:
    steps: T, parallel decoding steps per latent frame [Lumos: 50]; at most N are run (one
      token per step at least).
    gumbel_temperature: scale of the Gumbel noise added to the confidences at the first step,
      annealed linearly to 0 at the last [ours: 4.5, MaskGIT's choice temperature]; 0 = the
      most probable tokens are revealed first, deterministically.
    history_mask_ratio: share of a finished frame's tokens replaced by `<mask>` in the cache
      [Lumos: 0.7, AR-DF training's lowest mask ratio].
  """

  steps: int = 50
  gumbel_temperature: float = 4.5
  history_mask_ratio: float = 0.7

  def __post_init__(self):
    if self.steps < 1:
      raise ValueError(f"inference.masked.steps={self.steps} must be >= 1")
    if self.gumbel_temperature < 0:
      raise ValueError(f"inference.masked.gumbel_temperature={self.gumbel_temperature} must be "
                       ">= 0")
    if not 0.0 <= self.history_mask_ratio <= 1.0:
      raise ValueError(f"inference.masked.history_mask_ratio={self.history_mask_ratio} must lie "
                       "in [0, 1]")

  @classmethod
  def from_config(cls, config) -> "MaskedConfig":
    return cls(steps=int(config.steps), gumbel_temperature=float(config.gumbel_temperature),
               history_mask_ratio=float(config.history_mask_ratio))


class Trace(NamedTuple):
  """What a call did, for tests and inspection.

  Attributes:
    revealed: `[B, F, S, N]` bool, the positions of frame f revealed after step s (cumulative).
    history: `[B, F, N]` int32, the ids frame f entered the cache with (`<mask>` where masked).
  """

  revealed: np.ndarray
  history: np.ndarray


def mask_schedule(num_tokens: int, steps: int) -> np.ndarray:
  """Positions still masked after each step: `[min(steps, N)]` int32, strictly decreasing to 0.

  `floor(N cos(pi/2 (s + 1) / S))`, capped at one less than the step before (at least one
  token revealed per step) and 0 at the end. With `S = N` it is `N - 1, N - 2, ..., 0`.
  """
  if num_tokens < 1 or steps < 1:
    raise ValueError(f"mask_schedule: num_tokens={num_tokens} and steps={steps} must be >= 1")
  total = min(steps, num_tokens)
  left = np.floor(num_tokens * np.cos(np.pi / 2 * np.arange(1, total + 1) / total))
  left[-1] = 0
  out = np.minimum.accumulate(np.minimum(left, num_tokens - 1 - np.arange(total)))
  return np.maximum(out, 0).astype(np.int32)


def history_mask(key: jax.Array, batch: int, num_tokens: int, ratio: float) -> jax.Array:
  """`[batch, N]` bool: exactly `round(ratio N)` True per example (positions masked in history),
  a deterministic function of `key`."""
  return ardf.choose_positions(key, jnp.full((batch,), ratio, jnp.float32), num_tokens)


def frame_structure(plan: decode.Plan, vocab: tokens_lib.Vocab) -> tuple[int, int]:
  """`(num_frames, tokens_per_frame)` of a `decode.frame_plan`; raises for any other plan."""
  sampled = np.flatnonzero(plan.forced < 0)
  boi = np.flatnonzero(plan.forced == vocab.boi)
  if len(boi) == 0 or len(sampled) % len(boi):
    raise ValueError("the masked decoder generates whole latent frames: pass a "
                     "decode.frame_plan")
  num_frames, n = len(boi), len(sampled) // len(boi)
  end_video = len(plan.forced) == num_frames * (n + 2) + 1
  want = decode.frame_plan(vocab, num_frames, n, end_video, plan.frame_width or None)
  if not (np.array_equal(want.forced, plan.forced)
          and np.array_equal(want.video_only, plan.video_only)):
    raise ValueError("the masked decoder generates whole latent frames: pass a "
                     "decode.frame_plan")
  if not np.all(plan.scales() == 1.0):
    raise ValueError("the masked decoder samples every frame at one temperature: per-frame "
                     "logit scales (inference.frame_temperature) need the token-by-token decoder")
  return num_frames, n


@functools.partial(jax.jit, static_argnames=("model", "sampling", "masked", "num_frames",
                                             "tokens_per_frame", "ids", "return_trace"))
def _generate_masked(params, tokens, mask, positions, frames, key, *, model, sampling, masked,
                     num_frames, tokens_per_frame, ids, return_trace):
  """Prefill the prompts, then decode `num_frames` frames of N tokens in parallel steps.

  Args:
    tokens, mask: `[R, P]` left-padded prompts. positions `[R, P + T(, 3)]`, frames `[R, P + T]`:
      the layout (`decode.layout`) of prompt + frame plan.
    ids: static `(video_lo, video_hi, mask, boi, eoi)` ids.
  Returns:
    `video [B, F, N]` int32 video ids, and with `return_trace` `(revealed [B, F, S, N],
    history [B, F, N])`.
  """
  video_lo, video_hi, mask_id, boi_id, eoi_id = ids
  rows, prompt_len = tokens.shape
  batch = rows // 2 if sampling.guided else rows
  n, span = tokens_per_frame, tokens_per_frame + 2
  schedule = mask_schedule(n, masked.steps)
  steps = len(schedule)
  history_key, sample_key = jax.random.split(key)
  hidden = jnp.tile(history_mask(history_key, batch, n, masked.history_mask_ratio),
                    (rows // batch, 1))                                    # [R, N]

  # Video frames of the prompts enter the cache as history, masked like generated frames.
  is_video = (tokens >= video_lo) & (tokens < video_hi)
  offsets = jnp.clip(ardf.frame_offsets(tokens, boi_id), 0, n - 1)
  tokens = jnp.where(is_video & jnp.take_along_axis(hidden, offsets, axis=1), mask_id, tokens)
  cache = transformer.init_cache(model, rows, prompt_len + num_frames * span)
  with nn.intercept_methods(decode.last_position_logits):
    _, state = model.apply({"params": params, "cache": cache}, tokens,
                           positions=positions[:, :prompt_len], input_mask=mask,
                           frame_ids=frames[:, :prompt_len], decode=True, mutable=["cache"])

  def frame_step(cache, f):
    start = prompt_len + f * span
    span_positions = jax.lax.dynamic_slice_in_dim(positions, start, span, axis=1)
    span_frames = jax.lax.dynamic_slice_in_dim(frames, start, span, axis=1)

    def forward(video):
      """`video [R, N]` ids (masks included) -> (logits at the video slots, updated cache)."""
      inputs = jnp.concatenate([jnp.full((rows, 1), boi_id), video,
                                jnp.full((rows, 1), eoi_id)], axis=1).astype(jnp.int32)
      logits, state = model.apply({"params": params, "cache": cache}, inputs,
                                  positions=span_positions, frame_ids=span_frames, decode=True,
                                  mutable=["cache"])
      return logits[:, 1:-1], state["cache"]

    def step(carry, s):
      video, revealed = carry                                            # [B, N] each
      row_logits, _ = forward(jnp.tile(video, (rows // batch, 1)))
      logits = row_logits[:batch]
      if sampling.guided:
        logits = sampling_lib.guide(logits, row_logits[batch:], sampling.guidance_scale)
      logits = sampling_lib.restrict_to_range(logits, video_lo, video_hi)
      step_key = jax.random.fold_in(jax.random.fold_in(sample_key, f), s)
      draw_key, noise_key = jax.random.split(step_key)
      sampled = sampling_lib.sample(logits.reshape(batch * n, -1), draw_key,
                                    sampling).reshape(batch, n)
      scaled = logits / sampling.temperature if sampling.temperature > 0 else logits
      confidence = jnp.take_along_axis(jax.nn.log_softmax(scaled, axis=-1), sampled[..., None],
                                       axis=-1)[..., 0]
      anneal = masked.gumbel_temperature * (1.0 - (s + 1.0) / steps)
      confidence += anneal * jax.random.gumbel(noise_key, confidence.shape)
      confidence = jnp.where(revealed, jnp.inf, confidence)
      rank = jnp.argsort(jnp.argsort(-confidence, axis=-1, stable=True), axis=-1)
      now = rank < n - jnp.asarray(schedule)[s]
      video = jnp.where(now & ~revealed, sampled, video)
      return (video, now), (now if return_trace else None)

    start_video = jnp.full((batch, n), mask_id, jnp.int32)
    (video, _), revealed = jax.lax.scan(step, (start_video, jnp.zeros((batch, n), bool)),
                                        jnp.arange(steps, dtype=jnp.int32))
    history = jnp.where(hidden, mask_id, jnp.tile(video, (rows // batch, 1)))
    _, cache = forward(history)
    return cache, (video, (revealed, history[:batch]) if return_trace else None)

  _, (video, trace) = jax.lax.scan(frame_step, state["cache"],
                                   jnp.arange(num_frames, dtype=jnp.int32))
  video = video.transpose(1, 0, 2)
  if not return_trace:
    return video
  revealed, history = trace
  return video, (revealed.transpose(2, 0, 1, 3), history.transpose(1, 0, 2))


class MaskedDecoder(decode.Decoder):
  """AR-DF generation (this module's docstring) with `decode.Decoder`'s batching and sharding.

  Args:
    model, vocab, sampling, mesh, rules, prompt_multiple: as `decode.Decoder`.
    masked: steps, Gumbel temperature, history mask ratio.
  """

  def __init__(self, model: transformer.Transformer, vocab: tokens_lib.Vocab,
               sampling: sampling_lib.SamplingConfig, masked: MaskedConfig = MaskedConfig(),
               mesh=None, rules=(), prompt_multiple: int = 16):
    super().__init__(model, vocab, sampling, mesh, rules, prompt_multiple)
    self.masked = masked

  @staticmethod
  def check_model(config: transformer.LMConfig):
    """Parallel in-frame decoding needs a model that sees its whole latent frame."""
    if config.attention_mask not in attn_lib.FRAME_MASKS:
      raise ValueError(f"config.lm.attention_mask={config.attention_mask!r}: the masked decoder "
                       f"needs a frame-level mask {attn_lib.FRAME_MASKS} (an AR-DF model); "
                       "sample causal models with inference.decoder='autoregressive'")

  def __call__(self, params, prompts: Sequence[np.ndarray], plan: decode.Plan, key: jax.Array,
               uncond_prompts: Sequence[np.ndarray] | None = None, return_trace: bool = False):
    """Generate the frames of `plan` (a `decode.frame_plan`) after each prompt.

    Args:
      params: LM parameters (placed with `place_params` when a mesh is used).
      prompts: B prompts, `[P_b]` int32 each (`decode.prompt_ids`).
      plan: `decode.frame_plan(vocab, F, N, end_video, frame_width)`.
      key: PRNG key; the same key, prompts and plan give the same tokens.
      uncond_prompts: B unconditional prompts, required when guidance is on.
      return_trace: also return a `Trace` (revealed positions per step, history ids).
    Returns:
      `ids [B, T]` int32 numpy laid out as the plan (and the `Trace`).
    """
    num_frames, n = frame_structure(plan, self.vocab)
    rows = self.batch_layout(prompts, plan, uncond_prompts)
    v = self.vocab
    out = self.run(_generate_masked, params, rows[:4], key, model=self.model,
                   sampling=self.sampling, masked=self.masked, num_frames=num_frames,
                   tokens_per_frame=n, return_trace=return_trace,
                   ids=(v.video_offset, v.special_offset, v.mask, v.boi, v.eoi))
    batch = len(prompts)
    video = (out[0] if return_trace else out)[:batch]
    ids = np.tile(plan.forced, (batch, 1))
    ids[:, plan.forced < 0] = video.reshape(batch, -1)
    if not return_trace:
      return ids
    revealed, history = out[1]
    return ids, Trace(revealed[:batch], history[:batch])
