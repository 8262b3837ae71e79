"""Text to video: `python -m loong_jax.generate --workdir RUN --prompt "..." --out v.mp4`.

Loads the LM parameters of a `train_lm` run (the latest orbax checkpoint under RUN/checkpoints;
only `params` is read), the text tokenizer (SentencePiece, `inference.text_model` or
RUN/text.model) and the video tokenizer (`inference.tokenizer_config` + `inference.tokenizer_dir`),
then generates clip by clip (`inference/long_video.py`) and writes an mp4 and a gif per prompt.

  --seconds S           any length (60 s at 6.5 fps = 390 frames = 8 clips of 17 latent frames)
  --prompts_file FILE   one prompt per line, generated as one batch; outputs get a _000 suffix
  --seed N              the same seed, prompts and config give the same video
  --config configs/inference.py:<size>   sampling, clip and size settings (see that file)

A prompt longer than `inference.max_text_len` ids is truncated with a warning; an empty prompt
generates unconditionally (`<no_text>`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from absl import flags, logging

from loong_jax import cli, tokens
from loong_jax import sharding as sharding_lib
from loong_jax.data import video_io
from loong_jax.inference import decode, long_video, masked_decode, sampling
from loong_jax.llm import transformer
from loong_jax.train import checkpoint as checkpoint_lib

# Flag holders, created by define_flags() when the module runs as a program.
_CONFIG = _WORKDIR = _PROMPT = _PROMPTS_FILE = _SECONDS = _OUT = _SEED = None


def define_flags():
  """Define this entry point's flags (only when run as a program, so that modules that
  define flags of the same names can be imported side by side, e.g. by tests)."""
  global _CONFIG, _WORKDIR, _PROMPT, _PROMPTS_FILE, _SECONDS, _OUT, _SEED
  _CONFIG = cli.define_config_flag("configs/inference.py:tiny")
  _WORKDIR = flags.DEFINE_string("workdir", None, "train_lm run directory (checkpoints/).")
  _PROMPT = flags.DEFINE_string("prompt", "", "Text prompt ('' = unconditional).")
  _PROMPTS_FILE = flags.DEFINE_string("prompts_file", None, "One prompt per line, one batch.")
  _SECONDS = flags.DEFINE_float("seconds", 10.0, "Video length in seconds (any length).")
  _OUT = flags.DEFINE_string("out", "video.mp4", "Output mp4 path; a gif is written beside it.")
  _SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")

TextEncoder = Callable[[str], np.ndarray]


def restore_params(workdir: str, model: transformer.Transformer, mesh, rules):
  """The `params` of the latest checkpoint in `workdir/checkpoints`, placed on `mesh`.

  The layout is `train.checkpoint.Checkpointer`'s: item `state` = {step, params, opt_state}.
  """
  def target():
    shapes = nn.unbox(jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32))["params"]))
    shardings = decode.param_shardings(model, mesh, rules)
    return {"params": jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings)}

  # Partial restore: the optimizer state and data position in the same step are never read.
  return checkpoint_lib.restore_fields(
      os.path.join(workdir, "checkpoints"), target,
      name="--workdir (a loong_jax.train_lm run)")["params"]


def load_text_encoder(path: str) -> TextEncoder:
  """SentencePiece `str -> [N] int32` text ids (`loong_jax.data.text`)."""
  try:
    from loong_jax.data import text  # the data package's SentencePiece wrapper
  except ImportError as e:
    raise RuntimeError("no text tokenizer: loong_jax.data.text (SentencePiece) is not in this "
                       "checkout") from e
  return text.TextTokenizer(path).encode


def encode_prompt(prompt: str, encode_text: TextEncoder, max_len: int,
                  vocab: tokens.Vocab) -> np.ndarray | None:
  """Text ids of `prompt` cut to `max_len` (with a warning); None for an empty prompt."""
  if not prompt.strip():
    return None
  ids = np.asarray(encode_text(prompt), np.int32)
  if ids.size and not np.all(vocab.is_text(ids)):
    raise ValueError(f"text tokenizer returned ids outside [0, {vocab.text_size})")
  if len(ids) > max_len:
    logging.warning("prompt %r is %d text ids, over inference.max_text_len=%d: truncated",
                    prompt, len(ids), max_len)
    ids = ids[:max_len]
  return ids


def oracle_codec(video_size: int, frames: str = "mean") -> long_video.VideoCodec:
  """The demo's oracle tokenizer as a codec: the pooling encoder (a latent frame's 4 frames
  read as their `frames`: 'mean' or 'last') and its block decoder (`loong_jax.data.encoders`),
  whose re-encoding gives back the same codes."""
  from loong_jax.data import encoders  # noqa: PLC0415 -- needs the tokenizer package

  encode = jax.jit(encoders.pooling_stand_in_encoder(video_size, frames=frames))
  decode_fn = jax.jit(encoders.pooling_block_decoder(video_size))
  # Exact: a code is a function of its block's pixels, and decode -> encode gives it back.
  return long_video.VideoCodec(lambda v: np.asarray(encode(v)), lambda i: np.asarray(decode_fn(i)),
                               4, 8, lambda v, previous, margin: np.asarray(encode(v)))


def load_codec(tokenizer_config: str, tokenizer_dir: str, kind: str = "learned",
               video_size: int = 8_192, oracle_frames: str = "mean",
               flat_codes=None) -> long_video.VideoCodec:
  """The video codec of `kind`: 'learned', the trained video tokenizer (EMA generator weights of
  its latest checkpoint; `flat_codes`, a `data/flat_codes.py` config, canonicalises its flat
  blocks as pre-tokenization did), or 'oracle' (`oracle_codec(video_size, oracle_frames)`; no
  files read)."""
  if kind == "oracle":
    return oracle_codec(video_size, oracle_frames)
  if kind != "learned":
    raise ValueError(f"inference.tokenizer_kind={kind!r} unknown; known: 'learned', 'oracle'")
  if not tokenizer_config or not tokenizer_dir:
    raise RuntimeError("no video tokenizer: set --config.inference.tokenizer_config (e.g. "
                       "configs/tokenizer/magvit2.py:loong_246m) and "
                       "--config.inference.tokenizer_dir (its training run)")
  try:
    from loong_jax.tokenizer import autoencoder  # noqa: F401 -- the video tokenizer package
    from loong_jax.data import encoders  # noqa: PLC0415 -- needs the tokenizer package
  except ImportError as e:
    raise RuntimeError("no video tokenizer: the loong_jax.tokenizer package is not in this "
                       "checkout") from e
  config = cli.load_config_file(tokenizer_config).tokenizer
  model, params = encoders.restore_tokenizer(config, tokenizer_dir, "inference.tokenizer_dir")
  return tokenizer_codec(config, model, params, flat_codes)


def tokenizer_codec(tokenizer_config, model, params, flat_codes=None) -> long_video.VideoCodec:
  """A trained tokenizer (`model` with generator `params`, built from the `tokenizer` config
  block) as a codec; `flat_codes` (a `data/flat_codes.py` config) canonicalises its encoder's
  flat blocks at the tokenizer's own temporal and spatial factors."""
  from loong_jax.data import flat_codes as flat_lib  # noqa: PLC0415 -- the tokenizer package
  from loong_jax.tokenizer import autoencoder  # noqa: PLC0415

  # The weights are an argument, not constants folded into each program: quicker to compile,
  # and one compiled program per shape serves every run (the persistent compilation cache).
  apply = jax.jit(model.apply, static_argnames="method")
  variables = {"params": params}

  def encode(v):
    return apply(variables, v, method="encode")

  def decode_fn(i):
    return apply(variables, i, method="decode")

  def sticky(v, p, m):
    return apply(variables, v, p, m, method="reencode")

  auto = autoencoder.AutoencoderConfig.from_config(tokenizer_config)
  encode_fn = flat_lib.canonical_encoder(lambda v: np.asarray(encode(v)),
                                         flat_lib.FlatCodesConfig.from_config(flat_codes),
                                         auto.temporal_factor, auto.spatial_factor)
  canonicalise = getattr(encode_fn, "canonicalise", lambda video, codes: codes)

  def reencode_fn(video, previous, margin):
    return canonicalise(video, np.asarray(sticky(video, previous, margin)))

  return long_video.VideoCodec(encode_fn, lambda i: np.asarray(decode_fn(i)),
                               auto.temporal_factor, auto.spatial_factor, reencode_fn)


