"""The built-in dataset: determinism, captions that match the attributes, held-out split."""

import numpy as np
import pytest

from loong_jax.data import synthetic, synthetic_render

CONFIG = synthetic.SyntheticConfig(resolution=32, num_frames=(1, 9), num_train=1000,
                                   num_heldout=200)


def test_deterministic_for_a_seed():
  a = synthetic.SyntheticVideos(CONFIG).sample(5)
  b = synthetic.SyntheticVideos(CONFIG).sample(5)
  np.testing.assert_array_equal(a["video"], b["video"])
  assert a["caption"] == b["caption"]
  other = synthetic.SyntheticVideos(synthetic.SyntheticConfig(
      seed=1, resolution=32, num_frames=(1, 9))).sample(5)
  assert other["caption"] != a["caption"] or not np.array_equal(other["video"], a["video"])


def test_sample_format():
  data = synthetic.SyntheticVideos(CONFIG)
  for i in range(10):
    s = data.sample(i)
    t = s["attributes"]["num_frames"]
    assert t in CONFIG.num_frames and s["video"].shape == (t, 32, 32, 3)
    assert s["video"].dtype == np.uint8 and s["fps"] in CONFIG.fps
    for obj in s["attributes"]["objects"]:
      assert obj["centers"].shape == (t, 2) and obj["radii"].shape == (t,)
      # Objects stay inside the frame along their whole trajectory.
      assert np.all(obj["centers"] - obj["radii"][:, None] >= -1e-3)
      assert np.all(obj["centers"] + obj["radii"][:, None] <= 32 + 1e-3)


def _motion_of(caption_tail: str) -> set[str]:
  """Motions whose phrase starts `caption_tail` (followed by a word boundary)."""
  found = set()
  for motion, phrases in synthetic.MOTION_PHRASES.items():
    for phrase in phrases:
      if caption_tail.startswith(phrase) and caption_tail[len(phrase):len(phrase) + 1] in (
          "", " ", ","):
        found.add(motion)
  return found


def test_captions_match_attributes():
  data = synthetic.SyntheticVideos(CONFIG)
  for i in range(200):
    attrs, _ = data.attributes(i)
    cap = attrs["caption"]
    bg = attrs["background"]
    assert f"{bg['color']}{synthetic.TEXTURE_WORDS[bg['texture']]} background" in cap
    pos = 0
    for obj in attrs["objects"]:  # named in order
      name = f"a {obj['size']} {obj['color']} {obj['shape']}"
      assert name in cap[pos:], (cap, obj)
      pos = cap.index(name, pos) + len(name)
      tail = cap[pos + 1:]
      if attrs["num_frames"] > 1:
        assert _motion_of(tail) == {obj["motion"]}, (cap, obj["motion"])
      else:
        assert obj["motion"] == "still" and not _motion_of(tail)


def test_motion_matches_trajectory():
  data = synthetic.SyntheticVideos(synthetic.SyntheticConfig(resolution=64, num_frames=(17,)))
  for i in range(100):
    for obj in data.attributes(i)[0]["objects"]:
      move = obj["centers"][-1] - obj["centers"][0]
      grow = obj["radii"][-1] - obj["radii"][0]
      if obj["motion"] in synthetic.DIRECTIONS:
        direction = np.asarray(synthetic.DIRECTIONS[obj["motion"]], float)
        across = move[0] * direction[1] - move[1] * direction[0]
        assert np.dot(move, direction) > 0 and abs(across) < 1e-3
      elif obj["motion"] == "growing":
        assert grow > 0
      elif obj["motion"] == "shrinking":
        assert grow < 0
      elif obj["motion"] == "still":
        assert np.allclose(move, 0) and grow == 0


def test_object_colour_is_rendered():
  data = synthetic.SyntheticVideos(synthetic.SyntheticConfig(resolution=64, max_objects=1,
                                                             num_frames=(9,)))
  for i in range(20):
    s = data.sample(i)
    obj = s["attributes"]["objects"][0]
    if obj["shape"] == "ring":  # hollow: its centre shows the background
      continue
    x, y = obj["centers"][-1].astype(int)
    np.testing.assert_array_equal(s["video"][-1, y, x], synthetic_render.COLORS[obj["color"]])


