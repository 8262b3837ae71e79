"""LLaMA LM configs: `configs/lm/llama.py:<size>` with size in tiny | bench | 700m | 3b | 7b.

The paper does not print its model shapes; ours are LLaMA-style [SPEC §3, ours]:

| size  | layers | d_model | heads (kv) | head_dim | mlp    | params (vocab 40,320, untied) |
|-------|--------|---------|------------|----------|--------|-------------------------------|
| tiny  | 2      | 64      | 4 (2)      | 16       | 128    | 5.2M (almost all embeddings)  |
| bench | 12     | 768     | 12         | 64       | 2048   | 147M (benchmarks' shape)      |
| 700m  | 24     | 1536    | 12         | 128      | 3584   | 0.75B                         |
| 3b    | 26     | 3072    | 24         | 128      | 8192   | 3.19B                         |
| 7b    | 32     | 4096    | 32         | 128      | 11008  | 6.81B                         |

3b uses width 3072 (not OpenLLaMA's 3200) so that head_dim is 128, the MXU / tensor-core tile,
and the total stays within 10% of 3B with our 40k vocabulary; 700m uses mlp 3584 for the same
reason (LLaMA's 8/3 * d = 4096 would give 0.81B).
"""

import ml_collections

from loong_jax import tokens
from loong_jax.llm import rope

# Model/objective variants [Lumos], chosen by a bare word in a config arg (`stage2.py:tiny,ardf`):
# `loong` causal attention, 1D RoPE, next-token prediction (the default); `mmrope` MM-RoPE only;
# `ardf` MM-RoPE + frame-bidirectional attention + AR-DF masking (tube, ratio floor 0.7).
VARIANTS = ("loong", "mmrope", "ardf")
# MM-RoPE splits the head_dim / 2 frequency slots in groups of len(MM_ROPE_GROUP).
MM_ROPE_HEAD_MULTIPLE = 2 * len(rope.MM_ROPE_GROUP)

SIZES = {
    #        layers, d_model, heads, kv_heads, head_dim, mlp
    "tiny": (2, 64, 4, 2, 16, 128),
    "bench": (12, 768, 12, 12, 64, 2048),
    "700m": (24, 1536, 12, 12, 128, 3584),
    "3b": (26, 3072, 24, 24, 128, 8192),
    "7b": (32, 4096, 32, 32, 128, 11008),
}

