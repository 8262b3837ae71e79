"""Tokenizer training: state, generator and discriminator steps, sharded init and jit.

One call of the train step is `(state, batch) -> (state, metrics)`: a generator (tokenizer) update,
then, once the GAN is on (`step >= config.loss.disc_start`), a discriminator update on the same
batch. A batch is float32 `[B, T, H, W, 3]` in [-1, 1]. Both optimizers are Adam with
b = (0.5, 0.9), linear warm-up then cosine decay [OM2]; the generator also keeps an EMA of its
weights, whose decay warms up as min(decay, (1 + step) / (10 + step)). Everything is
data-parallel: the batch is sharded over ('data', 'fsdp') and the step is one `jax.jit` over the
mesh, so gradients and the quantizer's batch statistics are global.

The numerical guard (as the LM's `state.apply_gradients_if_finite`): an update whose loss or
gradient norm is not finite is dropped, for the generator and the discriminator alike; `step`
still advances and the `skipped` metric is 1.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from loong_jax import sharding as sharding_lib
from loong_jax.tokenizer import autoencoder
from loong_jax.tokenizer import discriminator as disc_lib
from loong_jax.tokenizer import losses
from loong_jax.tokenizer import perceptual
from loong_jax.tokenizer import quantizers
from loong_jax.train import state as state_lib


@flax.struct.dataclass
class TokenizerState:
  """Everything that changes during tokenizer training (a pytree; optimizers are static)."""
  step: jax.Array
  params: Any
  ema_params: Any
  codebook_stats: Any           # the CVQ `codebook_stats` collection; {} for LFQ
  opt_state: Any
  disc_params: Any
  disc_opt_state: Any
  lecam_ema: jax.Array          # [2]: EMA of the mean real and fake logits
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
  disc_tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)


def make_adam(optim_config, peak_lr: float, total_steps: int) -> optax.GradientTransformation:
  """Global-norm clipping, then Adam(b1, b2) on a warm-up + cosine schedule to `peak_lr`."""
  decay_steps = optim_config.decay_steps or total_steps
  if optim_config.warmup_steps >= decay_steps:
    raise ValueError(f"config.optim.warmup_steps={optim_config.warmup_steps} must be below the "
                     f"decay horizon {decay_steps}")
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, peak_lr, optim_config.warmup_steps, decay_steps,
      peak_lr * optim_config.end_learning_rate_fraction)
  return optax.chain(optax.clip_by_global_norm(optim_config.grad_clip_norm),
                     optax.adam(schedule, b1=optim_config.b1, b2=optim_config.b2,
                                eps=optim_config.eps))


def build_models(config):
  return (autoencoder.make_tokenizer(config.tokenizer),
          disc_lib.make_discriminator(config.tokenizer.discriminator))


def init_state_fn(config):
  """`key -> TokenizerState` with boxed (logically named) parameters."""
  model, disc = build_models(config)
  steps = config.train.steps
  tx = make_adam(config.optim, config.optim.learning_rate, steps)
  disc_tx = make_adam(config.optim, config.optim.disc_learning_rate,
                      max(steps - config.loss.disc_start, config.optim.warmup_steps + 1))
  shape = autoencoder.init_input_shape(config.tokenizer)

  def init(key):
    gen_key, disc_key = jax.random.split(key)
    video = jnp.zeros(shape, jnp.float32)
    variables = model.init(gen_key, video)
    params = variables["params"]
    disc_params = disc.init(disc_key, video)["params"]
    return TokenizerState(
        step=jnp.zeros((), jnp.int32), params=params, ema_params=params,
        codebook_stats=variables.get(quantizers.STATS, {}), opt_state=tx.init(params),
        disc_params=disc_params, disc_opt_state=disc_tx.init(disc_params),
        lecam_ema=jnp.zeros((2,), jnp.float32), tx=tx, disc_tx=disc_tx)
  return init


def create_state(config, rng: jax.Array, mesh, axis_rules):
  """Initialise the state straight into its shards; returns `(state, state_shardings)`."""
  init = init_state_fn(config)
  abstract = jax.eval_shape(init, rng)
  shardings = sharding_lib.logical_to_sharding(nn.get_partition_spec(abstract), mesh, axis_rules)
  sharding_lib.check_param_sharding(nn.unbox(abstract.params), shardings.params, mesh,
                                    config.sharding.max_replicated_fraction)
  with sharding_lib.mesh_context(mesh, axis_rules):
    state = jax.jit(lambda key: nn.unbox(init(key)), out_shardings=shardings)(rng)
  return state, shardings


def generator_step(state: TokenizerState, batch, perceptual_params, *, config, use_gan: bool):
  """Tokenizer update: reconstruction + quantizer (+ perceptual) (+ adversarial) loss."""
  model, disc = build_models(config)
  lc = config.loss

  def loss_fn(params):
    (recon, aux), new_vars = model.apply({"params": params, quantizers.STATS: state.codebook_stats},
                                         batch, True, mutable=[quantizers.STATS])
    new_stats = new_vars.get(quantizers.STATS, {})
    rec = losses.reconstruction_loss(recon, batch, lc.reconstruction)
    total = lc.reconstruction_weight * rec + lc.quantizer_weight * aux["loss"]
    metrics = {"reconstruction_loss": rec, "psnr": losses.psnr(recon, batch),
               **{f"quantizer/{k}": v for k, v in aux.items() if k != "indices"}}
    if perceptual_params is not None:
      metrics["perceptual_loss"] = perceptual.video_distance(perceptual_params, recon, batch)
      total = total + lc.perceptual_weight * metrics["perceptual_loss"]
    if use_gan:
      fake_logits = disc.apply({"params": state.disc_params}, recon)
      metrics["generator_gan_loss"] = losses.generator_adversarial_loss(fake_logits)
      total = total + lc.gan_weight * metrics["generator_gan_loss"]
    return total, (recon, new_stats, metrics)

  (loss, (recon, new_stats, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params)
  grad_norm = optax.tree.norm(grads)
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  # Decay warm-up min(d, (1 + t) / (10 + t)): with a constant 0.999, 800 steps would leave ~45%
  # of the EMA weights at their random init.
  t = state.step.astype(jnp.float32)
  decay = jnp.minimum(config.optim.ema_decay, (1.0 + t) / (10.0 + t))
  ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, state.ema_params, params)
  fields = ("params", "ema_params", "opt_state", "codebook_stats")
  updated, skipped = state_lib.keep_if_finite(
      loss, grad_norm, dict(zip(fields, (params, ema, opt_state, new_stats))),
      {f: getattr(state, f) for f in fields})
  return state.replace(**updated), recon, skipped, dict(metrics, generator_loss=loss,
                                                        generator_grad_norm=grad_norm)


def discriminator_step(state: TokenizerState, real, fake, *, config):
  """Hinge loss + LeCam (+ R1) on real clips vs the generator's (stopped) reconstructions."""
  _, disc = build_models(config)
  lc = config.loss
  fake = jax.lax.stop_gradient(fake)

  def loss_fn(disc_params):
    apply = lambda v: disc.apply({"params": disc_params}, v)
    real_logits, fake_logits = apply(real), apply(fake)
    hinge = losses.hinge_discriminator_loss(real_logits, fake_logits)
    lecam = losses.lecam_regularizer(real_logits, fake_logits, state.lecam_ema[0],
                                     state.lecam_ema[1])
    total = hinge + lc.lecam_weight * lecam
    metrics = {"disc_hinge_loss": hinge, "lecam": lecam,
               "logits_real": jnp.mean(real_logits), "logits_fake": jnp.mean(fake_logits)}
    if lc.r1_weight:
      metrics["r1"] = losses.r1_penalty(apply, real)
      total = total + lc.r1_weight * metrics["r1"]
    return total, (real_logits, fake_logits, metrics)

  (loss, (real_logits, fake_logits, metrics)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.disc_params)
  grad_norm = optax.tree.norm(grads)
  updates, disc_opt_state = state.disc_tx.update(grads, state.disc_opt_state, state.disc_params)
  fields = ("disc_params", "disc_opt_state", "lecam_ema")
  updated, skipped = state_lib.keep_if_finite(
      loss, grad_norm, dict(zip(fields, (
          optax.apply_updates(state.disc_params, updates), disc_opt_state,
          losses.update_lecam_ema(state.lecam_ema, real_logits, fake_logits,
                                  lc.lecam_ema_decay)))),
      {f: getattr(state, f) for f in fields})
  return state.replace(**updated), skipped, dict(metrics, disc_loss=loss, disc_grad_norm=grad_norm)


