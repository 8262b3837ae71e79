"""A small LM and vocabulary shared by the inference tests."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from loong_jax import tokens
from loong_jax.llm import transformer

# 40 text ids, 32 video ids, the specials: 82 ids, padded to 128.
VOCAB = tokens.Vocab(text_size=40, video_size=32)


def small_lm_config(**overrides) -> transformer.LMConfig:
  fields = dict(vocab_size=VOCAB.size, vocab_pad_multiple=128, num_layers=2, d_model=32,
                num_heads=4, num_kv_heads=2, head_dim=8, mlp_dim=64, rope="rope_1d",
                rope_theta=10_000.0, attention_mask="causal", attention_impl=None, qk_norm=False,
                norm_eps=1e-5, init_std=0.3, remat="none", dtype=jnp.float32,
                param_dtype=jnp.float32)
  fields.update(overrides)
  return transformer.LMConfig(**fields)


@pytest.fixture(scope="session")
def vocab():
  return VOCAB


@pytest.fixture(scope="session")
def lm():
  """`(model, params)`: a 2-layer model with informative (large) random weights."""
  model = transformer.Transformer(small_lm_config())
  params = nn.unbox(model.init(jax.random.key(1), jnp.zeros((1, 8), jnp.int32))["params"])
  return model, params