# Logical axis -> mesh axes. Parameters are FSDP-sharded on 'embed' and tensor-sharded on heads /
# mlp / vocab; activations are batch-sharded over ('data', 'fsdp').
SHARDING_RULES = (
    ("activation_batch", ("data", "fsdp")),
    ("activation_length", None),
    ("activation_embed", None),
    ("activation_heads", "tensor"),
    ("activation_kv_heads", "tensor"),
    ("activation_mlp", "tensor"),
    ("activation_vocab", "tensor"),
    ("cache_batch", ("data", "fsdp")),
    ("cache_length", None),
    ("cache_kv_heads", "tensor"),
    ("embed", "fsdp"),
    ("vocab", "tensor"),
    ("mlp", "tensor"),
    ("q_heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("layers", None),
    ("norm", None),
)


def lm_config(size: str, vocab: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The `config.lm` block for one size; `vocab_size` follows `vocab` lazily (overridable)."""
  if size not in SIZES:
    raise ValueError(f"unknown LM size {size!r}; known: {sorted(SIZES)}")
  layers, d_model, heads, kv_heads, head_dim, mlp = SIZES[size]
  on_cpu = size in ("tiny", "bench")
  return ml_collections.ConfigDict(dict(
      vocab_size=vocab.get_ref("text_size") + vocab.get_ref("video_size") + len(tokens.SPECIALS),
      vocab_pad_multiple=128,
      num_layers=layers, d_model=d_model, num_heads=heads, num_kv_heads=kv_heads,
      head_dim=head_dim, mlp_dim=mlp,
      rope="rope_1d", rope_theta=10_000.0,
      # With rope='mm_rope': 'groups' (Lumos: 4 t + 6 h + 6 w slots per 16) or 'slots' (the same
      # shares interleaved slot by slot, llm/rope.py; for head_dim 32, where one group leaves w
      # only slow frequencies).
      mm_rope_layout="groups",
      attention_mask="causal",
      attention_impl=None,           # None: cuDNN flash on GPU when it applies, XLA elsewhere
      qk_norm=False,
      norm_eps=1e-5,
      init_std=0.02,
      remat="none" if on_cpu else "full",
      # bfloat16 matmuls are slower than float32 on the project's CPU (STACK_NOTES).
      dtype="float32" if on_cpu else "bfloat16",
      param_dtype="float32",
      # Digit-factorised video codes (llm/code_digits.py): the FSQ levels of the video ids, whose
      # embeddings and logits are then built from per-digit rows. () = Loong's plain table.
      video_code_levels=(),
      # True: a video id's logit is its digits' logits alone (llm/transformer.py). On the demo's
      # color_channels=2 codes (README, fifteenth round): drawn first frames colour 0.45 / 0.42,
      # shape 0.22 / 0.23 (the full head: 0.83 / 0.71, 0.71 / 0.37). Off.
      digit_logits_only=False,
      video_offset=vocab.get_ref("text_size"),
      # Previous-frame input (llm/transformer.py): each slot also embeds the id its target had one
      # latent frame earlier. Off: Loong's LM; the demo measures it (configs/demo_cpu.py).
      prev_frame_input=False,
      # > 0: the frame-mate's (2r + 1) x (2r + 1) neighbourhood instead (a one-block move is then a
      # choice among the inputs). 0 with prev_frame_input off.
      prev_frame_radius=0,
      # A copy head (llm/transformer.py): the next id from the vocabulary or copied from one of
      # the previous-frame ids. Needs prev_frame_input.
      copy_head=False,
      # Caption summary input (llm/transformer.py): each slot also adds a projection of the mean
      # embedding of the text ids so far. Off: Loong's LM; the demo measures it.
      text_summary_input=False,
  ))


def variant_of(options) -> str:
  """The variant named among a config arg's comma-separated `options` ('loong' when none);
  `key=value` options are left to the caller."""
  words = [o for o in options if "=" not in o]
  unknown = sorted(set(words) - set(VARIANTS))
  if unknown or len(words) > 1:
    raise ValueError(f"config arg options {words}: name at most one variant of {VARIANTS}")
  return words[0] if words else "loong"


def apply_variant(config: ml_collections.ConfigDict, variant: str) -> ml_collections.ConfigDict:
  """Turn a Loong config (with `lm`, and optionally `train` and `data`) into `variant`, in place.

  MM-RoPE needs head_dim to be a multiple of 32: a smaller head_dim (tiny: 4 x 16) becomes 32
  with the same total query and key/value widths (tiny: 2 x 32, one kv head), so the variants
  have the same parameter count. `ardf` also sets the AR-DF objective (tube masks, ratio floor
  0.7) and 10% text dropout where the data config has it (pre-tokenized shards).
  """
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; known: {VARIANTS}")
  if variant == "loong":
    return config
  lm = config.lm
  lm.rope = "mm_rope"
  if lm.head_dim % MM_ROPE_HEAD_MULTIPLE:
    width, kv_width = lm.num_heads * lm.head_dim, lm.num_kv_heads * lm.head_dim
    lm.head_dim = MM_ROPE_HEAD_MULTIPLE
    lm.num_heads = max(1, width // lm.head_dim)
    lm.num_kv_heads = max(1, kv_width // lm.head_dim)
  if variant == "ardf":
    lm.attention_mask = "frame_bidirectional"
    if "train" in config:
      config.train.objective = "ardf"
      config.train.ardf = dict(mask_kind="tube", min_ratio=0.7)
    if "data" in config and "text_dropout" in config.data:
      config.data.text_dropout = 0.1
  return config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """`size[,variant]`, e.g. `tiny`, `700m,ardf` (see `VARIANTS`)."""
  size, *options = (arg or "tiny").split(",")
  on_cpu = size in ("tiny", "bench")
  config = ml_collections.ConfigDict()
  config.vocab = dict(text_size=32_000, video_size=8_192)
  config.lm = lm_config(size, config.vocab)
  config.mesh = dict(data=-1, fsdp=1, tensor=1)
  config.sharding = dict(rules=SHARDING_RULES, max_replicated_fraction=0.05)
  config.optim = dict(
      learning_rate=3e-3 if size == "tiny" else 3e-4,
      warmup_steps=20 if size == "tiny" else 2_000,
      decay_steps=ml_collections.FieldReference(None, field_type=int),  # None: train.steps
      end_learning_rate_fraction=0.1,
      b1=0.9, b2=0.95, eps=1e-8,
      weight_decay=0.1,
      grad_clip_norm=1.0,
  )
  # The built-in token stream (loong_jax/data/token_stream.py) that train_lm uses on its own.
  # clip_mix: (latent frames, weight) pairs; 5 latent frames = a 17-frame clip.
  config.data = dict(kind="token_stream", clip_mix=((5, 1.0),), frame_width=4, text_len=6,
                     num_patterns=32, loss_weighting="first_frame", first_frame_weight=5.0)
  config.train = dict(
      seed=0,
      batch_size=8 if size == "tiny" else 256,
      seq_len=256 if size == "tiny" else 4_608,
      steps=200 if size == "tiny" else 100_000,
      grad_accum_steps=1,
      objective="next_token",       # or "ardf" (Lumos AR-DF; needs lm.attention_mask=
                                    # "frame_bidirectional"), see loong_jax/train/ardf.py
      ardf=dict(mask_kind="tube", min_ratio=0.7),
      z_loss=0.0,
      # Caption contrast (train/lm_step.py): weight x the log-loss of telling the caption from
      # itself with one of `ids` (text ids, e.g. the colour words) swapped; 0: off.
      caption_contrast=dict(weight=0.0, ids=()),
      log_every=20 if size == "tiny" else 100,
      eval_every=100 if size == "tiny" else 2_000,   # 0: no evaluation
      eval_batches=2,
      checkpoint_every=100 if size == "tiny" else 1_000,
      keep_last=2,
      keep_every=ml_collections.FieldReference(None, field_type=int),  # also keep every K steps
      max_consecutive_skips=5,      # non-finite steps in a row before the run stops
      profile_steps=(),             # (first, last): a jax.profiler trace of that step window
      debug_nan_steps=(),           # fault injection: these steps get NaN inputs
      # For MFU: float32 matmul peak measured on the 2-core CPU (STACK_NOTES); TPU v5p bf16.
      peak_flops_per_device=2.0e11 if on_cpu else 4.59e14,
  )
  return apply_variant(config, variant_of(options))
