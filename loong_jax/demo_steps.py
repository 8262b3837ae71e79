"""The steps of the CPU demo (`loong_jax/demo.py`), one function each: `STEPS[name](config, run)`.

`config` is `configs/demo_cpu.py`'s ConfigDict, `run` the demo's directory. Layout of `run`:

    tokenizer/             video tokenizer run (train_tokenizer.train: checkpoints, metrics)
    tokenizer_eval.npz     held-out clips, their reconstructions and object masks (read by
                           loong_jax.evaluate)
    text.model             SentencePiece model of the captions
    tokens/{images,clips17,clips65}/   token shards (loong_jax/data/pretokenize.py)
    lm/stage{1,2,3}/       LM curriculum runs (metrics.jsonl, checkpoints)
    generated/             <prompt>_<mode>.{mp4,gif,npz,png}, clip_*.npz (faithfulness),
                           prompts.jsonl
    lm_eval.json, report.json, long_video.{md,png}, *.png   (demo_lm_eval.py, evaluate.py)

Each step resumes from its own outputs: the trainers from their checkpoints, pre-tokenization
from its finished shards, generation from the videos already written. `python -m
loong_jax.demo_steps STEP RUN` runs one step on `RUN/demo_config.json`; the demo starts every step
so, in its own process (an interrupted step is killed alone and its memory is returned), and each
step imports only the modules it needs.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
import time

import jax
import ml_collections
import numpy as np
from absl import logging

from loong_jax import cli, tokens
from loong_jax.demo_workdir import load_run_config
from loong_jax import sharding as sharding_lib
from loong_jax.data import encoders, pipeline as pipeline_lib, pretokenize as pretokenize_lib
from loong_jax.data import synthetic, video_io
from loong_jax import demo_codec, demo_prompts
from loong_jax.demo_codec import (flat_config, oracle_encoder, oracle_frames, tokenizer_config,
                                  tokenizer_kind)
from loong_jax.data import text as text_lib
from loong_jax.llm import transformer
from loong_jax.train import tokenizer_step

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "configs")
SOURCES = (("images", 1), ("clips17", 17), ("clips65", 65))
# Clips whose straight motions all start anywhere in the frame, so that the object may reach the
# edge within the clip and rest there (synthetic.SyntheticConfig.wall_fraction = 1), drawn with
# their own seed (`WALLS_SEED_OFFSET`) beside the plain clips: a stage's mix decides how many of
# its clips meet the edge, so stage 1 can keep plain motion while later stages see the rest.
# Pre-tokenized only when `config.pretokenize.<name>` > 0.
WALL_SOURCES = (("walls17", 17), ("walls65", 65))
WALLS_SEED_OFFSET = 1_000
MODES = {True: "reencode", False: "no_reencode"}
LM_VARIANTS = ("", "mmrope", "ardf")  # configs/lm/llama.py VARIANTS, '' = Loong
ORACLE_VIDEO_SIZE = 4_096
WORLD_FIELDS = ("motions", "sizes", "textures", "background_colors")  # synthetic.SyntheticConfig


def synthetic_source(config, frames: tuple[int, ...], num: int, split: str = "train",
                     walls: bool = False):
  """The built-in dataset at the demo's resolution, frame rate and object count; `walls`: the
  wall sources' draws (`WALL_SOURCES`: every straight motion may meet the edge, own seed)."""
  data = config.data
  world = {k: tuple(data[k]) for k in WORLD_FIELDS if k in data}  # runs from before the fields
  if data.get("speed"):
    world["speed"] = float(data.speed)
  if data.get("wall_fraction"):
    world["wall_fraction"] = float(data.wall_fraction)
  if walls:
    world["wall_fraction"] = 1.0   # SyntheticConfig checks that there is a speed
  if data.get("grid"):
    world["grid"] = int(data.grid)
  seed = data.seed + (WALLS_SEED_OFFSET if walls else 0)
  return synthetic.SyntheticVideos(synthetic.SyntheticConfig(
      seed=seed, resolution=data.resolution, num_frames=tuple(frames), fps=(data.fps,),
      max_objects=data.max_objects, num_train=num, num_heldout=num, **world), split)


