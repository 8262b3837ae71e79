"""Lumos-1 options of the LM: MM-RoPE and the frame-bidirectional attention mask."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from loong_jax import tokens
from loong_jax.llm import attention, rope, transformer
from tests.llm.helpers import tiny_model

HEAD_DIM = 64


def _rotate(x, pos3):
  sin, cos = rope.rotary("mm_rope", jnp.asarray(pos3, jnp.float32)[None, None], HEAD_DIM, 1e4)
  return rope.apply_rope(x[None, None, None], sin, cos)[0, 0, 0]


def test_mm_rope_equals_1d_rope_on_text_positions():
  positions = jnp.arange(20)[None]
  text_3d = jnp.repeat(positions[..., None], 3, axis=-1)
  for a, b in zip(rope.rotary("mm_rope", text_3d, HEAD_DIM, 1e4),
                  rope.rotary("rope_1d", positions, HEAD_DIM, 1e4)):
    np.testing.assert_array_equal(a, b)


def test_same_thw_gives_the_same_rotation_wherever_the_token_sits():
  vocab = tokens.Vocab(100, 64)
  codes = np.arange(2 * 4 * 4).reshape(2, 4, 4) % 64
  short = tokens.mm_rope_positions(tokens.build_sequence([1], codes, vocab), vocab, 4)
  long = tokens.mm_rope_positions(tokens.build_sequence([1] * 9, codes, vocab), vocab, 4)
  # Same (frame, row, col), different text length: positions differ only by the p0 offset,
  # identical on every axis; and the rotation depends on (t, h, w) alone.
  vid_s = short[tokens.frame_index(tokens.build_sequence([1], codes, vocab), vocab) >= 0]
  vid_l = long[tokens.frame_index(tokens.build_sequence([1] * 9, codes, vocab), vocab) >= 0]
  np.testing.assert_array_equal(vid_l - vid_s, 8)
  pos = jnp.asarray([[[7, 16, 24], [3, 3, 3], [7, 16, 24]]])
  sin, cos = rope.rotary("mm_rope", pos, HEAD_DIM, 1e4)
  np.testing.assert_array_equal(sin[0, 0], sin[0, 2])
  np.testing.assert_array_equal(cos[0, 0], cos[0, 2])


def test_mm_rope_positions_follow_the_layout():
  vocab = tokens.Vocab(100, 64)
  seq = tokens.build_sequence([5, 6], np.zeros((2, 2, 3), int), vocab)  # frames of 2 x 3
  pos = tokens.mm_rope_positions(seq, vocab, frame_width=3)
  p0 = int(np.argmax(vocab.is_video(seq)))  # index of the first video id
  np.testing.assert_array_equal(pos[:p0], np.repeat(np.arange(p0)[:, None], 3, 1))
  frame1 = pos[vocab.is_video(seq)][6:]
  np.testing.assert_array_equal(frame1[:, 0], p0 + 4)
  np.testing.assert_array_equal(frame1[:, 1], p0 + 8 * np.array([0, 0, 0, 1, 1, 1]))
  np.testing.assert_array_equal(frame1[:, 2], p0 + 8 * np.array([0, 1, 2, 0, 1, 2]))


def test_mm_rope_relative_property_holds_per_axis():
  q, k = jax.random.normal(jax.random.key(0), (2, HEAD_DIM))
  base = float(_rotate(q, [10, 20, 30]) @ _rotate(k, [4, 12, 2]))
  for axis in range(3):
    shift = np.eye(3, dtype=int)[axis] * 37
    moved = float(_rotate(q, np.array([10, 20, 30]) + shift)
                  @ _rotate(k, np.array([4, 12, 2]) + shift))
    np.testing.assert_allclose(moved, base, rtol=1e-4)
    only_q = float(_rotate(q, np.array([10, 20, 30]) + shift) @ _rotate(k, [4, 12, 2]))
    assert not np.isclose(only_q, base, rtol=1e-3)


def test_frame_bidirectional_mask_sees_its_own_frame_and_no_later_frame():
  vocab = tokens.Vocab(100, 64)
  seq = tokens.build_sequence([1, 2], np.zeros((3, 4), int), vocab)
  frames = jnp.asarray(tokens.frame_index(seq, vocab))[None]
  slots = jnp.arange(len(seq))
  mask = np.asarray(attention.make_mask("frame_bidirectional", slots, slots, frames, frames))[0, 0]
  f = np.asarray(frames[0])
  q, k = np.meshgrid(np.arange(len(seq)), np.arange(len(seq)), indexing="ij")
  own_frame = (f[q] >= 0) & (f[k] == f[q])
  np.testing.assert_array_equal(mask, (k <= q) | own_frame)
  assert mask[own_frame & (k > q)].all() and (own_frame & (k > q)).any()  # later, own frame
  assert not mask[(f[k] >= 0) & (f[k] > f[q]) & (f[q] >= 0)].any()       # no later frame
  assert not mask[(f[q] < 0) & (k > q)].any()                              # text stays causal


def _lumos_model(mm_rope_layout="groups"):
  return tiny_model(rope="mm_rope", attention_mask="frame_bidirectional", num_heads=2,
                    num_kv_heads=1, head_dim=32, mm_rope_layout=mm_rope_layout)[0]


def test_unknown_mm_rope_layout_is_named():
  with pytest.raises(ValueError, match="config.lm.mm_rope_layout"):
    _lumos_model("rows")


@pytest.mark.parametrize("layout", ["groups", "slots"])
def test_frame_at_a_time_decoding_matches_the_full_forward(layout):
  model = _lumos_model(layout)
  vocab = tokens.Vocab(1_000, 256)
  rng = np.random.default_rng(0)
  seq = tokens.build_sequence(rng.integers(0, 1000, 3), rng.integers(0, 256, (3, 2, 2)), vocab)
  ids = jnp.asarray(seq)[None]
  pos = jnp.asarray(tokens.mm_rope_positions(seq, vocab, 2))[None]
  frames = jnp.asarray(tokens.frame_index(seq, vocab))[None]
  params = jax.jit(model.init)(jax.random.key(0), ids, pos, frame_ids=frames)["params"]
  full = jax.jit(model.apply)({"params": params}, ids, pos, frame_ids=frames)
  cache = transformer.init_cache(model, 1, len(seq))
  # Prefill the text, then one whole latent frame (<boi> .. <eoi>) per call, then <eov>.
  bounds = [0, 5] + [5 + 6 * (i + 1) for i in range(3)] + [len(seq)]
  # Jitted: one compile per chunk length (5, 6, 1), not op-by-op dispatch of every call.
  step = jax.jit(lambda variables, i, p, f: model.apply(variables, i, p, frame_ids=f, decode=True,
                                                        mutable=["cache"]))
  outs = []
  for a, b in zip(bounds[:-1], bounds[1:]):
    logits, v = step({"params": params, "cache": cache}, ids[:, a:b], pos[:, a:b],
                     frames[:, a:b])
    cache = v["cache"]
    outs.append(logits)
  np.testing.assert_allclose(jnp.concatenate(outs, 1)[..., :vocab.size], full[..., :vocab.size],
                             atol=1e-4)
