"""Tokenizer losses: reconstruction, GAN (generator and discriminator sides), LeCam, R1 [OM2][MV1].

Videos are `[B, T, H, W, 3]` in [-1, 1]; logits are any shape (per clip or per patch). Every loss
returns a float32 scalar. The perceptual term lives in `perceptual.py`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def reconstruction_loss(x: jax.Array, y: jax.Array, kind: str) -> jax.Array:
  """Mean absolute (`'l1'`) or squared (`'l2'`) pixel error."""
  diff = x.astype(jnp.float32) - y.astype(jnp.float32)
  if kind == "l1":
    return jnp.mean(jnp.abs(diff))
  if kind == "l2":
    return jnp.mean(jnp.square(diff))
  raise ValueError(f"config.loss.reconstruction must be 'l1' or 'l2', got {kind!r}")


def generator_adversarial_loss(fake_logits: jax.Array) -> jax.Array:
  """Non-saturating: E[softplus(-D(G(z)))] = -E[log sigmoid(D(G(z)))]."""
  return jnp.mean(jax.nn.softplus(-fake_logits.astype(jnp.float32)))


def hinge_discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]."""
  return (jnp.mean(jax.nn.relu(1.0 - real_logits.astype(jnp.float32)))
          + jnp.mean(jax.nn.relu(1.0 + fake_logits.astype(jnp.float32))))


def lecam_regularizer(real_logits: jax.Array, fake_logits: jax.Array, ema_real: jax.Array,
                      ema_fake: jax.Array) -> jax.Array:
  """LeCam: E[relu(D(x) - ema_fake)^2] + E[relu(ema_real - D(G(z)))^2] [MV1].

  Keeps the discriminator's predictions near the running means of the other side, which limits
  its overconfidence with little data.
  """
  return (jnp.mean(jnp.square(jax.nn.relu(real_logits.astype(jnp.float32) - ema_fake)))
          + jnp.mean(jnp.square(jax.nn.relu(ema_real - fake_logits.astype(jnp.float32)))))


def update_lecam_ema(ema: jax.Array, real_logits: jax.Array, fake_logits: jax.Array,
                     decay: float) -> jax.Array:
  """`ema` = `[ema_real, ema_fake]` float32 `[2]`, moved towards this batch's mean logits."""
  batch = jnp.stack([jnp.mean(real_logits), jnp.mean(fake_logits)]).astype(jnp.float32)
  return decay * ema + (1.0 - decay) * batch


def r1_penalty(discriminator: Callable[[jax.Array], jax.Array], real: jax.Array) -> jax.Array:
  """R1: 0.5 E[||grad_x D(x)||^2] on real data [MV1] (the config weight multiplies it)."""
  grads = jax.grad(lambda v: jnp.sum(discriminator(v)))(real.astype(jnp.float32))
  return 0.5 * jnp.mean(jnp.sum(jnp.square(grads), axis=tuple(range(1, grads.ndim))))


def psnr(x: jax.Array, y: jax.Array) -> jax.Array:
  """Mean per-clip PSNR in dB for videos in [-1, 1] (peak 1 on the [0, 1] scale); x is clipped."""
  x01 = (jnp.clip(x.astype(jnp.float32), -1.0, 1.0) + 1.0) / 2.0
  y01 = (y.astype(jnp.float32) + 1.0) / 2.0
  mse = jnp.mean(jnp.square(x01 - y01), axis=tuple(range(1, x.ndim)))
  return jnp.mean(-10.0 * jnp.log10(jnp.maximum(mse, 1e-10)))
