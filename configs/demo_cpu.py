"""The end-to-end CPU demo: `python -m loong_jax.demo --workdir DIR [--config FILE:variant]`.

Variants: `default` (the recipe that moves the object as prompted and draws the prompted
shape: the blocks below with `_motion_recipe`; 1,171 s alone on 2 CPU cores from a fresh clone
of 2387259 in a fresh venv), `motion` (the same, its earlier name), `quick` (about 3 minutes,
for CI and the notebook: the default's pipeline at a small scale, nothing learns), `oracle`
(the default's LM half alone on the oracle codec: `_oracle_recipe`) and `baseline` (the
default until the eleventh round: the blocks below alone, whose comments measure each setting;
the prompted colour for the whole minute, but neither the prompted motion nor the shape; 1,054 s
alone on 2 CPU cores from a fresh clone of bb8f7e0).
Every number of the run is here; one block per step, each with the measurement behind it (issue 13;
the README's table has the whole report):

| block       | step(s)                                                                      |
|-------------|------------------------------------------------------------------------------|
| data        | the built-in dataset (`loong_jax/data/synthetic.py`) every step draws from   |
| tokenizer   | video tokenizer training (`configs/tokenizer/magvit2.py:demo` + overrides)   |
| text        | SentencePiece on the training captions                                       |
| pretokenize | items per source: images, 17-frame clips, 65-frame clips                     |
| lm          | LM curriculum stages 1 -> 2 -> 3 (`configs/stages/stageK.py:tiny,shards=`);  |
|             | `variant` 'mmrope' / 'ardf' trains a Lumos-1 variant (ardf: masked decoding) |
| generate    | 60-second videos per prompt, with and without re-encoding; short clips of    |
|             | `faithfulness_prompts` prompts (half held-out pairs) in one batch            |
| evaluate    | `loong_jax.evaluate` settings (and the LM's text gap) and the plots          |

Prompts use the dataset's own caption template for one object; `split` is "heldout" for a
colour-shape pair of `synthetic.HELDOUT_PAIRS` (never seen in training).
"""

import os

import ml_collections

_CONFIGS = os.path.dirname(os.path.abspath(__file__))
VARIANTS = ("default", "quick", "oracle", "motion", "baseline")

