"""The end-to-end CPU demo: `python -m loong_jax.demo --workdir DIR [--config FILE:variant]`.

Variants: `default` (the whole run in about 20 minutes on 2 CPU cores) and `quick` (about 3
minutes, for CI and the notebook). Every number of the run is here; one block per step:

| block       | step(s)                                                                      |
|-------------|------------------------------------------------------------------------------|
| data        | the built-in dataset (`loong_jax/data/synthetic.py`) every step draws from   |
| tokenizer   | video tokenizer training (`configs/tokenizer/magvit2.py:demo` + overrides)   |
| text        | SentencePiece on the training captions                                       |
| pretokenize | items per source: images, 17-frame clips, 65-frame clips                     |
| lm          | LM curriculum stages 1 -> 2 -> 3 (`configs/stages/stageK.py:tiny,shards=`);  |
|             | `variant` 'mmrope' / 'ardf' trains a Lumos-1 variant (ardf: masked decoding) |
| generate    | 60-second videos per prompt, with and without re-encoding                   |
| evaluate    | `loong_jax.evaluate` settings and the plots                                  |

Prompts use the dataset's own caption template for one object; `split` is "heldout" for a
colour-shape pair of `synthetic.HELDOUT_PAIRS` (never seen in training).
"""

import os

import ml_collections

_CONFIGS = os.path.dirname(os.path.abspath(__file__))
VARIANTS = ("default", "quick")

# (color, shape, motion, split) of the generated videos.
PROMPTS = {
    "default": (("red", "circle", "right", "seen"), ("blue", "square", "down", "seen"),
                ("green", "diamond", "still", "seen"), ("red", "triangle", "left", "heldout"),
                ("blue", "ring", "up", "heldout")),
    "quick": (("red", "circle", "right", "seen"), ("red", "triangle", "left", "heldout")),
}
MOTION_WORDS = {"right": "moves right", "left": "moves left", "up": "moves upward",
                "down": "moves downward", "still": "stays still"}


def prompt_entries(variant: str) -> list[dict]:
  return [dict(prompt=f"a medium {color} {shape} {MOTION_WORDS[motion]} over a black background",
               color=color, shape=shape, motion=motion, split=split)
          for color, shape, motion, split in PROMPTS[variant]]


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant = arg or "default"
  if variant not in VARIANTS:
    raise ValueError(f"configs/demo_cpu.py: unknown variant {variant!r}; known: {VARIANTS}")
  quick = variant == "quick"
  config = ml_collections.ConfigDict()
  config.variant = variant
  config.data = dict(
      resolution=64,
      fps=8,                      # every clip at one rate, so 10 s is always 80 frames
      max_objects=1,              # the probe reads one object; captions name one
      seed=0,
      # The demo's world (synthetic.SyntheticConfig): plain backgrounds and five motions, so
      # that a few CPU-minutes of training can learn it; every colour and shape stays, and so
      # do the held-out colour-shape pairs. The full world (textures, eight directions,
      # bouncing, growing) is the dataset's default, a harder setting.
      motions=("still", "left", "right", "up", "down"),
      sizes=("medium", "large"),
      textures=("plain",),
      background_colors=("grey", "black", "white", "beige", "navy"),
  )
  config.tokenizer = dict(
      config=os.path.join(_CONFIGS, "tokenizer", "magvit2.py") + ":demo",
      # Recipe and measurements: configs/tokenizer/magvit2.py (module docstring, `demo_recipe`).
      # Image phase first: single frames, 8 per step, then inflation to the video model. quick:
      # the pipeline, not the quality, and no image phase (a second model to compile).
      image_phase=dict(steps=0 if quick else 3_000, batch_size=8),
      # Clip phase. 9-frame clips, 8 per step, lr 2e-4 (held-out 25.95 dB, objects visible in
      # 96.9% of clips) measured a little above 17-frame clips, 4 per step, lr 1e-4 (25.68 dB,
      # 96.9%) at the same frames per step; with replicate temporal padding the shorter clips
      # still reconstruct the 17-frame clips the LM uses.
      steps=12 if quick else 150,
      batch_size=2 if quick else 8,
      learning_rate=2e-4,
      frames=9,                   # 1 + 4k
      disc_start=10**9,           # GAN off: at this scale it costs time and PSNR
      warmup_steps=4 if quick else 20,
      ema_decay=0.9 if quick else 0.98,  # generation and pre-tokenization use the EMA weights
      log_every=6 if quick else 50,
      checkpoint_every=12 if quick else 100,
      eval_clips=4 if quick else 32,     # held-out 17-frame clips for PSNR / SSIM / usage
      example_clips=2 if quick else 4,   # shown in reconstruction.png
  )
  config.text = dict(
      vocab_size=1_000,           # configs/stages: the demo's text vocabulary
      train_captions=2_000 if quick else 20_000,
  )
  config.pretokenize = dict(
      images=32 if quick else 512,
      clips17=16 if quick else 192,
      clips65=8 if quick else 48,
      shard_size=64 if quick else 256,
      batch_size=8,               # encoder batch (a multiple of the devices)
  )
  config.lm = dict(
      size="tiny",
      variant="",                 # '' Loong; 'mmrope' | 'ardf' [Lumos] (configs/lm/llama.py)
      steps=(10, 10, 6) if quick else (200, 150, 40),
      batch_size=(8, 8, 4),       # per stage: stage 3 sequences are ~3x longer
      log_every=5 if quick else 25,
      checkpoint_every=5 if quick else 50,
      learning_rate=3e-3,
      warmup_steps=2 if quick else 20,
  )
  config.generate = dict(
      prompts=prompt_entries(variant),
      seconds=60.0,
      reencode=(True, False),
      clip_latent_frames=17,      # 65 frames: stage 3's longest clip
      cond_latent_frames=4,
      temperature=1.0,
      top_k=20,
      guidance_scale=1.0,
      seed=0,
      faithfulness_frames=17,     # the first 17 frames (one training clip) feed faithfulness
      strip_frames=8,             # frames shown per video in its frame strip
  )
  config.evaluate = dict(
      probe_clips=20 if quick else 200,
      window_s=10.0,
  )
  return config
