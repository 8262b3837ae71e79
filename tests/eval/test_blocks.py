"""The oracle-video reader: real clips through the oracle tokenizer read right."""

import jax
import numpy as np
import pytest

from loong_jax.data import encoders, synthetic
from loong_jax.eval import blocks, probe
from tests.eval import helpers

VIDEO_SIZE = 8192


def _through_oracle(videos: np.ndarray) -> np.ndarray:
  """uint8 `[B, T, H, W, 3]` -> the oracle's decode of their codes, uint8."""
  encode = jax.jit(encoders.pooling_stand_in_encoder(VIDEO_SIZE))
  decode = jax.jit(encoders.pooling_block_decoder(VIDEO_SIZE))
  out = np.asarray(decode(encode(videos.astype(np.float32) / 127.5 - 1.0)))
  return np.clip(np.round((out + 1.0) * 127.5), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("frames", [17, 65])
def test_real_clips_through_the_oracle_read_right(frames):
  """Colour on every clip, direction on clips that are still or move straight, over the first
  17 frames (65-frame clips: at their slow speed)."""
  data = helpers.single_object("heldout", num_frames=frames, seed=12, n=40)
  samples = [data.sample(i) for i in range(len(data))]
  videos = _through_oracle(np.stack([s["video"][:17] for s in samples]))
  still_px = probe.still_threshold(17, helpers.RESOLUTION, 65)
  colors, directions = [], []
  for sample, video in zip(samples, videos):
    truth = helpers.first_object(sample)
    reading = blocks.read(video, still_px)
    colors.append(reading.color == truth["color"])
    if truth["motion"] == "still" or truth["motion"] in synthetic.DIRECTIONS:
      directions.append(reading.motion == truth["motion"])
    assert reading.shape is None
  assert np.mean(colors) >= 0.95
  assert len(directions) >= 20 and np.mean(directions) >= 0.95


def test_background_only_reads_nothing_and_bad_input_is_named():
  video = np.full((17, 64, 64, 3), 15, np.uint8)
  assert blocks.read(video, 2.0) == probe.Reading(None, None, None)
  with pytest.raises(ValueError, match="multiples of 8"):
    blocks.read(video[:, :60], 2.0)
  with pytest.raises(ValueError, match="uint8"):
    blocks.read(video.astype(np.float32), 2.0)


def test_unmixing_tells_a_half_covered_block_from_a_darker_colour():
  black = np.asarray(synthetic.render_lib.BACKGROUND_COLORS["black"], np.float32)
  red = np.asarray(synthetic.render_lib.COLORS["red"], np.float32)
  half_red = black + 0.6 * (red - black)
  assert probe.OBJECT_COLORS[blocks.unmixed_color(half_red, black)] == "red"


def test_minute_long_real_clips_through_the_oracle_hold_in_every_window():
  data = helpers.single_object("train", num_frames=synthetic.long_clip_frames(8), seed=9, n=12)
  motions = [data.attributes(i)[0]["objects"][0]["motion"] for i in range(len(data))]
  samples = [data.sample(i) for i, m in enumerate(motions)
             if m == "still" or m in synthetic.DIRECTIONS][:3]
  videos = _through_oracle(np.stack([s["video"] for s in samples]))
  motion = []
  for sample, video in zip(samples, videos):
    windows = blocks.window_checks(video, 8.0, helpers.first_object(sample))
    assert len(windows) == 6 and all(w["presence"] for w in windows)
    motion.extend(w["motion"] for w in windows)
    wrong = dict(helpers.first_object(sample), color="pink" if sample["attributes"]["objects"][0][
        "color"] != "pink" else "red")
    assert not any(w["presence"] for w in blocks.window_checks(video, 8.0, wrong))
  # A window moves 3-5 px, under one block: the block centroid misses a direction now and then.
  assert np.mean(motion) >= 0.8, motion
