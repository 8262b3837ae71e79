"""Quantizers behind one interface: `quantize(z) -> (codes, indices, aux_losses)` [SPEC §2].

All are Flax modules called as `module(z, train)` with `z: [..., d]` (d = the latent channels):
  codes:    `[..., d]` quantized latent, straight-through (the gradient flows to z unchanged).
  indices:  `[...]` int32 in [0, K).
  aux:      dict of float32 scalars; `aux['loss']` is the weighted sum the generator adds to its loss.
`codes_from_indices(indices) -> codes` is the decode-side lookup.

LFQ [MV2][OM2] and FSQ (finite scalar quantization, Mentzer et al. 2023) have no parameters.
CVQ [CVQ] keeps its codebook in `params` and its usage statistics
and anchor re-initialisation in the `codebook_stats` collection (apply with
`mutable=['codebook_stats']` when training).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

STATS = "codebook_stats"


def code_bits(num_bits: int, indices: jax.Array) -> jax.Array:
  """`[...]` int ids -> `[..., num_bits]` {0, 1} bits; channel 0 is the lowest bit."""
  return (indices[..., None] >> jnp.arange(num_bits, dtype=jnp.int32)) & 1


def bits_to_indices(bits: jax.Array) -> jax.Array:
  """`[..., d]` bool/{0,1} -> `[...]` int32 id = sum_i bit_i 2^i."""
  weights = 2 ** jnp.arange(bits.shape[-1], dtype=jnp.int32)
  return jnp.sum(bits.astype(jnp.int32) * weights, axis=-1)


def batch_usage(indices: jax.Array, codebook_size: int) -> jax.Array:
  """Fraction of the K codes that occur at least once in `indices`."""
  counts = jnp.zeros((codebook_size,), jnp.int32).at[indices.reshape(-1)].add(1)
  return jnp.mean(counts > 0)


def lfq_entropies(z: jax.Array, temperature: float, chunk_size: int) -> tuple[jax.Array, jax.Array]:
  """Exact LFQ entropies over p(c | z) = softmax_c(2 <z, c> / tau), c in {-1, +1}^d.

  Per-token: p factorises into independent bits with P(bit_i = 1) = sigmoid(4 z_i / tau), so its
  entropy is a sum of binary entropies. Batch: the mean of p over tokens does not factorise; it is
  evaluated code by code in chunks of `chunk_size` codes (memory `N * chunk_size`), each chunk
  rematerialised in the backward pass.

  Args:
    z: `[N, d]` float32 latents.
  Returns:
    `(mean per-token entropy, entropy of the token-mean distribution)`, float32 scalars in nats.
  """
  num_tokens, num_bits = z.shape
  codebook_size = 2 ** num_bits
  chunk_size = min(chunk_size, codebook_size)
  logits = 4.0 * z / temperature
  log_pos = jax.nn.log_sigmoid(logits)
  log_neg = jax.nn.log_sigmoid(-logits)
  per_token = -jnp.sum(jnp.exp(log_pos) * log_pos + jnp.exp(log_neg) * log_neg, axis=-1).mean()

  bits = code_bits(num_bits, jnp.arange(codebook_size, dtype=jnp.int32)).astype(jnp.float32)
  bits = bits.reshape(codebook_size // chunk_size, chunk_size, num_bits)
  base = jnp.sum(log_neg, axis=-1, keepdims=True)

  @jax.checkpoint
  def chunk_entropy(chunk_bits):
    log_p = base + (log_pos - log_neg) @ chunk_bits.T              # [N, chunk]
    log_mean = jax.nn.logsumexp(log_p, axis=0) - math.log(num_tokens)
    return -jnp.sum(jnp.exp(log_mean) * log_mean)

  batch = jnp.sum(jax.lax.map(chunk_entropy, bits))
  return per_token, batch


class LFQ(nn.Module):
  """Lookup-free quantization: q = sign(z) in {-1, +1}^d, K = 2^d codes.

  aux: `entropy_loss` = mean per-token entropy - batch entropy (minimised: confident per token,
  diverse over the batch), `commitment_loss` = mean (z - sg(q))^2, `loss` = their weighted sum.
  """
  codebook_size: int
  entropy_weight: float
  commitment_weight: float
  temperature: float
  entropy_chunk_size: int

  @property
  def num_bits(self) -> int:
    return int(math.log2(self.codebook_size))

  def check(self, channels: int):
    if 2 ** channels != self.codebook_size:
      raise ValueError(f"config.tokenizer.quantizer: LFQ with codebook_size={self.codebook_size} "
                       f"needs z_channels={self.num_bits}, got {channels}")

  def __call__(self, z: jax.Array, train: bool = False):
    del train  # LFQ has no state to update.
    self.check(z.shape[-1])
    z32 = z.astype(jnp.float32)
    q = jnp.where(z32 > 0, 1.0, -1.0)
    codes = z32 + jax.lax.stop_gradient(q - z32)
    indices = bits_to_indices(z32 > 0)
    per_token, batch = lfq_entropies(z32.reshape(-1, z.shape[-1]), self.temperature,
                                     self.entropy_chunk_size)
    entropy_loss = per_token - batch
    commitment = jnp.mean(jnp.square(z32 - jax.lax.stop_gradient(q)))
    aux = {"loss": self.entropy_weight * entropy_loss + self.commitment_weight * commitment,
           "entropy_loss": entropy_loss, "per_token_entropy": per_token, "batch_entropy": batch,
           "commitment_loss": commitment, "usage": batch_usage(indices, self.codebook_size)}
    return codes.astype(z.dtype), indices, aux

  def codes_from_indices(self, indices: jax.Array) -> jax.Array:
    return 2.0 * code_bits(self.num_bits, indices).astype(jnp.float32) - 1.0

  def sticky_indices(self, z: jax.Array, previous: jax.Array, margin: float) -> jax.Array:
    """Indices of `z` `[..., bits]` that keep each bit of `previous` `[...]` while z stays
    within `margin` of zero on the other side (a Schmitt trigger; margin 0: `__call__`'s)."""
    self.check(z.shape[-1])
    z32 = z.astype(jnp.float32)
    old = code_bits(self.num_bits, previous)
    return bits_to_indices(jnp.where(jnp.abs(z32) <= margin, old, z32 > 0))


def round_ste(x: jax.Array) -> jax.Array:
  """Round to the nearest integer; the gradient passes straight through."""
  return x + jax.lax.stop_gradient(jnp.round(x) - x)


class FSQ(nn.Module):
  """Finite scalar quantization: channel i is bounded to `levels[i]` values and rounded.

  K = prod(levels) codes, z has len(levels) channels. Each channel is squashed with tanh onto
  (-(L - 1) / 2, (L - 1) / 2) (shifted by half a step for even L, so that rounding gives exactly L
  integers), rounded with a straight-through gradient and divided by L // 2, so codes lie in
  [-1, 1]. index = sum_i digit_i * prod(levels[:i]), digit_i in [0, L_i) (channel 0 is the lowest
  digit). The bound makes every level reachable, so the codebook stays in use without an entropy
  term.

  `commitment_weight` [ours] adds `weight * mean((bounded - sg(round(bounded)))^2)` (in units of
  one level) to aux['loss']. Without it, the straight-through gradient can hold a latent at a
  rounding boundary: when the decoder would like a value between two levels, each rounding pushes
  it back towards the other, and a flat region's code flips between the two with the slightest
  change of context (the demo's black background took 4 codes in 22% of its blocks). The term
  pulls every latent into a level's interior, so similar inputs get the same code. Off by
  default: in the demo a weight of 0.5 fixed the background but lost object detail, and the LM
  learnt less from its codes (configs/tokenizer/magvit2.py).
  """
  levels: tuple[int, ...]
  codebook_size: int
  eps: float = 1e-3
  commitment_weight: float = 0.0

  def check(self, channels: int):
    if math.prod(self.levels) != self.codebook_size:
      raise ValueError(f"config.tokenizer.quantizer: FSQ levels {tuple(self.levels)} give "
                       f"{math.prod(self.levels)} codes, not codebook_size={self.codebook_size}")
    if channels != len(self.levels):
      raise ValueError(f"config.tokenizer.quantizer: FSQ with levels {tuple(self.levels)} needs "
                       f"z_channels={len(self.levels)}, got {channels}")

  def arrays(self):
    levels = jnp.asarray(self.levels, jnp.float32)
    basis = jnp.asarray([math.prod(self.levels[:i]) for i in range(len(self.levels))], jnp.int32)
    return levels, jnp.floor(levels / 2.0), basis

  def __call__(self, z: jax.Array, train: bool = False):
    del train  # FSQ has no state to update.
    self.check(z.shape[-1])
    levels, half_width, basis = self.arrays()
    bounded = self.bounded(z)
    steps = round_ste(bounded)                                         # integers in [-L//2, L//2]
    digits = (jax.lax.stop_gradient(steps) + half_width).astype(jnp.int32)
    indices = jnp.sum(digits * basis, axis=-1)
    commitment = jnp.mean(jnp.square(bounded - jax.lax.stop_gradient(steps)))
    aux = {"loss": self.commitment_weight * commitment, "commitment": commitment,
           "usage": batch_usage(indices, self.codebook_size)}
    return (steps / half_width).astype(z.dtype), indices, aux

  def bounded(self, z: jax.Array) -> jax.Array:
    """`z` `[..., len(levels)]` squashed onto the levels' range (rounding gives the digit)."""
    levels, _, _ = self.arrays()
    half_range = (levels - 1.0) * (1.0 + self.eps) / 2.0
    offset = jnp.where(levels % 2 == 0, 0.5, 0.0)
    shift = jnp.arctanh(offset / half_range)
    return jnp.tanh(z.astype(jnp.float32) + shift) * half_range - offset

  def codes_from_indices(self, indices: jax.Array) -> jax.Array:
    levels, half_width, basis = self.arrays()
    digits = (indices[..., None] // basis) % levels.astype(jnp.int32)
    return (digits - half_width) / half_width

  def sticky_indices(self, z: jax.Array, previous: jax.Array, margin: float) -> jax.Array:
    """Indices of `z` `[..., len(levels)]` that keep each digit of `previous` `[...]` while
    the bounded latent stays within `0.5 + margin` levels of it, and round it otherwise (a
    Schmitt trigger on every digit; margin 0: `__call__`'s rounding, up to ties)."""
    self.check(z.shape[-1])
    levels, half_width, basis = self.arrays()
    bounded = self.bounded(z)
    old = ((previous[..., None] // basis) % levels.astype(jnp.int32)) - half_width
    steps = jnp.where(jnp.abs(bounded - old) <= 0.5 + margin, old, jnp.round(bounded))
    return jnp.sum((steps + half_width).astype(jnp.int32) * basis, axis=-1)


def l2_normalize(x: jax.Array, eps: float = 1e-6) -> jax.Array:
  return x * jax.lax.rsqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True) + eps)


class CVQ(nn.Module):
  """Clustering VQ: cosine lookup in a learned codebook with online anchor re-initialisation.

  The effective codebook is `embedding` (params, trained by the codebook loss) + `offset`
  (`codebook_stats`, moved by the anchor rule). Each training call:
    usage p_k <- decay p_k + (1 - decay) (fraction of tokens assigned to code k);
    alpha_k = exp(-p_k K anchor_scale / (1 - decay) - anchor_eps);
    code_k <- (1 - alpha_k) code_k + alpha_k anchor_k, anchor_k = the batch feature closest to code k.
  Rarely used codes (p_k ~ 0, alpha_k ~ 1) jump onto the data; used ones barely move.
  aux: `loss` = beta ||sg(z_q) - z||^2 + ||z_q - sg(z)||^2 (means), `usage` (fraction of codes in the
  batch's assignments).
  """
  codebook_size: int
  code_dim: int
  beta: float
  usage_decay: float
  anchor_scale: float
  anchor_eps: float

  def setup(self):
    shape = (self.codebook_size, self.code_dim)
    self.embedding = self.param(
        "embedding", nn.with_logical_partitioning(nn.initializers.normal(1.0), ("codebook", "code")),
        shape, jnp.float32)
    self.offset = self.variable(STATS, "offset", jnp.zeros, shape, jnp.float32)
    self.usage = self.variable(STATS, "usage", jnp.zeros, (self.codebook_size,), jnp.float32)

  def codebook(self) -> jax.Array:
    return self.embedding + self.offset.value

  def __call__(self, z: jax.Array, train: bool = False):
    if z.shape[-1] != self.code_dim:
      raise ValueError(f"config.tokenizer.quantizer: CVQ expects z_channels={self.code_dim}, got "
                       f"{z.shape[-1]}")
    codebook = self.codebook()
    flat = z.astype(jnp.float32).reshape(-1, z.shape[-1])
    similarity = l2_normalize(flat) @ l2_normalize(codebook).T          # [N, K]
    flat_indices = jnp.argmax(similarity, axis=-1)
    quantized = codebook[flat_indices]
    loss = (self.beta * jnp.mean(jnp.square(jax.lax.stop_gradient(quantized) - flat))
            + jnp.mean(jnp.square(quantized - jax.lax.stop_gradient(flat))))
    if train and not self.is_initializing():
      counts = jnp.zeros((self.codebook_size,), jnp.float32).at[flat_indices].add(1.0)
      self.reinit_codes(codebook, flat, similarity, counts / flat.shape[0])
    codes = flat + jax.lax.stop_gradient(quantized - flat)
    aux = {"loss": loss, "codebook_loss": loss,
           "usage": batch_usage(flat_indices, self.codebook_size)}
    indices = flat_indices.reshape(z.shape[:-1]).astype(jnp.int32)
    return codes.reshape(z.shape).astype(z.dtype), indices, aux

  def sticky_indices(self, z: jax.Array, previous: jax.Array, margin: float) -> jax.Array:
    """Indices of `z` `[..., code_dim]` that keep `previous` `[...]` while its cosine
    similarity stays within `margin` of the best code's (margin 0: `__call__`'s, up to ties)."""
    codebook = self.codebook()
    similarity = l2_normalize(z.astype(jnp.float32)) @ l2_normalize(codebook).T   # [..., K]
    best = jnp.argmax(similarity, axis=-1)
    kept = jnp.take_along_axis(similarity, previous[..., None], axis=-1)[..., 0]
    keep = kept >= jnp.max(similarity, axis=-1) - margin
    return jnp.where(keep, previous, best).astype(jnp.int32)

  def reinit_codes(self, codebook, flat, similarity, batch_usage):
    usage = self.usage_decay * self.usage.value + (1.0 - self.usage_decay) * batch_usage
    anchors = flat[jnp.argmax(similarity, axis=0)]                       # [K, d]
    alpha = jnp.exp(-usage * self.codebook_size * self.anchor_scale / (1.0 - self.usage_decay)
                    - self.anchor_eps)[:, None]
    updated = ((1.0 - alpha) * jax.lax.stop_gradient(codebook)
               + alpha * jax.lax.stop_gradient(anchors))
    self.offset.value = updated - jax.lax.stop_gradient(self.embedding)
    self.usage.value = usage

  def codes_from_indices(self, indices: jax.Array) -> jax.Array:
    return self.codebook()[indices]


def make_quantizer(quantizer_config, z_channels: int) -> nn.Module:
  """`config.tokenizer.quantizer` -> LFQ, FSQ or CVQ for latents with `z_channels` channels."""
  kind = quantizer_config.type
  if kind == "lfq":
    return LFQ(quantizer_config.codebook_size, quantizer_config.entropy_weight,
               quantizer_config.commitment_weight, quantizer_config.temperature,
               quantizer_config.entropy_chunk_size, name="quantizer")
  if kind == "cvq":
    return CVQ(quantizer_config.codebook_size, z_channels, quantizer_config.beta,
               quantizer_config.usage_decay, quantizer_config.anchor_scale,
               quantizer_config.anchor_eps, name="quantizer")
  if kind == "fsq":
    return FSQ(tuple(quantizer_config.levels), quantizer_config.codebook_size,
               commitment_weight=quantizer_config.get("fsq_commitment_weight", 0.0),
               name="quantizer")
  raise ValueError(f"config.tokenizer.quantizer.type must be 'lfq', 'fsq' or 'cvq', got {kind!r}")
