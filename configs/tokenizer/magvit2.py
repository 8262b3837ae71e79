"""MAGVIT-v2-style video tokenizer configs: `configs/tokenizer/magvit2.py:<variant>`.

| variant    | ch | res blocks | z (codes)     | generator params | discriminator | use               |
|------------|----|------------|---------------|------------------|---------------|-------------------|
| loong_246m | 96 | 7          | 13 (8,192)    | 251.6M (+2.3%)   | 14.4M         | Loong's size      |
| om2_video  | 128| 4          | 18 (262,144)  | 314.3M           | 14.4M         | Open-MAGVIT2      |
| demo       | 48 | 1          | 4 FSQ (875)   | 5.8M             | 0.1M          | 2 CPU cores, 64px |
| tiny       | 8  | 1          | 6 (64)        | 0.6M             | 0.1M          | unit tests        |

loong_246m: with ch_mult=(1, 2, 2, 4), 2 mid blocks and GroupNorm(32) (so ch is a multiple of 32),
ch=96 with 7 res blocks per level gives 251.6M generator parameters, within 5% of Loong's 246M
(ch=128 with 2 blocks: 225.5M, with 3: 269.8M; ch=96 with 6: 226.7M). om2_video is the
Open-MAGVIT2 video layout (ch=128, 4 res blocks, z=18) in this codebase's block structure; SPEC
quotes ~370M for the reference implementation, whose decoder has an extra res block per level and
its own norm / upsampler layers, so our count is lower.

demo [ours]: 4x4 pixel patches folded into channels (`patch_size=4`), then two levels at 16x16
(`ch_mult=(1, 1, 2)`, temporal stride 2 at each) and the 8x8 latent: on 2 CPU cores the
full-resolution levels of the MAGVIT-v2 layout cost most of the time and learn little. It trains
with an L2 loss (the PSNR it is judged by) and no GAN (at a few CPU-minutes the discriminator costs
time and PSNR).

demo recipe (`demo_recipe`, issue 13) [ours]; the evidence, all on the demo's 64x64 8-fps world
unless noted (measurements of the issue: 2-core machine, idle; ours: the same machine shared with
2-3 other agents, load average 10-19):
- GroupNorm-free residual blocks (`norm="none"`, second conv zero-initialised, no output norms):
  GroupNorm cost 3-4 dB (image model, batch 4 x 1,200 steps: identity quantizer 24.9 vs 21.2 dB,
  FSQ 23.0 vs 20.1); without norms a 3D model trained from scratch diverges, so it is trained as
  an image model first and inflated (`config.image_phase`, tokenizer/inflate.py).
- FSQ: it trained faster than 12-bit LFQ (image model: 5^6 FSQ 25.7 dB / 93% objects visible
  after 8,000 steps at batch 4, 12-bit LFQ 20.6 dB / 59%).
- FSQ (7, 5, 5, 5) = 875 codes (the LM's video vocabulary, `vocab.video_size`), chosen for the LM,
  not the PSNR. With (8, 8, 8, 4, 4) = 8,192 codes (27.6 dB held-out) the demo LM learnt nothing
  of the prompt (colour gap 0.000 nats, colour 0% / 13% seen / held-out): 1,012 object blocks of
  256 images took 532 distinct codes, and the LM's 128 x 8,320 output head cost ~3x its two
  layers. With 875 codes (27.3 dB, objects visible 96.9%) the same LM with digit codes
  (`config.lm.digit_codes`) drew the prompted colour in 80% / 47% of seen / held-out prompts,
  each LM step 2.9x faster (`tokens/s` 6,600 vs 2,300 at the same load).
- No FSQ commitment term (`quantizer.fsq_commitment_weight`, tried and left at 0). The
  straight-through gradient parks flat-background latents on rounding boundaries (8,192 codes:
  channel 0 of the black background at 0.47 for a boundary at 0.5; 875 codes: channel 1 at 1.5),
  so background blocks flip between codes with small changes of context. A commitment weight of
  0.5 removed that (background blocks: 5 codes / 1.23 nats against 39 / 1.88 after 1,000 image
  steps; all blocks 2.04 vs 4.43 nats after the full recipe), but it took the object with it:
  full demo, the same LM: held-out 26.0 vs 27.3 dB, object visible 87.5% vs 96.9%, and the LM's
  colour gap 0.001 vs 0.064 nats, colour 7% / 7% vs 80% / 47%, no object in any long-video
  window. A low LM loss (0.69 vs 2.28 nats a token after stage 1) meant codes that said little.
- Image phase on single frames (8 per step, 3,000 steps, lr 1e-3 cosine, EMA 0.98): many frames
  per step keep the object (17-frame clips at batch 2 lost it: 17.7 dB, the object gone). Then
  inflation with the encoder's temporal-downsampling kernels on the middle tap and replicate
  temporal padding (measured in the issue: 23.1 dB held-out with 80 clip steps, textured world).
- Clip phase (configs/demo_cpu.py): 150 steps, EMA 0.98, 9-frame clips, 8 per step, lr 2e-4
  (the issue: lr >= 3e-4 at 2 clips per step made it worse).
Measured (ours, the demo world, held-out: 32 17-frame clips; PSNR of the pooled MSE, object PSNR
inside the ground-truth masks, visible = in every frame most mask pixels nearer the object colour
than the background's; 3,000 image steps at batch 8 then 150 clip steps):
  | clip phase                      | PSNR     | object PSNR | visible | wall (load 10-19) |
  | 17 frames x 4, lr 1e-4          | 25.68 dB | 17.8 dB     | 96.9%   | 2,792 s           |
  | 9 frames x 8, lr 2e-4 (chosen)  | 25.95 dB | 18.0 dB     | 96.9%   | 1,789 s clip only |
  Below the issue's 28 dB target: objects are kept but blurred and lag within each 4-frame
  latent group (object PSNR ~18 dB). From the issue's idle throughput (78 image frames/s, 43
  clip frames/s) the recipe takes about 9 idle minutes (310 s image + 235 s clip + compiles).
- Encoder left non-local (`local_encoder=False`). The default encoder's receptive field spans the
  frame, so its codes are distributed: a moving object changes the codes of the whole frame,
  black background included (held-out clips: 36% of tokens unchanged from one latent frame to the
  next, H(code | previous code at the same position) 2.01 nats, `tokenizer.codes` in
  report.json; the oracle's 8x8 block means: 82%, 0.58 nats), and the demo LM's loss on later
  frames (2.05 nats a token) stays above its first-frame loss (1.60). `local_encoder=True` (each
  latent block from its own 4x8x8 pixels) made the codes as stable as the oracle's (82%, 0.47
  nats; later-frame loss 0.69, colour gap 0.52 vs 0.41 nats) for 1 dB (26.3 vs 27.3 dB, objects
  visible 96.9% in both), but the full demo drew worse videos: colour 27% / 53% vs 67% / 80%
  (seen / held-out), long-video presence 0.2 vs 0.6 per window, direction at chance in both
  (guidance 1 instead of 3 did not help: 27% / 27%). Sampled clips jump less within a latent
  group, but latent frame 1 rarely continues frame 0, and the object's colour drifts block by
  block. Not yet understood; kept as an option.
- `encoder_frames="last"` [ours] (latent j encodes frame 4j alone; tokenizer/autoencoder.py),
  with `local_encoder=True` and the demo's `data.grid=8`: every latent frame of a moving object
  an exact one-block shift of the one before, held-out 28.77 dB, objects visible 100% (demo
  recipe otherwise unchanged; measurements with the LM in configs/demo_cpu.py). Off.
- `color_channels=2` [ours] (tokenizer/autoencoder.py: FSQ digits 0-1 from the block's colour,
  its brightest and darkest pixels divided by their largest channel; digits 2-3 from its
  brightness pattern), on the demo's default recipe (`configs/demo_cpu.py`), the LM re-trained on
  its codes (fifteenth round, README): held-out 28.60 vs 28.77 dB, read-through colour 1.00,
  the code holds 2.18 nats of the colour's 2.20 (1.51 without) and 0.56 of shape (0.80).
  Drawn first frames (`lm.first_frames.full`, 8 per prompt) compose held-out pairs: colour
  0.83 / 0.71 seen / held-out (without: 0.74 / 0.51), shape 0.71 / 0.37 (0.57 / 0.10). But
  the near-greedy later frames blur the object (rings fill, triangles melt): faithfulness colour
  0.67 / 0.60 (0.93 / 0.60), shape 0.80 / 0.20 (0.67 / 0.07), direction 0.53 / 0.53 (0.60 /
  0.87), presence 0.4 in every window (0.4 / 0.6); frame temperature 0.3 or 1 did not help.
  Without the division by the largest channel (raw max / min): read-through colour 0.91,
  off-palette colours (pink, salmon), held-out colour 0.33. With `fsq_levels=(4,4,7,8)` in the
  demo config (16 colour x 56 pattern values): 28.42 dB, continuation 0.99, faithfulness colour
  0.80 / 0.60, shape 0.93 / 0.07, direction 0.47 / 0.53, presence 0.6 for 40 s then 0.4 (red
  drawn pink or purple); with (5,5,7,8): colour 0.67 / 0.53, shape 0.53 / 0.20, direction
  0.20 / 0.33, presence 0.2 (hues still wrong, moving objects fade). Off.

All numbers live here; `--config.tokenizer.ch=...` etc. override them.
"""