def train_step(state: TokenizerState, batch, perceptual_params=None, *, config, use_gan: bool):
  """Generator update, then (with the GAN on) a discriminator update; metrics are scalars,
  `skipped` is 1.0 when either update was dropped by the numerical guard."""
  state, recon, skipped, metrics = generator_step(state, batch, perceptual_params, config=config,
                                                  use_gan=use_gan)
  if use_gan:
    state, disc_skipped, disc_metrics = discriminator_step(state, batch, recon, config=config)
    skipped = skipped | disc_skipped
    metrics.update(disc_metrics)
  metrics["skipped"] = skipped.astype(jnp.float32)
  return state.replace(step=state.step + 1), metrics


def jit_train_step(config, state_shardings, mesh, use_gan: bool, perceptual_shardings=None):
  """`train_step` compiled for `mesh`; the batch sharded over ('data', 'fsdp'), state donated.

  The result is called `step(state, batch)`, or `step(state, batch, perceptual_params)` when
  `perceptual_shardings` is given. Call it inside `sharding.mesh_context(mesh, rules)`.
  """
  step = functools.partial(train_step, config=config, use_gan=use_gan)
  in_shardings = (state_shardings, sharding_lib.batch_sharding(mesh, 5))
  if perceptual_shardings is None:
    step = functools.partial(step, perceptual_params=None)
  else:
    in_shardings += (perceptual_shardings,)
  return jax.jit(step, in_shardings=in_shardings,
                 out_shardings=(state_shardings, sharding_lib.replicated(mesh)), donate_argnums=(0,))


def reconstruct(params, codebook_stats, video, *, config):
  """`[B, T, H, W, 3]` -> (reconstruction clipped to [-1, 1], ids `[B, t, h, w]`), no updates."""
  model = autoencoder.make_tokenizer(config.tokenizer)
  recon, aux = model.apply({"params": params, quantizers.STATS: codebook_stats}, video, False)
  return jnp.clip(recon, -1.0, 1.0), aux["indices"]
