"""Sticky re-encoding (`sticky_indices`): every quantizer keeps a token's previous code while its
latent stays within the margin, against naive per-element references; margin 0 is plain
quantization."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from loong_jax.tokenizer import quantizers

LEVELS = (8, 5, 5, 3)


def fsq():
  return quantizers.FSQ(LEVELS, int(np.prod(LEVELS)))


def lfq(bits=5):
  return quantizers.LFQ(2 ** bits, entropy_weight=0.1, commitment_weight=0.25, temperature=0.01,
                        entropy_chunk_size=4096)


def cvq_with_params(size=16, dim=4):
  module = quantizers.CVQ(size, dim, beta=0.25, usage_decay=0.99, anchor_scale=1.0,
                          anchor_eps=1e-3)
  variables = nn.unbox(module.init(jax.random.key(0), jnp.zeros((2, dim))))
  return module, variables


def latents(channels, shape=(6, 5), seed=0):
  return 1.5 * jax.random.normal(jax.random.key(seed), (*shape, channels))


def previous_ids(size, shape=(6, 5), seed=1):
  return jax.random.randint(jax.random.key(seed), shape, 0, size)


def naive_fsq_sticky(z, previous, margin, eps=1e-3):
  """Digit by digit in float64: bound, then keep the previous digit while within 0.5 + margin."""
  out = np.zeros(previous.shape, np.int64)
  for pos in np.ndindex(previous.shape):
    index, base, rest = 0, 1, int(previous[pos])
    for i, level in enumerate(LEVELS):
      half_l = (level - 1) * (1 + eps) / 2
      offset = 0.5 if level % 2 == 0 else 0.0
      bounded = np.tanh(float(z[pos][i]) + np.arctanh(offset / half_l)) * half_l - offset
      old = rest % level - level // 2
      rest //= level
      step = old if abs(bounded - old) <= 0.5 + margin else np.round(bounded)
      index += int(step + level // 2) * base
      base *= level
    out[pos] = index
  return out


@pytest.mark.parametrize("margin", [0.0, 0.3, 1.0])
def test_fsq_sticky_matches_naive_reference(margin):
  z, previous = latents(len(LEVELS)), previous_ids(int(np.prod(LEVELS)))
  ids = fsq().apply({}, z, previous, margin, method="sticky_indices")
  np.testing.assert_array_equal(ids, naive_fsq_sticky(np.asarray(z, np.float64),
                                                      np.asarray(previous), margin))


def test_margin_zero_is_plain_quantization_and_a_wide_margin_keeps_every_code():
  z = latents(len(LEVELS))
  size = int(np.prod(LEVELS))
  _, plain, _ = fsq().apply({}, z)
  np.testing.assert_array_equal(
      fsq().apply({}, z, previous_ids(size), 0.0, method="sticky_indices"), plain)
  previous = previous_ids(size)
  np.testing.assert_array_equal(
      fsq().apply({}, z, previous, float(max(LEVELS)), method="sticky_indices"), previous)
  # A token re-encoded from its own code's latent keeps it at any margin.
  np.testing.assert_array_equal(fsq().apply({}, z, plain, 0.2, method="sticky_indices"), plain)

  zl = latents(5)
  _, plain_l, _ = lfq().apply({}, zl)
  np.testing.assert_array_equal(lfq().apply({}, zl, previous_ids(32), 0.0,
                                            method="sticky_indices"), plain_l)
  np.testing.assert_array_equal(lfq().apply({}, zl, previous, 100.0, method="sticky_indices"),
                                previous % 32)

  module, variables = cvq_with_params()
  zc = latents(4)
  _, plain_c, _ = module.apply(variables, zc)
  np.testing.assert_array_equal(module.apply(variables, zc, previous_ids(16), 0.0,
                                             method="sticky_indices"), plain_c)
  np.testing.assert_array_equal(module.apply(variables, zc, previous % 16, 2.0,
                                             method="sticky_indices"), previous % 16)


def test_lfq_keeps_a_bit_while_its_latent_is_within_the_margin_of_zero():
  z = jnp.asarray([[0.2, -0.2, 0.6, -0.6]])
  previous = jnp.asarray([0b0101])          # bits (channel 0 first): 1, 0, 1, 0
  ids = lfq(4).apply({}, z, previous, 0.3, method="sticky_indices")
  # Channels 0 and 1 are within 0.3 of zero: kept (1, 0); 2 and 3 follow their sign (1, 0).
  assert int(ids[0]) == 0b0101
  flipped = lfq(4).apply({}, z, jnp.asarray([0b1010]), 0.3, method="sticky_indices")
  assert int(flipped[0]) == 0b0110          # kept 0, 1 on channels 0-1; signs on 2-3


def test_cvq_keeps_the_previous_code_within_the_margin_of_the_best_similarity():
  module, variables = cvq_with_params(size=3, dim=2)
  variables["params"]["embedding"] = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
  z = jnp.array([[1.0, 0.8], [1.0, 0.1]])  # cosine to codes 0 / 1: 0.78 / 0.62, 0.995 / 0.10
  ids = module.apply(variables, z, jnp.array([1, 1]), 0.2, method="sticky_indices")
  np.testing.assert_array_equal(ids, [1, 0])
