"""Video encoders for pre-tokenization, behind one contract:

    encode_fn(video: float32 [B, T, H, W, 3] in [-1, 1]) -> int32 [B, T_lat, h, w] codes
    (T = 1 + 4k, T_lat = 1 + (T - 1) // 4, codes in [0, video_size))

`load_encoder(config)` picks one from `config.encoder`: `tokenizer` (a trained video tokenizer run
restored by `tokenizer_encoder`; `VideoTokenizer.encode` has this contract) or `pooling`, a TEST
STAND-IN with the same shapes. The pooling encoder with its `pooling_block_decoder` is the CPU
demo's *oracle* tokenizer (`--config.tokenizer.kind=oracle`): it keeps each object's colour and
position as 8x8 blocks, so the LM half of the demo can be trained and judged alone.
`data_parallel` runs any of them with the batch split over this host's devices.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from loong_jax import cli
from loong_jax.tokenizer import autoencoder
from loong_jax.train import checkpoint as checkpoint_lib

EncodeFn = Callable[[np.ndarray], np.ndarray]
CODEC_KINDS = ("learned", "oracle")  # a trained tokenizer run, or the pooling codec below
POOLING_FRAMES = ("mean", "last")  # how the pooling codec reads a latent frame's 4 frames


def data_parallel(encode_fn: Callable, devices=None, params=None) -> EncodeFn:
  """`encode_fn` jitted with its batch split over `devices` (default: this host's devices).

  With `params`, `encode_fn(params, video)`: the weights are an argument of the program
  (replicated), not constants folded into it, so compiling is quicker and one compiled program
  serves any weights of the same shapes (the persistent compilation cache shares it between
  runs and steps)."""
  devices = list(devices or jax.local_devices())
  mesh = Mesh(np.asarray(devices), ("data",))
  batch = NamedSharding(mesh, PartitionSpec("data"))
  if params is None:
    jitted = jax.jit(encode_fn, in_shardings=batch, out_shardings=batch)
  else:
    replicated = NamedSharding(mesh, PartitionSpec())
    params = jax.device_put(params, replicated)
    program = jax.jit(encode_fn, in_shardings=(replicated, batch), out_shardings=batch)
    jitted = functools.partial(program, params)

  def run(video: np.ndarray) -> np.ndarray:
    if len(video) % len(devices):
      raise ValueError(f"pretokenize: batch of {len(video)} does not split over "
                       f"{len(devices)} devices")
    return np.asarray(jitted(jax.device_put(video, batch)))

  run.num_devices = len(devices)
  return run


def pooling_stand_in_encoder(video_size: int, spatial: int = 8, temporal: int = 4,
                             frames: str = "mean") -> Callable:
  """A TEST STAND-IN for the video tokenizer, not a learned model: causal average pooling
  quantised to codes.

  Latent frame 0 is frame 0, latent frame k the mean of frames 4k-3 .. 4k (the tokenizer's causal
  grouping; `frames="last"`: frame 4k alone, so an object moving one block per latent frame
  shifts its blocks exactly, latent frame 1 included, where the mean smears it over 4 positions);
  each `spatial` x `spatial` patch's mean RGB is quantised to `b` bits per channel
  (3b <= log2(video_size)) and packed into one code. Deterministic, shapes as the real encoder's.
  `pooling_block_decoder` inverts either form (it repeats a latent frame over its 4 frames).
  """
  if frames not in POOLING_FRAMES:
    raise ValueError(f"pooling encoder: frames={frames!r}, one of {POOLING_FRAMES}")
  levels = pooling_levels(video_size)

  def encode(video):
    b, t, h, w, c = video.shape
    first = video[:, :1]
    rest = video[:, 1:].reshape(b, (t - 1) // temporal, temporal, h, w, c)
    rest = rest.mean(axis=2) if frames == "mean" else rest[:, :, -1]
    latent = jnp.concatenate([first, rest], axis=1)
    pooled = latent.reshape(b, latent.shape[1], h // spatial, spatial, w // spatial, spatial,
                            c).mean(axis=(3, 5))
    q = jnp.clip(jnp.floor((pooled + 1.0) * 0.5 * levels), 0, levels - 1).astype(jnp.int32)
    return q[..., 0] + levels * q[..., 1] + levels * levels * q[..., 2]

  return encode


def pooling_levels(video_size: int) -> int:
  """Quantisation levels per channel of the pooling codec: the largest power of two `L` with
  `L**3 <= video_size` (8,192 ids -> 16 levels, 4,096 codes)."""
  bits = int(math.log2(video_size)) // 3
  if bits < 1:
    raise ValueError(f"pooling encoder: video_size={video_size} is below 8 codes")
  return 2**bits


def pooling_block_decoder(video_size: int, spatial: int = 8, temporal: int = 4) -> Callable:
  """The inverse of `pooling_stand_in_encoder`: codes `[B, T_lat, h, w]` -> video
  `[B, 1 + temporal (T_lat - 1), h*spatial, w*spatial, 3]` in [-1, 1].

  Each code becomes the centre of its quantisation bin, painted over its `spatial` x `spatial`
  block; latent frame 0 is frame 0 and latent frame k (k >= 1) frames `4k-3 .. 4k`. Re-encoding a
  decoded video gives the same codes exactly: every pooled mean is a bin centre, half a bin from
  either edge (also after rounding to uint8, 1/255 of the range).
  """
  levels = pooling_levels(video_size)

  def decode(codes):
    codes = jnp.asarray(codes, jnp.int32)
    q = jnp.stack([codes % levels, (codes // levels) % levels, codes // (levels * levels)], -1)
    rgb = (q.astype(jnp.float32) + 0.5) / levels * 2.0 - 1.0
    rgb = jnp.repeat(jnp.repeat(rgb, spatial, axis=2), spatial, axis=3)
    rest = jnp.repeat(rgb[:, 1:], temporal, axis=1)
    return jnp.concatenate([rgb[:, :1], rest], axis=1)

  return decode


def restore_tokenizer(tokenizer_config, run_dir: str, name: str = "config.tokenizer_checkpoint"):
  """`(model, params)` of a trained video tokenizer: the EMA generator weights of the latest
  checkpoint under `run_dir/checkpoints` (a `train_tokenizer` run; `name` is the setting that
  gave `run_dir`, for the error when there is none)."""
  target = {"ema_params": nn.unbox(autoencoder.abstract_params(tokenizer_config)["generator"])}
  restored = checkpoint_lib.restore_fields(os.path.join(run_dir, "checkpoints"), target,
                                           name=name)
  return autoencoder.make_tokenizer(tokenizer_config), restored["ema_params"]


def tokenizer_encoder(tokenizer_config, run_dir: str, devices=None) -> EncodeFn:
  """The trained tokenizer's `encode` (EMA weights of `run_dir`), data-parallel."""
  model, params = restore_tokenizer(tokenizer_config, run_dir)
  return data_parallel(lambda p, video: model.apply({"params": p}, video, method="encode"),
                       devices, params)


def load_encoder(config) -> EncodeFn:
  """The video encoder named by `config.encoder`, data-parallel over this host's devices.

  `tokenizer`: the trained tokenizer run at `config.tokenizer_checkpoint`, built from the config
  spec `config.tokenizer_config` (e.g. `configs/tokenizer/magvit2.py:demo`). `pooling`: a test
  stand-in (not a learned tokenizer).
  """
  if config.encoder == "pooling":
    return data_parallel(pooling_stand_in_encoder(config.vocab.video_size))
  if config.encoder == "tokenizer":
    if not config.tokenizer_checkpoint:
      raise ValueError("config.tokenizer_checkpoint is empty: give a trained video tokenizer "
                       "run (or --config.encoder=pooling, a test stand-in)")
    spec = config.get("tokenizer_config", "")
    if not spec:
      raise ValueError("config.tokenizer_config is empty: give the tokenizer's config spec, e.g. "
                       "configs/tokenizer/magvit2.py:demo")
    return tokenizer_encoder(cli.load_config_file(spec).tokenizer, config.tokenizer_checkpoint)
  raise ValueError(f"config.encoder={config.encoder!r} unknown; known: tokenizer, pooling")