def test_heldout_pairs_never_in_train():
  heldout = set(synthetic.HELDOUT_PAIRS)
  train = synthetic.SyntheticVideos(CONFIG, "train")
  for i in range(len(train)):
    for obj in train.attributes(i)[0]["objects"]:
      assert (obj["color"], obj["shape"]) not in heldout
  test = synthetic.SyntheticVideos(CONFIG, "heldout")
  for i in range(len(test)):
    objects = test.attributes(i)[0]["objects"]
    assert (objects[0]["color"], objects[0]["shape"]) in heldout


def test_splits_differ_and_lengths():
  assert len(synthetic.SyntheticVideos(CONFIG, "train")) == 1000
  assert len(synthetic.SyntheticVideos(CONFIG, "heldout")) == 200
  with pytest.raises(IndexError):
    synthetic.SyntheticVideos(CONFIG, "heldout")[200]
  with pytest.raises(ValueError, match="split"):
    synthetic.SyntheticVideos(CONFIG, "test")


def test_config_validation_and_long_clips():
  with pytest.raises(ValueError, match="num_frames"):
    synthetic.SyntheticConfig(num_frames=(16,))
  assert synthetic.long_clip_frames(8) == 481
  long = synthetic.SyntheticVideos(synthetic.SyntheticConfig(
      resolution=32, num_frames=(synthetic.long_clip_frames(8),), fps=(8,))).sample(0)
  assert long["video"].shape[0] == 481 and long["fps"] == 8


def test_world_subsets_are_respected_and_bad_values_named():
  world = dict(motions=("still", "left"), sizes=("large",), textures=("plain",),
               background_colors=("black",))
  data = synthetic.SyntheticVideos(synthetic.SyntheticConfig(num_frames=(17,), **world))
  for i in range(40):
    attrs, _ = data.attributes(i)
    assert attrs["background"] == {"color": "black", "texture": "plain"}
    for obj in attrs["objects"]:
      assert obj["motion"] in world["motions"] and obj["size"] == "large"
  heldout = synthetic.SyntheticVideos(synthetic.SyntheticConfig(num_frames=(1,), **world),
                                      "heldout")
  pairs = {(o["color"], o["shape"]) for i in range(20) for o in heldout.attributes(i)[0]["objects"][:1]}
  assert pairs <= set(synthetic.HELDOUT_PAIRS)
  with pytest.raises(ValueError, match="textures"):
    synthetic.SyntheticConfig(textures=("marble",))
  with pytest.raises(ValueError, match="motions"):
    synthetic.SyntheticConfig(motions=())


def test_default_world_keeps_the_samples_of_before():
  # The world fields default to every choice, drawn as before: captions recorded before the
  # fields existed.
  data = synthetic.SyntheticVideos(synthetic.SyntheticConfig(num_frames=(17,)))
  assert [data.caption(i) for i in range(2)] == [
      "a small cyan square rests in place and a small red circle ricochets around the frame on "
      "a grey checkered background",
      "on a black background, a medium purple diamond rises and a small brown circle drifts to "
      "the right"]


@pytest.mark.parametrize("frames", [17, 65])
def test_constant_speed_moves_one_speed_and_rests_at_the_edge(frames):
  # speed > 0: every straight motion moves `speed * side` px per frame, whatever the clip's
  # length, along its direction only; a path longer than the frame ends resting at the edge.
  speed, side = 1 / 32, 64
  data = synthetic.SyntheticVideos(synthetic.SyntheticConfig(
      resolution=side, num_frames=(frames,), motions=("left", "right", "up", "down-left"),
      speed=speed))
  for i in range(40):
    for obj in data.attributes(i)[0]["objects"]:
      centers, radius = obj["centers"], obj["radii"].max()
      direction = np.asarray(synthetic.DIRECTIONS[obj["motion"]], float)
      steps = np.diff(centers, axis=0)
      moving = np.abs(steps).max(axis=1) > 1e-4
      # Moving frames step `speed * side` along each axis of the direction (the last step before
      # the edge may be shorter), and not at all across it.
      axes = direction != 0
      along = steps[moving][:, axes] * direction[axes]
      np.testing.assert_allclose(along[:-1], speed * side, atol=1e-3)
      assert 0 < along[-1].min() and along[-1].max() <= speed * side + 1e-3
      np.testing.assert_allclose(steps[:, ~axes], 0.0, atol=1e-4)
      assert moving[0]  # it starts moving
      # Once it stops it has reached the edge, and stays.
      if not moving.all():
        assert not moving[np.argmin(moving):].any()
      assert centers.min() >= radius - 1e-3 and centers.max() <= side - radius + 1e-3
      if frames == 17:
        assert moving.all()  # a 17-frame path (32 px) fits in the frame
      else:
        at_edge = (np.isclose(centers[-1], radius, atol=1e-3) |
                   np.isclose(centers[-1], side - radius, atol=1e-3))
        assert at_edge[direction != 0].all()


