"""Generation configs: `configs/inference.py:<size>` with size a `configs/lm/llama.py` size.

The `lm`, `vocab`, `mesh` and `sharding` blocks are the LM config of that size (they must match
the run being loaded: override them as the run was trained, e.g. `--config.lm.num_layers=4`);
`inference` holds the generation settings:

| field              | meaning                                                               |
|--------------------|-----------------------------------------------------------------------|
| decoder            | 'autoregressive' (token by token, causal models) or 'masked' (AR-DF   |
|                    | models: per-frame parallel decoding, `inference/masked_decode.py`)    |
| masked.steps       | parallel decoding steps per latent frame [Lumos: 50]                  |
| masked.gumbel_temperature | confidence noise at the first step, annealed to 0 [ours: 4.5]  |
| masked.history_mask_ratio | share of a finished frame masked in the cache [Lumos: 0.7]     |
| temperature, top_k, top_p | sampling (`inference/sampling.py`); top-k 50 [ours]            |
| continuation_temperature | temperature of the clips after the first (None: `temperature`) [ours] |
| frame_temperature  | temperature of every latent frame after the video's first (None: off) [ours] |
| guidance_scale     | classifier-free guidance s; 1.0 turns the unconditional branch off     |
| first_frame_candidates | first latent frames drawn per prompt, the best scored kept (1: off) [ours] |
| rerank_guidance    | g of their score g log p(x|text) + (1 - g) log p(x) (`inference/rerank.py`) [ours] |
| first_frame_min_object_pixels | candidates with fewer object pixels not kept (0: off) [ours] |
| reencode_first_frame | the kept first frame decoded and encoded before it is continued [ours] |
| continuation_candidates | draws per continued clip; one keeping the object kept (1: off) [ours] |
| continuation_keep  | share of the object's pixels each new frame of a kept draw holds [ours] |
| clip_latent_frames | latent frames per clip: 17 = 65 frames = 10 s [Loong]                  |
| cond_latent_frames | context carried into the next clip [ours: 4]                           |
| reencode           | decode the context to pixels and encode it again [Loong]               |
| reencode_margin    | a re-encoded token keeps its code while its latent stays this near it [ours] |
| height, width      | pixels; tokens per frame = (height / 8) * (width / 8)                  |
| fps                | frames per second of the written video: 65 frames per 10 s [Loong]     |
| max_text_len       | text budget in ids; longer prompts are truncated with a warning        |
| prompt_multiple    | prompt widths round up to this (fewer recompiles)                      |
| text_model         | SentencePiece model; '' = RUN/text.model                               |
| tokenizer_config   | video tokenizer config spec, e.g. 'configs/tokenizer/magvit2.py:loong_246m' |
| tokenizer_dir      | the tokenizer's training run (orbax checkpoints under it)              |
| tokenizer_kind     | 'learned' (the run above) or 'oracle' (pooling codec, no files)        |
| oracle_frames      | the oracle's latent frame: 'mean' of its 4 frames or the 'last' one    |
| flat_codes         | re-encoding's flat-block canonicalisation, as the LM's tokens had it (`data/flat_codes.py`) |

`tiny` matches `train_lm`'s built-in token stream: 4x4 tokens per latent frame (32x32 pixels),
5 latent frames per clip.

`<size>,ardf` samples a model trained with `configs/stages/stageK.py:<size>,ardf` (MM-RoPE,
frame-bidirectional attention, AR-DF): the masked decoder, guidance 15 [Lumos] for full sizes;
`<size>,mmrope` a causal MM-RoPE model, token by token. The `lm` block follows the variant
(`configs/lm/llama.py:apply_variant`).
"""

import importlib.util
import os

import ml_collections


def _llama():
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lm", "llama.py")
  spec = importlib.util.spec_from_file_location("_llama_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size, *options = (arg or "tiny").split(",")
  llama = _llama()
  variant = llama.variant_of(options)
  lm = llama.get_config(",".join([size, variant]))
  config = ml_collections.ConfigDict()
  for block in ("vocab", "lm", "mesh", "sharding"):
    config[block] = lm[block]
  small = size == "tiny"
  masked = variant == "ardf"  # AR-DF models see their whole frame: parallel in-frame decoding
  config.inference = dict(
      decoder="masked" if masked else "autoregressive",
      masked=dict(steps=50, gumbel_temperature=4.5, history_mask_ratio=0.7),
      temperature=1.0,
      # Sampling temperature of the clips after the first (None: `temperature`): a continuation
      # mostly copies its context, and sampling noise compounds from clip to clip.
      continuation_temperature=ml_collections.FieldReference(None, field_type=float),
      # Temperature of every latent frame after the video's first (None: `temperature`), which
      # the previous frame mostly decides (long_video.LongVideoConfig.frame_temperature).
      frame_temperature=ml_collections.FieldReference(None, field_type=float),
      top_k=50,
      top_p=1.0,
      # Best-of-N first frame (inference/rerank.py): N first latent frames per prompt, the one
      # with the best guided log-likelihood kept; every later frame continues it. 1: off.
      first_frame_candidates=1,
      rerank_guidance=1.0,
      # ... of which one with fewer pixels off the background colour is not kept
      # (long_video.object_check; 0: off).
      first_frame_min_object_pixels=0,
      object_contrast=0.25,
      reencode_first_frame=False,
      # K draws of each continued clip; the first whose new frames keep `continuation_keep` of
      # the object pixels of the video's first frame is kept (long_video.keep_object). 1: off.
      continuation_candidates=1,
      continuation_keep=0.7,
      guidance_scale=1.0 if small else (15.0 if masked else 3.0),
      clip_latent_frames=5 if small else 17,
      cond_latent_frames=2 if small else 4,
      reencode=True,
      # A re-encoded context token keeps its generated code while its latent stays within this
      # margin of that code's cell (long_video.LongVideoConfig.reencode_margin). 0: plain.
      reencode_margin=0.0,
      height=32 if small else 128,
      width=32 if small else 128,
      fps=6.5,
      max_text_len=6 if small else 128,
      prompt_multiple=16,
      text_model="",
      tokenizer_config="",
      tokenizer_dir="",
      tokenizer_kind="learned",
      oracle_frames="mean",
      flat_codes=dict(enabled=False, tolerance=4.0, margin=1),
  )
  return config
