"""Temporal code stability (loong_jax/eval/codes.py) against a slow counting reference."""

import collections

import numpy as np
import pytest

from loong_jax.eval import codes


def _reference(x):
  """Counters over the (previous, current) pairs of latent frames k >= 2, one token at a time."""
  pairs, prev_count, cur_count = collections.Counter(), collections.Counter(), collections.Counter()
  same = 0
  for clip in x:
    for k in range(2, clip.shape[0]):
      for a, b in zip(clip[k - 1].ravel(), clip[k].ravel()):
        pairs[a, b] += 1
        prev_count[a] += 1
        cur_count[b] += 1
        same += a == b
  n = sum(pairs.values())
  h = lambda c: -sum(v / n * np.log(v / n) for v in c.values())  # noqa: E731
  return {"unchanged": same / n, "conditional_entropy": h(pairs) - h(prev_count),
          "entropy": h(cur_count), "top_share": max(cur_count.values()) / n, "pairs": n}


def test_matches_the_counting_reference():
  rng = np.random.default_rng(0)
  x = rng.integers(0, 6, (4, 5, 3, 3))
  x[:, 3] = x[:, 2]  # some copies
  got, want = codes.stability(x), _reference(x)
  assert got.keys() == want.keys()
  for key in want:
    np.testing.assert_allclose(got[key], want[key], rtol=1e-9, atol=1e-12)


def test_still_copied_and_random_codes():
  rng = np.random.default_rng(1)
  still = np.repeat(rng.integers(0, 50, (8, 1, 4, 4)), 5, axis=1)
  out = codes.stability(still)
  assert out["unchanged"] == 1.0 and abs(out["conditional_entropy"]) < 1e-12
  # A fixed relabelling from frame to frame: nothing unchanged, yet fully predictable.
  shifted = np.stack([(still[:, 0] + k) % 50 for k in range(5)], axis=1)
  out = codes.stability(shifted)
  assert out["unchanged"] == 0.0 and abs(out["conditional_entropy"]) < 1e-12
  noise = codes.stability(rng.integers(0, 4, (200, 5, 8, 8)))
  assert abs(noise["unchanged"] - 0.25) < 0.02
  assert abs(noise["conditional_entropy"] - np.log(4)) < 0.01  # nothing to copy


def test_bad_shapes_are_reported():
  with pytest.raises(ValueError, match="F >= 3"):
    codes.stability(np.zeros((2, 2, 4, 4), int))
  with pytest.raises(ValueError, match="non-negative"):
    codes.stability(-np.ones((1, 3, 2, 2), int))


def _moving_square(n=3, frames=9, side=32, block=8):
  """Masks `[n, T, side, side]` of an 8-px square moving right 2 px a frame, from x = 0."""
  masks = np.zeros((n, frames, side, side), bool)
  for t in range(frames):
    masks[:, t, 8:16, 2 * t:2 * t + 8] = True
  return masks


def test_block_occupancy_follows_the_latent_grouping():
  occupied = codes.block_occupancy(_moving_square(), (4, 4))
  assert occupied.shape == (3, 3, 4, 4)
  np.testing.assert_array_equal(occupied[0, 0, 1], [True, False, False, False])  # frame 0
  np.testing.assert_array_equal(occupied[0, 1, 1], [True, True, False, False])   # frames 1-4
  np.testing.assert_array_equal(occupied[0, 2, 1], [False, True, True, False])   # frames 5-8
  assert not occupied[:, :, [0, 2, 3]].any()
  with pytest.raises(ValueError, match="do not fit"):
    codes.block_occupancy(_moving_square()[:, :8], (4, 4))


def test_locality_tells_local_codes_from_global_ones():
  masks = np.zeros((2, 17, 64, 64), bool)
  for t in range(17):
    masks[:, t, 24:40, 2 * t:2 * t + 16] = True
  occupied = codes.block_occupancy(masks, (8, 8))
  local = np.where(occupied, 7, 0)                         # a code only where the object is
  out = codes.locality(local, masks, radius=1)
  assert out["changed_far"] == 0.0 and out["changed_near"] > 0.0
  assert out["moved_transitions"] == 2 * 3
  global_ = local + np.arange(5)[None, :, None, None] * 100  # every code depends on the frame
  assert codes.locality(global_, masks, radius=1)["changed_far"] == 1.0
  still = np.repeat(masks[:, :1], 17, axis=1)
  assert np.isnan(codes.locality(local, still)["changed_far"])
  with pytest.raises(ValueError, match="do not match"):
    codes.locality(local[:, :4], masks)


def test_digit_information_finds_the_digit_that_carries_an_attribute():
  """Colour in digit 1 alone, shape in digit 0 alone: each attribute's information is in its own
  digit (log 3 nats for three equally likely values), none in the other's."""
  rng = np.random.default_rng(0)
  colors, shapes = rng.integers(0, 3, 3_000), rng.integers(0, 3, 3_000)
  levels = (3, 3, 2)
  code = shapes + 3 * colors + 9 * rng.integers(0, 2, 3_000)
  names = np.array(["red", "green", "blue"])[colors]
  by_color = codes.digit_information(code, names, levels)
  by_shape = codes.digit_information(code, shapes, levels)
  np.testing.assert_allclose(by_color["digits"][1], np.log(3), atol=0.01)
  np.testing.assert_allclose(by_shape["digits"][0], np.log(3), atol=0.01)
  for value in (by_color["digits"][0], by_color["digits"][2], by_shape["digits"][1]):
    assert value < 0.01
  np.testing.assert_allclose(by_color["code"], np.log(3), atol=0.01)
  with pytest.raises(ValueError, match="as many labels"):
    codes.digit_information(code, names[:5], levels)
  with pytest.raises(ValueError, match="outside"):
    codes.digit_information(code + 100, names, levels)
