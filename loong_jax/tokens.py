"""The unified token vocabulary and sequence layout (SPEC §1). Plain NumPy, no JAX state.

Vocabulary: ``[0, text_size)`` text ids from SentencePiece, then ``video_size`` video ids (the video
tokenizer's codes, offset by ``text_size``), then the special ids of `SPECIALS`, in that order.
Loong uses 32,000 + 8,192 + 10 = 40,202 ids (SPEC §1 prints 42,202, an arithmetic slip); the
embedding table is padded to a multiple of 128 (40,320 rows).

One training sequence (text first, one causal stream)::

    <bos> text... <bov> [<boi> tokens_per_frame video ids <eoi>] x F_lat <eov>

A clip of ``F`` frames (``F = 1 + 4k``) has ``F_lat = 1 + (F - 1) // 4`` latent frames; one latent
frame at 128x128 is 16x16 = 256 video ids.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# Order matters: a special id is `Vocab.special_offset + SPECIALS.index(name)`.
SPECIALS = ("pad", "bos", "eos", "boi", "eoi", "bov", "eov", "no_text", "mask", "spare")


@dataclasses.dataclass(frozen=True)
class Vocab:
  """Id ranges of the unified vocabulary. Defaults are Loong's sizes."""

  text_size: int = 32_000
  video_size: int = 8_192
  pad_multiple: int = 128

  def __post_init__(self):
    if self.text_size < 1 or self.video_size < 1:
      raise ValueError(f"Vocab: text_size={self.text_size} and video_size={self.video_size} "
                       "must both be positive")

  @property
  def video_offset(self) -> int:
    return self.text_size

  @property
  def special_offset(self) -> int:
    return self.text_size + self.video_size

  @property
  def size(self) -> int:
    """Number of real ids (40,202 for Loong)."""
    return self.special_offset + len(SPECIALS)

  @property
  def padded_size(self) -> int:
    """Embedding rows: `size` rounded up to `pad_multiple` (40,320 for Loong)."""
    return -(-self.size // self.pad_multiple) * self.pad_multiple

  def special(self, name: str) -> int:
    if name not in SPECIALS:
      raise KeyError(f"unknown special token {name!r}; known: {SPECIALS}")
    return self.special_offset + SPECIALS.index(name)

  # Named accessors for the ids used everywhere.
  pad = property(lambda self: self.special("pad"))
  bos = property(lambda self: self.special("bos"))
  eos = property(lambda self: self.special("eos"))
  boi = property(lambda self: self.special("boi"))
  eoi = property(lambda self: self.special("eoi"))
  bov = property(lambda self: self.special("bov"))
  eov = property(lambda self: self.special("eov"))
  no_text = property(lambda self: self.special("no_text"))
  mask = property(lambda self: self.special("mask"))

  def video_to_tokens(self, codes):
    """Video tokenizer codes in [0, video_size) -> unified ids."""
    codes = np.asarray(codes)
    if codes.size and (codes.min() < 0 or codes.max() >= self.video_size):
      raise ValueError(f"video codes must lie in [0, {self.video_size}), got "
                       f"[{codes.min()}, {codes.max()}]")
    return codes.astype(np.int32) + self.video_offset

  def tokens_to_video(self, ids):
    """Unified ids -> video tokenizer codes; raises if an id is not a video id."""
    ids = np.asarray(ids)
    if not np.all(self.is_video(ids)):
      raise ValueError("tokens_to_video: some ids are not video ids")
    return (ids - self.video_offset).astype(np.int32)

  def is_text(self, ids):
    ids = np.asarray(ids)
    return (ids >= 0) & (ids < self.text_size)

  def is_video(self, ids):
    ids = np.asarray(ids)
    return (ids >= self.video_offset) & (ids < self.special_offset)

  def is_special(self, ids):
    ids = np.asarray(ids)
    return (ids >= self.special_offset) & (ids < self.size)


def latent_frames(num_frames: int, temporal_stride: int = 4) -> int:
  """Pixel frames ``F = 1 + stride*k`` -> latent frames ``1 + k`` (17 -> 5, 65 -> 17, 1 -> 1)."""
  if num_frames < 1 or (num_frames - 1) % temporal_stride:
    raise ValueError(f"num_frames={num_frames} must be 1 + {temporal_stride}k "
                     f"(1, {1 + temporal_stride}, {1 + 2 * temporal_stride}, ...)")
  return 1 + (num_frames - 1) // temporal_stride


def sequence_length(num_text: int, num_latent_frames: int, tokens_per_frame: int) -> int:
  """Length of `build_sequence`'s output: <bos> + text + <bov> + F_lat*(N+2) + <eov>."""
  return 1 + num_text + 1 + num_latent_frames * (tokens_per_frame + 2) + 1


def build_sequence(text_ids, video_codes, vocab: Vocab) -> np.ndarray:
  """Assemble one unified sequence.

  Args:
    text_ids: `[N_text]` ids in [0, text_size) (may be empty).
    video_codes: `[F_lat, h, w]` or `[F_lat, N]` video tokenizer codes in [0, video_size).
    vocab: the id layout.
  Returns:
    `[sequence_length(N_text, F_lat, N)]` int32.
  """
  text_ids = np.asarray(text_ids, dtype=np.int64).reshape(-1)
  if text_ids.size and not np.all(vocab.is_text(text_ids)):
    raise ValueError(f"build_sequence: text ids must lie in [0, {vocab.text_size})")
  codes = np.asarray(video_codes)
  if codes.ndim not in (2, 3) or codes.shape[0] < 1:
    raise ValueError(f"build_sequence: video_codes must be [F_lat, h, w] or [F_lat, N], got "
                     f"shape {codes.shape}")
  frames = vocab.video_to_tokens(codes.reshape(codes.shape[0], -1))
  f_lat, n = frames.shape
  body = np.concatenate([np.full((f_lat, 1), vocab.boi), frames, np.full((f_lat, 1), vocab.eoi)],
                        axis=1)
  return np.concatenate([[vocab.bos], text_ids, [vocab.bov], body.reshape(-1),
                         [vocab.eov]]).astype(np.int32)


def parse_sequence(sequence, vocab: Vocab, tokens_per_frame: int):
  """Inverse of `build_sequence`; trailing `<pad>` ids are ignored.

  Returns:
    `(text_ids [N_text], video_codes [F_lat, tokens_per_frame])`.
  Raises:
    ValueError naming the position where the layout is broken.
  """
  seq = np.asarray(sequence).reshape(-1)
  seq = seq[: len(seq) - _trailing_count(seq, vocab.pad)]
  if len(seq) < 2 or seq[0] != vocab.bos:
    raise ValueError("parse_sequence: a sequence starts with <bos>")
  bov = np.flatnonzero(seq == vocab.bov)
  if len(bov) != 1:
    raise ValueError(f"parse_sequence: expected one <bov>, found {len(bov)}")
  text = seq[1 : bov[0]]
  if not np.all(vocab.is_text(text)):
    raise ValueError("parse_sequence: non-text id between <bos> and <bov>")
  if seq[-1] != vocab.eov:
    raise ValueError("parse_sequence: a sequence ends with <eov>")
  body = seq[bov[0] + 1 : -1]
  stride = tokens_per_frame + 2
  if len(body) % stride:
    raise ValueError(f"parse_sequence: {len(body)} video-span ids is not a whole number of "
                     f"latent frames of {tokens_per_frame} + 2")
  frames = body.reshape(-1, stride)
  bad = np.flatnonzero((frames[:, 0] != vocab.boi) | (frames[:, -1] != vocab.eoi))
  if len(bad):
    raise ValueError(f"parse_sequence: latent frame {bad[0]} is not wrapped in <boi> ... <eoi>")
  return text.astype(np.int32), vocab.tokens_to_video(frames[:, 1:-1])


def frame_index(sequence, vocab: Vocab) -> np.ndarray:
  """Latent frame of every position: `[..., L]` int32, -1 outside any frame.

  `<boi>`, the video ids and `<eoi>` of frame f all get f. Used for per-frame loss weights and
  frame-level attention masks.
  """
  seq = np.asarray(sequence)
  starts = np.cumsum(seq == vocab.boi, axis=-1)
  ends = np.cumsum(seq == vocab.eoi, axis=-1) - (seq == vocab.eoi)
  inside = starts > ends
  return np.where(inside, starts - 1, -1).astype(np.int32)


def previous_frame_source(sequence, vocab: Vocab, frame_width: int = 0,
                          radius: int = 0) -> np.ndarray:
  """For every input slot, where its *target* sat one latent frame earlier: `[..., L]` int32.

  Slot i predicts slot i + 1. When slot i + 1 is the video id at offset o of latent frame f >= 1
  of a video, the result is the slot of the video id at offset o of frame f - 1 of the same video
  (always < i + 1, so reading it is causal); otherwise -1. Whether slot i + 1 is a video id is read
  from slot i alone (a `<boi>` or a video id whose frame-mate one frame earlier is a video id), so
  the last slot of an input array is covered too, and a planned layout whose future slots are
  fillers (`inference/decode.py`) gives the same answer as the finished sequence.
  Used by `config.lm.prev_frame_input` (`llm/transformer.py`).

  With `radius` r > 0 the result is `[..., L, (2r + 1)**2]`: the slots of the frame-mate's
  neighbourhood, rows then columns from (-r, -r) to (r, r) in a frame `frame_width` ids wide
  (the centre, index `(2r + 1)**2 // 2`, is the frame-mate itself); -1 for a neighbour outside
  the frame, and for every neighbour of a slot without a frame-mate. A one-block move of an object
  is then a choice among these inputs (`config.lm.prev_frame_radius`).
  """
  seq = np.asarray(sequence)
  length = seq.shape[-1]
  index = np.broadcast_to(np.arange(length), seq.shape)
  is_boi = seq == vocab.boi
  boi_at = np.maximum.accumulate(np.where(is_boi, index, -1), axis=-1)
  # The <boi> before each slot's own <boi>: at a <boi>, the last <boi> strictly before it.
  before = np.concatenate([np.full(seq.shape[:-1] + (1,), -1), boi_at[..., :-1]], axis=-1)
  prev_boi_at = np.maximum.accumulate(np.where(is_boi, before, -1), axis=-1)
  videos = np.cumsum(seq == vocab.bov, axis=-1)
  in_frame = (is_boi | vocab.is_video(seq)) & (boi_at >= 0)
  offset = index - boi_at  # the target's offset in its frame

  def read(source, ok):
    """`source` where it is a video id of the previous frame of the same video, else -1."""
    ok = ok & (source > prev_boi_at) & (source < boi_at)
    safe = np.where(ok, source, 0)
    ok &= vocab.is_video(np.take_along_axis(seq, safe, axis=-1))
    ok &= np.take_along_axis(videos, safe, axis=-1) == videos
    return np.where(ok, source, -1).astype(np.int32)

  mate = read(prev_boi_at + 1 + offset, in_frame & (prev_boi_at >= 0))
  if radius == 0:
    return mate
  if radius < 0 or frame_width <= 0:
    raise ValueError(f"previous_frame_source: radius={radius} needs radius >= 0 and a positive "
                     f"frame_width (got {frame_width})")
  column = offset % frame_width
  out = []
  for dy in range(-radius, radius + 1):
    for dx in range(-radius, radius + 1):
      inside = (mate >= 0) & (column + dx >= 0) & (column + dx < frame_width)
      out.append(read(mate + dy * frame_width + dx, inside))
  return np.stack(out, axis=-1)


def neighbourhood_shape(radius: int) -> tuple[int, ...]:
  """The trailing axis of `previous_frame_source` for `radius`: `()` at 0, else
  `((2r + 1)**2,)`."""
  return ((2 * radius + 1)**2,) if radius else ()


def previous_frame_inputs(sequence, vocab: Vocab, frame_width: int = 0,
                          radius: int = 0) -> np.ndarray:
  """`[..., L]` (radius 0) or `[..., L, (2r + 1)**2]` int32: the ids at `previous_frame_source`
  of each slot, -1 where there is none."""
  seq = np.asarray(sequence)
  source = previous_frame_source(seq, vocab, frame_width, radius)
  flat = source.reshape(seq.shape[:-1] + (-1,))
  ids = np.take_along_axis(seq, np.maximum(flat, 0), axis=-1).reshape(source.shape)
  return np.where(source >= 0, ids, -1).astype(np.int32)


def mm_rope_positions(sequence, vocab: Vocab, frame_width: int,
                      scale: tuple[int, int, int] = (4, 8, 8)) -> np.ndarray:
  """3D rotary positions `[..., L, 3]` (t, h, w) for MM-RoPE [Lumos].

  Text and special tokens (including `<boi>`/`<eoi>`) keep their 1D index on all three axes. The
  video id at row r, column c of latent frame f gets `p0 + (scale_t * f, scale_h * r,
  scale_w * c)`, p0 being the index of the sequence's first video id: positions count in pixel
  frames and pixels (the tokenizer's 4x temporal and 8x spatial compression) and continue after
  the text.
  """
  seq = np.asarray(sequence)
  length = seq.shape[-1]
  index = np.broadcast_to(np.arange(length), seq.shape)
  out = np.repeat(index[..., None], 3, axis=-1).astype(np.int32)
  is_video = vocab.is_video(seq)
  frame = frame_index(seq, vocab)
  # Offset of each video id inside its frame: count of video ids since the frame's <boi>.
  boi_at = np.maximum.accumulate(np.where(seq == vocab.boi, index, -1), axis=-1)
  offset = index - boi_at - 1
  first = np.where(is_video.any(-1), is_video.argmax(-1), 0)[..., None]
  video_pos = np.stack([scale[0] * frame, scale[1] * (offset // frame_width),
                        scale[2] * (offset % frame_width)], axis=-1) + first[..., None]
  return np.where(is_video[..., None], video_pos, out).astype(np.int32)


def _trailing_count(seq: np.ndarray, value: int) -> int:
  not_value = np.flatnonzero(seq != value)
  return len(seq) if len(not_value) == 0 else len(seq) - 1 - not_value[-1]
