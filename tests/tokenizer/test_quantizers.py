"""LFQ against a naive enumeration of all codes; CVQ reviving a collapsed codebook."""

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from loong_jax.tokenizer import quantizers


def lfq(bits, chunk=4096):
  return quantizers.LFQ(2 ** bits, entropy_weight=0.1, commitment_weight=0.25, temperature=0.01,
                        entropy_chunk_size=chunk)


def all_codes(bits):
  """[K, d] in {-1, +1}; row k is code k with channel 0 as the lowest bit (naive, via itertools)."""
  rows = [c[::-1] for c in itertools.product([-1.0, 1.0], repeat=bits)]
  return np.array(rows)


def naive_entropies(z, codes, temperature):
  logits = 2.0 * z @ codes.T / temperature
  logits = logits - logits.max(-1, keepdims=True)
  p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  entr = lambda q: -np.sum(np.where(q > 0, q * np.log(np.maximum(q, 1e-300)), 0.0), axis=-1)
  return entr(p).mean(), entr(p.mean(0))


def test_lfq_ids_and_bits_match_nearest_code():
  bits = 4
  z = jax.random.normal(jax.random.key(0), (3, 5, bits))
  codes, ids, aux = lfq(bits).apply({}, z)
  table = all_codes(bits)
  nearest = np.argmax(np.asarray(z) @ table.T, axis=-1)
  np.testing.assert_array_equal(ids, nearest)
  np.testing.assert_array_equal(codes, table[nearest])
  np.testing.assert_array_equal(lfq(bits).codes_from_indices(ids), codes)
  assert ids.dtype == jnp.int32 and int(ids.min()) >= 0 and int(ids.max()) < 2 ** bits


def test_lfq_bit_order_channel0_is_lowest_bit():
  z = jnp.array([[1.0, -1.0, -1.0], [-1.0, 1.0, 1.0]])
  _, ids, _ = lfq(3).apply({}, z)
  np.testing.assert_array_equal(ids, [1, 6])