def num_frames(seconds: float, fps: float) -> int:
  """Frames of a `seconds` video (at least one)."""
  return max(1, round(seconds * fps))


DECODERS = ("autoregressive", "masked")


def make_decoder(config, model: transformer.Transformer, vocab: tokens.Vocab, mesh=None,
                 rules=(), temperature: float | None = None) -> decode.Decoder:
  """The decoder `config.inference.decoder` names: 'autoregressive' (token by token, causal
  models) or 'masked' (AR-DF frame-by-frame parallel decoding, `inference.masked` settings).
  A config without the field (older runs) decodes token by token. `temperature` replaces
  `inference.temperature` when given."""
  inf = config.inference
  kind = inf.get("decoder", "autoregressive")
  sampling_config = sampling.SamplingConfig.from_config(inf)
  if temperature is not None:
    sampling_config = dataclasses.replace(sampling_config, temperature=float(temperature))
  if kind == "autoregressive":
    return decode.Decoder(model, vocab, sampling_config, mesh=mesh, rules=rules,
                          prompt_multiple=inf.prompt_multiple)
  if kind == "masked":
    masked = (masked_decode.MaskedConfig.from_config(inf.masked) if "masked" in inf
              else masked_decode.MaskedConfig())
    return masked_decode.MaskedDecoder(model, vocab, sampling_config, masked, mesh=mesh,
                                       rules=rules, prompt_multiple=inf.prompt_multiple)
  raise ValueError(f"config.inference.decoder={kind!r}; known: {DECODERS}")


