"""2D -> 3D inflation: seed a video tokenizer with an image tokenizer's weights [OM2].

An image tokenizer is this package's tokenizer with `temporal_kernel=1` and no temporal strides
(`image_config`). Inflation puts each 2D kernel `[1, kh, kw, Cin, Cout]` into the LAST temporal slice
of the 3D kernel (the slice that sees the current frame; the others start at zero), and tiles the
temporal depth-to-space convolutions `bt` times along their output channels. At init the video model
then equals the image model applied frame by frame: latent frame j is the image encoding of input
frame r * j (r = temporal compression), and output frame f is the image decoding of latent frame
ceil(f / r).

`middle_tap` [ours] names kernels (e.g. the encoder's temporal-downsampling convolutions, see
`temporal_downsamplers`) whose 2D kernel goes into the middle temporal slice instead: a stride-2
causal conv then reads frame 2j - 1 rather than 2j, so latent k starts as the image encoding of
frame 4k - 3 (the first frame of the 4 it covers; frame 0 for k = 0 with replicate padding). On the
CPU demo this start trained better than the last tap (configs/tokenizer/magvit2.py).
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


def inflation_rule(key: str, image_shape: tuple[int, ...], video_shape: tuple[int, ...]) -> str:
  """How one image parameter becomes the video one: 'copy', 'kernel' or 'tile'; raises otherwise."""
  image_shape, video_shape = tuple(image_shape), tuple(video_shape)
  if image_shape == video_shape:
    return "copy"
  if (len(image_shape) == 5 and image_shape[0] == 1 and image_shape[1:4] == video_shape[1:4]
      and video_shape[4] % image_shape[4] == 0):
    return "kernel"
  if len(image_shape) == 1 and len(video_shape) == 1 and video_shape[0] % image_shape[0] == 0:
    return "tile"
  raise ValueError(f"cannot inflate parameter {key}: image shape {image_shape}, video shape "
                   f"{video_shape}")


def temporal_downsamplers(tokenizer_config) -> tuple[str, ...]:
  """Flattened param keys of the encoder's convolutions with a temporal stride > 1 (none with
  `encoder_frames='last'`, whose encoder has no temporal taps)."""
  if tokenizer_config.get("encoder_frames", "all") == "last":
    return ()
  return tuple(f"encoder/down_{level}_downsample/kernel"
               for level, (st, _, _) in enumerate(tokenizer_config.down_strides) if st > 1)


def inflate_leaf(rule: str, image, video_shape: tuple[int, ...], middle: bool = False):
  if rule == "copy":
    return image
  repeats = video_shape[-1] // image.shape[-1]
  if rule == "tile":
    return jnp.tile(image, repeats)
  kernel = jnp.zeros(video_shape, image.dtype)
  tap = video_shape[0] // 2 if middle else -1
  return kernel.at[tap].set(jnp.tile(image[0], (1, 1, 1, repeats)))


def inflate_params(image_params, video_params, middle_tap: tuple[str, ...] = ()):
  """Video-tokenizer params (shapes from `video_params`, e.g. an abstract tree) from image ones.

  Both trees may be boxed (`nn.Partitioned`); the result is unboxed. Every parameter is checked
  before anything is built; the error names any that is missing from the image tree or cannot be
  inflated. Kernels named in `middle_tap` (flattened keys, '/'-separated) take the middle
  temporal slice instead of the last.
  """
  image = traverse_util.flatten_dict(nn.unbox(image_params), sep="/")
  video = traverse_util.flatten_dict(nn.unbox(video_params), sep="/")
  rules = {}
  for key, leaf in video.items():
    if key not in image:
      raise ValueError(f"cannot inflate parameter {key}: not in the image tokenizer's params")
    rules[key] = inflation_rule(key, image[key].shape, leaf.shape)
  unknown = set(middle_tap) - {k for k, rule in rules.items() if rule == "kernel"}
  if unknown:
    raise ValueError(f"middle_tap names no inflatable kernel: {sorted(unknown)}")
  return traverse_util.unflatten_dict(
      {key: inflate_leaf(rules[key], image[key], video[key].shape, key in middle_tap)
       for key in video}, sep="/")
