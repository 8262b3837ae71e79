"""Long-video consistency: six 10-second windows in a minute, ground truth holds in all of them,
a vanished object is seen to vanish; table and plot."""

import numpy as np
import pytest
from PIL import Image

from loong_jax.data import synthetic
from loong_jax.eval import consistency
from tests.eval import helpers


@pytest.mark.parametrize("fps", [8, 12, 16])
def test_a_minute_has_six_windows(fps):
  frames = synthetic.long_clip_frames(fps)
  spans = consistency.windows(frames, fps, 10.0)
  assert len(spans) == 6
  assert spans[0][0] == 0 and spans[-1][1] == frames
  assert all(stop == start for (_, stop), (start, _) in zip(spans, spans[1:]))


def test_a_short_video_has_one_window():
  assert consistency.windows(17, 8, 10.0) == [(0, 17)]


def _long_samples(n, seed=6):
  data = helpers.single_object("heldout", num_frames=synthetic.long_clip_frames(8), seed=seed)
  return [data.sample(i) for i in range(n)]


def test_ground_truth_minute_holds_in_every_window():
  samples = _long_samples(8)
  items = [(s["video"], 8, helpers.first_object(s), i % 2 == 0) for i, s in enumerate(samples)]
  result = consistency.consistency(items)
  for check in consistency.CHECKS:
    for mode in ("reencode", "no_reencode"):
      assert result[check][mode] == [1.0] * 6, (check, mode, result)
  assert result["count"] == {"reencode": 4, "no_reencode": 4}


def test_a_vanishing_object_and_a_wrong_motion_are_caught():
  sample = _long_samples(1)[0]
  attrs = helpers.first_object(sample)
  video = sample["video"].copy()
  video[240:] = video[0, 0, 0]  # the background's corner colour from 30 s on
  checks = consistency.window_checks(video, 8, attrs)
  assert [c["presence"] for c in checks] == [True, True, True, False, False, False]
  assert [c["frames"] for c in checks] == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
  wrong = dict(attrs, motion="growing" if attrs["motion"] != "growing" else "shrinking")
  assert not any(c["motion"] for c in consistency.window_checks(sample["video"], 8, wrong))


def test_a_direction_holds_at_the_wall():
  # A square pushed against the left edge and resting there still "moves left".
  video = np.full((80, 64, 64, 3), 128, np.uint8)
  for t in range(80):
    x = max(0, 20 - t)
    video[t, 28:38, x:x + 10] = (220, 40, 40)
  attrs = {"color": "red", "shape": "square", "motion": "left"}
  assert consistency.window_checks(video, 8, attrs)[0]["motion"]
  assert not consistency.window_checks(video, 8, dict(attrs, motion="right"))[0]["motion"]


def test_a_stray_pixel_beside_another_object_is_not_presence():
  video = np.full((16, 64, 64, 3), 128, np.uint8)
  video[:, 20:36, 20:36] = (40, 70, 220)  # a blue square
  video[:, 36, 36] = (220, 40, 40)  # one red pixel touching it
  checks = consistency.window_checks(video, 8, {"color": "red", "shape": "square",
                                                "motion": "still"})
  assert checks == [{"presence": False, "frames": 0.0, "shape": False, "motion": False}]


def test_frames_count_a_flickering_object():
  # The object drawn in every other group of 4 frames: present in half of each window's frames.
  sample = _long_samples(1)[0]
  attrs = helpers.first_object(sample)
  video = sample["video"].copy()
  for start in range(4, len(video), 8):
    video[start:start + 4] = video[0, 0, 0]
  checks = consistency.window_checks(video, 8, attrs)
  np.testing.assert_allclose([c["frames"] for c in checks[:5]], 0.5, atol=0.05)
  result = consistency.consistency([(video, 8, attrs, True)])
  np.testing.assert_allclose(result["frames"]["reencode"][:5], 0.5, atol=0.05)


def test_table_and_plot(tmp_path):
  result = {"presence": {"reencode": [1.0, 0.9], "no_reencode": [1.0, 0.5]},
            "shape": {"reencode": [1.0, 0.8], "no_reencode": [0.75, 0.5]},
            "motion": {"reencode": [0.5, 0.25], "no_reencode": [0.5, 0.0]}}
  table = consistency.markdown_table(result)
  lines = table.strip().splitlines()
  assert len(lines) == 4 and lines[2].startswith("| 0-10 s | 1.00 | 1.00 | 1.00 | 0.75")
  path = tmp_path / "plot.png"
  consistency.plot(result, str(path))
  image = np.asarray(Image.open(path))
  assert image.shape == (400, 640, 3)
  assert (np.abs(image.astype(int) - (31, 119, 180)).sum(-1) == 0).sum() > 50  # a blue line