def token_sources(config) -> list[tuple[str, int, bool]]:
  """`(name, frames, walls)` of the token folders the demo writes: `SOURCES`, and each of
  `WALL_SOURCES` that `config.pretokenize` gives items."""
  return ([(name, frames, False) for name, frames in SOURCES]
          + [(name, frames, True) for name, frames in WALL_SOURCES
             if config.pretokenize.get(name, 0) > 0])


def lm_variant_options(config) -> list[str]:
  """Config-arg options of the demo's LM variant: `config.lm.variant` '' (Loong; also runs
  written before the field existed) -> [], 'mmrope' or 'ardf' [Lumos] -> [variant]
  (`configs/lm/llama.py:apply_variant`)."""
  variant = config.lm.get("variant", "")
  if variant not in LM_VARIANTS:
    raise ValueError(f"config.lm.variant={variant!r}: one of {LM_VARIANTS} ('' = Loong)")
  return [variant] if variant else []


def lm_stage_config(config, run: str, stage: int) -> ml_collections.ConfigDict:
  """`configs/stages/stage{stage}.py:<size>,shards=RUN/tokens[,<variant>]` with the demo's
  overrides."""
  spec = ",".join([f"{CONFIGS}/stages/stage{stage}.py:{config.lm.size}", f"shards={run}/tokens",
                   *lm_variant_options(config)])
  out = cli.load_config_file(spec)
  lm = config.lm
  k = stage - 1
  out.train.steps = int(lm.steps[k])
  out.train.batch_size = int(lm.batch_size[k])
  out.train.log_every, out.train.checkpoint_every = lm.log_every, lm.checkpoint_every
  out.train.eval_every = 0
  out.optim.learning_rate = float(_per_stage(lm.learning_rate, k))
  out.optim.warmup_steps = int(_per_stage(lm.warmup_steps, k))
  if "reset_optimizer" in lm:
    out.init.reset_optimizer = bool(_per_stage(lm.reset_optimizer, k))
  if "seed" in lm:  # the LM's initialisation and data order, every stage
    out.train.seed = int(lm.seed)
  for name, value in lm.get("model", {}).items():  # e.g. num_layers, d_model (configs/lm/llama.py)
    if name not in out.lm:
      raise ValueError(f"config.lm.model.{name}: not a field of the LM config {sorted(out.lm)}")
    out.lm[name] = value
  if out.lm.get("prev_frame_input") and out.lm.attention_mask != "causal":
    # The previous-frame input feeds a slot its next slot's frame-mate: causal models only (ardf).
    out.lm.prev_frame_input = False
    out.lm.prev_frame_radius = 0
    out.lm.copy_head = False
  if "text_dropout" in lm:
    out.data.text_dropout = float(lm.text_dropout)
  if _per_stage(lm.get("caption_contrast", 0.0), k):  # train/lm_step.py: colour words swapped
    out.train.caption_contrast = dict(weight=float(_per_stage(lm.caption_contrast, k)),
                                      ids=demo_prompts.color_word_ids(run))
  if "text_word_dropout" in lm:  # data/pipeline.py: each caption word left out with this chance
    out.data.text_word_dropout = float(lm.text_word_dropout)
  if "length_groups" in lm:  # data/pipeline.py: rows padded to their own source's length
    out.data.length_groups = bool(lm.length_groups)
  if "changed_weight" in lm:  # data/loss_weights.changed_token_weights
    out.data.loss.changed_weight = float(lm.changed_weight)
  if "mixes" in lm:  # per stage {source[@frames]: weight} (stage_sources)
    written = {name: frames for name, frames, _ in token_sources(config)}
    out.data.sources = stage_sources(out.data, dict(lm.mixes[k]), k, written)
  out.vocab.video_size = video_vocab_size(config)
  if lm.get("digit_codes", False):  # llm/code_digits.py: the codec's codes as digits
    out.lm.video_code_levels = video_code_levels(config)
  if "text_size" in lm:
    out.vocab.text_size = int(lm.text_size)
  if out.vocab.text_size < config.text.vocab_size:
    raise ValueError(f"config.text.vocab_size={config.text.vocab_size} exceeds the LM's text "
                     f"vocabulary {out.vocab.text_size} ({spec})")
  if "max_text_len" in config.text:
    out.data.max_text_len = int(config.text.max_text_len)
  longest = max(src["max_frames"] for src in out.data.sources)
  out.train.seq_len = pipeline_lib.required_seq_len(out.data.max_text_len, longest,
                                                    out.data.frame_width**2)
  return out