# (color, shape, motion, split) of the generated videos.
PROMPTS = {
    "default": (("red", "circle", "right", "seen"), ("blue", "square", "down", "seen"),
                ("green", "diamond", "still", "seen"), ("red", "triangle", "left", "heldout"),
                ("blue", "ring", "up", "heldout")),
    "quick": (("red", "circle", "right", "seen"), ("red", "triangle", "left", "heldout")),
}
PROMPTS["oracle"] = PROMPTS["motion"] = PROMPTS["baseline"] = PROMPTS["default"]
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
  # The blocks below hold the `baseline` recipe, each setting with its measurement; a comment's
  # "off" is baseline's. `_motion_recipe` (the default, `quick`, `oracle`) then changes the
  # world's grid, the tokenizer's codes, the wall folders, the LM recipe and the sampling.
  config.data = dict(
      resolution=64,
      fps=8,                      # every clip at one rate, so 10 s is always 80 frames
      max_objects=1,              # the probe reads one object; captions name one
      seed=0,
      # The demo's world (synthetic.SyntheticConfig): one plain black background, five motions
      # and two sizes, so that a few CPU-minutes of training can learn it; every colour and
      # shape stays, and so do the held-out colour-shape pairs. The full world (five background
      # colours, textures, eight directions, bouncing, growing) is the dataset's default, a
      # harder setting.
      motions=("still", "left", "right", "up", "down"),
      sizes=("medium", "large"),
      textures=("plain",),
      background_colors=("black",),
      # Straight motions' speed (synthetic.SyntheticConfig.speed): 2 px per frame, one 8-px token
      # block per 4-frame latent frame, at every clip length (0: each clip travels
      # synthetic.TRAVEL of the side over its length, so 65-frame clips moved 4x slower than
      # 17-frame ones and a latent frame moved 1-7 px). Measured with the tokenizer below
      # (run shared the CPU): tokenizer 28.01 dB / visible 1.00 (27.71 / 0.97 in the old world),
      # colour 100% / 100%, presence 1.0 in every window, direction 7% / 13% (0% / 0% before),
      # lm.text_gap.motion 0.001 nats: the motion word is still not read. Oracle codes in this
      # world: motion gap 0.003 (latent frame 1: 0.007), direction 20% / 27%.
      speed=1 / 32,
      # Straight motions that may reach the frame's edge within a clip and rest there
      # (synthetic.SyntheticConfig.wall_fraction), as every minute-long clip's object does. Off:
      # the default LM does not move the object (direction 7% / 13%), so it never meets the edge.
      # With the copy head (lm.model below) the object moves 2 px a frame and, never having seen
      # an edge, leaves the 64-px frame within ~3 s (presence 0 in every window, measured by
      # tracking it). 0.3 with the copy head, the same tokenizer: presence without re-encoding
      # 0.2, 0.2, 0.6, 0.6, 0.6, 0.4 per window (was 0), with it 0.2 then 0; but direction 20% /
      # 20% (was 47% / 47%; faithfulness.confusion reads the moving objects as shrinking or
      # growing), motion gap 0.28 nats (was 1.63).
      wall_fraction=0.0,
      # Objects start with their centre on the 8-px token grid (synthetic.SyntheticConfig.grid;
      # 0: anywhere). 8 with flat_codes, LM stages re-run on this tokenizer: the object's code
      # patterns over the stage-1 images fell from 4,087 to 1,812 (96 with local_encoder=True,
      # one per class), stage-1 loss 0.13 nats, yet colour 33% / 20%, shape 20% / 13%, direction
      # 7% / 0% (a straight motion's start gives its direction away: motion gap 0.00); with the
      # local encoder (tokenizer re-trained) colour 33% / 27%. README, "sixth round". Off.
      grid=0,
  )
  config.tokenizer = dict(
      # 'learned': train the tokenizer below. 'oracle': the pooling codec (8x8-block colour means,
      # `loong_jax/data/encoders.py`), nothing trained: trains and judges the LM half alone.
      kind="learned",
      # The oracle's latent frame k >= 1 (encoders.pooling_stand_in_encoder): the 'mean' of its
      # 4 frames (the tokenizer's causal grouping: a moving object is smeared over 4 positions
      # in latent frame 1) or the 'last' one (every latent frame an exact one-block shift).
      # 'last' did not make the LM read the motion word (latent frame 1: -0.003 nats, direction
      # 0% / 20%; with the copy head -0.002, 27% / 20%; README, "Motion, third round"): the
      # smear is not what keeps the LM from motion. 'mean' stays.
      oracle_frames="mean",
      config=os.path.join(_CONFIGS, "tokenizer", "magvit2.py") + ":demo",
      # Recipe and measurements: configs/tokenizer/magvit2.py (module docstring, `demo_recipe`).
      # Image phase first: single frames, 8 per step, then inflation to the video model. quick:
      # the pipeline, not the quality, and no image phase (a second model to compile).
      # 2,500 image + 250 clip steps (was 3,000 + 150): held-out 27.71 vs 27.32 dB in the old
      # world (the clip phase's PSNR was still rising at 150 steps), 28.01 dB in the speed world.
      image_phase=dict(steps=0 if quick else 2_500, batch_size=8),
      # Clip phase. 9-frame clips, 8 per step, lr 2e-4 (held-out 25.95 dB, objects visible in
      # 96.9% of clips) measured a little above 17-frame clips, 4 per step, lr 1e-4 (25.68 dB,
      # 96.9%) at the same frames per step; with replicate temporal padding the shorter clips
      # still reconstruct the 17-frame clips the LM uses.
      steps=12 if quick else 250,
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
      # Overrides of `tokenizer` fields, each measured in configs/tokenizer/magvit2.py.
      # encoder_frames='last' (latent j from frame 4j alone, tokenizer/autoencoder.py) with
      # local_encoder=True and data.grid=8: the learned twin of the oracle's 'last' codes (shift
      # invariance 1.00, a moving object's latent frames k >= 2 exact one-block shifts, against
      # 0.64-0.97 with 'all'), held-out 28.77 dB / visible 1.00 (the decoder draws the frames in
      # between). With the oracle variant's LM recipe of the time (copy head, summary, clips in
      # stage 1, guidance 1; no walls): lm.text_gap.motion 1.02 nats (latent frame 1: 1.22; this
      # recipe 0.002), continuation 1.00 / 1.00, direction 33% / 33%, shape 53% / 13%, but colour
      # 67% / 47% and presence 0.2 (lm.edge_rest 0.32 stop / 0.27 rest: never stopped at the
      # edge). README, "Edges and the minute". Off.
      model=dict(local_encoder=False, encoder_frames="all", color_channels=0),
      fsq_levels=(),              # FSQ levels; (): magvit2.py:DEMO_FSQ_LEVELS
      # Flat blocks (one colour over a latent block and its neighbours) get one canonical code
      # per colour and place (data/flat_codes.py), in pre-tokenization, the LM evaluation and
      # re-encoding: the black background took ~10 codes at random (32% of ids unchanged between
      # latent frames); canonical, 57% (held-out PSNR 27.48 vs 27.66 dB). Measured (this
      # tokenizer, LM stages re-run, the runs sharing 2 cores): LM losses fell (stage 1 0.95 vs
      # 1.52 nats, later frames 1.44 vs 2.12), but the videos did not change: colour 93% / 93%
      # (same), shape 13% / 0% (13% / 13%), direction 13% / 7% (0% / 13%); colour gap 0.20 vs
      # 0.80 nats. With the copy head (prev_frame_radius=1) the LM read the motion word (0.72
      # nats, free-running continuation 0.60) but drew moving objects that grow (the blocks they
      # leave stay coloured; direction 13% / 20%, colour 33% / 60%). Off by default.
      flat_codes=dict(enabled=False, tolerance=4.0, margin=1),
  )
  config.text = dict(
      # Whole words: a unigram model split colour words into pieces shared with other words
      # ("red" = "r" + "ed", "ed" also in "medium"), so the LM had to learn colours from pieces.
      # The demo's captions use ~50 words; every caption fits in max_text_len (at most 12 ids).
      model_type="word",
      vocab_size=128,             # an upper bound: the word model has ~50 pieces
      max_text_len=16,
      train_captions=2_000 if quick else 20_000,
  )
  config.pretokenize = dict(
      # Stage 1 learns colour and shape from images: it needs many distinct images (512 were
      # memorised after ~600 batch-8 steps); encoding them is cheap next to training.
      images=64 if quick else 4_096,
      clips17=16 if quick else 1_024,
      clips65=8 if quick else 128,
      # Clips whose straight motions may meet the frame's edge and rest there, beside the plain
      # ones (demo_steps.WALL_SOURCES; 0: not written). A stage's mix (lm.mixes) decides how
      # many of its clips show the edge. The `oracle` variant uses them in stages 2-3.
      walls17=0,
      walls65=0,
      shard_size=64 if quick else 1_024,
      batch_size=8,               # encoder batch (a multiple of the devices)
  )
  config.lm = dict(
      size="tiny",
      variant="",                 # '' Loong; 'mmrope' | 'ardf' [Lumos] (configs/lm/llama.py)
      # Measured (README, "Lumos-1 options"; seed 1, the rest as here): 'ardf' drew no objects at
      # this budget (colour 0% / 0%); 'mmrope' stopped reading the colour word (oracle codes:
      # colour gap 0.07 vs 1.69 nats) unless model.mm_rope_layout='slots' (1.49), and neither
      # moved objects better than Loong's 1D RoPE (oracle direction 13% / 13% vs 0% / 20%).
      # Overrides of configs/lm/llama.py:tiny. Width 128 read the prompt 3x more than 64 at the
      # same samples (colour-swap gap 0.52 vs 0.17 nats after 12.8k images) for 1.5x the time.
      # prev_frame_input (llm/transformer.py): each slot also embeds the code its target had one
      # latent frame earlier, so carrying the scene over is a lookup. On this tokenizer's codes it
      # changed little (free-running continuation 0.016 vs 0.001, colour 87% / 80% vs 67% / 80%,
      # presence 0.6 per window in both; 4 regenerations and stage-2 variants: colour 73-87% /
      # 67-87%, presence 0.6); on stable codes (local_encoder=True) it raised the share of
      # continued clips that start the object from 73% to 97% (free-running 0.157 vs 0.132).
      # No extra compute (one more embedding lookup), so it is on.
      # 3 layers, not llama.py:tiny's 2 (same tokens, the rest of the recipe unchanged): colour
      # 100% / 100% vs 87% / 80%, long-video presence 1.0 vs 0.6 in every 10-s window (with and
      # without re-encoding), colour gap 1.23 vs 0.40 nats, free-running continuation 0.038 vs
      # 0.016; shape 33% / 27% and direction 0% / 0% unchanged.
      # prev_frame_radius=1 + copy_head=True (the 3x3 neighbourhood and a pointer-generator
      # head, llm/transformer.py), measured on this recipe's tokens (constant-speed world):
      # the LM reads the motion word for the first time (lm.text_gap.motion 1.73 nats after
      # stage 2, latent frame 1: 0.53; before 0.00), free-running continuation 0.61 vs 0.02,
      # direction 47% / 47% vs 7% / 13%; but colour 73% / 73% vs 100% / 100% and the minute-long
      # videos lose the object within the first seconds (presence 0 in every window; continuation
      # temperature 0.5, guidance 1, or temperature 0.7 with top-k 5: presence 0-0.4), copied
      # background blocks eat it. On oracle codes the neighbourhood alone (no copy head) left
      # later frames' object tokens at the first frame's loss (2.8-3.2 nats); with the copy head
      # 1.0-1.4 from latent frame 2 on. Off by default until the long videos keep the object:
      # `--config.lm.model.prev_frame_radius=1 --config.lm.model.copy_head=True`.
      # text_summary_input (llm/transformer.py: every slot adds the caption's running mean
      # embedding, so the motion word need not be found by attention), seed 1, stages re-run on
      # the same tokens: shape 40% / 27% vs 27% / 13% (three sampling seeds: 25 vs 16 of 90
      # clips), shape gap 0.39 vs 0.30 nats, motion gap 0.023 vs 0.001 (motion_effect 0.51 vs
      # paraphrase 0.37; before 0.42 / 0.48), long-video motion 0.2-0.6 vs 0-0.2 per window; but
      # colour 100% / 87% vs 100% / 93%, colour gap 0.60 vs 0.81, frames holding the object
      # 0.79-0.87 vs 0.92-0.96 (presence 1.0 in every window in both); direction 7% / 7% vs
      # 13% / 0%. With the copy head and walls (wall_fraction 0.3): motion gap 0.017 vs 0.004,
      # direction 13% / 7% vs 7% / 7%. One training draw, mixed: off, an option.
      # Copy head + summary with stage 1 = images 0.5 + clips17@9 0.5 (800 x 32), oracle `last`
      # codes: the motion word is read (latent frame 1: 3.52 nats after stage 2, 1.13 after stage
      # 3; continuation 0.87 vs 0.17 free-running; direction 40% / 40%), but colour 27% / 0%,
      # the minute fills with copied noise (presence 0) and stage 1 costs ~4x. On learned codes
      # with the default stages: 0.01 nats. README, "Motion, fifth round"; eval/shift_probe.py.
      model=dict(num_layers=3, d_model=128, head_dim=32, mlp_dim=256, prev_frame_input=True,
                 prev_frame_radius=0, copy_head=False, mm_rope_layout="groups",
                 text_summary_input=False, digit_logits_only=False),
      # Video ids as FSQ digits (llm/code_digits.py): embeddings and logits built from per-digit
      # rows, so codes that share digits share what is learnt. Learned codes, stage 1 (450 x 32
      # images): final loss 2.58 vs 3.37 nats, colour gap 0.12 vs 0.00 nats.
      digit_codes=True,
      # Loss x this on video ids that differ from one latent frame earlier, the blocks where
      # the object moves (data/loss_weights.changed_token_weights); 1: off. 5 (stages 2 and 3
      # re-run on the same stage 1) did not make the LM read the motion word: learned codes
      # (68% of ids change from frame to frame, so it weights most of them) lm.text_gap.motion
      # -0.005 vs 0.003 nats, direction 7% / 0% vs 0% / 0%, colour 67% / 53% vs 60% / 53%;
      # oracle codes (~20% change) motion gap -0.003 vs -0.002, direction 0% / 20% vs 20% / 20%.
      changed_weight=1.0,
      # Each caption word left out with this probability in training (data/pipeline.py), so that
      # captions naming only some attributes are ones the LM knows (composed first frames,
      # `generate.first_frame_without_*`). 0.15, stages re-run on the fourth draw's tokenizer and
      # tokens (README, "Composed first frames"): colour 0.87 / 0.47, shape 0.73 / 0.27,
      # direction 0.60 / 0.60, presence 0.8 (without: 0.87 / 0.47, 0.60 / 0.07, 0.60 / 0.47,
      # 0.4; within the default's spread over four draws), but first frames drawn worse
      # (lm.first_frames.full colour 0.55 / 0.43 vs 0.74 / 0.51), and composed first frames
      # still did not compose; 0.4 (stage 1 alone): colour 0.33 / 0.22 of drawn frames. Off.
      text_word_dropout=0.0,
      # Caption contrast per stage (train/lm_step.py): weight x the log-loss of telling the
      # caption from its colour-swapped copy by the first frame's likelihood. 0: off.
      caption_contrast=(0.0, 0.0, 0.0),
      # The LM's initialisation and data order (train.seed of every stage); other values
      # measure how much the recipe's figures depend on the draw. The draw matters: on two
      # machines of the same kind (bit-repeatable on each, different in rounding) seed 0 gave
      # colour 100% / 100% and 60% / 53%, presence 1.0 and 0.4-0.8 per window; seed 1 gave
      # 100% / 93% and presence 1.0 in every window on both (colour gap 0.79 / 0.81 nats), seed
      # 2 (second machine) 93% / 100% and 1.0. The quick variant keeps 0 (nothing learns there).
      seed=0 if quick else 1,
      text_size=128,              # the LM's text range: config.text.vocab_size
      video_size=0,               # 0: the tokenizer's codebook (oracle: 4,096 codes)
      # Learned 875-code tokenizer: (1,000, 300, 40) steps against (450, 150, 40) raised the
      # colour gap from 0.06 to 0.41 nats, colour 80% / 47% -> 67% / 80% (seen / held-out of 30),
      # shape 13% / 13% -> 33% / 20%, long-video presence 0.4 -> 0.6 per window, for ~300 s more
      # on 2 cores (stage 1 was still falling at 450 steps: 2.28 nats, 1.6 at 1,000).
      steps=(10, 10, 3) if quick else (1_000, 300, 40),
      batch_size=(8, 8, 4) if quick else (32, 16, 4),
      # Per stage {source: weight}. Images stay in every stage so that stage 2 and 3 do not
      # forget what stage 1 learnt (a stage-3 run without them lost the prompted colour).
      # A source may be cut to its first frames, `name@frames` (demo_steps.stage_sources):
      # `clips17@5` is two latent frames, the first frame and the one whose motion only the
      # prompt tells. Measured (README, "Motion, next session"): stage 2 = images 0.3 +
      # clips17@5 0.7 at 500-600 x 32 did not make the LM read the motion word (motion gap at
      # latent frame 1: -0.006 learned, 0.007 oracle; direction 13% / 0% and 13% / 7%) and cost
      # presence (0.8 in most windows). On oracle codes an LM from scratch on clips17@5 alone
      # (600 x 32, lr 3e-3) read it in three runs (0.07-0.29 nats), not at lr 1e-2 nor started
      # from the image stage (0.013); on learned codes not even so (-0.002). Not adopted. Oracle
      # with stage 1 = clips17@5 only (600 x 32, lr 3e-3), stages 2-3 as here: direction 33% / 20%
      # (was 7% / 0%), presence 0.6-0.8 per window (was 1.0), colour 100% / 80% (README).
      mixes=({"images": 1.0}, {"images": 0.4, "clips17": 0.6},
             {"images": 0.3, "clips17": 0.4, "clips65": 0.3}),
      log_every=5 if quick else 25,
      checkpoint_every=5 if quick else 100,
      # Per stage: a high rate to learn fast in stage 1, lower ones after, so that a fresh
      # optimizer at each stage does not erase the earlier stage.
      learning_rate=(1e-2, 3e-3, 1e-3),
      warmup_steps=(2, 2, 2) if quick else (20, 10, 5),
      # Rows padded to their own source's length (data.length_groups, data/pipeline.py) rather
      # than every row to the stage's longest: the same loss and gradients per step
      # (tests/data/test_length_groups.py), only a different draw of batches. Off here (this
      # recipe's figures were measured without); the default recipe turns it on.
      length_groups=False,
  )
  config.generate = dict(
      prompts=prompt_entries(variant),
      seconds=60.0,
      reencode=(True, False),
      # Sticky re-encoding margin (long_video.LongVideoConfig.reencode_margin; 0: Loong's plain
      # re-encoding): this LM redraws the object from the prompt at every clip (presence 1.0 at
      # 0); the default's copies its context and needs it (_motion_recipe).
      reencode_margin=0.0,
      # 17-frame clips with 2 latent frames of context: sampled 17-latent clips from a model
      # trained mostly on 5-latent clips dissolved the object after ~2 s (the default: 17 / 8).
      clip_latent_frames=5,
      cond_latent_frames=2,
      temperature=1.0,
      # The clips after a long video's first (None: `temperature`); 0.7: the same presence.
      continuation_temperature=ml_collections.FieldReference(None, field_type=float),
      # Temperature of every latent frame after the first (None: `temperature`). On this LM
      # 0.6 / 0.3 gave shape 27% / 7% and 7% / 13% (1.0: 13% / 13%), direction at most 7%, and
      # fewer frames holding the object (long-video presence 0.4-0.8 per window at 0.3, was
      # 1.0): later frames were not the previous one moved.
      frame_temperature=ml_collections.FieldReference(None, field_type=float),
      top_k=20, top_p=1.0,        # top-p 0.7-0.9 did not remove guidance's strays
      # Best-of-N first frame (inference/rerank.py): of N drawn first latent frames with >= min
      # object pixels, the best scored (g log p(x|text) + (1 - g) log p(x)). 1: off.
      first_frame_candidates=1,
      rerank_guidance=1.0, first_frame_min_object_pixels=0,
      reencode_first_frame=False,  # the drawn first frame decoded and encoded before it continues
      # K draws per continued clip, the first keeping 0.7 of the first frame's object pixels kept
      # (long_video.keep_object). K=4, default recipe: 35 prompts x 10 s, presence 0.78 -> 0.89
      # seen, 0.76 held-out, 3.4x the time; report: shape 0.67 -> 0.73, presence 0.4 / 0.6 ->
      # 0.4 / 0.8 (generation 681 s, shared with CI; 112 s at K=1). 1: off.
      continuation_candidates=1,
      continuation_keep=0.7,
      # Composed first frames (inference/decode.py): the first latent frame's logits are the
      # caption's plus these weights times (the logits of the caption without its shape word,
      # its colour word, or both, minus the caption's). 0: off. On the fourth draw's LM
      # (README, "Composed first frames"): without_shape=1 gave colour 0.87 / 0.87 but shape
      # 0.27 / 0.00 (was 0.60 / 0.07); 0.5: 0.80 / 0.60, shape 0.40. (1, 1, -1) drew empty
      # frames; after word dropout neither it nor (0.5, 0.5, 0) raised held-out colour.
      first_frame_without_shape=0.0,
      first_frame_without_color=0.0,
      first_frame_without_both=0.0,
      # Contrastive re-ranking of first-frame candidates (inference/rerank.py): the score adds w x
      # log p(caption | frame) among the caption and its copies naming each other colour (shape).
      # colour 1, the default's LM (this host's draw): every figure unchanged at 8 candidates;
      # held-out colour 0.47 -> 0.60 of 16 (python -m loong_jax.demo_candidates). 0: off.
      first_frame_contrast_color=0.0, first_frame_contrast_shape=0.0,
      # Classifier-free guidance (text dropped for 10% of training): oracle codes, stages 1-2,
      # guidance 3 drew the prompted colour on 33% / 47% of 30 seen / held-out prompts, 33% / 27%
      # at 1; it scatters stray blocks of that colour (README, "Guidance, seventh round").
      guidance_scale=3.0,
      seed=0,
      faithfulness_prompts=4 if quick else 30,  # short clips, half held-out pairs
      faithfulness_frames=17,
      strip_frames=8,             # frames shown per video in its frame strip
  )
  config.evaluate = dict(
      probe_clips=20 if quick else 200,
      # Held-out images and clips each for lm.text_gap (eval/text_gap.py); x pretokenize.batch_size.
      text_gap_items=8 if quick else 64,
      # Held-out long clips of straight motions for lm.edge_rest (loong_jax/eval/edge_rest.py):
      # does the LM stop the object at the edge, as the minute-long data does?
      edge_rest_clips=4 if quick else 24,
      edge_rest_frames=65,
      roundtrip_clips=4 if quick else 16,  # held-out clips: tokenizer.codes.roundtrip (eval/)
      roundtrip_rounds=5,
      # First frames drawn per faithfulness prompt with the full caption and without its shape or
      # colour word (lm.first_frames, loong_jax/eval/binding.py): which words decide the drawing?
      first_frame_samples=2 if quick else 8,
      # Training images whose object codes give tokenizer.codes.digit_information (eval/codes.py):
      # does colour sit in FSQ digits of its own, apart from shape?
      digit_information_images=16 if quick else 384,
      window_s=10.0,
  )
  if variant != "baseline":
    _motion_recipe(config, quick)
  if variant == "oracle":
    _oracle_recipe(config)
  return config


