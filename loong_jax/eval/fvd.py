"""Fréchet Video Distance: a Flax I3D (Inception-3D, the 400-class Kinetics network of Carreira &
Zisserman 2017 that FVD uses) and the Fréchet distance between Gaussian fits of its features.

The network follows DeepMind's kinetics-i3d `InceptionI3d` layer for layer, with its layer names:
Conv3d_1a_7x7 (stride 2), MaxPool3d_2a_3x3, Conv3d_2b_1x1, Conv3d_2c_3x3, MaxPool3d_3a_3x3,
Mixed_3b, Mixed_3c, MaxPool3d_4a_3x3, Mixed_4b ... Mixed_4f, MaxPool3d_5a_2x2, Mixed_5b, Mixed_5c,
a [2, 7, 7] average pool and the Logits 1x1x1 convolution, averaged over time. Convolutions have no
bias and are followed by batch norm without scale (epsilon 1e-3) and ReLU; padding is SAME.
On inputs smaller than the standard 224x224 the final average pool shrinks to the feature map.

FVD (Unterthiner et al. 2018) resizes frames to 224x224 (TF1 bilinear, reproduced here), scales
them to [-1, 1] and uses the 400 logits as features (`feature="logits"`; `"pool"` gives the
1024-d pooled Mixed_5c).

Weights are read from a local `.npz` (never downloaded) whose keys are the flattened variable
paths, e.g. `params/Conv3d_1a_7x7/conv_3d/kernel` `[7, 7, 7, 3, 64]` (T, H, W, in, out) and
`batch_stats/Conv3d_1a_7x7/batch_norm/mean`; `save_variables` writes that format. A converter
from DeepMind's checkpoint renames w -> kernel, beta -> bias, moving_mean/variance -> mean/var,
and Mixed_5b's `Branch_2/Conv3d_0a_3x3` (a typo there) -> `Branch_2/Conv3d_0b_3x3`.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from flax import traverse_util

NUM_CLASSES = 400
FVD_SIZE = 224
# Mixed block widths: (Branch_0 1x1, Branch_1 1x1 -> 3x3, Branch_2 1x1 -> 3x3, Branch_3 pool -> 1x1)
MIXED = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32), "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64), "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64), "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128), "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}


class Unit3D(nn.Module):
  """Conv3d (SAME, no bias) + batch norm (no scale) + ReLU, or a plain biased conv (logits)."""

  features: int
  kernel: tuple[int, int, int] = (1, 1, 1)
  strides: tuple[int, int, int] = (1, 1, 1)
  batch_norm: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.Conv(self.features, self.kernel, self.strides, padding="SAME",
                use_bias=not self.batch_norm, name="conv_3d")(x)
    if not self.batch_norm:
      return x
    x = nn.BatchNorm(use_running_average=True, use_scale=False, epsilon=1e-3,
                     name="batch_norm")(x)
    return nn.relu(x)


def _max_pool(x: jax.Array, window: tuple[int, int, int], strides: tuple[int, int, int]):
  return nn.max_pool(x, window, strides, padding="SAME")


class Mixed(nn.Module):
  """An Inception block: four branches concatenated on channels."""

  widths: tuple[int, int, int, int, int, int]

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    w0, w1a, w1b, w2a, w2b, w3 = self.widths
    b0 = Unit3D(w0, name="Branch_0/Conv3d_0a_1x1")(x)
    b1 = Unit3D(w1a, name="Branch_1/Conv3d_0a_1x1")(x)
    b1 = Unit3D(w1b, (3, 3, 3), name="Branch_1/Conv3d_0b_3x3")(b1)
    b2 = Unit3D(w2a, name="Branch_2/Conv3d_0a_1x1")(x)
    b2 = Unit3D(w2b, (3, 3, 3), name="Branch_2/Conv3d_0b_3x3")(b2)
    b3 = _max_pool(x, (3, 3, 3), (1, 1, 1))
    b3 = Unit3D(w3, name="Branch_3/Conv3d_0b_1x1")(b3)
    return jnp.concatenate([b0, b1, b2, b3], axis=-1)


class I3D(nn.Module):
  """Inception-3D on `[B, T, H, W, 3]` pixels in [-1, 1] -> `{"logits": [B, 400], "pool":
  [B, 1024]}` (both averaged over the remaining time steps)."""

  num_classes: int = NUM_CLASSES

  @nn.compact
  def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
    x = Unit3D(64, (7, 7, 7), (2, 2, 2), name="Conv3d_1a_7x7")(x)
    x = _max_pool(x, (1, 3, 3), (1, 2, 2))
    x = Unit3D(64, name="Conv3d_2b_1x1")(x)
    x = Unit3D(192, (3, 3, 3), name="Conv3d_2c_3x3")(x)
    x = _max_pool(x, (1, 3, 3), (1, 2, 2))
    x = Mixed(MIXED["Mixed_3b"], name="Mixed_3b")(x)
    x = Mixed(MIXED["Mixed_3c"], name="Mixed_3c")(x)
    x = _max_pool(x, (3, 3, 3), (2, 2, 2))
    for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
      x = Mixed(MIXED[name], name=name)(x)
    x = _max_pool(x, (2, 2, 2), (2, 2, 2))
    x = Mixed(MIXED["Mixed_5b"], name="Mixed_5b")(x)
    x = Mixed(MIXED["Mixed_5c"], name="Mixed_5c")(x)
    # [2, 7, 7] VALID average pool at 224x224; capped by the feature map on smaller inputs.
    window = tuple(min(w, s) for w, s in zip((2, 7, 7), x.shape[1:4]))
    x = nn.avg_pool(x, window, (1, 1, 1), padding="VALID")
    logits = Unit3D(self.num_classes, batch_norm=False, name="Logits/Conv3d_0c_1x1")(x)
    return {"logits": jnp.mean(logits, axis=(1, 2, 3)), "pool": jnp.mean(x, axis=(1, 2, 3))}


def variable_shapes() -> dict:
  """The I3D variables' shapes: `{"params": ..., "batch_stats": ...}` of `jax.ShapeDtypeStruct`
  (traced, not computed; shapes do not depend on the input size)."""
  dummy = jax.ShapeDtypeStruct((1, 16, 32, 32, 3), jnp.float32)
  return jax.eval_shape(I3D().init, jax.random.key(0), dummy)


def random_variables(seed: int = 0) -> dict:
  """Randomly initialised I3D variables (kernels N(0, 2 / fan_in), zero offsets and means, unit
  variances), made in NumPy: compiling Flax's init of the full network takes a minute on a CPU."""
  rng = np.random.default_rng(seed)
  flat = traverse_util.flatten_dict(variable_shapes())
  out = {}
  for path, leaf in flat.items():
    if path[-1] == "kernel":
      scale = np.sqrt(2.0 / np.prod(leaf.shape[:-1]))
      out[path] = (rng.standard_normal(leaf.shape) * scale).astype(np.float32)
    else:
      out[path] = np.full(leaf.shape, 1.0 if path[-1] == "var" else 0.0, np.float32)
  return traverse_util.unflatten_dict(out)


