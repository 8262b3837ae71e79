"""Data pipeline configs of the curriculum stages: `configs/data/stages.py:<stage>[,demo]`.

  stage 1: images (1 latent frame)                      [Loong stage 1, text-to-image]
  stage 2: images + 17-frame clips (5 latent frames)    [Loong stage 2]
  stage 3: images + 17- and 65-frame clips (17 latent)  [Loong stage 3, 10 s clips]

`demo` is the CPU demo's scale: 64x64 clips (8x8 = 64 tokens per latent frame), a small text
vocabulary. Source folders are `pretokenize` outputs under `data.root`: `images/`, `clips17/`,
`clips65/` (write them with `configs/data/pretokenize.py`). Mixing weights are [ours]: the paper
does not give them. Images stay in every later stage, as the CPU demo measured: there a stage 3 of
clips alone with a fresh optimizer at lr 3e-3 erased the prompted colour learnt in stage 1, while
with images mixed in (and lower rates) the LM's colour-swap text gap held from stage to stage
(0.87 / 0.85 / 0.85 nats, `lm.text_gap_by_stage`, oracle tokenizer; configs/demo_cpu.py).

The `data` block is what `loong_jax.data.pipeline.make_pipeline` reads; `vocab` matches
`configs/lm/llama.py`.
"""

import ml_collections

# Per stage: (source folder, mixing weight, max pixel frames).
STAGES = {
    1: (("images", 1.0, 1),),
    2: (("images", 0.3, 1), ("clips17", 0.7, 17)),
    3: (("images", 0.2, 1), ("clips17", 0.3, 17), ("clips65", 0.5, 65)),
}


def data_config(stage: int, root: str, demo: bool = False) -> ml_collections.ConfigDict:
  """The `config.data` block of one stage."""
  if stage not in STAGES:
    raise ValueError(f"unknown stage {stage!r}; known: {sorted(STAGES)}")
  return ml_collections.ConfigDict(dict(
      stage=stage,
      root=root,
      sources=[dict(path=f"{root}/{name}", weight=weight, max_frames=frames)
               for name, weight, frames in STAGES[stage]],
      # None: the longest example of the stage (1 + text + 1 + F_lat (N + 2) + 1 - 1).
      # Loong trains stage 3 at 4,608 (SPEC §3); stages 1/2 need 324 / 1,356 at 128 px.
      seq_len=ml_collections.FieldReference(None, field_type=int),
      batch_size=8 if demo else 256,
      max_text_len=32 if demo else 64,
      text_dropout=0.1,                # classifier-free guidance (SPEC §4)
      # Each text id left out with this probability (captions that name only some attributes, for
      # composed conditioning: inference/decode.py) [ours]; 0: off, as Loong.
      text_word_dropout=0.0,
      loss=dict(scheme="first_frame",  # uniform | first_frame | linear_decay | per_frame_mean
                first_frame_weight=5.0, text_weight=0.0,
                # x this for video ids that differ from one latent frame earlier (the moving
                # parts; data/loss_weights.changed_token_weights); 1: off, as Loong.
                changed_weight=1.0),
      seed=0,
      shuffle=True,
      worker_count=0,                  # grain worker processes (need absl flags parsed)
      # Sources of different lengths in separate row groups, each padded to its own length
      # (data/pipeline.py: length_groups) instead of every row to the stage's longest. [ours]
      length_groups=False,
  ))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  parts = (arg or "1").split(",")
  stage, demo = int(parts[0]), "demo" in parts[1:]
  config = ml_collections.ConfigDict()
  config.vocab = dict(text_size=1_000 if demo else 32_000, video_size=8_192)
  config.data = data_config(stage, "/tmp/loong_data/demo" if demo else "data/tokens", demo)
  if stage == 3 and not demo:
    config.data.seq_len = 4_608
  return config
