"""Next-token sampling: classifier-free guidance, vocabulary restriction, temperature, top-k, top-p.

Every function is pure: logits (float32 `[B, V]`) and a PRNG key in, logits or ids out. The order
used by `sample` (and by `decode.generate`) is SPEC §5's:

    guide(cond, uncond, s) -> restrict_to_range -> / temperature -> top-k -> top-p -> categorical

Masked-out entries are `-inf`; a row always keeps at least one finite entry (its maximum).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
  """How to pick a token; hashable, so a jitted decoder can take it as a static argument.

  Attributes:
    temperature: logits are divided by it; 0 means greedy (argmax).
    top_k: keep the k largest logits (0: all).
    top_p: keep the smallest set of most likely tokens whose probability sums to >= top_p
      (1.0: all). Applied after top-k, to the renormalised top-k distribution.
    guidance_scale: classifier-free guidance `uncond + s * (cond - uncond)`; 1.0 turns the
      unconditional branch off (it would not change the logits).
  """

  temperature: float = 1.0
  top_k: int = 0
  top_p: float = 1.0
  guidance_scale: float = 1.0

  def __post_init__(self):
    if self.temperature < 0:
      raise ValueError(f"sampling.temperature={self.temperature} must be >= 0")
    if self.top_k < 0:
      raise ValueError(f"sampling.top_k={self.top_k} must be >= 0 (0: off)")
    if not 0.0 < self.top_p <= 1.0:
      raise ValueError(f"sampling.top_p={self.top_p} must lie in (0, 1]")

  @property
  def guided(self) -> bool:
    return self.guidance_scale != 1.0

  @classmethod
  def from_config(cls, config) -> "SamplingConfig":
    return cls(temperature=float(config.temperature), top_k=int(config.top_k),
               top_p=float(config.top_p), guidance_scale=float(config.guidance_scale))


def guide(cond: jax.Array, uncond: jax.Array, scale: float) -> jax.Array:
  """Classifier-free guidance: `uncond + scale * (cond - uncond)`, `[B, V]` each."""
  return uncond + scale * (cond - uncond)


def restrict_to_range(logits: jax.Array, low: int, high: int) -> jax.Array:
  """Keep ids in `[low, high)` (e.g. the video ids inside a latent frame); `-inf` elsewhere."""
  ids = jnp.arange(logits.shape[-1])
  return jnp.where((ids >= low) & (ids < high), logits, -jnp.inf)


def top_k_filter(logits: jax.Array, k: int) -> jax.Array:
  """`-inf` outside the k largest logits of each row (ties at the k-th value are all kept)."""
  if k <= 0 or k >= logits.shape[-1]:
    return logits
  kth = jax.lax.top_k(logits, k)[0][..., -1:]
  return jnp.where(logits >= kth, logits, -jnp.inf)


def top_p_filter_sorted(sorted_logits: jax.Array, p: float) -> jax.Array:
  """Nucleus filter on logits already sorted in descending order along the last axis.

  Keeps entry i when the probability mass strictly before it is < p: the smallest prefix whose
  mass reaches p.
  """
  if p >= 1.0:
    return sorted_logits
  probs = jax.nn.softmax(sorted_logits, axis=-1)
  mass_before = jnp.cumsum(probs, axis=-1) - probs
  # The first entry is always kept, so a row never becomes all -inf.
  keep = (mass_before < p) | (jnp.arange(probs.shape[-1]) == 0)
  return jnp.where(keep, sorted_logits, -jnp.inf)


def top_p_filter(logits: jax.Array, p: float) -> jax.Array:
  """Nucleus filter in vocabulary order (sorts each row; `sample` avoids this after top-k)."""
  if p >= 1.0:
    return logits
  order = jnp.argsort(-logits, axis=-1)
  kept = top_p_filter_sorted(jnp.take_along_axis(logits, order, axis=-1), p)
  inverse = jnp.argsort(order, axis=-1)
  return jnp.take_along_axis(kept, inverse, axis=-1)


def sample(logits: jax.Array, key: jax.Array, config: SamplingConfig) -> jax.Array:
  """Draw one id per row. `logits [B, V]` float32 -> `[B]` int32.

  With top-k on, temperature, top-p and the draw work on the k candidates only (a `[B, k]` sort
  instead of `[B, V]`), which gives the same distribution as filtering the full row.
  """
  if config.temperature == 0.0:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  logits = logits / config.temperature
  if config.top_k > 0 and config.top_k < logits.shape[-1]:
    values, ids = jax.lax.top_k(logits, config.top_k)
  elif config.top_p < 1.0:
    ids = jnp.argsort(-logits, axis=-1)
    values = jnp.take_along_axis(logits, ids, axis=-1)
  else:
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)
  values = top_p_filter_sorted(values, config.top_p)
  choice = jax.random.categorical(key, values, axis=-1)
  return jnp.take_along_axis(ids, choice[:, None], axis=-1)[:, 0].astype(jnp.int32)