def save_variables(path: str, variables: dict):
  """Write variables as the `.npz` that `load_variables` reads (keys `collection/.../leaf`)."""
  flat = traverse_util.flatten_dict(jax.device_get(variables))
  np.savez(path, **{"/".join(p): np.asarray(value) for p, value in flat.items()})


def load_variables(path: str) -> dict:
  """Read I3D variables from a local `.npz`, checked against the network's shapes.

  Raises:
    ValueError: naming the file and every missing, unexpected or mis-shaped key.
  """
  # Tuple paths, joined with "/" only for the file (layer names such as
  # "Branch_1/Conv3d_0b_3x3" contain "/" themselves).
  paths = traverse_util.flatten_dict(variable_shapes())
  expected = {"/".join(p): v for p, v in paths.items()}
  with np.load(path) as data:
    found = {key: data[key] for key in data.files}
  problems = [f"missing {k}" for k in sorted(set(expected) - set(found))]
  problems += [f"unexpected {k}" for k in sorted(set(found) - set(expected))]
  problems += [f"{k}: shape {found[k].shape}, expected {expected[k].shape}"
               for k in sorted(set(found) & set(expected)) if found[k].shape != expected[k].shape]
  if problems:
    shown = "; ".join(problems[:8]) + (f"; ... {len(problems) - 8} more" if len(problems) > 8
                                        else "")
    raise ValueError(f"{path}: not an I3D checkpoint of the expected layout: {shown}")
  return traverse_util.unflatten_dict({p: jnp.asarray(found["/".join(p)], jnp.float32)
                                      for p in paths})