def test_speed_is_validated():
  with pytest.raises(ValueError, match="speed"):
    synthetic.SyntheticConfig(speed=0.6)
  with pytest.raises(ValueError, match="speed"):
    synthetic.SyntheticConfig(speed=-0.1)


def test_wall_fraction_lets_short_clips_reach_the_edge_and_rest():
  # With wall_fraction, some 17-frame straight motions start anywhere, reach the edge within the
  # clip and rest there (as minute-long clips do); the others keep a path that fits. 0 draws
  # nothing extra, so every sample is as before.
  side, speed = 64, 1 / 32
  kw = dict(resolution=side, num_frames=(17,), motions=("left", "right", "up", "down"),
            speed=speed)
  plain = synthetic.SyntheticVideos(synthetic.SyntheticConfig(**kw))
  walls = synthetic.SyntheticVideos(synthetic.SyntheticConfig(**kw, wall_fraction=0.5))
  rested, moved_all = 0, 0
  for i in range(60):
    for obj in walls.attributes(i)[0]["objects"]:
      centers, radius = obj["centers"], obj["radii"].max()
      assert centers.min() >= radius - 1e-3 and centers.max() <= side - radius + 1e-3
      moving = np.abs(np.diff(centers, axis=0)).max(axis=1) > 1e-4
      if moving.all():
        moved_all += 1
      else:  # stopped: at the edge on the side it moves to, and stays
        assert not moving[np.argmin(moving):].any()
        direction = np.asarray(synthetic.DIRECTIONS[obj["motion"]], float)
        axis = np.flatnonzero(direction)[0]
        edge = radius if direction[axis] < 0 else side - radius
        np.testing.assert_allclose(centers[-1, axis], edge, atol=1e-3)
        rested += 1
  assert rested >= 10 and moved_all >= 10
  for i in range(20):  # without it, every 17-frame path fits
    for obj in plain.attributes(i)[0]["objects"]:
      assert (np.abs(np.diff(obj["centers"], axis=0)).max(axis=1) > 1e-4).all()
  zero = synthetic.SyntheticVideos(synthetic.SyntheticConfig(**kw, wall_fraction=0.0))
  for i in range(5):
    np.testing.assert_array_equal(zero.sample(i)["video"], plain.sample(i)["video"])


def test_wall_fraction_is_validated():
  with pytest.raises(ValueError, match="wall_fraction"):
    synthetic.SyntheticConfig(speed=1 / 32, wall_fraction=1.5)
  with pytest.raises(ValueError, match="needs speed"):
    synthetic.SyntheticConfig(wall_fraction=0.3)


def test_grid_starts_objects_on_the_token_grid_and_keeps_the_draws():
  # grid=8 with one block per latent frame: every object starts with its centre on a multiple
  # of 8 px and is on one again every 4 frames (a whole-block shift); captions and the rest of
  # every sample are those of grid=0.
  world = dict(resolution=64, num_frames=(17,), max_objects=1, speed=1 / 32,
               motions=("still", "left", "right", "up", "down"), sizes=("medium", "large"))
  snapped = synthetic.SyntheticVideos(synthetic.SyntheticConfig(grid=8, **world))
  free = synthetic.SyntheticVideos(synthetic.SyntheticConfig(**world))
  off_grid = 0
  for i in range(40):
    obj, = snapped.attributes(i)[0]["objects"]
    other, = free.attributes(i)[0]["objects"]
    assert snapped.caption(i) == free.caption(i)
    assert (obj["motion"], obj["size"], obj["color"]) == (other["motion"], other["size"],
                                                          other["color"])
    np.testing.assert_allclose(obj["centers"][::4] % 8, 0.0, atol=1e-4)
    radius = obj["radii"].max()
    assert obj["centers"].min() >= radius - 1e-3 and obj["centers"].max() <= 64 - radius + 1e-3
    off_grid += bool(np.any(np.abs(other["centers"][0] % 8) > 1e-3))
  assert off_grid > 30  # without the grid, starts fall anywhere
  with pytest.raises(ValueError, match="grid"):
    synthetic.SyntheticConfig(grid=64, resolution=64)
