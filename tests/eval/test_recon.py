"""PSNR, SSIM (dm-pix) and codebook usage against naive references and scikit-image, on random
frames and on real ones (the built-in dataset's clips, scikit-image's photographs)."""

import numpy as np
import pytest
from skimage import data as skimage_data
from skimage import metrics

from loong_jax.data import synthetic
from loong_jax.eval import recon

EPS32 = float(np.finfo(np.float32).eps)
_C2 = 0.03 ** 2  # SSIM's K2 ** 2 at data range 1


def _pair(seed=0, shape=(2, 3, 24, 20, 3)):
  rng = np.random.default_rng(seed)
  real = rng.integers(0, 256, shape).astype(np.uint8)
  noise = rng.normal(0, 12, shape)
  fake = np.clip(real + noise, 0, 255).astype(np.uint8)
  return real, fake


def _psnr_atol(frame_shape) -> float:
  """dm-pix's float32 MSE sums K = H * W * C positive terms: relative error at most K * eps
  (gamma_K), i.e. 10 / ln(10) * K * eps dB against scikit-image's float64."""
  return 10 / np.log(10) * np.prod(frame_shape) * EPS32


def _ssim_atol(frame_shape) -> float:
  """Each local statistic is a separable 11 + 11-tap Gaussian sum of values in [0, 1] (weights
  summing to 1): float32 rounding ~ sqrt(22) * eps, doubled by E[x^2] - mu^2. The SSIM map divides
  by a term at least C2, and numerator and denominator both carry it: per pixel at most
  ~4 * sqrt(22) * eps / C2. Rounding is independent across the M averaged pixel values, so the
  frame mean carries ~1/sqrt(M) of it; a factor 3 covers the spread of that estimate."""
  h, w, c = frame_shape
  m = (h - recon.SSIM_WINDOW + 1) * (w - recon.SSIM_WINDOW + 1) * c
  return 3 * 4 * np.sqrt(22) * EPS32 / _C2 / np.sqrt(m)


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
  expected = -10 * np.log10(((r - f) ** 2).mean((1, 2, 3)))
  np.testing.assert_allclose(recon.psnr_per_frame(real, fake), expected,
                             atol=_psnr_atol(real.shape[-3:]), rtol=0)


def test_float_convention_is_minus_one_to_one():
  real, fake = _pair(1)
  as_float = lambda v: v.astype(np.float32) / 127.5 - 1.0  # noqa: E731
  # Two float32 computations, each within its bound of the exact value (mapping v / 127.5 - 1
  # back to [0, 1] rounds each pixel by ~eps, well inside those bounds).
  frame = real.shape[-3:]
  np.testing.assert_allclose(recon.psnr(as_float(real), as_float(fake)), recon.psnr(real, fake),
                             atol=2 * _psnr_atol(frame), rtol=0)
  np.testing.assert_allclose(recon.ssim(as_float(real), as_float(fake)), recon.ssim(real, fake),
                             atol=2 * _ssim_atol(frame), rtol=0)


def test_identical_videos_are_perfect():
  real, _ = _pair()
  assert recon.psnr(real, real) == pytest.approx(recon.PSNR_MAX_DB)
  assert recon.ssim(real, real) == pytest.approx(1.0, abs=1e-6)


def test_ssim_matches_naive_reference():
  real, fake = _pair(2, shape=(2, 16, 17, 3))
  expected = np.mean([_naive_ssim(real[i] / 255.0, fake[i] / 255.0) for i in range(2)])
  np.testing.assert_allclose(recon.ssim(real, fake), expected, atol=_ssim_atol(real.shape[-3:]),
                             rtol=0)


def _real_pairs():
  """Real frames and degraded copies, uint8: a clip of the built-in dataset posterised to 16
  levels `[17, 64, 64, 3]`, and four 48x56 crops of scikit-image's astronaut photograph with
  Gaussian noise `[4, 48, 56, 3]`."""
  clip = synthetic.SyntheticVideos(synthetic.SyntheticConfig(num_frames=(17,)))[3]["video"]
  photo = skimage_data.astronaut()
  crops = np.stack([photo[y:y + 48, x:x + 56] for y, x in ((0, 0), (100, 200), (300, 120),
                                                           (450, 400))])
  noisy = np.clip(crops + np.random.default_rng(4).normal(0, 8, crops.shape), 0, 255)
  return [(clip, (clip // 16) * 16), (crops, noisy.astype(np.uint8))]


@pytest.mark.parametrize("case", ["random", "synthetic_clip", "astronaut"])
def test_psnr_and_ssim_match_scikit_image(case):
  real, fake = {"random": _pair(3, shape=(3, 32, 40, 3)), "synthetic_clip": _real_pairs()[0],
                "astronaut": _real_pairs()[1]}[case]
  frames = list(zip(real / 255.0, fake / 255.0))
  psnr = [metrics.peak_signal_noise_ratio(a, b, data_range=1.0) for a, b in frames]
  ssim = [metrics.structural_similarity(a, b, gaussian_weights=True, sigma=recon.SSIM_SIGMA,
                                        use_sample_covariance=False, data_range=1.0,
                                        channel_axis=-1) for a, b in frames]
  np.testing.assert_allclose(recon.psnr_per_frame(real, fake), psnr,
                             atol=_psnr_atol(real.shape[1:]), rtol=0)
  np.testing.assert_allclose(recon.ssim_per_frame(real, fake), ssim,
                             atol=_ssim_atol(real.shape[1:]), rtol=0)


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
