"""Causal 3D CNN video tokenizer: Encoder -> quantizer -> Decoder [SPEC §2, OM2, MV2].

Pixels: float in [-1, 1] (uint8 v maps to v / 127.5 - 1), layout `[B, T, H, W, 3]`, T = 1 + 4k
frames (an image is T = 1) and H, W divisible by 2^(len(ch_mult) - 1). With the default
`ch_mult=(1, 2, 2, 4)` and strides `(1,2,2), (2,2,2), (2,2,2)`:
  `[B, 17, 128, 128, 3]` -> ids `[B, 5, 16, 16]`;  `[B, 1, 128, 128, 3]` -> ids `[B, 1, 16, 16]`.

`patch_size` p > 1 [ours] folds p x p pixel patches into channels before the first convolution
and unfolds them after the last (the total spatial factor is p times the strides' product): the
full-resolution level, the most expensive one on CPU, goes away. The CPU demo uses p = 4.

`local_encoder` [ours] makes every latent block a function of its own pixels only: the encoder
folds whole `spatial_factor` x `spatial_factor` blocks into channels and uses 1x1 spatial kernels
and spatial strides of 1 (the temporal ones stay; the decoder is unchanged). A CNN encoder's
receptive field otherwise spans the frame: on the CPU demo's black background it spread the
object over every token, so a moving object changed 64% of a frame's codes, background
included, and the LM could not learn which codes stay (configs/tokenizer/magvit2.py).

`encoder_frames="last"` [ours] makes latent frame j a function of pixel frame r*j alone (the last
of the r frames it stands for; r the temporal compression): the encoder reads frames 0, r, 2r, ...
with 1-frame kernels and no temporal strides, so a video's codes are its frames' image codes. An
object moving one latent block per latent frame then shifts its codes exactly (no 4-frame smear);
the decoder, unchanged, renders the frames in between from neighbouring latents.

`color_channels` k > 0 [ours] (with both of the above) splits each latent block into a colour part
and a pattern part, as JPEG splits chroma from luma: latent channels 0..k-1 (the lowest FSQ
digits) come from the block's colour range alone (per-channel max and min over its pixels, each
divided by its largest channel: a colour, not a brightness, and not where in the block the object
is), the other `z_channels - k` from the block's brightness pattern (each pixel's max over R, G,
B, which does not depend on the hue). A block of an unseen colour-shape pair is then a seen
colour and a seen pattern, which digit-factorised LM embeddings and logits (`lm.digit_codes`)
can compose; measured in configs/tokenizer/magvit2.py.

An image tokenizer is the same model with `temporal_kernel=1` and no temporal strides; `inflate.py`
turns its weights into a video tokenizer's.
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from loong_jax.tokenizer import discriminator as disc_lib
from loong_jax.tokenizer import layers
from loong_jax.tokenizer import quantizers

# `config.tokenizer.encoder_frames`: which frames the encoder reads (module docstring).
ENCODER_FRAMES = ("all", "last")


@dataclasses.dataclass(frozen=True)
class AutoencoderConfig:
  """The shape of the encoder / decoder (from `config.tokenizer`)."""
  ch: int
  ch_mult: tuple[int, ...]
  num_res_blocks: int
  num_mid_blocks: int
  z_channels: int
  num_groups: int
  temporal_kernel: int
  down_strides: tuple[tuple[int, int, int], ...]
  temporal_padding: str
  dtype: str
  conv_impl: str
  patch_size: int = 1
  norm: str = "group"
  local_encoder: bool = False
  encoder_frames: str = "all"
  color_channels: int = 0

  @classmethod
  def from_config(cls, tokenizer_config) -> AutoencoderConfig:
    c = tokenizer_config
    config = cls(ch=c.ch, ch_mult=tuple(c.ch_mult), num_res_blocks=c.num_res_blocks,
                 num_mid_blocks=c.num_mid_blocks, z_channels=c.z_channels,
                 num_groups=c.num_groups, temporal_kernel=c.temporal_kernel,
                 down_strides=tuple(tuple(s) for s in c.down_strides),
                 temporal_padding=c.temporal_padding, dtype=c.dtype, conv_impl=c.conv_impl,
                 patch_size=c.patch_size, norm=c.get("norm", "group"),
                 local_encoder=bool(c.get("local_encoder", False)),
                 encoder_frames=c.get("encoder_frames", "all"),
                 color_channels=int(c.get("color_channels", 0)))
    config.validate()
    return config

  def validate(self):
    layers.check_norm(self.norm)
    if self.encoder_frames not in ENCODER_FRAMES:
      raise ValueError(f"config.tokenizer.encoder_frames={self.encoder_frames!r}: must be one of "
                       f"{ENCODER_FRAMES}")
    if self.color_channels and not (self.local_encoder and self.encoder_frames == "last"
                                    and 0 < self.color_channels < self.z_channels):
      raise ValueError(f"config.tokenizer.color_channels={self.color_channels} needs "
                       "local_encoder=True, encoder_frames='last' and fewer channels than "
                       f"z_channels={self.z_channels}")
    if self.patch_size < 1:
      raise ValueError(f"config.tokenizer.patch_size={self.patch_size} must be at least 1")
    if len(self.down_strides) != len(self.ch_mult) - 1:
      raise ValueError(f"config.tokenizer.down_strides: need {len(self.ch_mult) - 1} strides (one "
                       f"per level but the last), got {len(self.down_strides)}")
    for mult in self.ch_mult:
      if (self.ch * mult) % self.num_groups:
        raise ValueError(f"config.tokenizer.num_groups={self.num_groups} must divide every level's "
                         f"channels, not ch * {mult} = {self.ch * mult}")
    if self.temporal_kernel == 1 and any(s[0] > 1 for s in self.down_strides):
      raise ValueError("config.tokenizer: an image tokenizer (temporal_kernel=1) cannot have "
                       f"temporal strides, got down_strides={self.down_strides}")

  @property
  def temporal_factor(self) -> int:
    return math.prod(s[0] for s in self.down_strides)

  @property
  def spatial_factor(self) -> int:
    return self.patch_size * math.prod(s[1] for s in self.down_strides)

  @property
  def conv_kwargs(self) -> dict:
    """The settings every `CausalConv3d` / `ResBlock3d` of the model shares."""
    return dict(temporal_padding=self.temporal_padding, dtype=self.dtype, conv_impl=self.conv_impl)

  @property
  def block_kwargs(self) -> dict:
    """`conv_kwargs` plus the normalisation of the `ResBlock3d`s."""
    return dict(self.conv_kwargs, norm=self.norm)

  def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
    """`(t, h, w)` of the ids for a `[frames, height, width]` clip; raises on a bad shape."""
    r, s = self.temporal_factor, self.spatial_factor
    if (frames - 1) % r or height % s or width % s:
      raise ValueError(f"clip of {frames}x{height}x{width} does not fit the tokenizer: need frames = "
                       f"1 + {r}k and height, width divisible by {s}")
    return 1 + (frames - 1) // r, height // s, width // s


class Encoder(nn.Module):
  """`[B, T, H, W, 3]` pixels -> `[B, t, h, w, z_channels]` continuous latents."""
  config: AutoencoderConfig

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = self.config
    if c.local_encoder:  # whole latent blocks into channels, then nothing mixes blocks
      spatial, fold = 1, c.spatial_factor
      strides = tuple((s[0], 1, 1) for s in c.down_strides)
    else:
      spatial, fold, strides = 3, c.patch_size, c.down_strides
    temporal = c.temporal_kernel
    if c.encoder_frames == "last":  # frames 0, r, 2r, ...: latent j is frame r*j alone
      x = x[:, ::c.temporal_factor]
      temporal, strides = 1, tuple((1,) + tuple(s[1:]) for s in strides)
    kernel, common = (temporal, spatial, spatial), c.conv_kwargs
    blocks = dict(c.block_kwargs, spatial_kernel=spatial)
    x = layers.space_to_depth(x.astype(c.dtype), fold)
    color = None
    if c.color_channels:  # [B, t, h, w, s*s*3] blocks -> colour range and brightness pattern
      pixels = x.reshape(*x.shape[:-1], fold * fold, 3)
      color = jnp.concatenate([_chroma(pixels.max(axis=-2)), _chroma(pixels.min(axis=-2))], -1)
      color = nn.swish(layers.CausalConv3d(c.ch, kernel, name="color_in", **common)(color))
      color = layers.CausalConv3d(c.color_channels, kernel, name="color_out", **common)(color)
      x = pixels.max(axis=-1)
    x = layers.CausalConv3d(c.ch, kernel, name="conv_in", **common)(x)
    for level, mult in enumerate(c.ch_mult):
      for block in range(c.num_res_blocks):
        x = layers.ResBlock3d(c.ch * mult, c.num_groups, temporal,
                              name=f"down_{level}_block_{block}", **blocks)(x)
      if level < len(c.ch_mult) - 1:
        x = layers.CausalConv3d(c.ch * mult, kernel, strides=strides[level],
                                name=f"down_{level}_downsample", **common)(x)
    for block in range(c.num_mid_blocks):
      x = layers.ResBlock3d(x.shape[-1], c.num_groups, temporal, name=f"mid_{block}", **blocks)(x)
    if c.norm == "group":
      x = layers.FrameGroupNorm(c.num_groups, dtype=c.dtype, name="norm_out")(x)
    x = nn.swish(x)
    if color is None:
      return layers.CausalConv3d(c.z_channels, (1, 1, 1), name="conv_out", **common)(x)
    x = layers.CausalConv3d(c.z_channels - c.color_channels, (1, 1, 1), name="conv_out",
                            **common)(x)
    return jnp.concatenate([color, x], axis=-1)


def _chroma(rgb: jax.Array, floor: float = 0.1) -> jax.Array:
  """`[..., 3]` colours in [-1, 1] -> `[..., 3]` in [0, 1]: divided by their largest channel (at
  least `floor`), so that a block's edge, where the object covers part of a pixel, has the colour
  of its inside."""
  rgb = (rgb + 1) / 2
  return rgb / jnp.maximum(rgb.max(axis=-1, keepdims=True), floor)


class Decoder(nn.Module):
  """`[B, t, h, w, z_channels]` quantized latents -> `[B, T, H, W, 3]` pixels (unclipped)."""
  config: AutoencoderConfig

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    c = self.config
    kernel, common = (c.temporal_kernel, 3, 3), c.conv_kwargs
    z = z.astype(c.dtype)
    x = layers.CausalConv3d(c.ch * c.ch_mult[-1], kernel, name="conv_in", **common)(z)
    for block in range(c.num_mid_blocks):
      x = layers.ResBlock3d(x.shape[-1], c.num_groups, c.temporal_kernel, name=f"mid_{block}",
                            **c.block_kwargs)(x, z)
    for level in reversed(range(len(c.ch_mult))):
      for block in range(c.num_res_blocks):
        x = layers.ResBlock3d(c.ch * c.ch_mult[level], c.num_groups, c.temporal_kernel,
                              name=f"up_{level}_block_{block}", **c.block_kwargs)(x, z)
      if level > 0:
        x = layers.DepthToSpace3d(c.ch * c.ch_mult[level], c.down_strides[level - 1],
                                  c.temporal_kernel, name=f"up_{level}_upsample", **common)(x)
    if c.norm == "group":
      x = layers.AdaptiveGroupNorm(c.num_groups, dtype=c.dtype, name="norm_out")(x, z)
    x = nn.swish(x)
    x = layers.CausalConv3d(3 * c.patch_size ** 2, kernel, name="conv_out", **common)(x)
    return layers.depth_to_space(x, c.patch_size).astype(jnp.float32)


class VideoTokenizer(nn.Module):
  """Encoder + quantizer + decoder.

  `__call__(video, train) -> (reconstruction, aux)`; `encode(video) -> ids`; `decode(ids) -> video`.
  Every method is batch-parallel (no op mixes examples except the quantizer's batch statistics),
  so `jax.jit` with the batch sharded over ('data', 'fsdp') runs it data-parallel.
  """
  config: AutoencoderConfig
  quantizer_config: object

  def setup(self):
    self.encoder = Encoder(self.config, name="encoder")
    self.quantizer = quantizers.make_quantizer(self.quantizer_config, self.config.z_channels)
    self.decoder = Decoder(self.config, name="decoder")

  def __call__(self, video: jax.Array, train: bool = False):
    """`[B, T, H, W, 3]` in [-1, 1] -> (`[B, T, H, W, 3]` reconstruction, aux).

    aux: the quantizer's scalars (with `loss`) and `indices` `[B, t, h, w]`.
    """
    codes, indices, aux = self.quantizer(self.encoder(video), train)
    return self.decoder(codes), dict(aux, indices=indices)

  def encode(self, video: jax.Array) -> jax.Array:
    """`[B, T, H, W, 3]` in [-1, 1] -> int32 ids `[B, t, h, w]` in [0, K)."""
    _, indices, _ = self.quantizer(self.encoder(video), False)
    return indices

  def decode(self, indices: jax.Array) -> jax.Array:
    """int32 ids `[B, t, h, w]` -> `[B, T, H, W, 3]`, nominally in [-1, 1] (not clipped)."""
    return self.decoder(self.quantizer.codes_from_indices(indices))

  def reencode(self, video: jax.Array, previous: jax.Array, margin: float) -> jax.Array:
    """`encode` of `video` `[B, T, H, W, 3]` whose codes were `previous` `[B, t, h, w]`: a
    token keeps its previous id while its latent stays within `margin` of that code's cell
    (the quantizer's `sticky_indices`; margin 0: `encode`). Long videos re-encode their
    context so (`inference.reencode_margin`)."""
    return self.quantizer.sticky_indices(self.encoder(video), previous, margin)


def make_tokenizer(tokenizer_config) -> VideoTokenizer:
  return VideoTokenizer(AutoencoderConfig.from_config(tokenizer_config), tokenizer_config.quantizer)


def init_input_shape(tokenizer_config) -> tuple[int, ...]:
  """The smallest `[1, T, H, W, 3]` input that exercises every layer (used for init)."""
  config = AutoencoderConfig.from_config(tokenizer_config)
  side = config.spatial_factor
  return (1, 1 + config.temporal_factor, side, side, 3)


def abstract_params(tokenizer_config) -> dict[str, object]:
  """`{'generator': tree, 'discriminator': tree}` of boxed parameter shapes (nothing allocated)."""
  video = jax.ShapeDtypeStruct(init_input_shape(tokenizer_config), jnp.float32)
  generator = make_tokenizer(tokenizer_config)
  discriminator = disc_lib.make_discriminator(tokenizer_config.discriminator)
  key = jax.random.key(0)
  return {
      "generator": jax.eval_shape(lambda v: generator.init(key, v)["params"], video),
      "discriminator": jax.eval_shape(lambda v: discriminator.init(key, v)["params"], video),
  }