def stage_sources(data, mix: dict, k: int, written: dict[str, int]) -> list[dict]:
  """The sources of stage `k + 1` from `config.lm.mixes[k]` (`{name: weight}`): `name` is any
  token folder the demo writes (`written`, `{name: frames}` from `token_sources`: images,
  clips17, clips65 and the requested wall folders), optionally `name@frames`, its clips cut to
  their first `frames` frames (1 + 4n), e.g. `clips17@5`: the first two latent frames of the
  17-frame clips. `data` is the stage's `config.data`; weight 0 drops a source."""
  known = dict(written)
  out = []
  for key, weight in mix.items():
    name, _, frames = key.partition("@")
    if name in dict(WALL_SOURCES) and name not in known and weight > 0:
      raise ValueError(f"config.lm.mixes[{k}] (stage {k + 1}): {name!r} is not written: give it "
                       f"items with --config.pretokenize.{name}=N")
    if name not in known:
      raise ValueError(f"config.lm.mixes[{k}] (stage {k + 1}): unknown source {name!r}; known: "
                       f"{sorted(known)} (each may be cut as name@frames)")
    max_frames = known[name]
    if frames:
      try:  # tokens.latent_frames checks 1 + 4n
        valid = tokens.latent_frames(int(frames)) and int(frames) <= max_frames
      except ValueError:
        valid = False
      if not valid:
        raise ValueError(f"config.lm.mixes[{k}]: {key!r}: frames must be 1 + 4n and at most "
                         f"the source's {max_frames}")
      max_frames = int(frames)
    if weight > 0:
      out.append(dict(path=f"{data.root}/{name}", weight=float(weight), max_frames=max_frames))
  return out


def video_vocab_size(config) -> int:
  """The LM's video ids: `config.lm.video_size` when set, else the learned tokenizer's codebook
  or the oracle's 4,096 codes (16 levels per channel: `encoders.pooling_stand_in_encoder`)."""
  if config.lm.get("video_size", 0):
    return int(config.lm.video_size)
  if tokenizer_kind(config) == "oracle":
    return ORACLE_VIDEO_SIZE
  return int(tokenizer_config(config).tokenizer.quantizer.codebook_size)


def video_code_levels(config) -> tuple[int, ...]:
  """The digits of the codec's codes (`config.lm.digit_codes`): the learned FSQ tokenizer's
  levels, or the oracle's (L, L, L) (L levels per RGB channel, red the lowest digit)."""
  if tokenizer_kind(config) == "oracle":
    return (encoders.pooling_levels(video_vocab_size(config)),) * 3
  quantizer = tokenizer_config(config).tokenizer.quantizer
  if quantizer.type != "fsq":
    raise ValueError(f"config.lm.digit_codes needs FSQ codes (their levels are the digits); the "
                     f"tokenizer's quantizer is {quantizer.type!r}")
  return tuple(int(l) for l in quantizer.levels)


def _per_stage(value, k: int):
  """A per-stage tuple's entry `k`, or one value for every stage."""
  return value[k] if isinstance(value, (tuple, list)) else value


def video_size(config, run: str) -> int:
  """The LM's video vocabulary (the oracle codes fit it by construction)."""
  return int(lm_stage_config(config, run, 1).vocab.video_size)


