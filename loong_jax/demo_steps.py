"""The steps of the CPU demo (`loong_jax/demo.py`), one function each: `STEPS[name](config, run)`.

`config` is `configs/demo_cpu.py`'s ConfigDict, `run` the demo's directory. Layout of `run`:

    tokenizer/             video tokenizer run (train_tokenizer.train: checkpoints, metrics)
    tokenizer_eval.npz     held-out clips and their reconstructions (read by loong_jax.evaluate)
    text.model             SentencePiece model of the captions
    tokens/{images,clips17,clips65}/   token shards (loong_jax/data/pretokenize.py)
    lm/stage{1,2,3}/       LM curriculum runs (metrics.jsonl, checkpoints)
    generated/             <prompt>_<mode>.{mp4,gif,npz,png}, prompts.jsonl
    report.json, long_video.{md,png}, *.png plots

Each step resumes from its own outputs: the trainers from their checkpoints, pre-tokenization
from its finished shards, generation from the videos already written. `python -m
loong_jax.demo_steps STEP RUN` runs one step on `RUN/demo_config.json`; the demo starts every step
so, in its own process (an interrupted step is killed alone and its memory is returned), and each
step imports only the modules it needs.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time

import jax
import ml_collections
import numpy as np
from absl import logging

from loong_jax import cli, demo_plots, tokens
from loong_jax import sharding as sharding_lib
from loong_jax.data import encoders, pretokenize as pretokenize_lib, synthetic
from loong_jax.data import text as text_lib
from loong_jax.llm import transformer
from loong_jax.train import tokenizer_step

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "configs")
SOURCES = (("images", 1), ("clips17", 17), ("clips65", 65))
MODES = {True: "reencode", False: "no_reencode"}
LM_VARIANTS = ("", "mmrope", "ardf")  # configs/lm/llama.py VARIANTS, '' = Loong
WORLD_FIELDS = ("motions", "sizes", "textures", "background_colors")  # synthetic.SyntheticConfig


def synthetic_source(config, frames: tuple[int, ...], num: int, split: str = "train"):
  """The built-in dataset at the demo's resolution, frame rate and object count."""
  data = config.data
  world = {k: tuple(data[k]) for k in WORLD_FIELDS if k in data}  # runs from before the fields
  return synthetic.SyntheticVideos(synthetic.SyntheticConfig(
      seed=data.seed, resolution=data.resolution, num_frames=tuple(frames), fps=(data.fps,),
      max_objects=data.max_objects, num_train=num, num_heldout=num, **world), split)


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
  return out


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
  out.train.steps = int(config.lm.steps[stage - 1])
  out.train.batch_size = int(config.lm.batch_size[stage - 1])
  out.train.log_every, out.train.checkpoint_every = config.lm.log_every, config.lm.checkpoint_every
  out.train.eval_every = 0
  out.optim.learning_rate = config.lm.learning_rate
  out.optim.warmup_steps = config.lm.warmup_steps
  if out.vocab.text_size < config.text.vocab_size:
    raise ValueError(f"config.text.vocab_size={config.text.vocab_size} exceeds the LM's text "
                     f"vocabulary {out.vocab.text_size} ({spec})")
  return out


