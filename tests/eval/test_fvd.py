"""FVD: the Fréchet distance against a naive reference, the I3D's standard layout, and the
checkpoint loader on a randomly initialised network saved to disk (nothing is downloaded)."""

import jax
import numpy as np
import pytest
from flax import traverse_util

from loong_jax.eval import fvd


def _naive_frechet(a, b):
  """tr(sqrt(S_a S_b)) from the eigenvalues of S_a S_b (real, non-negative for PSD S_a, S_b)."""
  mu = a.mean(0) - b.mean(0)
  sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  eig = np.linalg.eigvals(sa @ sb)
  return mu @ mu + np.trace(sa) + np.trace(sb) - 2 * np.sqrt(np.clip(eig.real, 0, None)).sum()


def test_frechet_distance_matches_naive_reference():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(200, 8)) @ rng.normal(size=(8, 8))
  b = rng.normal(0.5, 2.0, size=(150, 8))
  np.testing.assert_allclose(fvd.frechet_distance(a, b), _naive_frechet(a, b), rtol=1e-8)
  assert fvd.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_of_gaussians_with_a_known_answer():
  # Isotropic covariances: |mu|^2 + D (s_a - s_b)^2 for standard deviations s_a, s_b.
  rng = np.random.default_rng(1)
  a = rng.normal(0.0, 1.0, size=(20000, 4))
  b = rng.normal(1.0, 2.0, size=(20000, 4))
  assert fvd.frechet_distance(a, b) == pytest.approx(4 * 1.0 + 4 * 1.0, rel=0.05)


def test_resize_is_tf1_bilinear():
  # Output i samples input i * in / out, clamped at the last pixel (no half-pixel centres).
  np.testing.assert_allclose(fvd.legacy_bilinear_matrix(2, 4),
                             [[1, 0], [0.5, 0.5], [0, 1], [0, 1]])
  np.testing.assert_allclose(fvd.legacy_bilinear_matrix(4, 2), [[1, 0, 0, 0], [0, 0, 1, 0]])


def test_i3d_has_the_standard_layout():
  params = fvd.variable_shapes()["params"]
  names = list(params)
  assert names[:3] == ["Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3"]
  assert [n for n in names if n.startswith("Mixed")] == [
      "Mixed_3b", "Mixed_3c", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f",
      "Mixed_5b", "Mixed_5c"]
  assert params["Conv3d_1a_7x7"]["conv_3d"]["kernel"].shape == (7, 7, 7, 3, 64)
  assert params["Logits/Conv3d_0c_1x1"]["conv_3d"]["kernel"].shape == (1, 1, 1, 1024, 400)
  count = sum(np.prod(x.shape) for x in jax.tree.leaves(params))
  assert 12.0e6 < count < 13.0e6  # the RGB I3D has about 12.7 M parameters
  out = jax.eval_shape(fvd.I3D().apply, fvd.variable_shapes(),
                       jax.ShapeDtypeStruct((2, 16, 224, 224, 3), np.float32))
  assert out["logits"].shape == (2, 400) and out["pool"].shape == (2, 1024)


def test_checkpoint_round_trip_on_a_random_network(tmp_path):
  variables = fvd.random_variables(seed=3)
  path = str(tmp_path / "i3d.npz")
  fvd.save_variables(path, variables)
  loaded = fvd.load_variables(path)
  flat_a = traverse_util.flatten_dict(variables)
  flat_b = traverse_util.flatten_dict(loaded)
  assert flat_a.keys() == flat_b.keys()
  assert all(np.array_equal(flat_a[k], flat_b[k]) for k in flat_a)
  videos = np.random.default_rng(0).integers(0, 256, (3, 8, 24, 24, 3), dtype=np.uint8)
  features = fvd.i3d_features(loaded, videos, size=32)
  assert features.shape == (3, 400) and np.isfinite(features).all()
  np.testing.assert_allclose(features, fvd.i3d_features(variables, videos, size=32), rtol=1e-6)
  assert fvd.fvd(loaded, videos, videos, size=32) == pytest.approx(0.0, abs=1e-6)


def test_a_wrong_checkpoint_is_named(tmp_path):
  flat = traverse_util.flatten_dict(fvd.random_variables())
  flat = {"/".join(k): v for k, v in flat.items()}
  flat.pop("params/Mixed_5c/Branch_0/Conv3d_0a_1x1/conv_3d/kernel")
  flat["params/Conv3d_1a_7x7/conv_3d/kernel"] = np.zeros((3, 7, 7, 3, 64), np.float32)
  path = str(tmp_path / "bad.npz")
  np.savez(path, **flat)
  with pytest.raises(ValueError, match=r"bad.npz.*missing params/Mixed_5c/Branch_0") as err:
    fvd.load_variables(path)
  assert "Conv3d_1a_7x7/conv_3d/kernel: shape (3, 7, 7, 3, 64)" in str(err.value)
