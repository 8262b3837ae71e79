"""Attention masks, the grouped-query attention layer and its KV cache.

Masks are built from *sequence slots* (the order tokens enter the stream), never from rotary
positions, so position schemes and mask schemes vary independently. `MASK_KINDS` is the seam for
new masks: a mask function maps query slots `[Lq]`, key slots `[Lk]` and optionally the tokens'
latent frames (`[B, Lq]`, `[B, Lk]`) to `[B or 1, Lq, Lk]` booleans.

The KV cache lives in the `'cache'` collection: `cached_key` `[B, kv_heads, head_dim, max_len]`
and `cached_value` `[B, kv_heads, max_len, head_dim]` per layer, stacked over layers into one
array each that the layer scan carries. The slot counter, slot validity and frame ids are kept
once, by the `Transformer`, and passed in as the `[B, 1, Lq, max_len]` mask plus the write index.
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
  def __call__(self, x, sin, cos, mask=None, cache_index=None, layer=None):
    """x `[B, L, D]`; sin/cos `[B, L, head_dim/2]`; `mask` `[B or 1, 1, L, L_kv]` (None in
    training: causal); in decode mode `cache_index` (int32 scalar: the slot of x's first token)
    and `layer` (int32 scalar: this layer's row of the stacked cache). Returns `[B, L, D]`."""
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

    if self.decode and not self.is_initializing():
      k_t, v = self._update_cache(k, v, cache_index, layer)
      if q.shape[1] == 1:
        out = _one_query_attention(q, k_t, v, mask)
      else:  # a prompt chunk: the fused kernel (flash on GPU), on the cache in its usual layout
        out = jax.nn.dot_product_attention(q, k_t.transpose(0, 3, 1, 2), v.transpose(0, 2, 1, 3),
                                           mask=mask, implementation=cfg.attention_impl)
    elif self.decode:  # init: create the cache, attend within the chunk
      self._update_cache(k, v, cache_index, layer)
      out = jax.nn.dot_product_attention(q, k, v, is_causal=True,
                                         implementation=cfg.attention_impl)
    elif mask is None:  # plain causal training: lets cuDNN / XLA use their causal kernels
      out = jax.nn.dot_product_attention(q, k, v, is_causal=True,
                                         implementation=cfg.attention_impl)
    else:
      out = jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=cfg.attention_impl)
    out = shard(out, ("activation_batch", "activation_length", "activation_heads", None))
    return _einsum((heads, hd, d), "blhk,hkd->bld", ("q_heads", "head_dim", "embed"), cfg,
                   "out")(out)

  def _update_cache(self, k, v, cache_index, layer):
    """Write k/v `[B, L, Hkv, hd]` at `cache_index` into row `layer` of the stacked caches.

    Layouts: keys `[num_layers, B, Hkv, hd, max_len]`, values `[num_layers, B, Hkv, max_len, hd]`,
    the operand layouts of the two attention matmuls, so a decoding step reads the cache without
    transposing it. The caches are created per layer when the model is initialised in decode mode
    with a `[B, max_len]` input (the layer scan stacks them), then carried whole through the layer
    scan, so the update is in place and touches only the new slots.

    Returns:
      this layer's `(keys [B, Hkv, hd, max_len], values [B, Hkv, max_len, hd])`.
    """
    k_t, v = k.transpose(0, 2, 3, 1), v.transpose(0, 2, 1, 3)
    cached_k = self.variable("cache", "cached_key", jnp.zeros, k_t.shape, k.dtype)
    cached_v = self.variable("cache", "cached_value", jnp.zeros, v.shape, v.dtype)
    if self.is_initializing():
      return k_t, v
    zero = jnp.zeros((), jnp.int32)
    index = cache_index.astype(jnp.int32)
    cached_k.value = jax.lax.dynamic_update_slice(
        cached_k.value, k_t[None].astype(cached_k.value.dtype), (layer, zero, zero, zero, index))
    cached_v.value = jax.lax.dynamic_update_slice(
        cached_v.value, v[None].astype(cached_v.value.dtype), (layer, zero, zero, index, zero))
    k_t = jax.lax.dynamic_index_in_dim(cached_k.value, layer, keepdims=False)
    v = jax.lax.dynamic_index_in_dim(cached_v.value, layer, keepdims=False)
    return (shard(k_t, ("cache_batch", "cache_kv_heads", None, "cache_length")),
            shard(v, ("cache_batch", "cache_kv_heads", "cache_length", None)))


def _one_query_attention(q, k_t, v, mask):
  """One decoding step. q `[B, 1, H, hd]`, k_t `[B, Hkv, hd, T]`, v `[B, Hkv, T, hd]`, mask
  `[B or 1, 1, 1, T]` -> `[B, 1, H, hd]`; softmax in float32, as `jax.nn.dot_product_attention`."""
  batch, _, heads, hd = q.shape
  kv_heads = k_t.shape[1]
  q = q.reshape(batch, kv_heads, heads // kv_heads, hd)  # query heads grouped by their kv head
  scores = jnp.einsum("bhgd,bhdt->bhgt", q, k_t).astype(jnp.float32) * hd ** -0.5
  scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
  return jnp.einsum("bhgt,bhtd->bhgd", probs, v).reshape(batch, 1, heads, hd)


def _rms_norm(config, name, axes):
  return nn.RMSNorm(epsilon=config.norm_eps, dtype=config.dtype, param_dtype=config.param_dtype,
                    scale_init=nn.with_logical_partitioning(nn.initializers.ones, axes), name=name)
