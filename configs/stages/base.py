"""The progressive curriculum [Loong]: stage 1 text-to-image, stage 2 images + 17-frame clips,
stage 3 images + clips up to 65 frames (10 s). `configs/stages/stageK.py:<size>`.

`python -m loong_jax.train_lm --config configs/stages/stage2.py:tiny --workdir ROOT` trains in
ROOT/stage2 and, when that directory has no checkpoint yet, starts from the final weights of
ROOT/stage1 (or `config.init.from_workdir`), with the optimizer state reset or kept
(`config.init.reset_optimizer`); ROOT/stage2/lineage.json records where it came from.

Clip mixes are `(latent frames, weight)` pairs: 1 latent frame = an image, 5 = 17 frames,
17 = 65 frames. Sequence lengths hold the longest clip: for 16x16-token frames and a 64-token text
budget that is 384 (stage 1), 1,408 (stage 2) and 4,608 (stage 3, SPEC §3).
"""

import ml_collections

from configs.data import stages as data_stages
from configs.lm import llama
from loong_jax.data import pipeline

CLIP_MIX = {1: ((1, 1.0),),
            2: ((1, 0.3), (5, 0.7)),
            3: ((1, 0.2), (5, 0.3), (9, 0.2), (17, 0.3))}
SEQ_LEN = {1: 384, 2: 1_408, 3: 4_608}
# tiny trains on the built-in token stream with 4x4-token frames (see configs/lm/llama.py).
TINY_SEQ_LEN = {1: 32, 2: 112, 3: 320}
TINY_STEPS = {1: 100, 2: 100, 3: 100}


def stage_config(stage: int, arg: str | None) -> ml_collections.ConfigDict:
  """`arg` = `size[,shards=DIR][,variant]`: the built-in token stream, or pre-tokenized shards in
  DIR (`DIR/images`, `DIR/clips17`, `DIR/clips65`, written by `python -m loong_jax.pretokenize`);
  variant `mmrope` or `ardf` [Lumos] (`configs/lm/llama.py:apply_variant`), Loong by default."""
  size, *options = (arg or "tiny").split(",")
  settings = dict(o.split("=", 1) for o in options if "=" in o)
  unknown = sorted(set(settings) - {"shards"})
  if unknown:
    raise ValueError(f"configs/stages: unknown option(s) {unknown} in {arg!r}; known: shards=DIR")
  shards = settings.get("shards")
  config = llama.get_config(size)
  config.stage = stage
  config.data.clip_mix = CLIP_MIX[stage]
  if size == "tiny":
    config.train.seq_len = TINY_SEQ_LEN[stage]
    config.train.steps = TINY_STEPS[stage]
  else:
    config.train.seq_len = SEQ_LEN[stage]
  if shards:
    demo = size == "tiny"
    config.data = data_stages.data_config(stage, shards, demo)
    config.data.kind = "shards"
    if demo:  # the demo's SentencePiece model (configs/data/stages.py)
      config.vocab.text_size = 1_000
    config.data.frame_width = 8 if demo else 16   # 64 px or 128 px clips, 8x downsampling
    config.data.batch_size = config.train.get_ref("batch_size")
    config.data.seq_len = config.train.get_ref("seq_len")
    longest = max(src["max_frames"] for src in config.data.sources)
    config.train.seq_len = (pipeline.required_seq_len(config.data.max_text_len, longest,
                                                      config.data.frame_width**2)
                            if demo else SEQ_LEN[stage])
  config.init = dict(
      from_workdir="",        # "" = the previous stage's directory beside this one
      reset_optimizer=True,   # a new stage restarts the schedule with fresh moments
  )
  config.variant = llama.variant_of(options)
  return llama.apply_variant(config, config.variant)
