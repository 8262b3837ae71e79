"""LPIPS-style perceptual distance (VGG-16 trunk + learned 1x1 channel weights) [OM2].

The network's weights are never downloaded: they come from a local `.npz` whose keys are the Flax
parameter paths joined by '/' (e.g. `conv_0/kernel` `[3, 3, 3, 64]`, `lin_0/kernel`
`[1, 1, 64, 1]`); `load_params` checks every key and shape against the model. Pixels in [-1, 1],
frames `[N, H, W, 3]`.
"""

from __future__ import annotations

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

# VGG-16 conv widths; 'M' is a 2x2 max-pool. LPIPS taps the ReLU after the last conv of each stage.
VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
# LPIPS' input normalisation (ImageNet statistics mapped to [-1, 1] inputs).
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


class LPIPS(nn.Module):
  """`(x, y)` frames `[N, H, W, 3]` in [-1, 1] -> per-frame distance `[N]`."""

  def features(self, x: jax.Array) -> list[jax.Array]:
    x = (x - jnp.asarray(SHIFT)) / jnp.asarray(SCALE)
    taps, conv_index = [], 0
    for width in VGG16:
      if width == "M":
        taps.append(x)
        x = nn.max_pool(x, (2, 2), (2, 2))
        continue
      x = nn.relu(nn.Conv(width, (3, 3), name=f"conv_{conv_index}")(x))
      conv_index += 1
    return taps + [x]

  @nn.compact
  def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
    # One trunk call on the concatenation, so both inputs share the same parameters.
    feats = self.features(jnp.concatenate([x, y], axis=0))
    total = 0.0
    for i, f in enumerate(feats):
      f = f * jax.lax.rsqrt(jnp.sum(jnp.square(f), axis=-1, keepdims=True) + 1e-10)
      fx, fy = jnp.split(f, 2, axis=0)
      lin = nn.Conv(1, (1, 1), use_bias=False, name=f"lin_{i}")(jnp.square(fx - fy))
      total = total + jnp.mean(lin, axis=(1, 2, 3))
    return total


def load_params(path: str, frame_shape=(1, 32, 32, 3)) -> dict:
  """LPIPS parameters from a local `.npz`; raises naming the file and the key on any mismatch."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"config.loss.perceptual_weights_path: no file at {path!r}")
  x = jax.ShapeDtypeStruct(frame_shape, jnp.float32)
  abstract = jax.eval_shape(lambda a: LPIPS().init(jax.random.key(0), a, a)["params"], x)
  expected = traverse_util.flatten_dict(abstract, sep="/")
  with np.load(path) as stored:
    loaded = {}
    for key, leaf in expected.items():
      if key not in stored:
        raise ValueError(f"{path}: missing perceptual weight {key!r} (shape {leaf.shape})")
      if stored[key].shape != leaf.shape:
        raise ValueError(f"{path}: {key!r} has shape {stored[key].shape}, expected {leaf.shape}")
      loaded[key] = jnp.asarray(stored[key], jnp.float32)
  return traverse_util.unflatten_dict(loaded, sep="/")


def save_params(path: str, params) -> None:
  """Write LPIPS parameters in the layout `load_params` reads (for converters and tests)."""
  flat = traverse_util.flatten_dict(params, sep="/")
  np.savez(path, **{k: np.asarray(v) for k, v in flat.items()})


def video_distance(params, x: jax.Array, y: jax.Array) -> jax.Array:
  """Mean LPIPS distance between `[B, T, H, W, 3]` videos, frame by frame."""
  flat = lambda v: v.reshape((-1,) + v.shape[2:]).astype(jnp.float32)
  return jnp.mean(LPIPS().apply({"params": params}, flat(x), flat(y)))