import math

import ml_collections

VARIANTS = ("loong_246m", "om2_video", "demo", "tiny")

# (ch, num_res_blocks, log2 codebook size, clip frames, resolution, batch, steps)
SHAPES = {
    "loong_246m": (96, 7, 13, 17, 128, 256, 300_000),
    "om2_video": (128, 4, 18, 17, 128, 256, 300_000),
    "demo": (48, 1, 13, 9, 64, 8, 150),
    "tiny": (8, 1, 6, 5, 16, 2, 4),
}
MAGVIT2_LEVELS = dict(ch_mult=(1, 2, 2, 4), down_strides=((1, 2, 2), (2, 2, 2), (2, 2, 2)),
                      patch_size=1)
# (ch_mult, down_strides, patch_size) where a variant differs from the MAGVIT-v2 layout.
LEVELS = {"demo": dict(ch_mult=(1, 1, 2), down_strides=((2, 1, 1), (2, 2, 2)), patch_size=4)}

DEMO_FSQ_LEVELS = (7, 5, 5, 5)  # 875 codes: the LM's video vocabulary (module docstring)

# Logical axis -> mesh axes. Tokenizer weights are small next to the activations of a video batch,
# so the model is data-parallel: batch over ('data', 'fsdp'), every parameter replicated.
SHARDING_RULES = (
    ("activation_batch", ("data", "fsdp")),
    ("conv_t", None),
    ("conv_h", None),
    ("conv_w", None),
    ("conv_in", None),
    ("conv_out", None),
    ("dense_in", None),
    ("dense_out", None),
    ("norm", None),
    ("codebook", None),
    ("code", None),
)


