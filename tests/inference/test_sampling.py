"""Sampling: top-k, top-p against naive references, guidance, vocabulary restriction."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from loong_jax.inference import sampling

V = 64


def random_logits(seed, batch=4, vocab=V):
  return jax.random.normal(jax.random.key(seed), (batch, vocab)) * 3.0


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_top_k_1_is_argmax(temperature):
  logits = random_logits(0)
  config = sampling.SamplingConfig(temperature=temperature, top_k=1)
  for seed in range(5):
    ids = sampling.sample(logits, jax.random.key(seed), config)
    np.testing.assert_array_equal(ids, jnp.argmax(logits, axis=-1))


def test_temperature_zero_is_greedy():
  logits = random_logits(1)
  ids = sampling.sample(logits, jax.random.key(0), sampling.SamplingConfig(temperature=0.0))
  np.testing.assert_array_equal(ids, jnp.argmax(logits, axis=-1))


def naive_top_p_keep(row, p):
  """Smallest set of most likely ids whose mass reaches p, by trying sizes one at a time."""
  probs = np.exp(row - row.max())
  probs /= probs.sum()
  order = np.argsort(-probs, kind="stable")
  for size in range(1, len(row) + 1):
    if probs[order[:size]].sum() >= p:
      return set(order[:size].tolist())
  return set(order.tolist())


@pytest.mark.parametrize("p", [0.05, 0.3, 0.9, 0.999])
def test_top_p_keeps_smallest_set_with_mass_p(p):
  logits = np.asarray(random_logits(2, batch=6), np.float64)
  kept = np.asarray(sampling.top_p_filter(jnp.asarray(logits, jnp.float32), p))
  for row, out in zip(logits, kept):
    got = set(np.flatnonzero(np.isfinite(out)).tolist())
    assert got == naive_top_p_keep(row, p)
    np.testing.assert_allclose(out[list(got)], row[list(got)], rtol=1e-6)


def test_top_k_filter_keeps_k_largest():
  logits = random_logits(3)
  kept = sampling.top_k_filter(logits, 5)
  for row, out in zip(np.asarray(logits), np.asarray(kept)):
    assert set(np.flatnonzero(np.isfinite(out))) == set(np.argsort(-row)[:5])


@pytest.mark.parametrize("top_k,top_p", [(5, 1.0), (0, 0.5), (10, 0.6)])
def test_samples_stay_inside_the_filtered_set(top_k, top_p):
  logits = random_logits(4, batch=2)
  allowed = sampling.top_p_filter(sampling.top_k_filter(logits, top_k), top_p)
  config = sampling.SamplingConfig(top_k=top_k, top_p=top_p)
  draws = jax.vmap(lambda k: sampling.sample(logits, k, config))(
      jax.random.split(jax.random.key(0), 300))
  for row in range(2):
    seen = set(np.asarray(draws[:, row]).tolist())
    kept = set(np.flatnonzero(np.isfinite(allowed[row])).tolist())
    assert seen <= kept
    assert len(seen) > 1 or len(kept) == 1


def test_sampling_follows_the_distribution():
  logits = jnp.log(jnp.asarray([[0.5, 0.3, 0.2, 0.0]]))
  draws = jax.vmap(lambda k: sampling.sample(logits, k, sampling.SamplingConfig()))(
      jax.random.split(jax.random.key(0), 4000))[:, 0]
  freq = np.bincount(np.asarray(draws), minlength=4) / 4000
  np.testing.assert_allclose(freq, [0.5, 0.3, 0.2, 0.0], atol=0.03)


def test_guidance_scale_one_is_cond_and_zero_is_uncond():
  cond, uncond = random_logits(5), random_logits(6)
  # Equal up to the one float32 rounding of `uncond + (cond - uncond)`.
  np.testing.assert_allclose(sampling.guide(cond, uncond, 1.0), cond, atol=1e-6)
  np.testing.assert_array_equal(sampling.guide(cond, uncond, 0.0), uncond)
  np.testing.assert_allclose(sampling.guide(cond, uncond, 3.0), uncond + 3.0 * (cond - uncond),
                             rtol=1e-6)


def test_restrict_to_range_only_samples_inside():
  logits = random_logits(7)
  restricted = sampling.restrict_to_range(logits, 10, 20)
  assert np.all(np.isneginf(np.asarray(restricted[:, :10])))
  assert np.all(np.isneginf(np.asarray(restricted[:, 20:])))
  np.testing.assert_array_equal(restricted[:, 10:20], logits[:, 10:20])
  ids = sampling.sample(restricted, jax.random.key(0), sampling.SamplingConfig(top_k=50))
  assert np.all((np.asarray(ids) >= 10) & (np.asarray(ids) < 20))


def test_same_key_same_sample():
  logits = random_logits(8)
  config = sampling.SamplingConfig(temperature=0.8, top_k=20, top_p=0.9)
  a = sampling.sample(logits, jax.random.key(3), config)
  b = sampling.sample(logits, jax.random.key(3), config)
  np.testing.assert_array_equal(a, b)


def test_invalid_config_names_the_field():
  with pytest.raises(ValueError, match="top_p"):
    sampling.SamplingConfig(top_p=0.0)
  with pytest.raises(ValueError, match="temperature"):
    sampling.SamplingConfig(temperature=-1.0)