@pytest.mark.parametrize("bits,chunk", [(4, 16), (6, 8)])
def test_lfq_entropy_matches_naive_reference(bits, chunk):
  z = 0.02 * np.asarray(jax.random.normal(jax.random.key(bits), (40, bits)), np.float64)
  _, _, aux = lfq(bits, chunk).apply({}, jnp.asarray(z, jnp.float32))
  per_token, batch = naive_entropies(z, all_codes(bits), 0.01)
  np.testing.assert_allclose(aux["per_token_entropy"], per_token, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(aux["batch_entropy"], batch, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(aux["entropy_loss"], per_token - batch, rtol=1e-4, atol=1e-5)
  q = np.sign(z)
  commitment = np.mean((z - q) ** 2)
  np.testing.assert_allclose(aux["loss"], 0.1 * (per_token - batch) + 0.25 * commitment, rtol=1e-4)


def test_lfq_straight_through_gradient():
  z = jax.random.normal(jax.random.key(1), (4, 3))
  grad = jax.grad(lambda v: jnp.sum(lfq(3).apply({}, v)[0] * jnp.arange(3.0)))(z)
  np.testing.assert_allclose(grad, jnp.broadcast_to(jnp.arange(3.0), (4, 3)))


def test_lfq_rejects_wrong_channel_count():
  with pytest.raises(ValueError, match="z_channels=4"):
    lfq(4).apply({}, jnp.zeros((2, 3)))


def cvq(size=16, dim=4):
  return quantizers.CVQ(size, dim, beta=0.25, usage_decay=0.99, anchor_scale=10.0, anchor_eps=1e-3)


def test_cvq_revives_a_collapsed_codebook():
  module = cvq()
  z = jnp.abs(jax.random.normal(jax.random.key(0), (256, 4)))
  variables = nn.unbox(module.init(jax.random.key(1), z))
  # Collapse: the data lie in the positive orthant, code 0 points into it and the other 15 away
  # from it, so code 0 takes every token.
  dead = -1.0 - 0.3 * jnp.abs(jax.random.normal(jax.random.key(2), (15, 4)))
  variables["params"]["embedding"] = jnp.concatenate([jnp.ones((1, 4)), dead])
  step = jax.jit(lambda v, x: module.apply(v, x, True, mutable=[quantizers.STATS]))
  usages = []
  for i in range(5):
    x = jnp.abs(jax.random.normal(jax.random.key(10 + i), (256, 4)))
    (_, ids, aux), stats = step(variables, x)
    variables = {**variables, **stats}
    usages.append(float(aux["usage"]))
  assert usages[0] == 1 / 16
  assert min(usages[1:]) >= 0.4, usages
  assert float(jnp.sum(variables[quantizers.STATS]["usage"])) > 0


def test_cvq_lookup_is_cosine_and_loss_matches_formula():
  module = cvq(size=3, dim=2)
  z = jnp.array([[2.0, 0.1], [-0.1, -3.0]])
  variables = nn.unbox(module.init(jax.random.key(0), z))
  variables["params"]["embedding"] = jnp.array([[1.0, 0.0], [0.0, 5.0], [0.0, -0.5]])
  codes, ids, aux = module.apply(variables, z)
  np.testing.assert_array_equal(ids, [0, 2])
  zq = np.array([[1.0, 0.0], [0.0, -0.5]])
  np.testing.assert_allclose(codes, zq)
  mse = np.mean((zq - np.asarray(z)) ** 2)
  np.testing.assert_allclose(aux["loss"], 1.25 * mse, rtol=1e-6)
  np.testing.assert_allclose(module.apply(variables, ids, method=module.codes_from_indices), zq)


def fsq(levels):
  return quantizers.FSQ(tuple(levels), int(np.prod(levels)))


def naive_fsq(z, levels, eps=1e-3):
  """Mentzer et al.'s reference, element by element in float64: bound, round, index."""
  codes, ids = np.zeros_like(z), np.zeros(z.shape[:-1], np.int64)
  for pos in np.ndindex(z.shape[:-1]):
    index, base = 0, 1
    for i, level in enumerate(levels):
      half_l = (level - 1) * (1 + eps) / 2
      offset = 0.5 if level % 2 == 0 else 0.0
      bounded = np.tanh(z[pos][i] + np.arctanh(offset / half_l)) * half_l - offset
      step = np.round(bounded)
      codes[pos + (i,)] = step / (level // 2)
      index += int(step + level // 2) * base
      base *= level
    ids[pos] = index
  return codes, ids


@pytest.mark.parametrize("levels", [(8, 5, 5, 5, 5), (8, 8, 8, 4, 4), (3, 4)])
def test_fsq_matches_naive_reference_and_round_trips(levels):
  z = 2.0 * np.asarray(jax.random.normal(jax.random.key(0), (6, 7, len(levels))), np.float64)
  codes, ids, aux = fsq(levels).apply({}, jnp.asarray(z, jnp.float32))
  ref_codes, ref_ids = naive_fsq(z, levels)
  np.testing.assert_array_equal(ids, ref_ids)
  np.testing.assert_allclose(codes, ref_codes, atol=1e-6)
  np.testing.assert_allclose(fsq(levels).codes_from_indices(ids), codes, atol=1e-6)
  assert float(aux["loss"]) == 0.0


@pytest.mark.parametrize("levels", [(8, 5, 5, 5, 5), (3, 4)])
def test_fsq_every_index_decodes_to_a_code_that_encodes_back(levels):
  size = int(np.prod(levels))
  ids = jnp.arange(size, dtype=jnp.int32)
  codes = fsq(levels).codes_from_indices(ids)
  assert len(np.unique(np.asarray(codes), axis=0)) == size
  assert float(jnp.min(codes)) == -1.0 and float(jnp.max(codes)) <= 1.0
  # A latent whose bounded value lands on a code's integer step is quantized to that code.
  half = jnp.floor(jnp.asarray(levels, jnp.float32) / 2)
  half_l = (jnp.asarray(levels, jnp.float32) - 1) * (1 + 1e-3) / 2
  offset = jnp.where(jnp.asarray(levels) % 2 == 0, 0.5, 0.0)
  z = jnp.arctanh((codes * half + offset) / half_l) - jnp.arctanh(offset / half_l)
  _, back, aux = fsq(levels).apply({}, z)
  np.testing.assert_array_equal(back, ids)
  assert float(aux["usage"]) == 1.0


def test_fsq_straight_through_gradient():
  levels = (8, 5, 3)
  z = jax.random.normal(jax.random.key(1), (4, 3))
  weights = jnp.arange(1.0, 4.0)
  grad = jax.grad(lambda v: jnp.sum(fsq(levels).apply({}, v)[0] * weights))(z)
  # Rounding passes the gradient through; the tanh bound and the 1 / (L // 2) scale remain.
  half_l = (jnp.asarray(levels, jnp.float32) - 1) * (1 + 1e-3) / 2
  shift = jnp.arctanh(jnp.asarray([0.5, 0.0, 0.0]) / half_l)
  expected = weights * half_l * (1 - jnp.tanh(z + shift) ** 2) / jnp.asarray([4.0, 2.0, 1.0])
  np.testing.assert_allclose(grad, expected, rtol=1e-5)


def test_fsq_commitment_pulls_latents_off_rounding_boundaries():
  """aux['loss'] = weight * mean((bounded - round(bounded))^2); following its gradient moves a
  latent near a boundary into the interior of its level, and the code stops depending on which
  side of the boundary noise puts it."""
  levels = (5,)
  module = quantizers.FSQ(levels, 5, commitment_weight=1.0)
  half_l = 2 * (1 + 1e-3)
  bounded = jnp.asarray([[0.45], [0.55], [1.0], [-0.3]])  # the first two straddle 0 | 1
  z = jnp.arctanh(bounded / half_l)
  _, ids, aux = module.apply({}, z)
  expected = np.mean(np.square(np.asarray(bounded) - np.round(np.asarray(bounded))))
  np.testing.assert_allclose(float(aux["loss"]), expected, rtol=1e-5)
  np.testing.assert_allclose(float(aux["commitment"]), expected, rtol=1e-5)
  assert float(fsq(levels).apply({}, z)[2]["loss"]) == 0.0  # weight 0: no loss (the default)

  loss = lambda v: module.apply({}, v)[2]["loss"]
  for _ in range(200):
    z = z - 0.1 * jax.grad(loss)(z)
  after = np.asarray(jnp.tanh(z) * half_l)[:, 0]
  np.testing.assert_allclose(after, [0.0, 1.0, 1.0, 0.0], atol=0.05)
  np.testing.assert_array_equal(module.apply({}, z)[1], ids)  # codes kept, margins gained


def test_fsq_codebook_size_and_channels_are_checked():
  with pytest.raises(ValueError, match="give 100 codes, not codebook_size=64"):
    quantizers.FSQ((4, 5, 5), 64).apply({}, jnp.zeros((2, 3)))
  with pytest.raises(ValueError, match="z_channels=3"):
    fsq((4, 4, 4)).apply({}, jnp.zeros((2, 5)))