def generate_videos(config, params, prompts: Sequence[str], seconds: float, seed: int,
                    codec: long_video.VideoCodec, encode_text: TextEncoder | None,
                    mesh=None, rules=(),
                    first_frame_branches: Sequence[tuple[float, Sequence[str]]] | None = None,
                    first_frame_contrasts: Sequence[tuple[float, Sequence[Sequence[str]]]]
                    | None = None) -> long_video.LongVideo:
  """Videos `[B, frames, H, W, 3]` in [-1, 1] for B prompts (see `long_video.generate`).

  `encode_text` may be None only when every prompt is empty. `first_frame_branches`: composed
  conditioning of the first latent frame, `[(weight, B prompts)]` (`long_video.generate`).
  `first_frame_contrasts`: `[(weight, B lists of alternative captions)]` that re-rank the first
  frame's candidates (`rerank.best_first_frames`).
  """
  vocab = tokens.Vocab(config.vocab.text_size, config.vocab.video_size)
  inf = config.inference
  model = transformer.Transformer(transformer.LMConfig.from_config(config.lm))
  decoder = make_decoder(config, model, vocab, mesh, rules)
  continue_decoder = None
  if inf.get("continuation_temperature") is not None:  # the clips after the first
    continue_decoder = make_decoder(config, model, vocab, mesh, rules,
                                    temperature=inf.continuation_temperature)
  if any(p.strip() for p in prompts) and encode_text is None:
    raise RuntimeError("a non-empty prompt needs a text tokenizer")
  text_ids = [encode_prompt(p, encode_text, inf.max_text_len, vocab) for p in prompts]
  branches = [(float(w), [encode_prompt(p, encode_text, inf.max_text_len, vocab) for p in texts])
              for w, texts in first_frame_branches or ()]
  contrasts = [(float(w), [[encode_prompt(a, encode_text, inf.max_text_len, vocab) for a in alts]
                           for alts in per_prompt])
               for w, per_prompt in first_frame_contrasts or ()]
  clip_config = long_video.LongVideoConfig(
      clip_latent_frames=inf.clip_latent_frames, cond_latent_frames=inf.cond_latent_frames,
      reencode=inf.reencode, reencode_margin=float(inf.get("reencode_margin", 0.0)),
      height=inf.height, width=inf.width,
      frame_temperature=inf.get("frame_temperature", None),
      first_frame_candidates=int(inf.get("first_frame_candidates", 1)),
      rerank_guidance=float(inf.get("rerank_guidance", 1.0)),
      first_frame_min_object_pixels=int(inf.get("first_frame_min_object_pixels", 0)),
      object_contrast=float(inf.get("object_contrast", 0.25)),
      reencode_first_frame=bool(inf.get("reencode_first_frame", False)),
      continuation_candidates=int(inf.get("continuation_candidates", 1)),
      continuation_keep=float(inf.get("continuation_keep", 0.7)))
  frames = num_frames(seconds, inf.fps)
  total = len(long_video.clip_schedule(frames, clip_config, codec.temporal_stride))
  with tqdm.tqdm(total=total, unit="clip", desc=f"{frames} frames") as bar:
    return long_video.generate(decoder, params, text_ids, frames, codec, clip_config,
                               jax.random.key(seed), on_clip=lambda done, _: bar.update(1),
                               continue_decoder=continue_decoder,
                               first_frame_branches=branches or None,
                               first_frame_contrasts=contrasts or None)


