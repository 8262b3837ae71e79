"""Next-token LM loss with per-token weights, and the sharded, jitted train / eval steps.

A batch is a dict of `[B, L]` arrays:
  `inputs` int32 token ids, `targets` int32 next-token ids, `weights` float32 loss weights
  (0 for padding and for tokens that are conditioning only; see SPEC §4 for the re-weighting).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from loong_jax import sharding as sharding_lib
from loong_jax.train import state as state_lib

BATCH_KEYS = ("inputs", "targets", "weights")


def weighted_cross_entropy(logits, targets, weights, z_loss: float = 0.0):
  """Weighted mean next-token loss.

  Args:
    logits: `[B, L, V]` float32. targets: `[B, L]` int32. weights: `[B, L]` float32.
    z_loss: coefficient of the `log(Z)^2` stabiliser (0 = off).
  Returns:
    `(loss, aux)`: loss = sum(w * ce) / sum(w) (+ z-loss); aux has `ce_per_token [B, L]` and
    `weight_sum`.
  """
  logits = logits.astype(jnp.float32)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  weights = weights.astype(jnp.float32)
  weight_sum = jnp.sum(weights)
  denom = jnp.maximum(weight_sum, 1e-8)
  loss = jnp.sum(ce * weights) / denom
  if z_loss:
    log_z = jax.nn.logsumexp(logits, axis=-1)
    loss = loss + z_loss * jnp.sum(jnp.square(log_z) * weights) / denom
  return loss, {"ce_per_token": ce, "weight_sum": weight_sum}


def train_step(state: state_lib.TrainState, batch, *, z_loss: float = 0.0):
  """One optimizer step: `(state, batch) -> (state, metrics)`; metrics are scalars."""
  def loss_fn(params):
    logits = state.apply_fn({"params": params}, batch["inputs"])
    return weighted_cross_entropy(logits, batch["targets"], batch["weights"], z_loss)

  (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  new_state = state.apply_gradients(grads=grads)
  metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads),
             "param_norm": optax.tree.norm(new_state.params), "tokens": aux["weight_sum"]}
  return new_state, metrics


def eval_step(params, batch, *, apply_fn):
  """`(params, batch) -> metrics` with the weighted loss and its weight sum."""
  logits = apply_fn({"params": params}, batch["inputs"])
  loss, aux = weighted_cross_entropy(logits, batch["targets"], batch["weights"])
  return {"loss": loss, "tokens": aux["weight_sum"]}


def jit_train_step(state_shardings, mesh, axis_rules, *, z_loss: float = 0.0):
  """The train step compiled for `mesh`: explicit in/out shardings, the state donated.

  Call the returned function inside `with sharding.mesh_context(mesh, axis_rules):` so that the
  activation constraints resolve.
  """
  batch_sh = {k: sharding_lib.batch_sharding(mesh, 2) for k in BATCH_KEYS}
  return jax.jit(functools.partial(train_step, z_loss=z_loss),
                 in_shardings=(state_shardings, batch_sh),
                 out_shardings=(state_shardings, sharding_lib.replicated(mesh)),
                 donate_argnums=(0,))