def write_tokenizer_eval(config, run: str, reconstruct, batch_size: int, codebook_size: int):
  """Reconstruct held-out 17-frame clips 0..N-1 and write tokenizer_eval.npz: real, recon uint8
  `[N, 17, H, W, 3]`, codes, codebook_size, and for the object metrics (`loong_jax.eval.objects`)
  masks bool `[N, 17, H, W]` and backgrounds uint8 `[N, H, W, 3]`.

  `reconstruct(video [B, 17, H, W, 3] in [-1, 1]) -> (recon in [-1, 1], codes)`.
  """
  from loong_jax.eval import objects  # noqa: PLC0415 -- see the module docstring

  held_out = synthetic_source(config, (17,), config.tokenizer.eval_clips, "heldout")
  real = np.stack([held_out[i]["video"] for i in range(len(held_out))])
  masks, backgrounds = zip(*(objects.object_masks(held_out, i) for i in range(len(held_out))))
  recon, codes = [], []
  for begin in range(0, len(real), batch_size):
    out, ids = reconstruct(real[begin:begin + batch_size].astype(np.float32) / 127.5 - 1.0)
    recon.append(video_io.to_uint8(out))
    codes.append(np.asarray(ids))
  recon, codes = np.concatenate(recon), np.concatenate(codes)
  np.savez_compressed(os.path.join(run, "tokenizer_eval.npz"), real=real, recon=recon,
                      codes=codes, codebook_size=codebook_size, masks=np.stack(masks),
                      backgrounds=np.stack(backgrounds))
  mse = np.mean(((real.astype(np.float64) - recon) / 255.0) ** 2)
  print(f"tokenizer: held-out PSNR {-10 * np.log10(max(mse, 1e-10)):.2f} dB on {len(real)} "
        f"17-frame clips", flush=True)


def train_tokenizer(config, run: str):
  """Train the video tokenizer on built-in clips; write tokenizer_eval.npz on held-out clips.
  The oracle tokenizer trains nothing: its reconstructions fill tokenizer_eval.npz."""
  if tokenizer_kind(config) == "oracle":
    size = video_size(config, run)
    encode = jax.jit(oracle_encoder(config, size))
    decode = jax.jit(encoders.pooling_block_decoder(size))

    def oracle(video):
      codes = encode(video)
      return decode(codes), codes

    print("tokenizer: oracle (pooling codec), nothing to train", flush=True)
    write_tokenizer_eval(config, run, oracle, config.pretokenize.batch_size,
                         encoders.pooling_levels(size) ** 3)
    return
  from loong_jax import train_tokenizer as trainer  # noqa: PLC0415 -- see the module docstring

  tc = tokenizer_config(config)
  tick = time.time()
  result = trainer.train(tc, os.path.join(run, "tokenizer"),
                         source=synthetic_source(config, (tc.data.frames,), 100_000),
                         image_source=synthetic_source(config, (1,), 100_000))
  if result.preempted:
    raise SystemExit("tokenizer: stopped by SIGTERM after a checkpoint; re-run to resume")
  state = result.state
  print(f"tokenizer: {tc.image_phase.steps} image + {tc.train.steps} clip steps (this run from "
        f"clip step {result.start_step}) in {time.time() - tick:.0f} s", flush=True)
  recon_fn = jax.jit(functools.partial(tokenizer_step.reconstruct, config=tc))
  reconstruct = demo_codec.canonical_reconstruct(
      config, tc.tokenizer, state.ema_params,
      lambda v: recon_fn(state.ema_params, state.codebook_stats, v))
  write_tokenizer_eval(config, run, reconstruct, tc.train.batch_size,
                       tc.tokenizer.quantizer.codebook_size)


