"""Does the LM read the prompt? The loss on object tokens with a wrong word in the caption minus
the loss with the true caption (nats; positive = the prompt helps).

A model that ignores the text predicts the object's tokens equally badly under any caption, so
its frame loss can fall while generated videos show the wrong colour; this gap measures the
prompt's use directly, teacher-forced on held-out items:

- `color`: first latent frame of held-out rendered images; the object's colour word swapped for
  the next colour of `synthetic_render.COLORS` (`swap_color`).
- `shape`: the same images with the shape word swapped for the next shape of
  `synthetic_render.SHAPES` (`swap_shape`).
- `motion`: latent frames 1.. of held-out clips (the first frame shows no motion); the motion
  phrase swapped for one of the opposite motion (`swap_motion`, `OPPOSITE`).
- `motion_frame1`: the same on latent frame 1 alone, the one frame whose motion only the prompt
  can tell: teacher-forced, later frames can read the direction off the frames before them, so
  a model that reads the motion word shows it here first.

*Object tokens* are the video tokens whose 8x8 block overlaps the object's mask (the union of
all objects' masks; the demo draws one object per item) in any pixel frame the latent frame
stands for (frame 0 for latent 0, frames 4k-3..4k for latent k): the
background tokens do not depend on the object's words and would dilute the gap. Sequences are
built as training builds them (`tokens.build_sequence` of the text ids cut to `max_text_len`
and the codes); the loss is the mean next-token cross-entropy over those targets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import numpy as np
from scipy import special

from loong_jax import sharding as sharding_lib, tokens
from loong_jax.data import synthetic, synthetic_render as render_lib
from loong_jax.eval import objects
from loong_jax.llm import transformer

# Opposite motion per motion (the swapped caption names it); `still` swaps to moving right.
OPPOSITE = {
    "left": "right", "right": "left", "up": "down", "down": "up", "up-left": "down-right",
    "down-right": "up-left", "up-right": "down-left", "down-left": "up-right",
    "growing": "shrinking", "shrinking": "growing", "still": "right", "bouncing": "still",
}
LogitsFn = Callable[[np.ndarray], np.ndarray]  # inputs [B, L] int32 -> logits [B, L, V]


def _swap_pair(caption: str, color: str, shape: str, new_color: str, new_shape: str) -> str:
  """`caption` with "<color> <shape>" replaced by "<new_color> <new_shape>"."""
  old = f"{color} {shape}"
  if old not in caption:
    raise ValueError(f"text gap: caption {caption!r} does not name {old!r}")
  return caption.replace(old, f"{new_color} {new_shape}", 1)


def _next(names, name: str) -> str:
  names = list(names)
  return names[(names.index(name) + 1) % len(names)]


def swap_color(caption: str, color: str, shape: str) -> str:
  """`caption` with "<color> <shape>" replaced by the next colour of `COLORS` and the shape."""
  return _swap_pair(caption, color, shape, _next(render_lib.COLORS, color), shape)


def swap_shape(caption: str, color: str, shape: str) -> str:
  """`caption` with "<color> <shape>" replaced by the colour and the next shape of `SHAPES`."""
  return _swap_pair(caption, color, shape, color, _next(render_lib.SHAPES, shape))


def swap_motion(caption: str, motion: str) -> str:
  """`caption` with its phrase of `motion` replaced by the first phrase of `OPPOSITE[motion]`."""
  for phrase in synthetic.MOTION_PHRASES[motion]:
    if phrase in caption:
      return caption.replace(phrase, synthetic.MOTION_PHRASES[OPPOSITE[motion]][0], 1)
  raise ValueError(f"text gap: caption {caption!r} has no phrase of motion {motion!r}")


def caption_motion(caption: str) -> str:
  """The motion whose phrase (`synthetic.MOTION_PHRASES`) a one-object caption holds."""
  found = {m for m, phrases in synthetic.MOTION_PHRASES.items() for p in phrases if p in caption}
  if len(found) != 1:
    raise ValueError(f"text gap: caption {caption!r} names {len(found)} motions, not one")
  return found.pop()


def paraphrase_motion(caption: str, motion: str) -> str:
  """`caption` with its phrase of `motion` replaced by the next phrase of the same motion
  (`synthetic.MOTION_PHRASES`, cyclic): the same meaning in other words, a control for
  `swap_motion`."""
  phrases = synthetic.MOTION_PHRASES[motion]
  if len(phrases) < 2:
    raise ValueError(f"text gap: motion {motion!r} has one phrase, nothing to paraphrase with")
  for k, phrase in enumerate(phrases):
    if phrase in caption:
      return caption.replace(phrase, phrases[(k + 1) % len(phrases)], 1)
  raise ValueError(f"text gap: caption {caption!r} has no phrase of motion {motion!r}")


def object_tokens(masks: np.ndarray, temporal: int = 4, spatial: int = 8) -> np.ndarray:
  """Pixel masks `[T, H, W]` bool (T = 1 + temporal k) -> latent token masks
  `[1 + k, H/spatial, W/spatial]` bool: the block overlaps the mask in a frame of the latent."""
  t, h, w = masks.shape
  blocks = masks.reshape(t, h // spatial, spatial, w // spatial, spatial).any((2, 4))
  rest = blocks[1:].reshape((t - 1) // temporal, temporal, h // spatial, w // spatial).any(1)
  return np.concatenate([blocks[:1], rest])


def model_logits(model, params, vocab: tokens.Vocab, batch_size: int, frame_width: int,
                 mesh=None, rules=()) -> LogitsFn:
  """`LogitsFn` of a `llm.transformer.Transformer` with `params`, as training calls it
  (`positions` for MM-RoPE, `frame_ids` for frame-level masks, `prev_ids` for previous-frame
  inputs, all from the inputs).

  Inputs are padded to `batch_size` rows and a multiple of 64 positions, so that one shape
  compiles once; trailing `<pad>` inputs do not change the logits before them.
  """
  apply = jax.jit(lambda p, x, pos, frame, prev: model.apply({"params": p}, x, pos,
                                                             frame_ids=frame, prev_ids=prev))

  def logits_fn(inputs):
    b, length = inputs.shape
    padded = np.full((max(batch_size, b), -(-length // 64) * 64), vocab.pad, np.int32)
    padded[:b, :length] = inputs
    layout = transformer.sequence_inputs(model.config, padded, vocab, frame_width)
    pos, frames, prev = layout["positions"], layout["frame_ids"], layout["prev_ids"]
    if mesh is None:
      out = apply(params, padded, pos, frames, prev)
    else:
      with sharding_lib.mesh_context(mesh, rules):
        out = apply(params, padded, pos, frames, prev)
    return np.asarray(out)[:b, :length]

  return logits_fn


def object_loss(logits_fn: LogitsFn, vocab: tokens.Vocab, texts: Sequence[np.ndarray],
                codes: Sequence[np.ndarray], token_masks: Sequence[np.ndarray],
                max_text_len: int, batch_size: int = 8) -> float:
  """Mean cross-entropy (nats) of the masked video tokens, teacher-forced.

  Args:
    logits_fn: the LM, `inputs [B, L] int32 -> logits [B, L, V]`.
    vocab: the id layout.
    texts: per item, text ids `[N]`.
    codes: per item, video codes `[F_lat, h, w]`.
    token_masks: per item, `[F_lat, h, w]` bool: the targets that count.
    max_text_len: text ids kept, as in training.
    batch_size: items per call.
  """
  total = count = 0.0
  for begin in range(0, len(texts), batch_size):
    seqs, weights = [], []
    for text, code, mask in zip(texts[begin:begin + batch_size], codes[begin:begin + batch_size],
                                token_masks[begin:begin + batch_size]):
      seq = tokens.build_sequence(np.asarray(text)[:max_text_len], code, vocab)
      is_target = np.zeros(len(seq), bool)
      is_target[vocab.is_video(seq)] = np.asarray(mask, bool).reshape(-1)
      seqs.append(seq)
      weights.append(is_target[1:])
    length = max(len(s) for s in seqs)
    batch = np.full((len(seqs), length), vocab.pad, np.int32)
    weight = np.zeros((len(seqs), length - 1), np.float32)
    for i, (seq, w) in enumerate(zip(seqs, weights)):
      batch[i, :len(seq)] = seq
      weight[i, :len(w)] = w
    logits = np.asarray(logits_fn(batch[:, :-1]), np.float32)
    picked = np.take_along_axis(logits, batch[:, 1:, None], axis=-1)[..., 0]
    ce = special.logsumexp(logits, axis=-1) - picked
    total += float((ce * weight).sum())
    count += float(weight.sum())
  if not count:
    raise ValueError("text gap: no object tokens in the items")
  return total / count


def gap(logits_fn: LogitsFn, vocab: tokens.Vocab, true_texts, swapped_texts, codes,
        token_masks, max_text_len: int, batch_size: int = 8) -> float:
  """`object_loss` with the swapped captions minus with the true ones (nats)."""
  def loss(texts):
    return object_loss(logits_fn, vocab, texts, codes, token_masks, max_text_len, batch_size)

  return loss(swapped_texts) - loss(true_texts)


def held_out_items(data: synthetic.SyntheticVideos, count: int, kind: str):
  """`(videos uint8 [N, T, H, W, 3], captions, swapped captions, pixel masks [N, T, H, W])` of
  the first `count` held-out items whose first object's words can be swapped (`kind` 'color',
  'shape' or 'motion'; motion needs a motion in `OPPOSITE`)."""
  videos, captions, swapped, masks = [], [], [], []
  for i in range(len(data)):
    if len(videos) == count:
      break
    sample = data.sample(i)
    obj = sample["attributes"]["objects"][0]
    if kind == "color":
      other = swap_color(sample["caption"], obj["color"], obj["shape"])
    elif kind == "shape":
      other = swap_shape(sample["caption"], obj["color"], obj["shape"])
    elif obj["motion"] in OPPOSITE:
      other = swap_motion(sample["caption"], obj["motion"])
    else:
      continue
    videos.append(sample["video"])
    captions.append(sample["caption"])
    swapped.append(other)
    masks.append(objects.object_masks(data, i)[0])
  if len(videos) < count:
    raise ValueError(f"text gap: {data} has {len(videos)} items whose {kind} can be swapped, "
                     f"fewer than {count}")
  return np.stack(videos), captions, swapped, np.stack(masks)


def encode_items(encode_video, videos: np.ndarray, masks: np.ndarray,
                 batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """`(codes [N, F_lat, h, w], object token masks [N, F_lat, h, w] bool)` of uint8 videos
  `[N, T, H, W, 3]` and their pixel masks `[N, T, H, W]`, encoded `batch_size` at a time."""
  codes = np.concatenate([
      np.asarray(encode_video(videos[b:b + batch_size].astype(np.float32) / 127.5 - 1.0))
      for b in range(0, len(videos), batch_size)])
  spatial = videos.shape[2] // codes.shape[2]
  return codes, np.stack([object_tokens(m, spatial=spatial) for m in masks])


def measure(logits_fn: LogitsFn, vocab: tokens.Vocab, encode_video, encode_text,
            images: synthetic.SyntheticVideos, clips: synthetic.SyntheticVideos, count: int,
            max_text_len: int, batch_size: int = 8) -> dict[str, float]:
  """`{"color", "shape", "motion", "motion_frame1": nats, "items": count}` on `count` held-out
  images and clips.

  Args:
    logits_fn: the (stage-3) LM, `inputs [B, L] -> logits [B, L, V]`.
    vocab: the id layout.
    encode_video: the run's video encoder, float `[B, T, H, W, 3]` in [-1, 1] -> codes
      `[B, T_lat, h, w]` (learned or oracle).
    encode_text: `str -> [N]` text ids (the run's SentencePiece model).
    images, clips: held-out single-frame and 17-frame sources (single object).
  """
  out = {}
  for kind, data in (("color", images), ("shape", images), ("motion", clips)):
    videos, captions, swapped, masks = held_out_items(data, count, kind)
    codes, token_masks = encode_items(encode_video, videos, masks, batch_size)
    if kind != "motion":
      token_masks[:, 1:] = False
    else:
      token_masks[:, 0] = False
    true_ids, swapped_ids = [encode_text(c) for c in captions], [encode_text(c) for c in swapped]
    out[kind] = gap(logits_fn, vocab, true_ids, swapped_ids, codes, token_masks, max_text_len,
                    batch_size)
    if kind == "motion":
      token_masks[:, 2:] = False
      out["motion_frame1"] = gap(logits_fn, vocab, true_ids, swapped_ids, codes, token_masks,
                                 max_text_len, batch_size)
  out["items"] = count
  return out
