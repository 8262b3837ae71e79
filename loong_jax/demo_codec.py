"""Which video codec the demo's LM reads: the tokenizer trained by the demo (its config with the
demo's overrides, and the flat-block canonicalisation of `data/flat_codes.py`), or the oracle
pooling codec (`--config.tokenizer.kind=oracle`). Shared by the demo's steps
(`demo_steps.py`), its LM evaluation (`demo_lm_eval.py`) and `benchmarks/lumos_compare.py`.
"""

from __future__ import annotations

import dataclasses
import math
import os

import ml_collections
import numpy as np

from loong_jax import cli
from loong_jax.data import encoders, flat_codes
from loong_jax.tokenizer import autoencoder


def tokenizer_config(config) -> ml_collections.ConfigDict:
  """`config.tokenizer.config` with the demo's training overrides."""
  t = config.tokenizer
  out = cli.load_config_file(t.config)
  out.train.steps, out.train.batch_size = t.steps, t.batch_size
  out.train.log_every, out.train.checkpoint_every = t.log_every, t.checkpoint_every
  out.data.frames, out.data.resolution = t.frames, config.data.resolution
  out.loss.disc_start = t.disc_start
  out.optim.ema_decay = t.ema_decay
  out.optim.warmup_steps = t.warmup_steps
  out.optim.learning_rate = t.get("learning_rate", out.optim.learning_rate)
  out.image_phase.update(t.get("image_phase", {}))
  # e.g. local_encoder (configs/tokenizer/magvit2.py)
  for name, value in t.get("model", {}).items():
    if name not in out.tokenizer:
      raise ValueError(f"config.tokenizer.model.{name}: not a field of the tokenizer config "
                       f"{sorted(out.tokenizer)}")
    out.tokenizer[name] = value
  levels = tuple(int(l) for l in t.get("fsq_levels", ()))
  if levels:  # () keeps the tokenizer config's quantizer
    if out.tokenizer.quantizer.type != "fsq" or min(levels) < 2:
      raise ValueError(f"config.tokenizer.fsq_levels={levels}: needs an FSQ tokenizer and levels "
                       f">= 2 (quantizer {out.tokenizer.quantizer.type!r})")
    out.tokenizer.quantizer.levels, out.tokenizer.z_channels = levels, len(levels)
    out.tokenizer.quantizer.codebook_size = math.prod(levels)
  return out


def tokenizer_kind(config) -> str:
  """`config.tokenizer.kind`: 'learned' (trained here; also runs written before the field
  existed) or 'oracle' (the pooling codec of `loong_jax.data.encoders`, nothing trained)."""
  kind = config.tokenizer.get("kind", "learned")
  if kind not in encoders.CODEC_KINDS:
    raise ValueError(f"config.tokenizer.kind={kind!r}: one of {encoders.CODEC_KINDS}")
  return kind


def oracle_encoder(config, size: int):
  """The oracle's encoder (`encoders.pooling_stand_in_encoder`) with the demo's
  `config.tokenizer.oracle_frames` ('mean' of a latent frame's 4 frames, or the 'last')."""
  return encoders.pooling_stand_in_encoder(size, frames=oracle_frames(config))


def oracle_frames(config) -> str:
  """`config.tokenizer.oracle_frames` ('mean' for runs written before the field existed)."""
  return config.tokenizer.get("oracle_frames", "mean")


def flat_config(config) -> flat_codes.FlatCodesConfig:
  """`config.tokenizer.flat_codes` (off for runs written before the field existed)."""
  return flat_codes.FlatCodesConfig.from_config(config.tokenizer.get("flat_codes", None))


def video_encoder(config, run: str, video_size: int) -> encoders.EncodeFn:
  """The run's video encoder (`encoders.EncodeFn`), data-parallel: the oracle's, or the trained
  tokenizer's with `config.tokenizer.flat_codes` applied. These are the LM's codes: use it for
  every video whose codes an LM of this run reads."""
  if tokenizer_kind(config) == "oracle":
    return encoders.data_parallel(oracle_encoder(config, video_size))
  tokenizer = tokenizer_config(config).tokenizer
  auto = autoencoder.AutoencoderConfig.from_config(tokenizer)
  return flat_codes.canonical_encoder(
      encoders.tokenizer_encoder(tokenizer, os.path.join(run, "tokenizer")), flat_config(config),
      auto.temporal_factor, auto.spatial_factor)


def canonical_reconstruct(config, tokenizer_config, params, reconstruct):
  """`reconstruct(video) -> (recon, codes)` of the trained tokenizer (`params` of the model the
  `tokenizer` config block `tokenizer_config` builds), or, with `config.tokenizer.flat_codes` on,
  the decoding of the canonical codes the LM reads (so the tokenizer's report measures what the
  LM's codes can show)."""
  flat = flat_config(config)
  if not flat.enabled:
    return reconstruct
  from loong_jax import generate  # noqa: PLC0415 -- the generation stack, only when needed

  codec = generate.tokenizer_codec(tokenizer_config, autoencoder.make_tokenizer(tokenizer_config),
                                   params, dataclasses.asdict(flat))

  def run(video):
    codes = codec.encode(np.asarray(video))
    return np.clip(codec.decode(codes), -1.0, 1.0), codes

  return run
