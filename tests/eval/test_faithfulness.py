"""Faithfulness: rendered ground truth matches its own prompt, shuffled prompts do not."""

import numpy as np
import pytest

from loong_jax.data import synthetic
from loong_jax.eval import faithfulness, probe
from tests.eval import helpers


def _items(n=12):
  out = []
  for split, data_split in (("seen", "train"), ("heldout", "heldout")):
    data = helpers.single_object(data_split, seed=4)
    for i in range(n):
      sample = data.sample(i)
      out.append((sample["video"], helpers.first_object(sample), split))
  return out


def test_ground_truth_videos_are_faithful():
  result = faithfulness.faithfulness(_items())
  for key in ("color", "shape", "direction"):
    assert result[key] == {"seen": 1.0, "heldout": 1.0}
  assert result["count"] == {"seen": 12, "heldout": 12}


def test_shuffled_prompts_are_not():
  items = _items()
  shifted = [(video, items[(i + 1) % len(items)][1], split)
             for i, (video, _, split) in enumerate(items)]
  result = faithfulness.faithfulness(shifted)
  for key in ("color", "shape", "direction"):
    assert max(result[key].values()) < 0.5, result


def test_confusion_counts_what_was_read_per_prompted_value():
  items = _items(6)
  truth = faithfulness.faithfulness(items)["confusion"]
  for key, field in faithfulness.ATTRIBUTES.items():
    # Ground truth: every prompted value was read as itself, and the counts add up.
    assert all(set(row) == {value} for value, row in truth[key].items())
    values = [a[field] for _, a, _ in items]
    assert {v: {v: values.count(v)} for v in values} == truth[key]
  # A blank video reads as "none"; a red-circle prompt on a blue square reads blue / square.
  blank = np.zeros_like(items[0][0])
  attrs = dict(items[0][1], color="red", shape="circle")
  got = faithfulness.faithfulness([(blank, attrs, "seen")])["confusion"]
  assert got["color"] == {"red": {"none": 1}}
  square = next((v, a) for v, a, _ in items if a["shape"] == "square" and a["color"] != "red")
  got = faithfulness.faithfulness([(square[0], attrs, "seen")])["confusion"]
  assert got["color"] == {"red": {square[1]["color"]: 1}}
  assert got["shape"] == {"circle": {"square": 1}}


def test_a_split_without_videos_is_left_out():
  result = faithfulness.faithfulness(_items(2)[:2])
  assert set(result["color"]) == {"seen"}


def test_bad_split_and_missing_field_are_named():
  video, attrs, _ = _items(1)[0]
  with pytest.raises(ValueError, match="split 'test'"):
    faithfulness.faithfulness([(video, attrs, "test")])
  with pytest.raises(KeyError, match="motion"):
    faithfulness.matches(video, {"color": "red", "shape": "ring"})


def test_prompt_set_halves_held_out_and_spreads_motions():
  motions = ("still", "left", "right", "up", "down", "bouncing")
  prompts = faithfulness.prompt_set(30, motions)
  held = [p for p in prompts if p["split"] == "heldout"]
  assert len(prompts) == 30 and len(held) == 15
  assert {(p["color"], p["shape"]) for p in held} == set(synthetic.HELDOUT_PAIRS)
  assert not {(p["color"], p["shape"]) for p in prompts if p["split"] == "seen"} & set(
      synthetic.HELDOUT_PAIRS)
  assert {p["motion"] for p in prompts} == {"still", "left", "right", "up", "down"}
  for p in prompts:
    assert f"{p['color']} {p['shape']}" in p["prompt"]
    assert any(phrase in p["prompt"] for phrase in synthetic.MOTION_PHRASES[p["motion"]])
  with pytest.raises(ValueError, match="still or a direction"):
    faithfulness.prompt_set(4, ("growing",))


def test_reader_and_keys_are_the_callers():
  items = _items(2)
  blind = faithfulness.faithfulness(items, reader=lambda v: probe.Reading(None, None, None),
                                    keys=("color", "direction"))
  assert set(blind) == {"color", "direction", "count", "num_videos", "confusion", "objects"}
  assert set(blind["confusion"]) == {"color", "direction"}
  assert blind["color"] == {"seen": 0.0, "heldout": 0.0} and blind["num_videos"] == 4


def test_read_through_keeps_what_the_reconstruction_keeps():
  videos = np.stack([video for video, _, _ in _items(4)])
  same = faithfulness.read_through(videos, videos.copy())
  assert same == {"color": 1.0, "shape": 1.0, "direction": 1.0, "clips": len(videos)}
  # Reconstructions that lost the object (black frames) keep nothing; the shuffled clips keep
  # only what their neighbours happen to share.
  lost = faithfulness.read_through(videos, np.zeros_like(videos), keys=("color", "shape"))
  assert lost == {"color": 0.0, "shape": 0.0, "clips": len(videos)}
  shuffled = faithfulness.read_through(videos, np.roll(videos, 1, axis=0))
  assert shuffled["color"] < 1.0
  with pytest.raises(ValueError, match="same"):
    faithfulness.read_through(videos, videos[:-1])


def test_objects_counts_separate_parts():
  items = _items(4)
  real = faithfulness.faithfulness(items)["objects"]
  assert real == {"single_first_frame": 1.0, "single_frames": 1.0, "first_frame_parts": 1.0}
  # A second, separate blob of the object's colour in the first frame: two parts there.
  video, attrs, split = items[0]
  video = video.copy()
  labels = probe.pixel_labels(video[:1])[0]
  ys, xs = np.nonzero(labels >= 0)
  color = video[0, ys[0], xs[0]].copy()
  far_y = 4 if ys.mean() > 32 else 52
  far_x = 4 if xs.mean() > 32 else 52
  video[0, far_y:far_y + 6, far_x:far_x + 6] = color
  np.testing.assert_array_equal(probe.parts(video)[:2], [2, 1])
  got = faithfulness.faithfulness([(video, attrs, split)])["objects"]
  assert got["single_first_frame"] == 0.0 and got["first_frame_parts"] == 2.0
  assert got["single_frames"] == pytest.approx(1 - 1 / len(video))
  # Specks under the area threshold are not parts; a blank video has none.
  specked = items[0][0].copy()
  specked[0, 0, 0] = color
  assert probe.parts(specked)[0] == 1
  assert probe.parts(np.zeros_like(video)).sum() == 0
