"""2D -> 3D inflation: seed a video tokenizer with an image tokenizer's weights [OM2].

An image tokenizer is this package's tokenizer with `temporal_kernel=1` and no temporal strides
(`image_config`). Inflation puts each 2D kernel `[1, kh, kw, Cin, Cout]` into the LAST temporal slice
of the 3D kernel (the slice that sees the current frame; the others start at zero), and tiles the
temporal depth-to-space convolutions `bt` times along their output channels. At init the video model
then equals the image model applied frame by frame: latent frame j is the image encoding of input
frame r * j (r = temporal compression), and output frame f is the image decoding of latent frame
ceil(f / r).
"""

from __future__ import annotations

import copy

import flax.linen as nn
import jax.numpy as jnp
from flax import traverse_util


def image_config(tokenizer_config):
  """The image-tokenizer twin of a video `config.tokenizer`: 1-frame kernels, no temporal strides."""
  config = copy.deepcopy(tokenizer_config)
  config.temporal_kernel = 1
  config.down_strides = tuple((1, sh, sw) for _, sh, sw in tokenizer_config.down_strides)
  return config


def inflate_leaf(key: str, image, target_shape: tuple[int, ...]):
  """One image parameter -> the video parameter of `target_shape` (see module docstring)."""
  if image.shape == tuple(target_shape):
    return image
  if image.ndim == 5 and image.shape[0] == 1 and image.shape[1:4] == tuple(target_shape[1:4]):
    repeats, rest = divmod(target_shape[4], image.shape[4])
    if not rest:
      kernel = jnp.zeros(target_shape, image.dtype)
      return kernel.at[-1].set(jnp.tile(image[0], (1, 1, 1, repeats)))
  if image.ndim == 1 and target_shape[0] % image.shape[0] == 0:
    return jnp.tile(image, target_shape[0] // image.shape[0])
  raise ValueError(f"cannot inflate parameter {key}: image shape {image.shape}, video shape "
                   f"{tuple(target_shape)}")


def inflate_params(image_params, video_params):
  """Video-tokenizer params (shapes from `video_params`, e.g. an abstract tree) from image ones.

  Both trees may be boxed (`nn.Partitioned`); the result is unboxed. Raises naming any parameter
  that is missing from the image tree or cannot be inflated.
  """
  image = traverse_util.flatten_dict(nn.unbox(image_params), sep="/")
  video = traverse_util.flatten_dict(nn.unbox(video_params), sep="/")
  out = {}
  for key, leaf in video.items():
    if key not in image:
      raise ValueError(f"cannot inflate parameter {key}: not in the image tokenizer's params")
    out[key] = inflate_leaf(key, image[key], leaf.shape)
  return traverse_util.unflatten_dict(out, sep="/")
