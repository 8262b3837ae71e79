"""Video discriminators: 3D StyleGAN-style with blur-pool downsampling [MV1][MV2], 3D PatchGAN [OM2].

Input `[B, T, H, W, 3]` pixels in [-1, 1]; output real/fake logits, `[B, 1]` (StyleGAN) or per
patch `[B, t, h, w, 1]` (PatchGAN). The discriminator sees whole clips, so it is not causal.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from loong_jax.tokenizer import layers


def conv(features: int, kernel: tuple[int, ...], strides=(1, 1, 1), name=None, dtype=jnp.float32):
  return nn.Conv(features, kernel, strides=strides, padding="SAME", dtype=dtype,
                 kernel_init=layers.conv_kernel_init(), bias_init=layers.conv_bias_init(), name=name)


class BlurResBlockDown(nn.Module):
  """conv3 -> leaky -> blur-pool -> conv3 -> leaky, plus blur-pool -> 1x1x1 shortcut; / sqrt(2)."""
  features: int
  strides: tuple[int, int, int]
  negative_slope: float
  dtype: str

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    leaky = lambda v: nn.leaky_relu(v, self.negative_slope)
    h = leaky(conv(x.shape[-1], (3, 3, 3), name="conv1", dtype=self.dtype)(x))
    h = layers.BlurPool3d(self.strides)(h)
    h = leaky(conv(self.features, (3, 3, 3), name="conv2", dtype=self.dtype)(h))
    skip = conv(self.features, (1, 1, 1), name="shortcut", dtype=self.dtype)(
        layers.BlurPool3d(self.strides)(x))
    return (h + skip) / math.sqrt(2.0)


class StyleGANDiscriminator3d(nn.Module):
  """conv_in, a blur-pool ResBlock per `ch_mult` level, conv, mean-pool, Dense -> Dense(1).

  Mean-pooling over (t, h, w) before the dense head [ours] (StyleGAN flattens) keeps the parameter
  count independent of the clip size, so one discriminator serves images and clips.
  """
  ch: int
  ch_mult: tuple[int, ...]
  strides: tuple[int, int, int]
  negative_slope: float
  dtype: str

  @nn.compact
  def __call__(self, video: jax.Array) -> jax.Array:
    leaky = lambda v: nn.leaky_relu(v, self.negative_slope)
    x = leaky(conv(self.ch, (3, 3, 3), name="conv_in", dtype=self.dtype)(video.astype(self.dtype)))
    for level, mult in enumerate(self.ch_mult):
      x = BlurResBlockDown(self.ch * mult, self.strides, self.negative_slope, self.dtype,
                           name=f"block_{level}")(x)
    x = leaky(conv(x.shape[-1], (3, 3, 3), name="conv_out", dtype=self.dtype)(x))
    x = jnp.mean(x.astype(jnp.float32), axis=(1, 2, 3))
    dense = lambda n, name: nn.Dense(n, kernel_init=layers.dense_init(nn.initializers.lecun_normal()),
                                     bias_init=layers.dense_bias_init(), name=name)
    return dense(1, "logits")(leaky(dense(x.shape[-1], "dense")(x)))


class PatchGANDiscriminator3d(nn.Module):
  """Strided 4x4x4 convs with GroupNorm and leaky ReLU; one logit per space-time patch."""
  ch: int
  ch_mult: tuple[int, ...]
  strides: tuple[int, int, int]
  negative_slope: float
  num_groups: int
  dtype: str

  @nn.compact
  def __call__(self, video: jax.Array) -> jax.Array:
    leaky = lambda v: nn.leaky_relu(v, self.negative_slope)
    x = leaky(conv(self.ch, (4, 4, 4), self.strides, name="conv_in",
                   dtype=self.dtype)(video.astype(self.dtype)))
    for level, mult in enumerate(self.ch_mult[1:]):
      x = conv(self.ch * mult, (4, 4, 4), self.strides, name=f"conv_{level}", dtype=self.dtype)(x)
      x = leaky(nn.GroupNorm(self.num_groups, dtype=self.dtype, name=f"norm_{level}",
                             scale_init=layers.norm_init(nn.initializers.ones_init()),
                             bias_init=layers.norm_init(nn.initializers.zeros_init()))(x))
    return conv(1, (3, 3, 3), name="logits", dtype=self.dtype)(x).astype(jnp.float32)


def make_discriminator(disc_config) -> nn.Module:
  """`config.tokenizer.discriminator` -> a discriminator module."""
  common = dict(ch=disc_config.ch, ch_mult=tuple(disc_config.ch_mult),
                strides=tuple(disc_config.strides), negative_slope=disc_config.negative_slope,
                dtype=disc_config.dtype)
  if disc_config.type == "stylegan":
    return StyleGANDiscriminator3d(**common)
  if disc_config.type == "patchgan":
    return PatchGANDiscriminator3d(num_groups=disc_config.num_groups, **common)
  raise ValueError("config.tokenizer.discriminator.type must be 'stylegan' or 'patchgan', got "
                   f"{disc_config.type!r}")