def legacy_bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
  """`[out, in]` weights of TF1's `resize_bilinear` (align_corners=False, no half-pixel
  centres), the resize of the reference FVD code: output i samples input i * in / out."""
  src = np.arange(out_size) * (in_size / out_size)
  lo = np.floor(src).astype(int)
  hi = np.minimum(lo + 1, in_size - 1)
  frac = (src - lo).astype(np.float32)
  matrix = np.zeros((out_size, in_size), np.float32)
  np.add.at(matrix, (np.arange(out_size), lo), 1.0 - frac)
  np.add.at(matrix, (np.arange(out_size), hi), frac)
  return matrix


@functools.partial(jax.jit, static_argnames=("size", "feature"))
def _features(variables: dict, videos: jax.Array, size: int, feature: str) -> jax.Array:
  rows = jnp.asarray(legacy_bilinear_matrix(videos.shape[2], size))
  cols = jnp.asarray(legacy_bilinear_matrix(videos.shape[3], size))
  x = jnp.einsum("oh,pw,bthwc->btopc", rows, cols, videos.astype(jnp.float32),
                 precision=jax.lax.Precision.HIGHEST)
  return I3D().apply(variables, x / 127.5 - 1.0)[feature]


def i3d_features(variables: dict, videos: np.ndarray, size: int = FVD_SIZE,
                 feature: str = "logits", batch_size: int = 8) -> np.ndarray:
  """uint8 `[N, T, H, W, 3]` -> float64 `[N, D]` I3D features (D = 400 logits or 1024 pool)."""
  videos = np.asarray(videos)
  if videos.dtype != np.uint8 or videos.ndim != 5:
    raise ValueError(f"FVD: videos must be uint8 [N, T, H, W, 3], got {videos.dtype} "
                     f"{videos.shape}")
  out = [np.asarray(_features(variables, jnp.asarray(videos[i:i + batch_size]), size, feature))
         for i in range(0, len(videos), batch_size)]
  return np.concatenate(out).astype(np.float64)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
  """Fréchet distance between Gaussians fitted to `[N, D]` and `[M, D]` feature sets:
  |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
    raise ValueError(f"frechet_distance: need [N>=2, D] and [M>=2, D], got {a.shape}, {b.shape}")
  mu_a, mu_b = a.mean(0), b.mean(0)
  cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  root = scipy.linalg.sqrtm(cov_a @ cov_b)
  if not np.isfinite(root).all():
    # A singular product (fewer samples than dimensions): regularise as the FID reference does.
    eps = 1e-6 * np.eye(len(cov_a))
    root = scipy.linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
  root = np.real(root)
  return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b)
               - 2.0 * np.trace(root))


def fvd(variables: dict, real: np.ndarray, fake: np.ndarray, size: int = FVD_SIZE) -> float:
  """FVD between two uint8 `[N, T, H, W, 3]` video sets (rFVD when `fake` reconstructs `real`)."""
  return frechet_distance(i3d_features(variables, real, size), i3d_features(variables, fake, size))
