import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from loong_jax.llm import attention, rope, transformer
from tests.llm.helpers import tiny_config, tiny_model


def _init(model, batch=2, length=12, seed=0):
  tokens = jax.random.randint(jax.random.key(seed + 1), (batch, length), 0,
                              model.config.vocab_size)
  params = jax.jit(model.init)(jax.random.key(seed), tokens)["params"]
  return params, tokens


@pytest.mark.parametrize("qk_norm", [False, True])
def test_kv_cache_decoding_matches_full_forward(qk_norm):
  model, _ = tiny_model(qk_norm=qk_norm)
  params, tokens = _init(model)
  full = jax.jit(model.apply)({"params": params}, tokens)
  cache = transformer.init_cache(model, 2, 16)
  # Jitted: one compile per chunk length (5, 1), not op-by-op dispatch of every call.
  decode = jax.jit(lambda variables, t: model.apply(variables, t, decode=True, mutable=["cache"]))
  logits, vars_ = decode({"params": params, "cache": cache}, tokens[:, :5])
  steps = [logits]
  for i in range(5, tokens.shape[1]):
    logits, vars_ = decode({"params": params, "cache": vars_["cache"]}, tokens[:, i:i + 1])
    steps.append(logits)
  vocab = model.config.vocab_size
  np.testing.assert_allclose(jnp.concatenate(steps, 1)[..., :vocab], full[..., :vocab],
                             atol=1e-4)
  assert int(vars_["cache"]["index"]) == tokens.shape[1]


def test_left_padded_prompt_decodes_like_the_unpadded_one():
  model, _ = tiny_model()
  params, tokens = _init(model, batch=1, length=6)
  ref = jax.jit(model.apply)({"params": params}, tokens)
  pad = 3
  padded = jnp.concatenate([jnp.zeros((1, pad), jnp.int32), tokens], axis=1)
  mask = jnp.arange(pad + 6)[None] >= pad
  positions = jnp.maximum(jnp.arange(pad + 6)[None] - pad, 0)
  cache = transformer.init_cache(model, 1, 12)
  logits, _ = jax.jit(functools.partial(model.apply, decode=True, mutable=["cache"]))(
      {"params": params, "cache": cache}, padded, positions=positions, input_mask=mask)
  vocab = model.config.vocab_size
  np.testing.assert_allclose(logits[:, pad:, :vocab], ref[..., :vocab], atol=1e-4)


def test_a_future_token_never_changes_an_earlier_logit():
  model, _ = tiny_model()
  params, tokens = _init(model, batch=1, length=10)
  changed = tokens.at[0, 6].set((tokens[0, 6] + 1) % model.config.vocab_size)
  a = model.apply({"params": params}, tokens)
  b = model.apply({"params": params}, changed)
  np.testing.assert_array_equal(a[:, :6], b[:, :6])
  assert not np.allclose(a[:, 6:], b[:, 6:])


def test_padding_logits_are_masked_and_shapes():
  model, config = tiny_model()
  params, tokens = _init(model)
  logits = model.apply({"params": params}, tokens)
  chex.assert_shape(logits, (2, 12, 1_280))  # 1000 + 256 + 10 = 1266 -> padded to 1280
  assert logits.dtype == jnp.float32
  assert (logits[..., config.lm.vocab_size:] < -1e30).all()
  chex.assert_tree_all_finite(logits[..., :config.lm.vocab_size])


def _naive_attention(x, params, cfg, sin, cos):
  """Per-head loops in NumPy: GQA by repeating key/value heads, causal softmax."""
  x = np.asarray(x, np.float64)
  q = np.einsum("bld,dhk->blhk", x, params["query"]["kernel"])
  k = np.einsum("bld,dhk->blhk", x, params["key"]["kernel"])
  v = np.einsum("bld,dhk->blhk", x, params["value"]["kernel"])

  def rot(t):
    half = t.shape[-1] // 2
    s, c = np.asarray(sin)[:, :, None], np.asarray(cos)[:, :, None]
    return np.concatenate([t[..., :half] * c - t[..., half:] * s,
                           t[..., half:] * c + t[..., :half] * s], -1)

  q, k = rot(q), rot(k)
  group = cfg.num_heads // cfg.num_kv_heads
  b, length = x.shape[:2]
  out = np.zeros((b, length, cfg.num_heads, cfg.head_dim))
  for h in range(cfg.num_heads):
    scores = np.einsum("bqk,bsk->bqs", q[:, :, h], k[:, :, h // group]) / np.sqrt(cfg.head_dim)
    scores = np.where(np.tril(np.ones((length, length), bool)), scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    out[:, :, h] = np.einsum("bqs,bsk->bqk", weights, v[:, :, h // group])
  return np.einsum("blhk,hkd->bld", out, params["out"]["kernel"])


def test_grouped_query_attention_matches_a_naive_reference():
  _, config = tiny_model()
  cfg = transformer.LMConfig.from_config(config.lm)
  layer = attention.Attention(cfg)
  x = jax.random.normal(jax.random.key(0), (2, 7, cfg.d_model))
  positions = jnp.broadcast_to(jnp.arange(7), (2, 7))
  sin, cos = rope.rotary("rope_1d", positions, cfg.head_dim, cfg.rope_theta)
  params = jax.tree.map(lambda p: p * 10, layer.init(jax.random.key(1), x, sin, cos)["params"])
  params = jax.tree.map(np.asarray, nn.unbox(params))
  out = layer.apply({"params": params}, x, sin, cos)
  np.testing.assert_allclose(out, _naive_attention(x, params, cfg, sin, cos), atol=1e-4,
                             rtol=1e-4)


def test_remat_policies_give_the_same_gradients():
  grads = {}
  for policy in ("none", "full", "dots"):
    model, _ = tiny_model(remat=policy)
    params, tokens = _init(model)
    loss = lambda p: jnp.mean(model.apply({"params": p}, tokens)[..., :100] ** 2)  # noqa: E731
    grads[policy] = jax.jit(jax.grad(loss))(params)  # remat acts on the compiled program
  chex.assert_trees_all_close(grads["none"], grads["full"], atol=1e-6)
  chex.assert_trees_all_close(grads["none"], grads["dots"], atol=1e-6)
  assert all(float(jnp.abs(g).sum()) > 0 for g in jax.tree.leaves(grads["none"]))


@pytest.mark.parametrize("field,value,match", [
    ("num_heads", 5, "config.lm.num_heads: 5 must divide d_model=64"),
    ("num_kv_heads", 3, "config.lm.num_kv_heads"),
    ("remat", "sometimes", "config.lm.remat"),
    ("rope", "alibi", "config.lm.rope"),
])
def test_bad_lm_config_names_the_field(field, value, match):
  config = tiny_config(**{f"lm.{field}": value})
  with pytest.raises(ValueError, match=match):
    transformer.LMConfig.from_config(config.lm)


def test_unknown_and_missing_lm_fields_are_named():
  fields = tiny_config().lm.to_dict()
  with pytest.raises(ValueError, match="unknown field\\(s\\) \\['num_layerz'\\]"):
    transformer.LMConfig.from_config(ml_collections.ConfigDict({**fields, "num_layerz": 3}))
  del fields["mlp_dim"]
  with pytest.raises(ValueError, match="missing field\\(s\\) \\['mlp_dim'\\]"):
    transformer.LMConfig.from_config(ml_collections.ConfigDict(fields))
