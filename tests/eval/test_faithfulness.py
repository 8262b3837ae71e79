"""Faithfulness: rendered ground truth matches its own prompt, shuffled prompts do not."""

import pytest

from loong_jax.eval import faithfulness
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


def test_a_split_without_videos_is_left_out():
  result = faithfulness.faithfulness(_items(2)[:2])
  assert set(result["color"]) == {"seen"}


def test_bad_split_and_missing_field_are_named():
  video, attrs, _ = _items(1)[0]
  with pytest.raises(ValueError, match="split 'test'"):
    faithfulness.faithfulness([(video, attrs, "test")])
  with pytest.raises(KeyError, match="motion"):
    faithfulness.matches(video, {"color": "red", "shape": "ring"})
