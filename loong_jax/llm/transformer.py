"""LLaMA decoder: pre-norm blocks (RMSNorm, GQA attention with RoPE, SwiGLU), no biases, untied
embeddings, layers under `nn.scan` with a configurable remat policy, logically partitioned params.

Parameter tree (scanned layers carry a leading `[num_layers]` axis)::

  embed/embedding                    [V_pad, D]            ('vocab', 'embed')
  layers/attention_norm/scale        [N, D]
  layers/attention/{query,key,value} [N, D, H(kv), hd]     ('embed', 'q_heads'|'kv_heads', 'head_dim')
  layers/attention/out               [N, H, hd, D]
  layers/mlp_norm/scale              [N, D]
  layers/mlp/{gate,up}/kernel        [N, D, F]             ('embed', 'mlp')
  layers/mlp/down/kernel             [N, F, D]
  final_norm/scale                   [D]
  lm_head/kernel                     [D, V_pad]            ('embed', 'vocab')

With `prev_frame_input` one more: `prev_frame_embed/embedding [V_pad, D]` ('vocab', 'embed'),
or with `prev_frame_radius` r > 0 (the neighbours embedded by `embed`) instead
`prev_frame_mix/kernel [(2r + 1)**2 * D, D]` (None, 'embed'); with `copy_head` also
`copy_select/kernel [D, 1 + (2r + 1)**2]` ('embed', None).

With `video_code_levels` (digit-factorised video codes, llm/code_digits.py) two more::

  video_digits                       [sum(levels), D]      (None, 'embed')
  video_digits_head/kernel           [D, sum(levels)]      ('embed', None)
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from loong_jax import tokens as tokens_lib
from loong_jax.llm import attention as attn_lib
from loong_jax.llm import code_digits
from loong_jax.llm import rope as rope_lib
from loong_jax.sharding import shard

REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


@dataclasses.dataclass(frozen=True)
class LMConfig:
  """The `config.lm` fields; every one must be set by the config file (see configs/lm/llama.py)."""

  vocab_size: int          # real ids (40,202 for Loong); logits beyond it are masked
  vocab_pad_multiple: int  # embedding rows are rounded up to this (128 for the MXU / tensor cores)
  num_layers: int
  d_model: int
  num_heads: int
  num_kv_heads: int        # < num_heads: grouped-query attention
  head_dim: int
  mlp_dim: int
  rope: str                # a key of rope.ROPE_KINDS: 'rope_1d' (Loong) or 'mm_rope' (Lumos)
  rope_theta: float
  attention_mask: str      # attention.MASK_KINDS: 'causal' (Loong), 'frame_bidirectional' (Lumos)
  attention_impl: str | None  # jax.nn.dot_product_attention `implementation`: None, 'xla', 'cudnn'
  qk_norm: bool
  norm_eps: float
  init_std: float
  remat: str               # a key of REMAT_POLICIES
  dtype: Any               # compute dtype
  param_dtype: Any
  # Optional (defaults: off). FSQ levels of the video codes (ids video_offset ..
  # video_offset + prod - 1): their embeddings are sums of per-digit rows and per-digit logits are
  # added to the head's (llm/code_digits.py). () = one free row per id (Loong).
  video_code_levels: tuple[int, ...] = ()
  video_offset: int = 0
  # With video_code_levels: a video id's logit is the sum of its digits' logits alone (the head's
  # own video columns unused), so a code never seen as a target scores what its digits score.
  digit_logits_only: bool = False
  # Optional (default: off). Previous-frame input: each input slot also gets the embedding (its own
  # table) of the id its target had one latent frame earlier (`tokens.previous_frame_inputs`), so
  # that carrying the scene over from the previous frame is a lookup, not a long-range attention
  # pattern to discover. Causal models only (the target is the next slot).
  prev_frame_input: bool = False
  # With prev_frame_input: > 0 gives each slot the frame-mate's whole (2r + 1) x (2r + 1)
  # neighbourhood (`tokens.previous_frame_inputs(..., radius=r)`), each neighbour embedded as
  # inputs are, concatenated and projected to d_model, so that a one-block move in the prompted
  # direction is a choice among the inputs. 0 = the frame-mate alone (its own table).
  prev_frame_radius: int = 0
  # With prev_frame_input: a copy head (`Transformer._copy_mixture`): the next id is drawn from
  # the vocabulary or copied from one of the previous-frame ids, chosen by a learnt softmax.
  copy_head: bool = False
  # With rope='mm_rope': how the axes share the frequency slots (rope.MM_ROPE_LAYOUTS): 'groups'
  # (Lumos, 4 t + 6 h + 6 w per 16 slots) or 'slots' (the same shares interleaved slot by slot;
  # with head_dim 32 'groups' leaves w only slow slots that barely tell columns apart).
  mm_rope_layout: str = "groups"
  # Optional (default: off) [ours]. Caption summary input: each slot also adds a projection
  # (`text_summary_proj`) of the mean embedding of the text ids (< video_offset) at or before it,
  # so every video slot holds the prompt's words (a motion word included) without having to find
  # them by attention. Causal (a running mean); the KV-cached decoder carries its sum and count.
  text_summary_input: bool = False

  @classmethod
  def from_config(cls, config) -> "LMConfig":
    """Build from a ConfigDict, naming any unknown, missing or inconsistent field."""
    given = dict(config)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(given) - fields)
    if unknown:
      raise ValueError(f"config.lm: unknown field(s) {unknown}; known: {sorted(fields)}")
    optional = {f.name for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
    missing = sorted(fields - set(given) - optional)
    if missing:
      raise ValueError(f"config.lm: missing field(s) {missing}")
    for key in ("dtype", "param_dtype"):
      given[key] = jnp.dtype(given[key])
    if "video_code_levels" in given:
      given["video_code_levels"] = tuple(int(l) for l in given["video_code_levels"])
    out = cls(**given)
    out.validate()
    return out

  def validate(self):
    def need(ok, field, msg):
      if not ok:
        raise ValueError(f"config.lm.{field}: {msg}")
    for name in ("vocab_size", "num_layers", "d_model", "num_heads", "num_kv_heads", "head_dim",
                 "mlp_dim", "vocab_pad_multiple"):
      need(getattr(self, name) > 0, name, f"must be positive, got {getattr(self, name)}")
    need(self.d_model % self.num_heads == 0, "num_heads",
         f"{self.num_heads} must divide d_model={self.d_model}")
    need(self.num_heads % self.num_kv_heads == 0, "num_kv_heads",
         f"{self.num_kv_heads} must divide num_heads={self.num_heads}")
    need(self.head_dim % 2 == 0, "head_dim", f"{self.head_dim} must be even (rotary pairs)")
    need(self.rope in rope_lib.ROPE_KINDS, "rope",
         f"{self.rope!r} not in {sorted(rope_lib.ROPE_KINDS)}")
    need(self.rope != "mm_rope" or self.head_dim % 32 == 0, "head_dim",
         f"{self.head_dim}: MM-RoPE splits head_dim / 2 slots in groups of 16")
    need(self.mm_rope_layout in rope_lib.MM_ROPE_LAYOUTS, "mm_rope_layout",
         f"{self.mm_rope_layout!r} not in {rope_lib.MM_ROPE_LAYOUTS}")
    need(self.attention_mask in attn_lib.MASK_KINDS, "attention_mask",
         f"{self.attention_mask!r} not in {sorted(attn_lib.MASK_KINDS)}")
    need(self.remat in REMAT_POLICIES, "remat", f"{self.remat!r} not in {sorted(REMAT_POLICIES)}")
    need(not self.prev_frame_input or self.attention_mask == "causal", "prev_frame_input",
         f"needs attention_mask='causal' (the target is the next slot), got "
         f"{self.attention_mask!r}")
    need(self.prev_frame_radius >= 0 and (self.prev_frame_input or not self.prev_frame_radius),
         "prev_frame_radius", f"{self.prev_frame_radius} must be >= 0, and 0 without "
         "prev_frame_input")
    need(self.prev_frame_input or not self.copy_head, "copy_head",
         "needs prev_frame_input (it copies previous-frame ids)")
    need(self.attention_impl in (None, "xla", "cudnn"), "attention_impl",
         f"{self.attention_impl!r} not in (None, 'xla', 'cudnn')")
    if self.video_code_levels:
      size = math.prod(self.video_code_levels)
      need(min(self.video_code_levels) >= 2 and self.video_offset >= 0
           and self.video_offset + size <= self.vocab_size, "video_code_levels",
           f"{self.video_code_levels} ({size} codes from id {self.video_offset}) must be levels "
           f">= 2 whose codes lie inside the {self.vocab_size}-id vocabulary")
    need(self.video_code_levels or not self.digit_logits_only, "digit_logits_only",
         "needs video_code_levels (the digits whose logits it sums)")

  @property
  def padded_vocab_size(self) -> int:
    return -(-self.vocab_size // self.vocab_pad_multiple) * self.vocab_pad_multiple


def _rms_norm(cfg: LMConfig, name: str, axes=("norm",)):
  return nn.RMSNorm(epsilon=cfg.norm_eps, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                    scale_init=nn.with_logical_partitioning(nn.initializers.ones, axes), name=name)


def _dense(cfg: LMConfig, features: int, names, name: str):
  return nn.Dense(features, use_bias=False, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                  kernel_init=nn.with_logical_partitioning(
                      nn.initializers.normal(cfg.init_std), names), name=name)


class MLP(nn.Module):
  """SwiGLU: down(silu(gate(x)) * up(x)). `[B, L, D] -> [B, L, D]`."""

  config: LMConfig

  @nn.compact
  def __call__(self, x):
    cfg = self.config
    gate = _dense(cfg, cfg.mlp_dim, ("embed", "mlp"), "gate")(x)
    up = _dense(cfg, cfg.mlp_dim, ("embed", "mlp"), "up")(x)
    h = shard(nn.silu(gate) * up, ("activation_batch", "activation_length", "activation_mlp"))
    return _dense(cfg, cfg.d_model, ("mlp", "embed"), "down")(h)


class Block(nn.Module):
  """One pre-norm decoder layer, in scan form: `(x, *broadcast, layer) -> (x, None)`."""

  config: LMConfig
  decode: bool = False

  @nn.compact
  def __call__(self, x, sin, cos, mask, cache_index, layer):
    cfg = self.config
    h = _rms_norm(cfg, "attention_norm")(x)
    x = x + attn_lib.Attention(cfg, self.decode, name="attention")(h, sin, cos, mask, cache_index,
                                                                   layer)
    h = _rms_norm(cfg, "mlp_norm")(x)
    x = x + MLP(cfg, name="mlp")(h)
    x = shard(x, ("activation_batch", "activation_length", "activation_embed"))
    return x, None


def sequence_inputs(config: LMConfig, inputs, vocab: tokens_lib.Vocab, frame_width: int) -> dict:
  """The layout keywords of a whole-sequence call, derived from `inputs [B, L]` as training
  derives them: `positions` (MM-RoPE `[B, L, 3]`; None for 1D RoPE, the slot index),
  `frame_ids` (`tokens.frame_index`) and `prev_ids` (`tokens.previous_frame_inputs`,
  previous-frame models only, else None)."""
  return dict(
      positions=(tokens_lib.mm_rope_positions(inputs, vocab, frame_width)
                 if config.rope == "mm_rope" else None),
      frame_ids=tokens_lib.frame_index(inputs, vocab),
      prev_ids=(tokens_lib.previous_frame_inputs(inputs, vocab, frame_width,
                                                 config.prev_frame_radius)
                if config.prev_frame_input else None))


class Transformer(nn.Module):
  """The LM. `tokens [B, L] int32 -> logits [B, L, V_pad] float32` (padding logits very negative).

  Training: `model.apply({'params': p}, tokens)`; positions default to `0..L-1`.
  Decoding: init with `decode=True` on a `[B, max_len]` input to create the `'cache'` collection
  (see `init_cache`), then call repeatedly with `decode=True, mutable=['cache']` on chunks
  (a prompt, then one token at a time). `input_mask [B, L]` marks real tokens in a chunk (False =
  padding that no later token attends to); positions default to the slot index.

  `positions` are rotary positions: `[B, L]`, or `[B, L, 3]` (t, h, w) for `rope='mm_rope'`
  (`tokens.mm_rope_positions`). `frame_ids [B, L]` (`tokens.frame_index`: each token's latent frame,
  -1 outside frames) are needed by frame-level masks (`attention_mask='frame_bidirectional'`); in
  decode mode they are cached with the keys. `prev_ids [B, L]` (`tokens.previous_frame_inputs`:
  the id each slot's target had one latent frame earlier, -1 for none; `[B, L, (2r + 1)**2]`, its
  neighbourhood, with `prev_frame_radius` r > 0) are required by `prev_frame_input` models.
  """

  config: LMConfig

  @nn.compact
  def __call__(self, tokens, positions=None, input_mask=None, frame_ids=None,
               decode: bool = False, prev_ids=None):
    cfg = self.config
    batch, length = tokens.shape
    mask = cache_index = None
    slots = jnp.arange(length, dtype=jnp.int32)
    if frame_ids is None and self.is_initializing():
      frame_ids = jnp.full(tokens.shape, -1, jnp.int32)  # shapes only: init needs no layout
    if decode:
      mask, cache_index = self._decode_mask(tokens, input_mask, frame_ids)
      slots = cache_index + slots
    elif cfg.attention_mask != "causal":
      mask = attn_lib.make_mask(cfg.attention_mask, slots, slots, frame_ids, frame_ids)
    if positions is None:
      positions = jnp.broadcast_to(slots, (batch, length))
    sin, cos = rope_lib.rotary(cfg.rope, positions, cfg.head_dim, cfg.rope_theta,
                               cfg.mm_rope_layout)

    embed = nn.Embed(cfg.padded_vocab_size, cfg.d_model, dtype=cfg.dtype,
                     param_dtype=cfg.param_dtype,
                     embedding_init=nn.with_logical_partitioning(
                         nn.initializers.normal(cfg.init_std), ("vocab", "embed")),
                     name="embed")
    digits = None  # [V_pad, sum(levels)] 0/1: each video id's digits (llm/code_digits.py)
    if cfg.video_code_levels:
      digits = jnp.asarray(code_digits.digit_matrix(cfg.video_code_levels, cfg.video_offset,
                                                    cfg.padded_vocab_size))
      digit_table = self.param("video_digits", nn.with_logical_partitioning(
          nn.initializers.normal(cfg.init_std), (None, "embed")),
          (sum(cfg.video_code_levels), cfg.d_model), cfg.param_dtype)
      embed_ids = functools.partial(self._digit_embed, embed, digits, digit_table)
    else:
      embed_ids = embed
    x = embed_ids(tokens)
    if cfg.text_summary_input:
      x = x + self._text_summary(tokens, input_mask, x, decode)
    if cfg.prev_frame_input:
      prev_ids = self._checked_prev_ids(tokens, prev_ids)
      x = x + self._prev_frame_embed(tokens, prev_ids, embed_ids)
    x = shard(x, ("activation_batch", "activation_length", "activation_embed"))

    block = Block
    if REMAT_POLICIES[cfg.remat] is not None and not decode:
      block = nn.remat(Block, policy=REMAT_POLICIES[cfg.remat], prevent_cse=False)
    # The KV cache of all layers is one `[num_layers, ...]` array carried through the layer loop
    # (not a scanned variable): each layer writes only its new slots in place and reads its slice,
    # instead of the scan copying every layer's whole cache in and out at every decoding step.
    # Init creates it per layer, stacked by the scan: the same `[num_layers, ...]` leaves.
    if self.is_initializing():
      cache_axes = dict(variable_axes={"params": 0, "cache": 0})
    else:
      cache_axes = dict(variable_axes={"params": 0}, variable_carry="cache")
    layers = nn.scan(block, **cache_axes,
                     split_rngs={"params": True}, in_axes=(nn.broadcast,) * 4 + (0,),
                     length=cfg.num_layers, metadata_params={nn.PARTITION_NAME: "layers"})
    x, _ = layers(cfg, decode, name="layers")(x, sin, cos, mask, cache_index,
                                              jnp.arange(cfg.num_layers, dtype=jnp.int32))

    x = _rms_norm(cfg, "final_norm")(x)
    logits = _dense(cfg, cfg.padded_vocab_size, ("embed", "vocab"), "lm_head")(x)
    if digits is not None:  # + each video id's digit logits, summed
      if cfg.digit_logits_only:  # the head's video columns (rows with a digit) dropped
        logits = jnp.where(digits.any(axis=1), 0.0, logits)
      digit_logits = _dense(cfg, sum(cfg.video_code_levels), ("embed", None),
                            "video_digits_head")(x)
      logits = logits + jnp.einsum("blk,vk->blv", digit_logits,
                                   digits.astype(digit_logits.dtype))
    logits = shard(logits, ("activation_batch", "activation_length", "activation_vocab"))
    logits = logits.astype(jnp.float32)
    if cfg.padded_vocab_size != cfg.vocab_size:
      real = jnp.arange(cfg.padded_vocab_size) < cfg.vocab_size
      logits = jnp.where(real, logits, jnp.finfo(jnp.float32).min)
    if cfg.copy_head:
      logits = self._copy_mixture(x, logits, prev_ids)
    return logits

  def _digit_embed(self, embed: nn.Embed, digits: jax.Array, digit_table, tokens):
    """`[B, L]` ids -> `[B, L, D]`: video ids get the sum of their digits' rows (`digit_table
    [sum(levels), D]`), other ids their own row of `embed` (the video ids' own rows are left
    unused)."""
    cfg = self.config
    is_video = (tokens >= cfg.video_offset) & (tokens < cfg.video_offset +
                                                math.prod(cfg.video_code_levels))
    video = jnp.einsum("blk,kd->bld", jnp.take(digits, tokens, axis=0).astype(cfg.dtype),
                       jnp.asarray(digit_table, cfg.dtype))
    return jnp.where(is_video[..., None], video, embed(tokens))

  def _text_summary(self, tokens, input_mask, embedded, decode: bool):
    """`[B, L, D]`: `text_summary_proj` of the running mean of the text ids' embeddings (ids
    below `video_offset`; padding and special ids excluded) up to each slot; zero before the
    first text id. `embedded [B, L, D]`: the input embeddings (a text id's is its `embed` row).
    In decode mode the running sum and count live in the 'cache' collection."""
    cfg = self.config
    is_text = tokens < cfg.video_offset
    if input_mask is not None:
      is_text = is_text & input_mask.astype(jnp.bool_)
    rows = embedded * is_text[..., None].astype(embedded.dtype)
    total = jnp.cumsum(rows.astype(jnp.float32), axis=1)                  # [B, L, D]
    count = jnp.cumsum(is_text.astype(jnp.float32), axis=1)               # [B, L]
    if decode:
      batch = tokens.shape[0]
      total_cache = self.variable("cache", "text_sum", jnp.zeros, (batch, cfg.d_model),
                                  jnp.float32)
      count_cache = self.variable("cache", "text_count", jnp.zeros, (batch,), jnp.float32)
      total = total + total_cache.value[:, None]
      count = count + count_cache.value[:, None]
      if not self.is_initializing():
        total_cache.value, count_cache.value = total[:, -1], count[:, -1]
    mean = (total / jnp.maximum(count, 1.0)[..., None]).astype(cfg.dtype)
    return _dense(cfg, cfg.d_model, ("embed", None), "text_summary_proj")(mean)

  def _checked_prev_ids(self, tokens, prev_ids):
    """`prev_ids` of the shape the config wants (all -1 when initialising without them)."""
    cfg = self.config
    want = tokens.shape + tokens_lib.neighbourhood_shape(cfg.prev_frame_radius)
    if prev_ids is None:
      if not self.is_initializing():
        raise ValueError("config.lm.prev_frame_input=True: the model needs prev_ids "
                         "(tokens.previous_frame_inputs of its inputs)")
      return jnp.full(want, -1, jnp.int32)
    if prev_ids.shape != want:
      raise ValueError(f"prev_ids: shape {prev_ids.shape}, expected {want} "
                       f"(config.lm.prev_frame_radius={cfg.prev_frame_radius})")
    return prev_ids

  def _copy_mixture(self, x, logits, prev_ids):
    """Copy head: `[B, L, V]` log-probabilities of a mixture of the vocabulary softmax and a copy
    of one of the slot's previous-frame ids (`prev_ids [B, L(, K)]`, -1 = none).

    A selector `copy_select [D, 1 + K]` ('embed', None) on the final hidden state `x [B, L, D]`
    weighs "from the vocabulary" against each present previous-frame id (a pointer-generator
    [See et al. 2017]), so that moving an object one block is one softmax choice among the
    neighbours rather than an exact code to rebuild from mixed embeddings. The result is a valid
    logits array (its softmax is the mixture): losses, sampling and guidance take it unchanged.
    """
    cfg = self.config
    ids = prev_ids if cfg.prev_frame_radius else prev_ids[..., None]  # [B, L, K]
    low = jnp.finfo(jnp.float32).min
    select = _dense(cfg, 1 + ids.shape[-1], ("embed", None), "copy_select")(x)
    present = jnp.concatenate([jnp.ones(ids.shape[:-1] + (1,), bool), ids >= 0], axis=-1)
    log_select = jax.nn.log_softmax(jnp.where(present, select.astype(jnp.float32), low), -1)
    from_vocab = jax.nn.log_softmax(logits, axis=-1) + log_select[..., :1]
    weights = jnp.where(ids >= 0, jnp.exp(log_select[..., 1:]), 0.0)  # [B, L, K]
    batch, length = ids.shape[:2]
    copied = jnp.zeros(logits.shape, jnp.float32).at[
        jnp.arange(batch)[:, None, None], jnp.arange(length)[None, :, None],
        jnp.maximum(ids, 0)].add(weights)
    from_copy = jnp.where(copied > 0, jnp.log(jnp.where(copied > 0, copied, 1.0)), low)
    return jnp.logaddexp(from_vocab, from_copy)

  def _prev_frame_embed(self, tokens, prev_ids, embed_ids):
    """`[B, L, D]`: the previous-frame ids' embeddings, zero where the id is -1.

    `prev_ids [B, L]`: rows of a table of their own (`prev_frame_embed`); or `[B, L, K]`
    (K = (2r + 1)**2 neighbours, `prev_frame_radius` r > 0): the K ids embedded *as inputs are*
    (`embed_ids`: `[B, N] -> [B, N, D]`), so that what is learnt about a code carries over to
    the codes that share its digits, concatenated and projected by `prev_frame_mix [K * D, D]`.
    (On the demo's oracle codes neither form let later frames' object tokens fall below the
    first frame's loss, 2.8-3.2 nats; the copy head did, `_copy_mixture`.)
    """
    cfg = self.config
    ids = jnp.maximum(prev_ids, 0)
    if not cfg.prev_frame_radius:
      rows = nn.Embed(cfg.padded_vocab_size, cfg.d_model, dtype=cfg.dtype,
                      param_dtype=cfg.param_dtype,
                      embedding_init=nn.with_logical_partitioning(
                          nn.initializers.normal(cfg.init_std), ("vocab", "embed")),
                      name="prev_frame_embed")(ids)
      return jnp.where((prev_ids >= 0)[..., None], rows, jnp.zeros((), rows.dtype))
    rows = embed_ids(ids.reshape(tokens.shape[0], -1)).reshape(prev_ids.shape + (cfg.d_model,))
    rows = jnp.where((prev_ids >= 0)[..., None], rows, jnp.zeros((), rows.dtype))
    return _dense(cfg, cfg.d_model, (None, "embed"), "prev_frame_mix")(
        rows.reshape(tokens.shape + (-1,)))

  def _decode_mask(self, tokens, input_mask, frame_ids):
    """Advance the slot counter; return the `[B, 1, L, max_len]` mask and the chunk's first slot."""
    batch, length = tokens.shape
    index = self.variable("cache", "index", lambda: jnp.zeros((), jnp.int32))
    # Slot validity: False for never-written slots and for padding tokens.
    valid = self.variable("cache", "valid", jnp.zeros, tokens.shape, jnp.bool_)
    frames = self.variable("cache", "frame", lambda: jnp.full(tokens.shape, -1, jnp.int32))
    start = index.value
    if self.is_initializing():
      return None, start
    zero = jnp.zeros((), jnp.int32)
    chunk_valid = jnp.ones(tokens.shape, jnp.bool_) if input_mask is None else input_mask
    valid.value = jax.lax.dynamic_update_slice(valid.value, chunk_valid.astype(jnp.bool_),
                                               (zero, start))
    if frame_ids is not None:
      frames.value = jax.lax.dynamic_update_slice(frames.value, frame_ids.astype(jnp.int32),
                                                  (zero, start))
    index.value = start + length
    max_len = valid.value.shape[1]
    q_slots = start + jnp.arange(length, dtype=jnp.int32)
    k_slots = jnp.arange(max_len, dtype=jnp.int32)
    mask = attn_lib.make_mask(self.config.attention_mask, q_slots, k_slots,
                              None if frame_ids is None else frame_ids, frames.value)
    return mask & valid.value[:, None, None, :], start


def init_cache(model: Transformer, batch_size: int, max_len: int):
  """A zero KV cache for `batch_size` sequences of up to `max_len` slots (no params allocated)."""
  tokens = jnp.zeros((batch_size, max_len), jnp.int32)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), tokens, decode=True)["cache"])
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), nn.unbox(shapes))
