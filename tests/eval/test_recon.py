"""PSNR, SSIM and codebook usage against naive references and scikit-image."""

import numpy as np
import pytest

from loong_jax.eval import recon


def _pair(seed=0, shape=(2, 3, 24, 20, 3)):
  rng = np.random.default_rng(seed)
  real = rng.integers(0, 256, shape).astype(np.uint8)
  noise = rng.normal(0, 12, shape)
  fake = np.clip(real + noise, 0, 255).astype(np.uint8)
  return real, fake


def _naive_ssim(x, y):
  """Per-channel Gaussian-window SSIM over the valid region, loops over pixels (float64)."""
  w1 = np.exp(-0.5 * ((np.arange(11) - 5) / 1.5) ** 2)
  w = np.outer(w1, w1) / w1.sum() ** 2
  c1, c2 = 0.01 ** 2, 0.03 ** 2
  values = []
  for c in range(x.shape[-1]):
    for i in range(x.shape[0] - 10):
      for j in range(x.shape[1] - 10):
        a, b = x[i:i + 11, j:j + 11, c], y[i:i + 11, j:j + 11, c]
        ma, mb = (w * a).sum(), (w * b).sum()
        va, vb = (w * a * a).sum() - ma ** 2, (w * b * b).sum() - mb ** 2
        cov = (w * a * b).sum() - ma * mb
        values.append((2 * ma * mb + c1) * (2 * cov + c2)
                      / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
  return np.mean(values)


def test_psnr_matches_per_frame_mse():
  real, fake = _pair()
  r, f = real.reshape(-1, 24, 20, 3) / 255.0, fake.reshape(-1, 24, 20, 3) / 255.0
  expected = np.mean(-10 * np.log10(((r - f) ** 2).mean((1, 2, 3))))
  np.testing.assert_allclose(recon.psnr(real, fake), expected, rtol=1e-5)


def test_float_convention_is_minus_one_to_one():
  real, fake = _pair(1)
  as_float = lambda v: v.astype(np.float32) / 127.5 - 1.0  # noqa: E731
  np.testing.assert_allclose(recon.psnr(as_float(real), as_float(fake)), recon.psnr(real, fake),
                             rtol=1e-4)
  np.testing.assert_allclose(recon.ssim(as_float(real), as_float(fake)), recon.ssim(real, fake),
                             atol=1e-5)


def test_identical_videos_are_perfect():
  real, _ = _pair()
  assert recon.psnr(real, real) == pytest.approx(recon.PSNR_MAX_DB)
  assert recon.ssim(real, real) == pytest.approx(1.0, abs=1e-6)


def test_ssim_matches_naive_reference():
  real, fake = _pair(2, shape=(2, 16, 17, 3))
  expected = np.mean([_naive_ssim(real[i] / 255.0, fake[i] / 255.0) for i in range(2)])
  np.testing.assert_allclose(recon.ssim(real, fake), expected, atol=2e-5)


def test_ssim_matches_scikit_image():
  metrics = pytest.importorskip("skimage.metrics")
  real, fake = _pair(3, shape=(3, 32, 40, 3))
  expected = [metrics.structural_similarity(
      real[i] / 255.0, fake[i] / 255.0, gaussian_weights=True, sigma=1.5,
      use_sample_covariance=False, data_range=1.0, channel_axis=-1) for i in range(3)]
  np.testing.assert_allclose(recon.ssim_per_frame(real, fake), expected, atol=2e-5)


def test_ssim_rejects_frames_smaller_than_the_window():
  real, fake = _pair(shape=(1, 8, 8, 3))
  with pytest.raises(ValueError, match="at least 11x11"):
    recon.ssim(real, fake)


def test_shape_mismatch_is_named():
  with pytest.raises(ValueError, match=r"differ in shape"):
    recon.psnr(np.zeros((2, 16, 16, 3), np.uint8), np.zeros((3, 16, 16, 3), np.uint8))


def test_codebook_usage_and_perplexity():
  out = recon.codebook_usage([np.array([[0, 1], [2, 3]]), np.array([0, 1, 2, 3])], 8)
  assert out["usage"] == 0.5
  assert out["perplexity"] == pytest.approx(4.0)  # four codes, equally frequent
  assert out["count"] == 8
  skewed = recon.codebook_usage([np.array([0] * 99 + [1])], 4)
  assert 1.0 < skewed["perplexity"] < 1.1
  with pytest.raises(ValueError, match=r"\[0, 4\)"):
    recon.codebook_usage([np.array([4])], 4)
