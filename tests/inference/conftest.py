"""A small LM and vocabulary shared by the inference tests."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from loong_jax import tokens
from loong_jax.inference import long_video
from loong_jax.llm import transformer

# 40 text ids, 32 video ids, the specials: 82 ids, padded to 128.
VOCAB = tokens.Vocab(text_size=40, video_size=32)


def small_lm_config(**overrides) -> transformer.LMConfig:
  fields = dict(vocab_size=VOCAB.size, vocab_pad_multiple=128, num_layers=2, d_model=32,
                num_heads=4, num_kv_heads=2, head_dim=8, mlp_dim=64, rope="rope_1d",
                rope_theta=10_000.0, attention_mask="causal", attention_impl=None, qk_norm=False,
                norm_eps=1e-5, init_std=0.3, remat="none", dtype=jnp.float32,
                param_dtype=jnp.float32)
  fields.update(overrides)
  return transformer.LMConfig(**fields)


@pytest.fixture(scope="session")
def vocab():
  return VOCAB


@pytest.fixture(scope="session")
def lm():
  """`(model, params)`: a 2-layer model with informative (large) random weights."""
  model = transformer.Transformer(small_lm_config())
  params = jax.jit(lambda: nn.unbox(model.init(jax.random.key(1),
                                                jnp.zeros((1, 8), jnp.int32))["params"]))()
  return model, params


class StandInCodec:
  """TEST STAND-IN for the video tokenizer (not a model): code k is a fixed colour.

  decode: every code becomes a `d x d` block of its colour; latent frame 0 becomes one frame,
  every later latent frame `s` identical frames. encode: frame 0 and every s-th frame after it
  (the last frame of each group), the top-left pixel of each block, the nearest palette colour.
  So `encode(decode(codes)) == codes` exactly, and frame counts follow the causal tokenizer's
  `T = 1 + s (T_lat - 1)`.
  """

  def __init__(self, video_size: int, temporal_stride: int = 4, spatial_downsample: int = 8):
    self.s, self.d = temporal_stride, spatial_downsample
    self.palette = np.random.default_rng(0).uniform(-1, 1, (video_size, 3)).astype(np.float32)
    self.encode_calls = 0

  def decode(self, codes):
    codes = np.asarray(codes)
    pixels = self.palette[codes]  # [B, T_lat, h, w, 3]
    pixels = pixels.repeat(self.d, axis=2).repeat(self.d, axis=3)
    repeats = np.full(codes.shape[1], self.s)
    repeats[0] = 1
    return pixels.repeat(repeats, axis=1)

  def encode(self, video):
    self.encode_calls += 1
    video = np.asarray(video)
    if (video.shape[1] - 1) % self.s:
      raise ValueError(f"stand-in encode: {video.shape[1]} frames is not 1 + {self.s}k")
    picked = video[:, :: self.s, :: self.d, :: self.d]  # [B, T_lat, h, w, 3]
    distance = ((picked[..., None, :] - self.palette) ** 2).sum(-1)
    return distance.argmin(-1).astype(np.int32)

  def codec(self):
    return long_video.VideoCodec(self.encode, self.decode, self.s, self.d)


@pytest.fixture
def stand_in_codec(vocab):
  return StandInCodec(vocab.video_size)