def train_text(config, run: str):
  """SentencePiece on training captions of every length (images and clips)."""
  n = config.text.train_captions
  source = synthetic_source(config, (1, 17, 65), n)
  print(f"text: training a {config.text.vocab_size}-piece model on {n} captions", flush=True)
  model = text_lib.train((source.caption(i) for i in range(n)), os.path.join(run, "text.model"),
                         config.text.vocab_size, model_type=config.text.get("model_type", "unigram"))
  print(f"text: {model.vocab_size} pieces -> {model.model_path}", flush=True)


def pretokenize(config, run: str):
  """Token shards of images, 17-frame and 65-frame clips (and the wall clips that
  `config.pretokenize` asks for: `token_sources`) with the trained tokenizer."""
  stage = lm_stage_config(config, run, 1)
  vocab = tokens.Vocab(stage.vocab.text_size, stage.vocab.video_size)
  kind = tokenizer_kind(config)
  encode_fn = demo_codec.video_encoder(config, run, vocab.video_size)
  text_tokenizer = text_lib.TextTokenizer(os.path.join(run, "text.model"))
  p = config.pretokenize
  for name, frames, walls in token_sources(config):
    source = synthetic_source(config, (frames,), p[name], walls=walls)
    print(f"pretokenize: {name}: {len(source)} items of {frames} frames", flush=True)
    pretokenize_lib.pretokenize(
        source, encode_fn, text_tokenizer, os.path.join(run, "tokens", name), vocab=vocab,
        shard_size=p.shard_size, batch_size=p.batch_size,
        max_text_len=stage.data.max_text_len,
        settings={"source": f"synthetic {name}",
                  "encoder": "pooling (oracle)" if kind == "oracle" else "tokenizer",
                  "tokenizer_checkpoint": os.path.join(run, "tokenizer")})


def train_lm_stage(stage: int, config, run: str):
  """One curriculum stage in RUN/lm/stage{stage} (starts from the previous stage)."""
  from loong_jax import train_lm  # noqa: PLC0415 -- see the module docstring

  result = train_lm.train(lm_stage_config(config, run, stage), os.path.join(run, "lm"))
  if result.preempted:
    raise SystemExit(f"lm stage {stage}: stopped by SIGTERM after a checkpoint; re-run to resume")


def inference_config(config, run: str, reencode: bool) -> ml_collections.ConfigDict:
  """`configs/inference.py`'s layout for the stage-3 LM of this run; the decoder and its
  `masked` settings are `configs/inference.py:<size>[,<variant>]`'s (AR-DF: masked)."""
  stage = lm_stage_config(config, run, 3)
  defaults = cli.load_config_file(f"{CONFIGS}/inference.py:" + ",".join(
      [config.lm.size, *lm_variant_options(config)])).inference
  g = config.generate
  out = ml_collections.ConfigDict()
  for block in ("vocab", "lm", "mesh", "sharding"):
    out[block] = stage[block]
  out.inference = dict(
      decoder=defaults.decoder, masked=defaults.masked.to_dict(),
      temperature=g.temperature, top_k=g.top_k, top_p=g.get("top_p", 1.0),
      guidance_scale=g.guidance_scale,
      continuation_temperature=g.get("continuation_temperature", None),
      frame_temperature=g.get("frame_temperature", None),
      first_frame_candidates=g.get("first_frame_candidates", 1),
      rerank_guidance=g.get("rerank_guidance", 1.0),
      first_frame_min_object_pixels=g.get("first_frame_min_object_pixels", 0),
      reencode_first_frame=g.get("reencode_first_frame", False),
      continuation_candidates=g.get("continuation_candidates", 1),
      continuation_keep=g.get("continuation_keep", 0.7),
      clip_latent_frames=g.clip_latent_frames, cond_latent_frames=g.cond_latent_frames,
      reencode=reencode, reencode_margin=g.get("reencode_margin", 0.0),
      height=config.data.resolution, width=config.data.resolution,
      fps=float(config.data.fps), max_text_len=stage.data.max_text_len, prompt_multiple=16,
      # The tokenizer's own training config (demo overrides included), written by its run.
      text_model=os.path.join(run, "text.model"),
      tokenizer_config=os.path.join(run, "tokenizer", "config.json"),
      tokenizer_dir=os.path.join(run, "tokenizer"), tokenizer_kind=tokenizer_kind(config),
      oracle_frames=oracle_frames(config), flat_codes=dataclasses.asdict(flat_config(config)))
  return out


