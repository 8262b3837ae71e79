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
