"""`python -m loong_jax.pretokenize --config configs/data/pretokenize.py:<variant>`.

Variants: `images`, `clips17`, `clips65` (the built-in dataset at that length), `folder`
(videos/images under `source.path` with `captions.jsonl` or a WebVid-style csv), `tfds`
(a TFDS dataset in array_record format). Append `,demo` for the CPU demo's 64x64 scale.

`encoder`: `tokenizer` runs the trained video tokenizer from `tokenizer_checkpoint`; `pooling` is
a TEST STAND-IN (average pooling quantised to codes, no learning) for tests, benchmarks and
trying the pipeline before a tokenizer exists. Its tokens are not meant for training a model.
"""

import ml_collections

FRAMES = {"images": 1, "clips17": 17, "clips65": 65, "folder": 17, "tfds": 17}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  parts = (arg or "images").split(",")
  variant, demo = parts[0], "demo" in parts[1:]
  if variant not in FRAMES:
    raise ValueError(f"unknown pretokenize variant {variant!r}; known: {sorted(FRAMES)}")
  resolution = 64 if demo else 128
  config = ml_collections.ConfigDict()
  config.vocab = dict(text_size=1_000 if demo else 32_000, video_size=8_192)
  config.source = dict(
      kind="synthetic" if variant in ("images", "clips17", "clips65") else variant,
      path="",                  # folder: the folder; tfds: the data_dir
      name="",                  # tfds: dataset name, e.g. "loong_synthetic/clips17_64"
      split="train",
      num_frames=FRAMES[variant],
      resolution=resolution,
      fps=ml_collections.FieldReference(None, field_type=float),  # folder: resample to this
      # folder: malformed caption rows (bad JSON, no path/caption) are skipped and counted up to
      # this fraction of the rows; above it the run stops, naming the file and the first bad row.
      max_bad_fraction=0.01,
      num_samples=ml_collections.FieldReference(2_000 if demo else None, field_type=int),
      seed=0,                   # synthetic
      video_feature="video",    # tfds
      text_feature="caption",   # tfds
  )
  config.out_dir = f"/tmp/loong_data/{'demo' if demo else 'full'}/{variant}"
  config.encoder = "tokenizer"  # tokenizer | pooling (test stand-in)
  config.tokenizer_checkpoint = ""
  config.tokenizer_config = ""  # encoder=tokenizer: e.g. configs/tokenizer/magvit2.py:demo
  config.text = dict(
      model="",                 # "" = <out_dir>/../text.model, trained on this source if absent
      vocab_size=config.vocab.get_ref("text_size"),
      train_captions=20_000,    # captions used to train a missing text model
      max_len=32 if demo else 64,
  )
  config.shard_size = 256 if demo else 1_024
  config.batch_size = 8         # encoder batch per host (a multiple of the local devices)
  config.max_shards = ml_collections.FieldReference(None, field_type=int)  # per invocation
  return config