def tokenizer_config(variant: str) -> ml_collections.ConfigDict:
  ch, blocks, bits, _, _, _, _ = SHAPES[variant]
  small = variant in ("demo", "tiny")
  levels = LEVELS.get(variant, MAGVIT2_LEVELS)
  return ml_collections.ConfigDict(dict(
      ch=ch,
      ch_mult=levels["ch_mult"],
      num_res_blocks=blocks,
      num_mid_blocks=1 if variant == "tiny" else 2,
      z_channels=bits,
      num_groups=8 if small else 32,
      temporal_kernel=3,                       # 1 = image tokenizer (see tokenizer/inflate.py)
      down_strides=levels["down_strides"],
      temporal_padding="zeros",                # or "replicate" [ours: OM2 uses constant padding]
      norm="group",                            # or "none": no norms, zero-init second convs [ours]
      # bfloat16 is slower than float32 on the project's CPU (STACK_NOTES).
      dtype="float32" if small else "bfloat16",
      # "stacked_2d" (temporal taps stacked into channels, one 2D conv) is ~6x faster than XLA's
      # 3D convolution on CPU; accelerators run "native_3d".
      conv_impl="stacked_2d" if small else "native_3d",
      patch_size=levels["patch_size"],         # p x p pixels folded into channels first [ours]
      local_encoder=False,                     # each latent block from its own pixels [ours]
      encoder_frames="all",                    # or "last": latent j from frame 4j alone [ours]
      color_channels=0,                        # > 0: colour apart from pattern [ours]
      quantizer=dict(
          type="lfq",                          # or "fsq", "cvq"
          codebook_size=2 ** bits,
          levels=(),                           # FSQ: levels per channel, prod = codebook_size
          fsq_commitment_weight=0.0,           # FSQ: pull latents off rounding boundaries [ours]
          # LFQ [MV2][OM2]
          entropy_weight=0.1,
          commitment_weight=0.25,
          temperature=0.01,
          entropy_chunk_size=4096,
          # CVQ [CVQ]: used when type == "cvq" (then z_channels is the code dimension)
          beta=0.25,
          usage_decay=0.99,
          anchor_scale=10.0,
          anchor_eps=1e-3,
      ),
      discriminator=dict(
          type="stylegan",                     # or "patchgan"
          ch=8 if small else 64,
          ch_mult=(2, 4, 4) if small else (2, 4, 4, 4, 4),
          strides=(2, 2, 2),
          negative_slope=0.2,
          num_groups=8 if small else 32,       # PatchGAN only
          dtype="float32" if small else "bfloat16",
      ),
  ))


