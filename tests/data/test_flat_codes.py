"""Flat-region code canonicalisation: which blocks are flat, and that they get their colour's
canonical code whatever the rest of the clip holds."""

import ml_collections
import numpy as np
import pytest

from loong_jax.data import flat_codes

BLACK = -1.0


def clip_with_square(t=5, size=32, top=8, left=8, side=8, color=(1.0, -1.0, -1.0)):
  """`[1, t, size, size, 3]` in [-1, 1]: black, with a red square on every frame."""
  video = np.full((1, t, size, size, 3), BLACK, np.float32)
  video[:, :, top:top + side, left:left + side] = color
  return video


def test_flat_blocks_find_flat_blocks_and_keep_a_margin_around_the_object():
  video = clip_with_square()                   # the square fills block (1, 1) of a 4x4 grid
  flat, colors = flat_codes.flat_blocks(video, 4, 8, tolerance=0, margin=0)
  assert flat.shape == (1, 2, 4, 4) and colors.shape == (1, 2, 4, 4, 3)
  assert flat.all()                            # the square is one flat colour too
  np.testing.assert_array_equal(colors[0, 0, 1, 1], [255, 0, 0])
  np.testing.assert_array_equal(colors[0, 0, 3, 3], [0, 0, 0])
  shifted = clip_with_square(top=12, left=12)  # now it straddles four blocks
  flat, _ = flat_codes.flat_blocks(shifted, 4, 8, tolerance=0, margin=0)
  assert not flat[0, :, 1:3, 1:3].any() and flat[0, :, 0, 0].all() and flat[0, :, 3, 3].all()
  flat, _ = flat_codes.flat_blocks(shifted, 4, 8, tolerance=0, margin=1)
  assert flat[0, 0].sum() == 0                 # every block touches the square's four
  moving = clip_with_square()
  moving[0, 3:, 8:16, 8:16] = BLACK            # the square leaves during latent frame 1
  flat, _ = flat_codes.flat_blocks(moving, 4, 8, tolerance=0, margin=0)
  assert flat[0, 0, 1, 1] and not flat[0, 1, 1, 1]


def test_flat_blocks_reject_a_bad_shape():
  with pytest.raises(ValueError, match="flat_blocks"):
    flat_codes.flat_blocks(np.zeros((1, 4, 16, 16, 3), np.float32), 4, 8, 4.0, 1)


def context_encoder(calls):
  """A fake encoder whose codes depend on the block's colour *and* on the whole clip (a global
  sum), as a tokenizer with a frame-wide receptive field does. `[B, T, H, W, 3] -> [B, t, h, w]`."""

  def encode(video):
    calls.append(video.shape)
    b, t = video.shape[:2]
    groups = [video[:, :1]] + [video[:, 1 + 4 * k:5 + 4 * k] for k in range((t - 1) // 4)]
    out = []
    for g in groups:
      h, w = g.shape[2] // 8, g.shape[3] // 8
      mean = g.reshape(b, -1, h, 8, w, 8, 3).mean((1, 3, 5))
      local = np.round((mean + 1) * 2).astype(np.int64) @ np.array([1, 5, 25])
      context = np.abs(np.round(video[..., 0].reshape(b, -1).sum(-1))).astype(np.int64) % 7
      out.append((local + 125 * context[:, None, None]) % 1000)
    return np.stack(out, 1).astype(np.int32)

  return encode


def test_flat_blocks_get_their_colours_code_whatever_the_context():
  calls = []
  encode = flat_codes.canonical_encoder(
      context_encoder(calls), flat_codes.FlatCodesConfig(enabled=True, tolerance=0, margin=1))
  # Squares straddling blocks (0..1, 0..1) and (2..3, 2..3) of the 4x4 grid.
  a, b = clip_with_square(top=4, left=4), clip_with_square(top=20, left=20, color=(-1, 1, -1))
  raw_a, raw_b = context_encoder([])(a), context_encoder([])(b)
  assert (raw_a[0, :, 3, 3] != raw_b[0, :, 0, 0]).all()  # the fake's context flips codes
  got_a, got_b = encode(a), encode(b)
  black = context_encoder([])(np.full_like(a, BLACK))
  # Blocks two or more away from the square: the code of an all-black clip.
  np.testing.assert_array_equal(got_a[0, :, 3], black[0, :, 3])
  np.testing.assert_array_equal(got_a[0, :, :, 3], black[0, :, :, 3])
  np.testing.assert_array_equal(got_b[0, :, 0], black[0, :, 0])
  # The square and the blocks next to it keep the encoder's codes.
  np.testing.assert_array_equal(got_a[0, :, :3, :3], raw_a[0, :, :3, :3])
  np.testing.assert_array_equal(got_b[0, :, 1:, 1:], raw_b[0, :, 1:, 1:])
  # One canonical encode per colour and clip shape: black, once, for both clips.
  assert calls == [a.shape, a.shape, b.shape]
  # `canonicalise` does the same to codes found otherwise (sticky re-encoding), from the cache.
  np.testing.assert_array_equal(encode.canonicalise(a, raw_a), got_a)
  assert len(calls) == 3
  # A block-aligned square is flat itself: its colour's canonical code too.
  aligned = clip_with_square(top=8, left=8, side=16)
  red = context_encoder([])(np.broadcast_to(np.float32([1, -1, -1]), aligned.shape).copy())
  np.testing.assert_array_equal(encode(aligned)[0, :, 1:3, 1:3], red[0, :, 1:3, 1:3])


def test_disabled_canonicalisation_is_the_encoder_itself():
  encode = context_encoder([])
  assert flat_codes.canonical_encoder(encode, flat_codes.FlatCodesConfig()) is encode


def test_config_rejects_unknown_keys_and_negative_values():
  with pytest.raises(ValueError, match="unknown keys"):
    flat_codes.FlatCodesConfig.from_config(ml_collections.ConfigDict({"enable": True}))
  with pytest.raises(ValueError, match=">= 0"):
    flat_codes.FlatCodesConfig(enabled=True, margin=-1)
  assert flat_codes.FlatCodesConfig.from_config(None) == flat_codes.FlatCodesConfig()
  got = flat_codes.FlatCodesConfig.from_config({"enabled": True, "margin": 2})
  assert got.enabled and got.margin == 2
