"""Videos of any length, clip by clip, each clip conditioned on the text and the previous clip's
last latent frames, re-encoded from pixels (SPEC §5 [Loong]).

Frame accounting (stride s = 4). A causal video tokenizer maps `1 + s(F_lat - 1)` pixel frames to
`F_lat` latent frames: latent 0 stands for pixel frame 0, latent j >= 1 for frames
`s(j-1)+1 .. sj`. So the output has a *latent timeline*: `L` latent frames are `1 + s(L-1)` pixel
frames, and one more latent frame is `s` more pixel frames.

* Clip 1 generates `F1 = min(clip_latent_frames, L)` latent frames from the text; its decode is
  the first `1 + s(F1 - 1)` frames of the video.
* A continuation keeps `n = cond_latent_frames` latent frames of context and generates `m` new
  ones (`m <= clip_latent_frames - n`, fewer in the last clip). With re-encoding the context is
  `encode(last 1 + s(n-1) frames of the video so far)`: exactly n latent frames, the first of
  which stands for one frame (as the first latent of any clip does in training). Without it, the
  context is the previous clip's last n latent frames as generated. The clip
  `[n context + m new]` decodes to `1 + s(n+m-1)` frames; its first `1 + s(n-1)` re-render the
  context (already in the video) and are dropped, the remaining `s*m` are appended. So every
  latent frame of the timeline is rendered once: nothing is duplicated or dropped at a boundary.
* `L = 1 + ceil((num_frames - 1) / s)` latent frames cover the requested `num_frames`; the video
  is cut to exactly `num_frames` at the end.

Context pixels are taken from the video as shown (the last frames of the previous clip's decode,
in the context of its whole clip) rather than from decoding the n latent frames on their own, so
the next clip continues from exactly what the viewer saw, and no extra decoder call is made.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import numpy as np

from loong_jax.inference import decode as decode_lib
from loong_jax.inference import rerank
from loong_jax.inference.decode import frame_codes


@dataclasses.dataclass(frozen=True)
class VideoCodec:
  """The video tokenizer as generation uses it.

  Attributes:
    encode: video `[B, T, H, W, 3]` float in [-1, 1] (`T = 1 + s(T_lat - 1)`) -> codes
      `[B, T_lat, H/d, W/d]` int32 in [0, video_size).
    decode: codes `[B, T_lat, h, w]` -> video `[B, 1 + s(T_lat - 1), h*d, w*d, 3]` in [-1, 1].
    temporal_stride: s.
    spatial_downsample: d.
    reencode: `reencode(video, previous, margin)`: `encode(video)`, but a token keeps its
      `previous` code `[B, T_lat, h, w]` while its latent stays within `margin` of that code's
      cell (`VideoTokenizer.reencode`); None: the codec has no latents to compare (only
      `LongVideoConfig.reencode_margin=0` is allowed).
  """

  encode: Callable[[np.ndarray], np.ndarray]
  decode: Callable[[np.ndarray], np.ndarray]
  temporal_stride: int = 4
  spatial_downsample: int = 8
  reencode: Callable[[np.ndarray, np.ndarray, float], np.ndarray] | None = None


@dataclasses.dataclass(frozen=True)
class LongVideoConfig:
  """Attributes:
    clip_latent_frames: latent frames per clip (the length the LM was trained on; 17 = 65 frames).
    cond_latent_frames: n, the context carried into the next clip [ours: 4].
    reencode: decode the context to pixels and encode it again [Loong], or reuse its codes.
    reencode_margin: with `reencode`, a context token keeps the code it was generated with while
      its re-encoded latent stays within this margin of that code's cell (FSQ: levels beyond the
      rounding half-level; LFQ: |z|; CVQ: cosine similarity) [ours]. 0: Loong's plain
      re-encoding, which lets a code flip at the slightest change of the decoded pixels, and 40
      round trips a minute compound it (`eval/roundtrip.py`). Meant for tokenizers that encode
      every latent frame alike (`encoder_frames='last'`): with 'all', the context's first latent
      frame is re-encoded from one pixel frame where it was generated as the code of four, and
      a margin may keep the latter, which re-encoding is there to replace.
    height, width: pixel size of the video (multiples of the codec's spatial downsampling).
    frame_temperature: the sampling temperature of every latent frame that follows one (all but
      the video's first), where the previous frame already holds the scene; None: the decoder's
      temperature everywhere. Token-by-token decoder only.
    first_frame_candidates: N first latent frames drawn per prompt, the best scored kept
      (`rerank.best_first_frames`); the first clip then continues from it. 1: off (the first
      clip is sampled in one pass). Token-by-token decoder only.
    rerank_guidance: g of the candidates' score `g log p(x|text) + (1 - g) log p(x)`.
    first_frame_min_object_pixels: with candidates, a candidate is kept only if its decoded frame
      has at least this many object pixels (`object_pixels`; unless no candidate of the prompt
      has): every prompt names an object, and for a caption it cannot draw the likelihood may
      prefer an empty frame. 0: off.
    object_contrast: a pixel is the object's when a channel differs from the frame's median
      colour (its background) by more than this (in [-1, 1] units).
    reencode_first_frame: the drawn first latent frame (candidates or composed branches) is
      decoded and encoded again before the first clip continues it, so that the LM continues
      the codes the encoder gives its picture (the codes it was trained on) [ours].
    continuation_candidates: K draws of every clip that continues frames (the clips after the
      first, and the first after a chosen first frame); the first draw whose every new frame
      keeps `continuation_keep` of the object pixels of the video's first frame is kept, else
      the draw that keeps most (`keep_object`) [ours]; the objects of this world keep their
      size. 1: off.
    continuation_keep: the fraction of the object's pixels a kept draw holds in each new frame.
  """

  clip_latent_frames: int
  cond_latent_frames: int = 4
  reencode: bool = True
  reencode_margin: float = 0.0
  height: int = 128
  width: int = 128
  frame_temperature: float | None = None
  first_frame_candidates: int = 1
  rerank_guidance: float = 1.0
  first_frame_min_object_pixels: int = 0
  object_contrast: float = 0.25
  reencode_first_frame: bool = False
  continuation_candidates: int = 1
  continuation_keep: float = 0.7

  def validate(self, codec: VideoCodec):
    if not 1 <= self.cond_latent_frames < self.clip_latent_frames:
      raise ValueError(f"inference.cond_latent_frames={self.cond_latent_frames} must lie in "
                       f"[1, clip_latent_frames={self.clip_latent_frames})")
    if self.frame_temperature is not None and not self.frame_temperature > 0:
      raise ValueError(f"inference.frame_temperature={self.frame_temperature} must be > 0 "
                       "(None: the sampling temperature)")
    if self.first_frame_candidates < 1:
      raise ValueError(f"inference.first_frame_candidates={self.first_frame_candidates} must "
                       "be >= 1 (1: off)")
    if not (np.isfinite(self.reencode_margin) and self.reencode_margin >= 0):
      raise ValueError(f"inference.reencode_margin={self.reencode_margin} must be >= 0 "
                       "(0: plain re-encoding)")
    if self.reencode and self.reencode_margin > 0 and codec.reencode is None:
      raise ValueError(f"inference.reencode_margin={self.reencode_margin}: this video codec "
                       "has no latents to keep codes by (VideoCodec.reencode); use 0")
    if self.first_frame_min_object_pixels < 0 or not self.object_contrast > 0:
      raise ValueError(f"inference.first_frame_min_object_pixels="
                       f"{self.first_frame_min_object_pixels} must be >= 0 (0: off) and "
                       f"object_contrast={self.object_contrast} > 0")
    if self.continuation_candidates < 1 or not 0 <= self.continuation_keep <= 1:
      raise ValueError(f"inference.continuation_candidates={self.continuation_candidates} must "
                       f"be >= 1 (1: off) and continuation_keep={self.continuation_keep} in "
                       "[0, 1]")
    if not np.isfinite(self.rerank_guidance):
      raise ValueError(f"inference.rerank_guidance={self.rerank_guidance} must be finite")
    d = codec.spatial_downsample
    if self.height % d or self.width % d:
      raise ValueError(f"inference.height/width={self.height}x{self.width} must be multiples of "
                       f"the tokenizer's spatial downsampling {d}")


def object_pixels(frames: np.ndarray, contrast: float) -> np.ndarray:
  """`[M]` int: pixels of each frame `[M, H, W, 3]` (in [-1, 1]) with a channel more than
  `contrast` away from the frame's median colour (the background, which covers most of it)."""
  frames = np.asarray(frames, np.float32)
  background = np.median(frames.reshape(len(frames), -1, frames.shape[-1]), axis=1)
  far = np.abs(frames - background[:, None, None, :]).max(axis=-1) > contrast
  return far.reshape(len(frames), -1).sum(axis=1)


def object_check(codec: VideoCodec, min_pixels: int, contrast: float):
  """`accept(frames [M, 1, h, w] codes) -> bool [M]` for `rerank.best_first_frames`: the decoded
  frame has at least `min_pixels` object pixels (`object_pixels`)."""
  def accept(frames):
    return object_pixels(np.asarray(codec.decode(frames))[:, 0], contrast) >= min_pixels
  return accept


def keep_object(shown: np.ndarray, drawn: np.ndarray, keep: float, contrast: float) -> np.ndarray:
  """Which of K draws of a continuation to keep, per prompt.

  Args:
    shown: `[B, H, W, 3]` the frame whose object the draws must keep (in [-1, 1]).
    drawn: `[K, B, T, H, W, 3]` each draw's new pixel frames.
    keep: a draw is good when every new frame has at least `keep` x the object pixels of
      `shown` (`object_pixels`).
    contrast: `object_pixels`' background contrast.
  Returns:
    `[B]` int: the first good draw, or the draw whose worst frame has most object pixels.
  """
  k, b, t = drawn.shape[:3]
  reference = object_pixels(shown, contrast).astype(np.float64)
  held = object_pixels(drawn.reshape(k * b * t, *drawn.shape[3:]), contrast)
  held = held.reshape(k, b, t).min(axis=2).astype(np.float64)
  good = held >= keep * reference
  return np.where(good.any(axis=0), good.argmax(axis=0), held.argmax(axis=0))


def pixel_frames(latent_frames: int, stride: int) -> int:
  """Pixel frames of `latent_frames` latent frames: `1 + stride (latent_frames - 1)`."""
  return 1 + stride * (latent_frames - 1)


def clip_schedule(num_frames: int, config: LongVideoConfig, stride: int) -> list[tuple[int, int]]:
  """`[(context latent frames, new latent frames)]` per clip for a `num_frames` video."""
  if num_frames < 1:
    raise ValueError(f"num_frames={num_frames} must be >= 1")
  need = 1 + -(-(num_frames - 1) // stride)
  have = min(config.clip_latent_frames, need)
  schedule = [(0, have)]
  while have < need:
    new = min(config.clip_latent_frames - config.cond_latent_frames, need - have)
    schedule.append((config.cond_latent_frames, new))
    have += new
  return schedule


@dataclasses.dataclass
class LongVideo:
  """Attributes:
    video: `[B, num_frames, H, W, 3]` float in [-1, 1].
    codes: `[B, L, h, w]` int32, the generated latent timeline (each clip's new frames).
  """

  video: np.ndarray
  codes: np.ndarray


def generate(decoder: decode_lib.Decoder, params, text_ids: Sequence[np.ndarray | None],
             num_frames: int, codec: VideoCodec, config: LongVideoConfig, key: jax.Array,
             on_clip: Callable[[int, int], None] | None = None,
             continue_decoder: decode_lib.Decoder | None = None,
             first_frame_branches: Sequence[tuple[float, Sequence[np.ndarray | None]]] | None
             = None, first_frame_contrasts: Sequence[rerank.Contrast] | None = None,
             ) -> LongVideo:
  """Generate one video per prompt.

  Args:
    decoder: the LM decoder, token by token (`decode.Decoder`) or frame by frame
      (`masked_decode.MaskedDecoder`); its sampling config decides guidance; with guidance the
      unconditional branch sees `<no_text>` plus the same context frames.
    params: LM parameters.
    text_ids: B prompts as text ids; None or empty generates unconditionally.
    num_frames: pixel frames wanted (any positive number).
    codec: the video tokenizer.
    config: clip lengths, context, re-encoding, size.
    key: PRNG key; clip c samples with `fold_in(key, c)`, first-frame candidates with
      `fold_in(key, rerank.CANDIDATE_STREAM)`.
    on_clip: called as `on_clip(clips_done, clips_total)` after each clip.
    continue_decoder: samples the clips after the first, e.g. the same model at a lower
      temperature (`inference.continuation_temperature`); None: `decoder` samples every clip.
    first_frame_branches: composed conditioning of the first latent frame, `[(weight, B text
      ids)]` (`decode.Decoder`, `rerank.best_first_frames`): the first frame is drawn (as
      `first_frame_candidates` candidates) from the prompts' logits weighted `1 - sum(weights)`
      plus each branch's; every later frame from the prompts alone. None: off.
    first_frame_contrasts: `[(w, B lists of alternative captions' text ids)]`: the candidates'
      score adds `w` times the caption's log-posterior among them (`rerank.best_first_frames`);
      with `first_frame_candidates` > 1 only. None: off.
  Returns:
    the video (exactly `num_frames` frames) and its latent timeline.
  """
  config.validate(codec)
  stride, d = codec.temporal_stride, codec.spatial_downsample
  h, w = config.height // d, config.width // d
  schedule = clip_schedule(num_frames, config, stride)
  video = timeline = context = None
  first = None  # [B, 1, h, w]: the chosen first frame (candidates > 1 or composed branches)
  if config.first_frame_candidates > 1 or first_frame_branches:
    accept = (object_check(codec, config.first_frame_min_object_pixels, config.object_contrast)
              if config.first_frame_min_object_pixels > 0 else None)
    first, _ = rerank.best_first_frames(decoder, params, text_ids, h, w,
                                        config.first_frame_candidates, config.rerank_guidance,
                                        jax.random.fold_in(key, rerank.CANDIDATE_STREAM),
                                        branches=first_frame_branches, accept=accept,
                                        contrasts=first_frame_contrasts)
    if config.reencode_first_frame:
      first = np.asarray(codec.encode(np.asarray(codec.decode(first))), np.int32)
  for c, (n_context, n_new) in enumerate(schedule):
    sample = decoder if context is None or continue_decoder is None else continue_decoder
    clip_key = jax.random.fold_in(key, c)
    if context is None and first is not None:  # the first clip continues the chosen frame
      clip, pixels = _continue(sample, params, text_ids, first, n_new - 1, h, w, codec, config,
                               clip_key)
      new = clip
    elif context is None:
      new = clip = _sample(sample, params, text_ids, None, n_new, h, w, config, True, clip_key)
      pixels = np.asarray(codec.decode(clip))
    else:
      clip, pixels = _continue(sample, params, text_ids, context, n_new, h, w, codec, config,
                               clip_key, shown=video[:, 0])
      new = clip[:, n_context:]
    if pixels.shape[1] != pixel_frames(clip.shape[1], stride):
      raise ValueError(f"video tokenizer decode: {clip.shape[1]} latent frames gave "
                       f"{pixels.shape[1]} frames, expected {pixel_frames(clip.shape[1], stride)}")
    if video is None:
      video, timeline = pixels, new
    else:
      video = np.concatenate([video, pixels[:, pixel_frames(n_context, stride):]], axis=1)
      timeline = np.concatenate([timeline, new], axis=1)
    if c + 1 < len(schedule):
      n = config.cond_latent_frames
      tail = video[:, -pixel_frames(n, stride):]
      if config.reencode and config.reencode_margin > 0:
        context = np.asarray(codec.reencode(tail, clip[:, -n:], config.reencode_margin),
                             np.int32)
      elif config.reencode:
        context = np.asarray(codec.encode(tail), np.int32)
      else:
        context = clip[:, -n:]
    if on_clip is not None:
      on_clip(c + 1, len(schedule))
  return LongVideo(video[:, :num_frames], timeline)


def _continue(decoder: decode_lib.Decoder, params, text_ids, prefix: np.ndarray, n_new: int,
              h: int, w: int, codec: VideoCodec, config: LongVideoConfig, key: jax.Array,
              shown: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
  """`prefix [B, n, h, w]` and `n_new` latent frames sampled after it, and its decode:
  `(clip [B, n + n_new, h, w], pixels)`. With `continuation_candidates` K > 1, K draws in one
  batch (each prompt K times, with its prefix) of which `keep_object` keeps one; `shown`: the
  frame whose object the draws must keep (None: the prefix's first frame)."""
  k, b = config.continuation_candidates, len(text_ids)
  tiled = np.concatenate([prefix] * k)
  new = _sample(decoder, params, list(text_ids) * k, tiled, n_new, h, w, config, False, key)
  clips = np.concatenate([tiled, new], axis=1)
  pixels = np.asarray(codec.decode(clips))
  if k == 1:
    return clips, pixels
  if shown is None:
    shown = pixels[:b, 0]
  skip = pixel_frames(prefix.shape[1], codec.temporal_stride)
  drawn = pixels.reshape(k, b, *pixels.shape[1:])[:, :, skip:]
  pick = keep_object(shown, drawn, config.continuation_keep, config.object_contrast) * b
  return clips[pick + np.arange(b)], pixels[pick + np.arange(b)]


def _sample(decoder: decode_lib.Decoder, params, text_ids, context: np.ndarray | None, n_new: int,
            h: int, w: int, config: LongVideoConfig, first_clip: bool,
            key: jax.Array) -> np.ndarray:
  """`[B, n_new, h, w]` latent frames sampled after the text and `context` `[B, n, h, w]` (None:
  the text alone); `first_clip`: the first of them is the video's first frame."""
  vocab = decoder.vocab
  if n_new == 0:
    return np.zeros((len(text_ids), 0, h, w), np.int32)
  contexts = [None] * len(text_ids) if context is None else list(context)
  cond = [decode_lib.prompt_ids(vocab, t, x) for t, x in zip(text_ids, contexts)]
  uncond = [decode_lib.prompt_ids(vocab, None, x) for x in contexts]
  plan = decode_lib.frame_plan(vocab, n_new, h * w, frame_width=w,
                               frame_scales=frame_scales(decoder, config, n_new, first_clip))
  ids = decoder(params, cond, plan, key, uncond_prompts=uncond)
  return frame_codes(ids, vocab, n_new, h, w)


def frame_scales(decoder: decode_lib.Decoder, config: LongVideoConfig, num_frames: int,
                 first_clip: bool) -> list[float] | None:
  """Per new latent frame, the logit scale that samples it at `config.frame_temperature`
  (`decode.Plan.logit_scale`); the video's first frame keeps the decoder's temperature. None:
  no per-frame temperature (or a greedy decoder, which it would not change)."""
  if config.frame_temperature is None or decoder.sampling.temperature == 0:
    return None
  base = decoder.sampling.temperature
  scales = [base / config.frame_temperature] * num_frames
  if first_clip:
    scales[0] = 1.0
  return scales