def video_name(index: int, prompt: dict, reencode: bool) -> str:
  return f"{index:02d}_{prompt['color']}_{prompt['shape']}_{MODES[reencode]}"


def clip_name(index: int, prompt: dict) -> str:
  return f"clip_{index:02d}_{prompt['color']}_{prompt['shape']}_{prompt['motion']}"


def load_generation(ic, run: str):
  """`(mesh, rules, params, codec, encode_text)` of the run's stage-3 LM, video codec and text
  model, for `inference_config` `ic`."""
  from loong_jax import generate as generate_lib  # noqa: PLC0415 -- see the module docstring

  mesh, rules = sharding_lib.make_mesh(ic.mesh), sharding_lib.rules(ic.sharding)
  model = transformer.Transformer(transformer.LMConfig.from_config(ic.lm))
  params = generate_lib.restore_params(os.path.join(run, "lm", "stage3"), model, mesh, rules)
  inf = ic.inference
  codec = generate_lib.load_codec(inf.tokenizer_config, inf.tokenizer_dir, inf.tokenizer_kind,
                                  ic.vocab.video_size, inf.oracle_frames, inf.flat_codes)
  return mesh, rules, params, codec, generate_lib.load_text_encoder(inf.text_model)


def generate(config, run: str):
  """A 60-second video per prompt and re-encoding mode: mp4, gif, npz (lossless, for the
  evaluation) and a frame strip; `generate.faithfulness_prompts` short clips of
  `generate.faithfulness_frames` frames in one batch (npz); then generated/prompts.jsonl."""
  from loong_jax import demo_plots  # noqa: PLC0415 -- matplotlib: generate and plots only
  from loong_jax import generate as generate_lib  # noqa: PLC0415 -- see the module docstring

  g, out_dir = config.generate, os.path.join(run, "generated")
  os.makedirs(out_dir, exist_ok=True)
  prompts = list(g.prompts)
  clips = demo_prompts.faithfulness_prompts(config)
  params = codec = encode_text = mesh = rules = None

  def load(ic):
    nonlocal params, codec, encode_text, mesh, rules
    if params is None:
      mesh, rules, params, codec, encode_text = load_generation(ic, run)

  clip_names = [clip_name(i, p) for i, p in enumerate(clips)]
  if all(os.path.exists(os.path.join(out_dir, n + ".npz")) for n in clip_names):
    print("generate: faithfulness clips already written", flush=True)
  else:
    ic = inference_config(config, run, True)
    load(ic)
    frames = g.faithfulness_frames
    print(f"generate: {len(clips)} faithfulness clips of {frames} frames, one batch", flush=True)
    out = generate_lib.generate_videos(ic, params, [p["prompt"] for p in clips],
                                       frames / ic.inference.fps, g.seed, codec, encode_text,
                                       mesh, rules,
                                       **demo_prompts.first_frame_conditioning(config, clips))
    for name, video in zip(clip_names, out.video):
      path = os.path.join(out_dir, name)
      np.savez_compressed(path + ".tmp.npz", video=video_io.to_uint8(video),
                          fps=ic.inference.fps)
      os.replace(path + ".tmp.npz", path + ".npz")
  for reencode in g.reencode:
    names = [video_name(i, p, reencode) for i, p in enumerate(prompts)]
    if all(os.path.exists(os.path.join(out_dir, n + ".npz")) for n in names):
      print(f"generate: {MODES[reencode]} videos already written", flush=True)
      continue
    ic = inference_config(config, run, reencode)
    load(ic)
    print(f"generate: {len(prompts)} prompts x {g.seconds:.0f} s, {MODES[reencode]}", flush=True)
    out = generate_lib.generate_videos(ic, params, [p["prompt"] for p in prompts], g.seconds,
                                       g.seed, codec, encode_text, mesh, rules,
                                       **demo_prompts.first_frame_conditioning(config, prompts))
    for name, video in zip(names, out.video):
      path = os.path.join(out_dir, name)
      generate_lib.write_video(path + ".mp4", video, ic.inference.fps)
      frames = video_io.to_uint8(video)
      demo_plots.frame_strip(frames, path + ".png", g.strip_frames, ic.inference.fps)
      np.savez_compressed(path + ".tmp.npz", video=frames, fps=ic.inference.fps)
      os.replace(path + ".tmp.npz", path + ".npz")
      print(f"generate: wrote {path}.{{mp4,gif,npz,png}}", flush=True)
  def common(p):
    return {"prompt": p["prompt"], "split": p["split"], "fps": float(config.data.fps),
            "attributes": {"color": p["color"], "shape": p["shape"], "motion": p["motion"]}}

  # The LM learned motions at the speeds of every clip length it saw; the slowest (longest clip)
  # sets the direction reader's `still` threshold (`probe.still_threshold`); a constant-speed
  # world (config.data.speed) sets it from its one speed.
  speed = ({"speed": float(config.data.speed)} if config.data.get("speed")
           else {"speed_frames": max(frames for _, frames in SOURCES)})
  entries = [dict(common(p), file=name + ".npz", kind="clip", **speed)
             for p, name in zip(clips, clip_names)]
  for i, p in enumerate(prompts):
    entries.extend(dict(common(p), file=video_name(i, p, r) + ".npz", kind="long", reencode=r)
                   for r in g.reencode)
  tmp = os.path.join(out_dir, f"prompts.jsonl.tmp-{os.getpid()}")
  with open(tmp, "w") as f:
    f.writelines(json.dumps(e) + "\n" for e in entries)
  os.replace(tmp, os.path.join(out_dir, "prompts.jsonl"))