def _motion_recipe(config: ml_collections.ConfigDict, quick: bool) -> None:
  """The default recipe (also `motion`, its earlier name; `quick` at its own sizes; `oracle` on
  the oracle codec): the one that moves the object as prompted (issue 13, tenth and eleventh
  rounds; README "First frames, tenth round", "Sticky re-encoding"). The blocks above hold the
  `baseline` recipe (the default until the eleventh round), each setting with its measurement;
  this sets the ones that together move the object.
  - Codes that shift exactly with the object: `data.grid=8`, the tokenizer's
    `local_encoder=True, encoder_frames='last'` (held-out 28.77 dB, objects visible 1.00, shift
    invariance 1.00);
  - the oracle variant's LM recipe (copy head over the previous frame's 3x3 neighbourhood,
    caption summary, half of stage 1 on 3-latent-frame clips, stages 2-3 half on clips that meet
    the edge, stage 3 at lr 3e-4, guidance 1, near-greedy frames after the first);
  - best-of-8 first frames by likelihood (`generate.first_frame_candidates`,
    inference/rerank.py). With these codes the LM moves a real first frame as prompted
    (lm.continuation.prompted_move 0.94) but draws its own first frame badly; re-ranking 8 drawn
    first frames by log p(x | text) raised, on the same LM (800 / 300 / 200 steps): colour 60% /
    53% -> 87% / 67%, shape 40% / 7% -> 80% / 20%, direction 33% / 33% -> 60% / 73%, presence
    without re-encoding 0.6 -> 0.8 in every window (with it 0.6 then 0.4 -> 0.8 then 0.4).
    Scoring with g = 1.5 / 2 / 3 (more weight on what the text explains) gave shape 53% / 40% /
    40% (it picks frames with stray blocks of the prompted colour, or two objects); 16
    candidates 67% / 7%, direction 33% / 60% (one clip = 7%: within the draw's spread).
    On a fresh clone of 9779e5e (colour 87% / 47%, presence 0.4): 16 candidates 87% / 53%,
    presence 0.8 then 0.6; sampling seed 1 with 8: 100% / 53%, presence 0.6; guidance 2:
    73% / 40%, presence 0.4 then 0 (README, "A fourth draw"). 8 and guidance 1 stay.
  - Of the 8, only candidates with >= 16 object pixels (`first_frame_min_object_pixels`), and
    the kept one decoded and encoded before the LM continues it (`reencode_first_frame`):
    regenerating the fourth draw's LM (thirteenth round, 53d56ff), colour 87% / 47% -> 93% /
    60%, shape 60% / 7% -> 67% / 7%, direction 60% / 47% -> 60% / 87%, first frames with an
    object 0.87 -> 1.00, presence 0.4 -> 0.4 (re-encoding) and 0.6 (without); the filter alone
    93% / 53%, direction 67% / 60%. The likelihood had kept empty frames for captions it could
    not draw; continuing the encoder's codes of the drawn picture kept a still object that the
    drawn codes lost within 2 s.
  - Stage steps (800, 300, 200). (500, 300, 150) lost the motion word (lm.text_gap.motion
    0.25 vs 1.19 nats, direction 20% / 7%); stage 1 at batch 16: direction 53% / 20%.
  - Sticky re-encoding, `generate.reencode_margin=0.5` (long_video.LongVideoConfig): a context
    token keeps its generated code while its re-encoded FSQ latent stays within half a level
    beyond its cell. Plain re-encoding changed 30% of the object's codes per decode -> encode
    round trip (tokenizer.codes.roundtrip: 0.70 kept after 1, 0.60 after 5; 40 round trips a
    minute), and the minute's objects faded: presence 0.8, then 0.4 in every window. At 0.5:
    0.99 kept after 1 and 5 round trips, presence 0.8 in every window (as without re-encoding),
    the same LM and samples. At 0.25: 0.94 kept, the same presence (README, "Sticky
    re-encoding, eleventh round").
  - Clips of 17 latent frames (65 frames, as stage 3's long clips) with 8 of context
    (`generate.clip_latent_frames`, `cond_latent_frames`; were 5 and 2). Fourteenth round, the
    fourth draw's LM, the 30 faithfulness prompts + the 5 minute prompts for 60 s each: objects
    present in a 10-s window 0.39, 0.39, 0.39, 0.33, 0.33, 0.33 (seen) and 0.47, 0.35, 0.35, ...
    (held-out) -> 0.78, 0.67, 0.67, ... and 0.76, 0.65, 0.65, ...: short clips lost the object
    at a clip boundary. Context 4 or 12: the same at 10 s.
  Timings and the draws of this recipe (padded batches 1,505 s on the idle machine, length
  groups 1,171 s; 1,520 s on a slower host, 53d56ff): README, "Time and codes". Against the
  `baseline` recipe (non-local codes, no copy head, guidance 3): colour 100% / 93% there,
  presence 1.0, but shape 13% / 13%, direction 0% / 13%, motion gap 0.002 nats (its codes, not
  its first frames, keep it from motion: best-of-8 on it, direction 7% / 0%).
  """
  config.data.grid = 8
  config.tokenizer.model.update(dict(local_encoder=True, encoder_frames="last"))
  config.pretokenize.walls17, config.pretokenize.walls65 = (16, 8) if quick else (512, 128)
  config.lm.model.update(dict(prev_frame_radius=1, copy_head=True, text_summary_input=True))
  if not quick:
    config.lm.steps = (800, 300, 200)
  config.lm.mixes = ({"images": 0.5, "clips17@9": 0.5},
                     {"images": 0.4, "clips17": 0.3, "walls17": 0.3},
                     {"images": 0.2, "clips17": 0.15, "walls17": 0.15, "clips65": 0.25,
                      "walls65": 0.25})
  config.lm.learning_rate = (1e-2, 3e-3, 3e-4)
  # Length groups: stage-1 steps 1.52x faster on this recipe's batches (16 x 84 + 16 x 216
  # positions instead of 32 x 216; benchmarks/length_groups.py, machine shared); the whole
  # demo 1,171 s instead of 1,505 s (idle). quick: off (its 10-step stages are compile-bound:
  # 179 vs 157 s, two shapes to compile per stage).
  config.lm.length_groups = not quick
  config.generate.guidance_scale = 1.0
  config.generate.frame_temperature = 0.1
  config.generate.first_frame_candidates = 2 if quick else 8   # quick: the path, not the 8
  config.generate.first_frame_min_object_pixels = 16
  config.generate.reencode_first_frame = True
  config.generate.reencode_margin = 0.5
  config.generate.clip_latent_frames, config.generate.cond_latent_frames = 17, 8


