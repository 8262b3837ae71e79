"""The prompted-shift learnability check (`loong_jax/eval/shift_probe.py`)."""

import numpy as np
import pytest

from loong_jax import tokens
from loong_jax.eval import shift_probe


@pytest.mark.parametrize("motion", list(shift_probe.MOTIONS))
def test_clip_moves_as_the_caption_says(motion):
  world = shift_probe.World(frames=4, width=6, obj=2)
  rng = np.random.default_rng(0)
  for _ in range(20):
    caption, codes, got = shift_probe.clip(rng, world, motion)
    assert got == motion and caption[shift_probe.MOTION_SLOT] == shift_probe.MOTION_IDS[motion]
    color = caption[2]
    dy, dx = shift_probe.MOTIONS[motion]
    corners = []
    for frame in codes:
      ys, xs = np.nonzero(frame)
      assert len(ys) == world.obj**2 and np.all(frame[ys, xs] == 1 + color)  # whole square
      corners.append((ys.min(), xs.min()))
    np.testing.assert_array_equal(np.diff(np.array(corners), axis=0),
                                  np.tile([dy, dx], (world.frames - 1, 1)))


def test_held_out_swaps_only_the_motion_word():
  world = shift_probe.World(frames=3, width=4, obj=1)
  lm = shift_probe.lm_config(shift_probe.VARIANTS["copy"], world)
  true, swapped, changed = shift_probe._held_out(world, lm, count=16)
  diff = true["inputs"] != swapped["inputs"]
  assert np.all(diff.sum(-1) == 1)
  assert np.all(np.nonzero(diff)[1] == 1 + shift_probe.MOTION_SLOT)  # after <bos>
  assert true["input_prev"].shape == true["inputs"].shape + (9,)
  # Changed targets are video ids of latent frame 1 only, and every moving clip has some.
  assert np.all(world.vocab.is_video(true["targets"][changed]))
  assert changed.any(-1).sum() >= 8


@pytest.mark.slow
def test_copy_head_learns_the_prompted_shift():
  """The copy head reads the motion word within 200 steps on a small world; the result is a
  measured gap, so a broken copy head, previous-frame input or caption route fails here."""
  world = shift_probe.World(frames=3, width=5, obj=1)
  curve = shift_probe.run(shift_probe.VARIANTS["copy_summary"], world=world, steps=200,
                          batch_size=16, eval_every=200)
  assert curve[0]["step"] == 0 and curve[-1]["step"] == 200
  assert abs(curve[0]["motion_gap"]) < 0.2
  assert curve[-1]["motion_gap"] > 0.5, curve
