"""benchmarks/vq_bound.py: block layout round trips and k-means fits what it can fit exactly."""

import importlib.util
import os

import numpy as np
import pytest

_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "vq_bound.py")
_spec = importlib.util.spec_from_file_location("vq_bound", _PATH)
vq_bound = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(vq_bound)


def test_blocks_round_trip_and_causal_groups():
  rng = np.random.default_rng(0)
  video = rng.random((2, 9, 16, 16, 3)).astype(np.float32)
  first, rest = vq_bound.groups(video, 4)
  assert first.shape == (2, 1, 16, 16, 3) and rest.shape == (4, 4, 16, 16, 3)
  np.testing.assert_array_equal(rest[1], video[0, 5:9])
  vectors = vq_bound.blocks(rest, 4, 8)
  assert vectors.shape == (4 * 2 * 2, 4 * 8 * 8 * 3)
  # One vector is one 4 x 8 x 8 block: clip 0's frames 1-4, top-left patch.
  np.testing.assert_array_equal(vectors[0].reshape(4, 8, 8, 3), video[0, 1:5, :8, :8])
  np.testing.assert_array_equal(vq_bound.unblocks(vectors, rest.shape, 8), rest)
  with pytest.raises(ValueError, match="1 \\+ 4k"):
    vq_bound.groups(video[:, :8], 4)


def test_kmeans_recovers_distinct_points_and_more_codes_do_not_hurt():
  rng = np.random.default_rng(0)
  centres = rng.normal(size=(8, 5)).astype(np.float32) * 10
  data = np.repeat(centres, 20, axis=0)
  codebook = np.asarray(vq_bound.kmeans(data, 8, iters=30, rng=np.random.default_rng(1)))
  # Every point is reproduced exactly once each centre has its own code (restarts fix collisions).
  np.testing.assert_allclose(codebook[np.asarray(vq_bound.nearest(codebook, data))], data,
                             atol=1e-4)
  args = vq_bound.argparse.Namespace(
      codes=[4, 64], patch=8, temporal=4, resolution=16, frames=5, fps=8, max_objects=1,
      train_clips=8, eval_clips=4, iters=3, seed=0, out="")
  rows = vq_bound.run(args)
  assert [r["codes"] for r in rows] == [4, 64]
  assert all(np.isfinite(r["psnr"]) for r in rows)
  assert rows[1]["psnr"] >= rows[0]["psnr"] - 0.5