def _oracle_recipe(config: ml_collections.ConfigDict) -> None:
  """`oracle`: the LM half alone, on the oracle codec, with the recipe that moves objects as
  prompted and keeps more of them for the minute (issue 13; measured on this world, 30 short
  clips, blocks reader). The seventh round's recipe (README "Guidance, seventh round"; a fresh
  clone's run repeated every figure to the digit): colour 93% / 93%, direction 100% / 87% (the
  default recipe on oracle codes: 7% / 0%), lm.text_gap.motion 3.58 nats (latent frame 1: 3.51),
  free-running continuation 1.00; long-video presence 0.4, 0.4, 0.4, 0.4, 0.4, 0.2 per window:
  the objects leave the frame (lm.edge_rest 0.89 moving / 0.10 at the stop / 0.12 at rest: it
  never stopped an object at the edge, where the data's long clips rest). Its parts:
  - codes that shift exactly with the object (`oracle_frames='last'`);
  - the copy head over the previous frame's 3x3 neighbourhood and the caption summary in every
    slot (`llm/transformer.py`): the shift probe (`eval/shift_probe.py`) learns the motion word
    only with the copy head;
  - half of stage 1 on 3-latent-frame clips (`clips17@9`): after an image-only stage 1 the copy
    head reads the word ten-fold slower;
  - stage 3 at lr 3e-4 (65-frame clips at 1e-3 took two thirds of the word away: motion gap
    1.13 vs 3.52 nats after stage 2);
  - guidance 1: at 3 the same LM drew stray blocks of the prompted colour all over frame 0,
    which the copy head then carried (colour 13% / 13%, direction 33% / 40%).
  Presence (README, "Edges and the minute", eighth and ninth rounds), each on this recipe's
  stage 1: stage 3 half on 65-frame clips (200 steps, lr 3e-4) taught the stop (lm.edge_rest
  0.80 / 0.96 at rest) but presence stayed 0.4-0.6; walls (objects that start anywhere, so a
  clip may start at the edge and rest) in every stage's clips lost the motion word (a fresh run:
  0.02 nats, direction 20% / 33%, presence 0.2). So:
  - stages 2-3 only see wall clips (`pretokenize.walls17` / `walls65`, demo_steps.WALL_SOURCES,
    half of each stage's clips), stage 1 keeps plain motion;
  - stage 3: images 0.2, 17-frame clips 0.3, 65-frame clips 0.5, 400 steps at lr 3e-4 (200
    steps: lm.edge_rest 0.85 / 0.85 / 0.99, presence 0.4 in every window, direction 67% / 80%;
    400: 0.87 / 0.94 / 1.00, presence 0.6 in every window, direction 93% / 80%, colour 93% /
    87%, motion gap 2.60 nats);
  - frame_temperature=0.1: every latent frame after a video's first nearly greedy (the first
    keeps temperature 1, which draws the object); at temperature 1 the objects resting at the
    edge faded block by block (presence 0.6 then 0.2).
  """
  config.tokenizer.kind = "oracle"
  config.tokenizer.oracle_frames = "last"
  config.lm.length_groups = False   # its figures were measured with padded batches
  # Measured in the world without the grid (objects start anywhere): kept so.
  config.data.grid = 0
  config.lm.steps = (800, 300, 400)
  config.generate.clip_latent_frames, config.generate.cond_latent_frames = 5, 2  # measured so
  # Best-of-8 first frames here: colour 80% / 93%, direction 60% / 93%, presence 0.8 then 0.6
  # (g = 1.5: the same presence): the blue ring's best-scored frame is nearly empty. Off.
  config.generate.first_frame_candidates = 1
