"""Moving-shapes clips and the folder source (unreadable files are skipped and counted)."""

import logging
import os

import imageio.v3 as iio
import numpy as np
import pytest

from loong_jax.tokenizer import toy_data
from tests.tokenizer.conftest import load


def test_shapes_clips_are_deterministic_and_move():
  config = load("tiny")
  config.data.resolution = 32
  a = next(toy_data.make_clip_iterator(config, seed=3, batch_size=2))
  b = next(toy_data.make_clip_iterator(config, seed=3, batch_size=2))
  c = next(toy_data.make_clip_iterator(config, seed=4, batch_size=2))
  assert a.shape == (2, config.data.frames, 32, 32, 3) and a.dtype == np.float32
  assert -1.0 <= a.min() and a.max() <= 1.0
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  assert np.abs(a[:, -1] - a[:, 0]).max() > 0.1   # something moved


def test_clip_is_uint8_and_frames_differ():
  clip = toy_data.moving_shapes_clip(np.random.default_rng(0), 5, 16, 2, 2.0)
  assert clip.shape == (5, 16, 16, 3) and clip.dtype == np.uint8


def test_folder_skips_unreadable_files_with_a_count(tmp_path, caplog):
  frames = toy_data.moving_shapes_clip(np.random.default_rng(0), 6, 32, 2, 2.0)
  iio.imwrite(tmp_path / "good.gif", frames)
  (tmp_path / "corrupt.mp4").write_bytes(b"\x00\x01 not a video")
  iio.imwrite(tmp_path / "short.gif", frames[:2])
  config = load("tiny")
  config.data.folder = str(tmp_path)
  config.data.frames = 5
  config.data.resolution = 16
  with caplog.at_level(logging.INFO):
    batch = next(toy_data.make_clip_iterator(config, seed=0, batch_size=2))
  assert batch.shape == (2, 5, 16, 16, 3)
  assert any("1 clips read, 2 files skipped" in r.getMessage() for r in caplog.records)


def test_folder_without_any_readable_video_is_an_error(tmp_path):
  (tmp_path / "corrupt.mp4").write_bytes(b"junk")
  config = load("tiny")
  config.data.folder = str(tmp_path)
  with pytest.raises(ValueError, match="none of the 1 files"):
    next(toy_data.make_clip_iterator(config, seed=0, batch_size=1))
  config.data.folder = os.path.join(str(tmp_path), "missing")
  with pytest.raises(FileNotFoundError, match="config.data.folder"):
    next(toy_data.make_clip_iterator(config, seed=0, batch_size=1))
