import jax
import jax.numpy as jnp
import numpy as np
import pytest

from loong_jax.llm import rope


def _rotate(x, pos, theta=10_000.0):
  sin, cos = rope.rotary("rope_1d", jnp.full((1, 1), pos), x.shape[-1], theta)
  return rope.apply_rope(x[None, None, None], sin, cos)[0, 0, 0]


def test_matches_complex_rotation_reference():
  x = np.random.default_rng(0).normal(size=16).astype(np.float32)
  half = 8
  freqs = 10_000.0 ** (-np.arange(half) * 2 / 16)
  z = (x[:half] + 1j * x[half:]) * np.exp(1j * 7 * freqs)
  np.testing.assert_allclose(_rotate(jnp.asarray(x), 7), np.concatenate([z.real, z.imag]),
                             rtol=1e-5, atol=1e-5)


def test_dot_product_depends_only_on_relative_position():
  q, k = jax.random.normal(jax.random.key(0), (2, 32))
  dots = [float(_rotate(q, m) @ _rotate(k, m - 5)) for m in (5, 11, 400)]
  np.testing.assert_allclose(dots, dots[0], rtol=1e-4)
  assert not np.isclose(float(_rotate(q, 5) @ _rotate(k, 1)), dots[0])


def test_unknown_kind_is_named():
  with pytest.raises(ValueError, match="config.lm.rope='xpos'"):
    rope.rotary("xpos", jnp.zeros((1, 1)), 8, 10_000.0)


def test_mm_rope_layouts_share_the_slots_four_six_six():
  groups, slots = rope.mm_rope_axes(16, "groups"), rope.mm_rope_axes(16, "slots")
  np.testing.assert_array_equal(groups, rope.MM_ROPE_GROUP)
  np.testing.assert_array_equal(np.bincount(slots), [4, 6, 6])
  np.testing.assert_array_equal(np.bincount(rope.mm_rope_axes(64, "slots")), [16, 24, 24])
  for axis in range(3):  # 'slots': every axis among the three fastest slots, and in each half
    assert axis in slots[:3] and axis in slots[8:11]
  assert groups[:10].tolist().count(2) == 0  # 'groups' with one group: w has the slow end only
  with pytest.raises(ValueError, match="mm_rope_layout='rows'"):
    rope.mm_rope_axes(16, "rows")


def test_mm_rope_slots_layout_tells_neighbouring_columns_apart():
  """One column (8 position units) turns w's fastest slot by 0.025 rad under 'groups' at
  head_dim 32, by over 1 rad under 'slots'; text positions stay 1D RoPE under both."""
  pos = jnp.asarray([[[100, 100, 100], [100, 100, 108]]], jnp.float32)  # [1, 2, 3]: w + 8
  fastest_w = {}
  for layout in ("groups", "slots"):
    angles = rope.mm_rope_angles(pos, 32, 1e4, layout)
    axes = rope.mm_rope_axes(16, layout)
    turn = np.asarray(angles[0, 1] - angles[0, 0])
    np.testing.assert_allclose(turn[axes != 2], 0.0, atol=1e-4)
    fastest_w[layout] = float(turn[axes == 2].max())
    text = jnp.arange(5, dtype=jnp.float32)[None]
    np.testing.assert_allclose(rope.mm_rope_angles(text, 32, 1e4, layout),
                               rope.rope_1d_angles(text, 32, 1e4), rtol=1e-6)
  assert fastest_w["groups"] < 0.03 < 1.0 < fastest_w["slots"]