def evaluate(config, run: str):
  """The LM's diagnostics (`loong_jax/demo_lm_eval.py`: RUN/lm_eval.json), then
  `loong_jax.evaluate` over the run: report.json, long_video.{md,png}."""
  from loong_jax import demo_lm_eval  # noqa: PLC0415 -- see the module docstring
  from loong_jax import evaluate as evaluate_lib  # noqa: PLC0415

  measured = demo_lm_eval.measure(config, run)  # every stage's text gap, stage 3's continuation
  if measured is not None:
    tmp = os.path.join(run, f"lm_eval.json.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
      json.dump(measured, f, indent=1)
    os.replace(tmp, os.path.join(run, "lm_eval.json"))

  evaluate_lib.evaluate(run, probe_clips=config.evaluate.probe_clips,
                        window_s=config.evaluate.window_s,
                        reader="blocks" if tokenizer_kind(config) == "oracle" else "probe")


def plots(config, run: str):
  """Loss curves per stage, per-frame loss, reconstruction examples (PNG files in RUN)."""
  from loong_jax import demo_plots  # noqa: PLC0415 -- matplotlib: generate and plots only
  demo_plots.training_plots(run, config.tokenizer.example_clips)


STEPS = {
    "tokenizer": train_tokenizer,
    "text": train_text,
    "pretokenize": pretokenize,
    "lm_stage1": functools.partial(train_lm_stage, 1),
    "lm_stage2": functools.partial(train_lm_stage, 2),
    "lm_stage3": functools.partial(train_lm_stage, 3),
    "generate": generate,
    "evaluate": evaluate,
    "plots": plots,
}


def main(argv: list[str]):
  if len(argv) != 3 or argv[1] not in STEPS:
    raise SystemExit(f"usage: python -m loong_jax.demo_steps STEP RUN; STEP in {list(STEPS)}")
  logging.set_verbosity(logging.WARNING)
  name, run = argv[1], argv[2]
  STEPS[name](load_run_config(run), run)


if __name__ == "__main__":
  main(sys.argv)
