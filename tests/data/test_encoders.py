"""The oracle codec: pooling encoder + block decoder re-encode to the same codes."""

import jax
import pytest
import numpy as np

from loong_jax.data import encoders, synthetic

VIDEO_SIZE = 8192


def _clips():
  data = synthetic.SyntheticVideos(synthetic.SyntheticConfig(
      seed=1, resolution=32, num_frames=(17,), max_objects=2, num_heldout=3), "heldout")
  return np.stack([data[i]["video"] for i in range(3)]).astype(np.float32) / 127.5 - 1.0


def test_block_decoder_shapes_and_reencoding_is_exact():
  encode = jax.jit(encoders.pooling_stand_in_encoder(VIDEO_SIZE))
  decode = jax.jit(encoders.pooling_block_decoder(VIDEO_SIZE))
  codes = np.asarray(encode(_clips()))
  video = np.asarray(decode(codes))
  assert codes.shape == (3, 5, 4, 4) and video.shape == (3, 17, 32, 32, 3)
  assert codes.max() < encoders.pooling_levels(VIDEO_SIZE) ** 3 <= VIDEO_SIZE
  np.testing.assert_array_equal(np.asarray(encode(video)), codes)
  # Also through uint8 pixels, as written to disk and read back by the evaluation.
  as_uint8 = np.round((video + 1.0) * 127.5).astype(np.uint8)
  np.testing.assert_array_equal(np.asarray(encode(as_uint8 / 127.5 - 1.0)), codes)


def test_block_decoder_frame_layout():
  decode = encoders.pooling_block_decoder(VIDEO_SIZE)
  codes = np.arange(3 * 2 * 2).reshape(1, 3, 2, 2) * 97
  video = np.asarray(decode(codes))
  assert video.shape == (1, 9, 16, 16, 3)
  for frame, latent in ((0, 0), (1, 1), (4, 1), (5, 2), (8, 2)):
    np.testing.assert_array_equal(video[0, frame], video[0, {0: 0, 1: 1, 2: 5}[latent]])
  assert not np.array_equal(video[0, 0], video[0, 1])
  assert np.all(video[0, 0, :8, :8] == video[0, 0, 0, 0])


def test_last_frame_oracle_shifts_a_moving_object_by_whole_blocks():
  """`frames="last"`: latent frame k is frame 4k, so an object moving one 8-px block per latent
  frame shifts its codes exactly, latent frame 1 included (the mean smears it there); the block
  decoder still inverts it."""
  data = synthetic.SyntheticVideos(synthetic.SyntheticConfig(
      seed=0, resolution=64, num_frames=(17,), max_objects=1, num_train=40, speed=1 / 32,
      motions=("right",), sizes=("medium",), textures=("plain",), background_colors=("black",)),
      "train")
  video = np.stack([data[i]["video"] for i in range(8)]).astype(np.float32) / 127.5 - 1.0
  last = np.asarray(encoders.pooling_stand_in_encoder(4096, frames="last")(video))
  mean = np.asarray(encoders.pooling_stand_in_encoder(4096)(video))
  np.testing.assert_array_equal(last[:, 0], mean[:, 0])               # frame 0 alone in both
  np.testing.assert_array_equal(last[:, 1:], np.asarray(
      encoders.pooling_stand_in_encoder(4096)(video[:, [0] + [4 * (k // 4 + 1) for k in
                                                              range(16)]]))[:, 1:])
  # Moving right one block per latent frame: columns 1.. of frame k are columns ..-1 of k - 1.
  np.testing.assert_array_equal(last[:, 1:, :, 1:], last[:, :-1, :, :-1])
  assert not np.array_equal(mean[:, 1, :, 1:], mean[:, 0, :, :-1])
  decode = encoders.pooling_block_decoder(4096)
  np.testing.assert_array_equal(
      np.asarray(encoders.pooling_stand_in_encoder(4096, frames="last")(decode(last))), last)
  with pytest.raises(ValueError, match="frames="):
    encoders.pooling_stand_in_encoder(4096, frames="first")