def demo_recipe(config: ml_collections.ConfigDict):
  """The demo's measured recipe (module docstring): norm-free blocks, FSQ, image phase first."""
  t = config.tokenizer
  t.norm = "none"
  t.temporal_padding = "replicate"
  t.z_channels = len(DEMO_FSQ_LEVELS)
  t.quantizer.type = "fsq"
  t.quantizer.levels = DEMO_FSQ_LEVELS
  t.quantizer.codebook_size = math.prod(DEMO_FSQ_LEVELS)
  config.optim.learning_rate = 2e-4
  config.image_phase.update(steps=3_000, batch_size=8, learning_rate=1e-3, warmup_steps=100,
                            ema_decay=0.98, downsample_tap="middle")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant = arg or "demo"
  if variant not in SHAPES:
    raise ValueError(f"unknown tokenizer variant {variant!r}; known: {VARIANTS}")
  _, _, _, frames, resolution, batch, steps = SHAPES[variant]
  small = variant in ("demo", "tiny")
  config = ml_collections.ConfigDict()
  config.tokenizer = tokenizer_config(variant)
  config.loss = dict(
      reconstruction="l2" if variant == "demo" else "l1",  # "l1" or "l2"
      reconstruction_weight=1.0,
      quantizer_weight=1.0,
      perceptual_weight=0.1,
      perceptual_weights_path="",              # local .npz of LPIPS-VGG weights; "" = term off
      gan_weight=0.3 if frames > 1 else 0.1,   # [OM2]: 0.1 image / 0.3 video
      disc_start={"demo": 10**9, "tiny": 2}.get(variant, 20_000),  # demo: no GAN (docstring)
      generator_loss="non_saturating",
      discriminator_loss="hinge",
      lecam_weight=0.001,
      lecam_ema_decay=0.999,
      r1_weight=0.0,                           # [MV1] uses 10 when on
  )
  config.optim = dict(
      learning_rate=1e-3 if small else 1e-4,
      disc_learning_rate=1e-3 if small else 1e-4,
      b1=0.9 if variant == "demo" else 0.5, b2=0.9, eps=1e-8,  # demo: no GAN, so Adam's usual b1
      warmup_steps={"demo": 20, "tiny": 1}.get(variant, 5_000),
      decay_steps=ml_collections.FieldReference(None, field_type=int),  # None: train.steps
      end_learning_rate_fraction=0.1,
      grad_clip_norm=1.0,
      ema_decay=0.999,
  )
  # Image-first training [MV2][OM2] (train_tokenizer.py): `steps` > 0 trains the image twin on
  # single frames first, then inflates it (tokenizer/inflate.py) for the clip phase (config.train).
  config.image_phase = dict(
      steps=0,
      batch_size=batch,
      learning_rate=config.optim.learning_rate,
      warmup_steps=config.optim.warmup_steps,
      ema_decay=config.optim.ema_decay,
      downsample_tap="last",                   # or "middle": encoder temporal-stride kernels
  )
  config.train = dict(
      seed=0,
      batch_size=batch,
      steps=steps,
      log_every=25 if small else 100,
      checkpoint_every=200 if small else 5_000,
      eval_clips={"demo": 128, "tiny": 4}.get(variant, 256),  # enough tokens to see > K/2 codes
      # The shared training loop (loong_jax/train/loop.py).
      eval_every=0 if small else 5_000,    # held-out PSNR and usage; 0: only at the end
      keep_last=2,
      keep_every=ml_collections.FieldReference(None, field_type=int),  # also keep every K steps
      max_consecutive_skips=5,             # non-finite steps in a row before the run stops
      profile_steps=(),                    # (first, last): a jax.profiler trace of that window
      debug_nan_steps=(),                  # fault injection: these steps get NaN inputs
  )
  config.data = dict(
      folder="",                               # "" = built-in moving shapes; else a folder of videos
      frames=frames,
      resolution=resolution,
      num_shapes=2,
      max_speed=2.0,                           # pixels per frame at 64 px, scaled with resolution
      # Items grain's reader threads read ahead of training; None: grain's default (500).
      read_ahead=ml_collections.FieldReference(None, field_type=int),
  )
  config.mesh = dict(data=-1, fsdp=1, tensor=1)
  config.sharding = dict(rules=SHARDING_RULES, max_replicated_fraction=1.0)
  if variant == "demo":
    demo_recipe(config)
  return config
