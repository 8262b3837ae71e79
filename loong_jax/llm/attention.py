"""Attention masks, the grouped-query attention layer and its KV cache.

Masks are built from *sequence slots* (the order tokens enter the stream), never from rotary
positions, so position schemes and mask schemes vary independently. `MASK_KINDS` is the seam for
new masks: a mask function maps query slots `[Lq]`, key slots `[Lk]` and optionally the tokens'
latent frames (`[B, Lq]`, `[B, Lk]`) to `[B or 1, Lq, Lk]` booleans.

The KV cache lives in the `'cache'` collection: `cached_key` / `cached_value`
`[B, max_len, kv_heads, head_dim]` per layer. The slot counter and slot validity are kept once, by
the `Transformer`, and passed in as the `[B, 1, Lq, max_len]` mask plus the write index.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from loong_jax.llm.rope import apply_rope
from loong_jax.sharding import shard


def causal_mask(q_slots, k_slots, q_frames=None, k_frames=None) -> jax.Array:
  """`[1, Lq, Lk]`: a query sees keys at its own slot and before (Loong)."""
  del q_frames, k_frames
  return (k_slots[None, :] <= q_slots[:, None])[None]


def frame_bidirectional_mask(q_slots, k_slots, q_frames, k_frames) -> jax.Array:
  """`[B, Lq, Lk]`: causal, plus full attention among the tokens of one latent frame [Lumos].

  `q_frames` `[B, Lq]` / `k_frames` `[B, Lk]` give each token's latent frame (-1 outside frames,
  `tokens.frame_index`): a token sees every token of its own `<boi>` .. `<eoi>` span, earlier
  frames and the text, and no token of a later frame.
  """
  same_frame = (q_frames[:, :, None] == k_frames[:, None, :]) & (q_frames[:, :, None] >= 0)
  return causal_mask(q_slots, k_slots) | same_frame


MASK_KINDS = {"causal": causal_mask, "frame_bidirectional": frame_bidirectional_mask}
# Kinds that need the latent frame of every token (`frame_ids` in the model call).
FRAME_MASKS = ("frame_bidirectional",)


def make_mask(kind: str, q_slots, k_slots, q_frames=None, k_frames=None) -> jax.Array:
  """`[B or 1, 1, Lq, Lk]` booleans (True = may attend) for the configured kind."""
  if kind not in MASK_KINDS:
    raise ValueError(f"config.lm.attention_mask={kind!r}; known: {sorted(MASK_KINDS)}")
  if kind in FRAME_MASKS and (q_frames is None or k_frames is None):
    raise ValueError(f"config.lm.attention_mask={kind!r} needs the latent frame of every "
                     "token: pass frame_ids (tokens.frame_index) to the model")
  return MASK_KINDS[kind](q_slots, k_slots, q_frames, k_frames)[:, None]


def _einsum(shape, equation, names, config, name):
  # nn.Einsum initialises the kernel at its full shape, so its logical constraint applies
  # (nn.DenseGeneral initialises a flattened 2D kernel and reshapes afterwards).
  return nn.Einsum(
      shape=shape, einsum_str=equation, use_bias=False, name=name,
      dtype=config.dtype, param_dtype=config.param_dtype,
      kernel_init=nn.with_logical_partitioning(nn.initializers.normal(config.init_std), names))


class Attention(nn.Module):
  """Grouped-query self-attention with rotary embeddings and optional QK-norm.

  Attributes:
    config: the LM config (`llm.transformer.LMConfig`).
    decode: use and update the KV cache (prefill and single-token steps share one path).
  """

  config: Any
  decode: bool = False

  @nn.compact
  def __call__(self, x, sin, cos, mask=None, cache_index=None):
    """x `[B, L, D]`; sin/cos `[B, L, head_dim/2]`; `mask` `[B or 1, 1, L, L_kv]` (None in
    training: causal); in decode mode `cache_index` (int32 scalar: the slot of x's first token).
    Returns `[B, L, D]`."""
    cfg = self.config
    heads, kv_heads, hd = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    d = cfg.d_model
    q = _einsum((d, heads, hd), "bld,dhk->blhk", ("embed", "q_heads", "head_dim"), cfg,
                "query")(x)
    k = _einsum((d, kv_heads, hd), "bld,dhk->blhk", ("embed", "kv_heads", "head_dim"), cfg,
                "key")(x)
    v = _einsum((d, kv_heads, hd), "bld,dhk->blhk", ("embed", "kv_heads", "head_dim"), cfg,
                "value")(x)
    if cfg.qk_norm:
      q = _rms_norm(cfg, "query_norm", ("head_dim",))(q)
      k = _rms_norm(cfg, "key_norm", ("head_dim",))(k)
    q, k = apply_rope(q, sin, cos), apply_rope(k, sin, cos)
    q = shard(q, ("activation_batch", "activation_length", "activation_heads", None))
    k = shard(k, ("activation_batch", "activation_length", "activation_kv_heads", None))
    v = shard(v, ("activation_batch", "activation_length", "activation_kv_heads", None))

    if self.decode:
      k, v = self._update_cache(k, v, cache_index)
    if mask is None:  # plain causal training: lets cuDNN / XLA use their causal kernels
      out = jax.nn.dot_product_attention(q, k, v, is_causal=True,
                                         implementation=cfg.attention_impl)
    else:
      out = jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=cfg.attention_impl)
    out = shard(out, ("activation_batch", "activation_length", "activation_heads", None))
    return _einsum((heads, hd, d), "blhk,hkd->bld", ("q_heads", "head_dim", "embed"), cfg,
                   "out")(out)

  def _update_cache(self, k, v, cache_index):
    """Write k/v `[B, L, Hkv, hd]` at `cache_index`; return the whole cache `[B, max_len, ...]`.

    The cache is created (zeros, with the length of the input) when the model is initialised in
    decode mode with a `[B, max_len]` input.
    """
    is_init = self.is_initializing()
    cached_k = self.variable("cache", "cached_key", jnp.zeros, k.shape, k.dtype)
    cached_v = self.variable("cache", "cached_value", jnp.zeros, v.shape, v.dtype)
    if is_init:
      return k, v
    zero = jnp.zeros((), jnp.int32)
    start = (zero, cache_index.astype(jnp.int32), zero, zero)
    cached_k.value = jax.lax.dynamic_update_slice(cached_k.value, k.astype(cached_k.value.dtype),
                                                  start)
    cached_v.value = jax.lax.dynamic_update_slice(cached_v.value, v.astype(cached_v.value.dtype),
                                                  start)
    names = ("cache_batch", "cache_length", "cache_kv_heads", None)
    return shard(cached_k.value, names), shard(cached_v.value, names)


def _rms_norm(config, name, axes):
  return nn.RMSNorm(epsilon=config.norm_eps, dtype=config.dtype, param_dtype=config.param_dtype,
                    scale_init=nn.with_logical_partitioning(nn.initializers.ones, axes), name=name)
