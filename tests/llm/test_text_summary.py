"""Caption summary input (`config.lm.text_summary_input`): the added vector against a naive
running mean, causality, what counts as text, and that it reaches the video slots. KV-cached
decoding with it: tests/llm/test_prev_frame.py (`test_cached_decoding_...`)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from loong_jax import tokens
from loong_jax.llm import transformer
from tests.inference.conftest import small_lm_config

VOCAB = tokens.Vocab(text_size=40, video_size=32)


def _model_and_params():
  model = transformer.Transformer(small_lm_config(text_summary_input=True,
                                                  video_offset=VOCAB.video_offset))
  params = jax.jit(lambda: nn.unbox(model.init(jax.random.key(4),
                                                jnp.zeros((1, 8), jnp.int32))["params"]))()
  return model, params


def _sequence(rng):
  codes = rng.integers(0, VOCAB.video_size, (2, 4))
  return tokens.build_sequence(rng.integers(0, VOCAB.text_size, 5), codes, VOCAB)


def test_the_summary_is_the_projected_running_mean_of_the_text_embeddings():
  model, params = _model_and_params()
  seq = _sequence(np.random.default_rng(0))[None]
  _, state = model.apply({"params": params}, seq, capture_intermediates=lambda m, _: (
      m.name == "text_summary_proj"), mutable=["intermediates"])
  got = np.asarray(state["intermediates"]["text_summary_proj"]["__call__"][0][0])
  table = np.asarray(params["embed"]["embedding"])
  kernel = np.asarray(params["text_summary_proj"]["kernel"])
  want, rows = [], []
  for t in seq[0]:  # naive: the mean of the text rows seen so far, zero before any
    if t < VOCAB.video_offset:
      rows.append(table[t])
    want.append(np.mean(rows, 0) @ kernel if rows else np.zeros(kernel.shape[1]))
  np.testing.assert_allclose(got, np.stack(want), rtol=1e-5, atol=1e-6)
  assert np.abs(got[-1]).sum() > 0


def test_the_summary_is_causal_and_reaches_the_video_slots():
  model, params = _model_and_params()
  rng = np.random.default_rng(1)
  seq = _sequence(rng)
  forward = jax.jit(lambda x: model.apply({"params": params}, x)[0])
  base = np.asarray(forward(seq[None]))
  later = seq.copy()
  later[-3] = (later[-3] + 1) % VOCAB.size  # a change near the end: earlier slots unchanged
  np.testing.assert_allclose(np.asarray(forward(later[None]))[:-3], base[:-3], atol=1e-6)
  # With every attention output zeroed (no slot reads another), a text word still changes every
  # later slot: through the summary.
  cut = jax.tree_util.tree_map_with_path(
      lambda path, v: jnp.zeros_like(v) if "out" in jax.tree_util.keystr(path) else v, params)
  other = seq.copy()
  other[1] = (other[1] + 1) % VOCAB.text_size
  f = jax.jit(lambda p, x: model.apply({"params": p}, x)[0])
  a, b = np.asarray(f(cut, seq[None])), np.asarray(f(cut, other[None]))
  assert np.all(np.abs(a[1:] - b[1:]).max(-1) > 1e-5)
  np.testing.assert_allclose(a[0], b[0], atol=1e-6)


def test_special_and_video_ids_are_not_text():
  model, params = _model_and_params()
  seq = _sequence(np.random.default_rng(2))
  text_end = int(np.nonzero(seq < VOCAB.video_offset)[0].max()) + 1
  _, state = model.apply({"params": params}, seq[None], capture_intermediates=lambda m, _: (
      m.name == "text_summary_proj"), mutable=["intermediates"])
  got = np.asarray(state["intermediates"]["text_summary_proj"]["__call__"][0][0])
  # After the text, only special and video ids follow: the summary stays the caption's mean.
  np.testing.assert_allclose(got[text_end:], np.broadcast_to(got[text_end - 1],
                                                             got[text_end:].shape), atol=1e-6)
