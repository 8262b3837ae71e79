"""Video files: round trips through mp4 and gif, frame-rate resampling, windows, resize/crop."""

import numpy as np
import pytest

from loong_jax.data import synthetic, video_io


def _clip(num_frames=9, side=32):
  data = synthetic.SyntheticVideos(synthetic.SyntheticConfig(
      resolution=side, num_frames=(num_frames,), max_objects=1))
  return data.sample(0)["video"]


@pytest.mark.parametrize("ext", [".mp4", ".gif"])
def test_write_read_round_trip(tmp_path, ext):
  clip = _clip()
  path = str(tmp_path / f"clip{ext}")
  video_io.write_video(path, clip, fps=8)
  frames, fps = video_io.read_video(path)
  assert frames.shape == clip.shape and frames.dtype == np.uint8
  assert fps == pytest.approx(8, rel=0.05)
  # Lossy codecs: close on average, not exact.
  assert np.abs(frames.astype(float) - clip).mean() < 12


def test_read_image(tmp_path):
  import imageio.v3 as iio
  image = _clip(1)[0]
  iio.imwrite(tmp_path / "a.png", image)
  frames, fps = video_io.read_video(str(tmp_path / "a.png"))
  np.testing.assert_array_equal(frames, image[None])
  assert fps == 0


@pytest.mark.parametrize("content", [b"", b"not a video" * 50])
def test_bad_files_raise_one_error(tmp_path, content):
  for ext in (".mp4", ".gif", ".png"):
    path = tmp_path / f"bad{ext}"
    path.write_bytes(content)
    with pytest.raises(video_io.VideoReadError, match="bad"):
      video_io.read_video(str(path))
  with pytest.raises(video_io.VideoReadError, match="missing"):
    video_io.read_video(str(tmp_path / "missing.mp4"))


def test_truncated_mp4_raises(tmp_path):
  path = tmp_path / "t.mp4"
  video_io.write_video(str(path), _clip(), fps=8)
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 2])
  with pytest.raises(video_io.VideoReadError):
    video_io.read_video(str(path))


def test_resample_fps():
  frames = np.arange(25)[:, None]
  np.testing.assert_array_equal(video_io.resample_fps(frames, 24, 8)[:, 0], np.arange(0, 25, 3))
  up = video_io.resample_fps(frames[:5], 4, 8)[:, 0]
  np.testing.assert_array_equal(up, [0, 0, 1, 1, 2, 2, 3, 3, 4])
  assert video_io.resample_fps(frames, 0, 8) is frames  # images pass through


def test_clip_windows():
  assert video_io.clip_frames(20, 65) == 17
  assert video_io.clip_frames(100, 65) == 65
  assert video_io.clip_frames(0, 17) == 0
  frames = np.arange(20)
  np.testing.assert_array_equal(video_io.clip_window(frames, 17), np.arange(17))
  np.testing.assert_array_equal(video_io.clip_window(frames, 17, "center"), np.arange(1, 18))
  start = video_io.clip_window(frames, 5, "random", np.random.default_rng(0))[0]
  assert 0 <= start <= 15
  with pytest.raises(ValueError, match="1 \\+ 4k"):
    video_io.clip_window(frames, 4)


def test_resize_center_crop():
  frames = np.zeros((2, 40, 80, 3), np.uint8)
  frames[:, :, 20:60] = 255  # the central square survives a centre crop
  out = video_io.resize_center_crop(frames, 20)
  assert out.shape == (2, 20, 20, 3)
  assert out[:, :, 1:-1].min() >= 250  # the outer columns blend with the cut-off black
  assert video_io.resize_center_crop(frames, (16, 32)).shape == (2, 16, 32, 3)


def test_gif_of_few_colours_is_exact(tmp_path):
  """One palette for the whole video: a video of fewer than 256 colours comes back exactly."""
  rng = np.random.default_rng(0)
  colours = rng.integers(0, 256, (40, 3), dtype=np.uint8)
  clip = colours[rng.integers(0, len(colours), (30, 16, 16))]
  path = str(tmp_path / "few.gif")
  video_io.write_video(path, clip, fps=8)
  frames, _ = video_io.read_video(path)
  np.testing.assert_array_equal(frames, clip)