def _to_uint8(video: np.ndarray) -> np.ndarray:
  return np.clip(np.round((np.asarray(video) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def train_tokenizer(config, run: str):
  """Train the video tokenizer on built-in clips; write tokenizer_eval.npz on held-out clips."""
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
  held_out = synthetic_source(config, (17,), config.tokenizer.eval_clips, "heldout")
  real = np.stack([held_out[i]["video"] for i in range(len(held_out))])
  recon_fn = jax.jit(functools.partial(tokenizer_step.reconstruct, config=tc))
  recon, codes = [], []
  for begin in range(0, len(real), tc.train.batch_size):
    video = real[begin:begin + tc.train.batch_size].astype(np.float32) / 127.5 - 1.0
    out, ids = recon_fn(state.ema_params, state.codebook_stats, video)
    recon.append(_to_uint8(out))
    codes.append(np.asarray(ids))
  recon, codes = np.concatenate(recon), np.concatenate(codes)
  np.savez_compressed(os.path.join(run, "tokenizer_eval.npz"), real=real, recon=recon,
                      codes=codes, codebook_size=tc.tokenizer.quantizer.codebook_size)
  mse = np.mean(((real.astype(np.float64) - recon) / 255.0) ** 2)
  print(f"tokenizer: held-out PSNR {-10 * np.log10(max(mse, 1e-10)):.2f} dB on {len(real)} "
        f"17-frame clips (EMA weights)", flush=True)


def train_text(config, run: str):
  """SentencePiece on training captions of every length (images and clips)."""
  n = config.text.train_captions
  source = synthetic_source(config, (1, 17, 65), n)
  print(f"text: training a {config.text.vocab_size}-piece model on {n} captions", flush=True)
  model = text_lib.train((source.caption(i) for i in range(n)), os.path.join(run, "text.model"),
                         config.text.vocab_size)
  print(f"text: {model.vocab_size} pieces -> {model.model_path}", flush=True)


def pretokenize(config, run: str):
  """Token shards of images, 17-frame and 65-frame clips with the trained tokenizer."""
  stage = lm_stage_config(config, run, 1)
  vocab = tokens.Vocab(stage.vocab.text_size, stage.vocab.video_size)
  encode_fn = encoders.tokenizer_encoder(tokenizer_config(config).tokenizer,
                                         os.path.join(run, "tokenizer"))
  text_tokenizer = text_lib.TextTokenizer(os.path.join(run, "text.model"))
  p = config.pretokenize
  for name, frames in SOURCES:
    source = synthetic_source(config, (frames,), p[name])
    print(f"pretokenize: {name}: {len(source)} items of {frames} frames", flush=True)
    pretokenize_lib.pretokenize(
        source, encode_fn, text_tokenizer, os.path.join(run, "tokens", name), vocab=vocab,
        shard_size=p.shard_size, batch_size=p.batch_size,
        max_text_len=stage.data.max_text_len,
        settings={"source": f"synthetic {name}", "encoder": "tokenizer",
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
      temperature=g.temperature, top_k=g.top_k, top_p=1.0, guidance_scale=g.guidance_scale,
      clip_latent_frames=g.clip_latent_frames, cond_latent_frames=g.cond_latent_frames,
      reencode=reencode, height=config.data.resolution, width=config.data.resolution,
      fps=float(config.data.fps), max_text_len=stage.data.max_text_len, prompt_multiple=16,
      text_model=os.path.join(run, "text.model"), tokenizer_config=config.tokenizer.config,
      tokenizer_dir=os.path.join(run, "tokenizer"))
  return out


def video_name(index: int, prompt: dict, reencode: bool) -> str:
  return f"{index:02d}_{prompt['color']}_{prompt['shape']}_{MODES[reencode]}"


def generate(config, run: str):
  """A 60-second video per prompt and re-encoding mode: mp4, gif, npz (lossless, for the
  evaluation) and a frame strip; then generated/prompts.jsonl."""
  from loong_jax import generate as generate_lib  # noqa: PLC0415 -- see the module docstring

  g, out_dir = config.generate, os.path.join(run, "generated")
  os.makedirs(out_dir, exist_ok=True)
  prompts = list(g.prompts)
  params = codec = encode_text = None
  for reencode in g.reencode:
    names = [video_name(i, p, reencode) for i, p in enumerate(prompts)]
    if all(os.path.exists(os.path.join(out_dir, n + ".npz")) for n in names):
      print(f"generate: {MODES[reencode]} videos already written", flush=True)
      continue
    ic = inference_config(config, run, reencode)
    mesh, rules = sharding_lib.make_mesh(ic.mesh), sharding_lib.rules(ic.sharding)
    if params is None:
      model = transformer.Transformer(transformer.LMConfig.from_config(ic.lm))
      params = generate_lib.restore_params(os.path.join(run, "lm", "stage3"), model, mesh, rules)
      codec = generate_lib.load_codec(ic.inference.tokenizer_config, ic.inference.tokenizer_dir)
      encode_text = generate_lib.load_text_encoder(ic.inference.text_model)
    print(f"generate: {len(prompts)} prompts x {g.seconds:.0f} s, {MODES[reencode]}", flush=True)
    out = generate_lib.generate_videos(ic, params, [p["prompt"] for p in prompts], g.seconds,
                                       g.seed, codec, encode_text, mesh, rules)
    for name, video in zip(names, out.video):
      path = os.path.join(out_dir, name)
      generate_lib.write_video(path + ".mp4", video, ic.inference.fps)
      demo_plots.frame_strip(_to_uint8(video), path + ".png", g.strip_frames, ic.inference.fps)
      np.savez_compressed(path + ".tmp.npz", video=_to_uint8(video), fps=ic.inference.fps)
      os.replace(path + ".tmp.npz", path + ".npz")
      print(f"generate: wrote {path}.{{mp4,gif,npz,png}}", flush=True)
  entries = []
  for i, p in enumerate(prompts):
    attributes = {"color": p["color"], "shape": p["shape"], "motion": p["motion"]}
    common = {"prompt": p["prompt"], "attributes": attributes, "split": p["split"],
              "fps": float(config.data.fps)}
    first = video_name(i, p, g.reencode[0]) + ".npz"
    entries.append(dict(common, file=first, kind="clip", frames=[0, g.faithfulness_frames]))
    entries.extend(dict(common, file=video_name(i, p, r) + ".npz", kind="long", reencode=r)
                   for r in g.reencode)
  tmp = os.path.join(out_dir, f"prompts.jsonl.tmp-{os.getpid()}")
  with open(tmp, "w") as f:
    f.writelines(json.dumps(e) + "\n" for e in entries)
  os.replace(tmp, os.path.join(out_dir, "prompts.jsonl"))


def evaluate(config, run: str):
  """`loong_jax.evaluate` over the run: report.json, long_video.{md,png}."""
  from loong_jax import evaluate as evaluate_lib  # noqa: PLC0415 -- see the module docstring

  evaluate_lib.evaluate(run, probe_clips=config.evaluate.probe_clips,
                        window_s=config.evaluate.window_s)


def plots(config, run: str):
  """Loss curves per stage, per-frame loss, reconstruction examples (PNG files in RUN)."""
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
CONFIG_FILE = "demo_config.json"


def load_run_config(run: str) -> ml_collections.ConfigDict:
  with open(os.path.join(run, CONFIG_FILE)) as f:
    return ml_collections.ConfigDict(json.load(f))


def main(argv: list[str]):
  if len(argv) != 3 or argv[1] not in STEPS:
    raise SystemExit(f"usage: python -m loong_jax.demo_steps STEP RUN; STEP in {list(STEPS)}")
  logging.set_verbosity(logging.WARNING)
  name, run = argv[1], argv[2]
  STEPS[name](load_run_config(run), run)


if __name__ == "__main__":
  main(sys.argv)
