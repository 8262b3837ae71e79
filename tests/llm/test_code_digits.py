"""Digit-factorised video codes (`config.lm.video_code_levels`, llm/code_digits.py)."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from loong_jax.convert import hf_llama
from loong_jax.data import encoders
from loong_jax.llm import code_digits, transformer
from loong_jax.tokenizer import quantizers
from tests.llm.helpers import tiny_model

LEVELS = (4, 4, 4, 4)  # 256 codes = the tiny vocabulary's video range
TEXT = 1_000


def test_digits_follow_the_fsq_and_oracle_code_layouts():
  fsq = quantizers.FSQ((8, 5, 4), 160)
  codes = np.arange(160)
  half = np.floor(np.asarray(fsq.levels) / 2)
  fsq_digits = np.asarray(fsq.codes_from_indices(jnp.asarray(codes))) * half + half
  np.testing.assert_array_equal(code_digits.digits(codes, (8, 5, 4)), fsq_digits)

  video = jax.random.uniform(jax.random.key(0), (2, 1, 16, 16, 3), minval=-1, maxval=1)
  ids = np.asarray(encoders.pooling_stand_in_encoder(4_096)(video))
  pooled = np.asarray(video).reshape(2, 1, 2, 8, 2, 8, 3).mean(axis=(3, 5))
  channels = np.clip(np.floor((pooled + 1) * 0.5 * 16), 0, 15)  # red, green, blue
  np.testing.assert_array_equal(code_digits.digits(ids, (16, 16, 16)), channels)


def test_digit_matrix_rows():
  m = code_digits.digit_matrix((3, 2), video_offset=5, num_rows=16)
  assert m.shape == (16, 5)
  np.testing.assert_array_equal(m[:5], 0)
  np.testing.assert_array_equal(m[11:], 0)
  # code 4 = digit 1 (of 3) + 3 * digit 1 (of 2): columns 1 and 3 + 1.
  np.testing.assert_array_equal(m[5 + 4], [0, 1, 0, 0, 1])
  with pytest.raises(ValueError, match="exceed"):
    code_digits.digit_matrix((3, 2), video_offset=12, num_rows=16)


def _digit_model(**kwargs):
  return tiny_model(video_code_levels=LEVELS, video_offset=TEXT, **kwargs)


@pytest.mark.parametrize("digits_only", [False, True])
def test_digit_model_equals_the_plain_model_with_folded_tables(digits_only):
  """The reference: a plain LM whose embedding rows / head columns are the digit sums (with
  `digit_logits_only`, the video columns are the digit sums alone)."""
  model, config = _digit_model(digit_logits_only=digits_only)
  tokens = jnp.asarray([[3, TEXT, TEXT + 17, TEXT + 255, 999, TEXT + 64]])
  params = dict(nn.unbox(jax.jit(model.init)(jax.random.key(0), tokens))["params"])
  plain_params = {k: v for k, v in params.items() if not k.startswith("video_digits")}
  lm = dict(config.lm, video_code_levels=LEVELS, video_offset=TEXT,
            digit_logits_only=digits_only)
  embedding, head = hf_llama.fold_video_digits(
      jax.tree.map(np.asarray, params), lm, np.asarray(params["embed"]["embedding"]),
      np.asarray(params["lm_head"]["kernel"]))
  plain_params["embed"] = {"embedding": jnp.asarray(embedding)}
  plain_params["lm_head"] = {"kernel": jnp.asarray(head)}
  plain, _ = tiny_model()
  forward = lambda m, p: jax.jit(m.apply)({"params": p}, tokens)
  chex.assert_trees_all_close(forward(model, params), forward(plain, plain_params), atol=1e-5,
                              rtol=1e-5)
  if digits_only:  # the head's own video columns do not matter
    params["lm_head"] = {"kernel": params["lm_head"]["kernel"].at[:, TEXT:TEXT + 256].add(1.0)}
    chex.assert_trees_all_close(forward(model, params), forward(plain, plain_params), atol=1e-5,
                                rtol=1e-5)


def test_learning_one_code_moves_the_codes_that_share_its_digits():
  """One SGD step through code a's input embedding changes the embedding of b (3 of 4 digits
  shared), not of c (none shared); with the plain table neither moves."""
  a, b, c = TEXT + 0, TEXT + 1, TEXT + 255  # digits (0,0,0,0), (1,0,0,0), (3,3,3,3)
  prompt = jnp.asarray([[7, a, 8]])

  def embedding_change(model):
    params = nn.unbox(jax.jit(model.init)(jax.random.key(0), prompt))["params"]
    loss = lambda p: -jax.nn.log_softmax(model.apply({"params": p}, prompt)[0, 1])[8]  # after a
    grads = jax.jit(jax.grad(loss))(params)
    stepped = jax.tree.map(lambda p, g: p - 1.0 * g, params, grads)
    change = _input_rows(model, stepped, [b, c]) - _input_rows(model, params, [b, c])
    return np.abs(change).sum(axis=-1)

  moved_b, moved_c = embedding_change(_digit_model()[0])
  assert moved_b > 1e-4 and moved_c == 0.0
  plain_b, plain_c = embedding_change(tiny_model()[0])
  assert plain_b == 0.0 and plain_c == 0.0


def _input_rows(model, params, ids):
  """The input embeddings `[len(ids), D]` of `ids` (the folded table of the test above)."""
  cfg = model.config
  if not cfg.video_code_levels:
    return np.asarray(params["embed"]["embedding"])[ids]
  matrix = code_digits.digit_matrix(cfg.video_code_levels, cfg.video_offset,
                                    cfg.padded_vocab_size)
  return matrix[ids] @ np.asarray(params["video_digits"])


def test_digit_logits_only_needs_digits():
  with pytest.raises(ValueError, match="digit_logits_only"):
    tiny_model(digit_logits_only=True)


def test_levels_must_fit_the_vocabulary():
  with pytest.raises(ValueError, match="config.lm.video_code_levels"):
    tiny_model(video_code_levels=(4, 4, 4, 8), video_offset=TEXT)