def write_video(path: str, video: np.ndarray, fps: float) -> list[str]:
  """Write `[T, H, W, 3]` in [-1, 1] as `path` (mp4) and the same name with .gif; the paths."""
  frames = video_io.to_uint8(video)
  gif = os.path.splitext(path)[0] + ".gif"
  for out in (path, gif):
    video_io.write_video(out, frames, fps)
  return [path, gif]


def output_paths(out: str, count: int) -> list[str]:
  """`out` for one video; `stem_000.ext`, `stem_001.ext`, ... for a batch."""
  if count == 1:
    return [out]
  stem, ext = os.path.splitext(out)
  return [f"{stem}_{i:03d}{ext}" for i in range(count)]


def main(argv):
  del argv
  if not _WORKDIR.value:
    raise SystemExit("error: --workdir is required")
  config = _CONFIG.value
  prompts = [_PROMPT.value]
  if _PROMPTS_FILE.value:
    with open(_PROMPTS_FILE.value) as fp:
      prompts = [line.rstrip("\n") for line in fp]
  inf = config.inference
  try:
    codec = load_codec(inf.tokenizer_config, inf.tokenizer_dir,
                       inf.get("tokenizer_kind", "learned"), config.vocab.video_size,
                       inf.get("oracle_frames", "mean"), inf.get("flat_codes", None))
    encode_text = None
    if any(p.strip() for p in prompts):
      encode_text = load_text_encoder(inf.text_model or os.path.join(_WORKDIR.value,
                                                                     "text.model"))
  except (RuntimeError, FileNotFoundError) as e:
    raise SystemExit(f"error: {e}") from e
  model = transformer.Transformer(transformer.LMConfig.from_config(config.lm))
  mesh = sharding_lib.make_mesh(config.mesh)
  rules = sharding_lib.rules(config.sharding)
  params = restore_params(_WORKDIR.value, model, mesh, rules)
  out = generate_videos(config, params, prompts, _SECONDS.value, _SEED.value, codec, encode_text,
                        mesh, rules)
  for path, video in zip(output_paths(_OUT.value, len(prompts)), out.video):
    print("wrote", " and ".join(write_video(path, video, inf.fps)))


if __name__ == "__main__":
  define_flags()
  cli.run(main)
