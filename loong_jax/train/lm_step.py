"""Next-token LM loss with per-token weights, and the sharded, jitted train / eval steps.

A batch is a dict of `[B, L]` arrays:
  `inputs` int32 token ids, `targets` int32 next-token ids, `weights` float32 loss weights
  (0 for padding and for tokens that are conditioning only; see SPEC §4 for the re-weighting),
  optionally `frame` int32: the latent frame of each target (-1 outside frames), for the
  first-frame vs later-frame loss metrics; `positions` (`[B, L, 3]` for MM-RoPE) and
  `input_frame` (latent frame of each input, for frame-level attention masks) and `input_prev` (the
  id each target had one latent frame earlier, for `prev_frame_input` models), passed to the model.
Or a dict of such batches, `{"group0": ..., "group1": ...}`, rows of different lengths
(`data.length_groups`, `data/pipeline.py`): the step's loss is the weighted mean over all of
them, as if every row were padded to the longest.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from loong_jax import sharding as sharding_lib
from loong_jax.train import state as state_lib

BATCH_KEYS = ("inputs", "targets", "weights")


def _logits(apply_fn, params, batch):
  return apply_fn({"params": params}, batch["inputs"], batch.get("positions"),
                  frame_ids=batch.get("input_frame"), prev_ids=batch.get("input_prev"))


def weighted_cross_entropy(logits, targets, weights, z_loss: float = 0.0, denominator=None):
  """Weighted next-token loss.

  Args:
    logits: `[B, L, V]` float32. targets: `[B, L]` int32. weights: `[B, L]` float32.
    z_loss: coefficient of the `log(Z)^2` stabiliser (0 = off).
    denominator: divide the weighted sum by this (default: `sum(weights)`); gradient accumulation
      passes the whole batch's weight sum so that micro-batches add up to the full-batch loss.
  Returns:
    `(loss, aux)`: loss = sum(w * ce) / denominator (+ z-loss); aux has `ce_per_token [B, L]` and
    `weight_sum`.
  """
  logits = logits.astype(jnp.float32)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  weights = weights.astype(jnp.float32)
  weight_sum = jnp.sum(weights)
  denom = jnp.maximum(weight_sum if denominator is None else denominator, 1e-8)
  loss = jnp.sum(ce * weights) / denom
  if z_loss:
    log_z = jax.nn.logsumexp(logits, axis=-1)
    loss = loss + z_loss * jnp.sum(jnp.square(log_z) * weights) / denom
  return loss, {"ce_per_token": ce, "weight_sum": weight_sum}


def is_grouped(batch) -> bool:
  """Whether `batch` is a dict of length groups (`{"group<g>": batch}`) rather than one batch."""
  return "inputs" not in batch


def batch_groups(batch) -> list[dict]:
  """The length groups of a batch (`{"group<g>": batch}`), or `[batch]` for one batch."""
  if not is_grouped(batch):
    return [batch]
  return [batch[f"group{g}"] for g in range(len(batch))]


def _frame_loss_sums(ce, frame):
  """Unweighted CE sums and counts on latent frame 0 and on later frames."""
  first, later = (frame == 0), (frame > 0)
  return jnp.stack([jnp.sum(ce * first), jnp.sum(first), jnp.sum(ce * later), jnp.sum(later)])


def train_step(state: state_lib.TrainState, batch, *, z_loss: float = 0.0,
               grad_accum_steps: int = 1, batch_transform=None, seed: int = 0):
  """One optimizer step: `(state, batch) -> (state, metrics)`; metrics are scalars.

  With `grad_accum_steps = k` the batch is split into k micro-batches along B whose gradients are
  summed before the single update (same result as the full batch, k times less activation
  memory). Non-finite loss or gradients skip the update (`metrics['skipped']`).
  `batch_transform(key, batch) -> batch` rewrites the batch inside the step (AR-DF masking,
  `train/ardf.py`) with a key derived from `seed` and the step number, so resumes are exact.
  """
  groups = batch_groups(batch)
  if batch_transform is not None:
    key = jax.random.fold_in(jax.random.key(seed), state.step)
    groups = [batch_transform(key if len(groups) == 1 else jax.random.fold_in(key, g), group)
              for g, group in enumerate(groups)]
  total_weight = sum(jnp.sum(group["weights"].astype(jnp.float32)) for group in groups)
  has_frames = "frame" in groups[0]

  def loss_fn(params, micro):
    logits = _logits(state.apply_fn, params, micro)
    loss, aux = weighted_cross_entropy(logits, micro["targets"], micro["weights"], z_loss,
                                       denominator=total_weight)
    frames = _frame_loss_sums(aux["ce_per_token"], micro["frame"]) if has_frames else None
    return loss, frames

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def group_grads(group):
    if grad_accum_steps == 1:
      (loss, frames), grads = grad_fn(state.params, group)
      return loss, frames, grads
    micro = jax.tree.map(
        lambda x: x.reshape(grad_accum_steps, x.shape[0] // grad_accum_steps, *x.shape[1:]),
        group)

    def accumulate(carry, mb):
      (loss, frames), grads = grad_fn(state.params, mb)
      return jax.tree.map(jnp.add, carry, (loss, frames, grads)), None

    zeros = (jnp.zeros(()), jnp.zeros(4) if has_frames else None,
             jax.tree.map(jnp.zeros_like, state.params))
    return jax.lax.scan(accumulate, zeros, micro)[0]

  loss, frames, grads = group_grads(groups[0])
  for group in groups[1:]:
    loss, frames, grads = jax.tree.map(jnp.add, (loss, frames, grads), group_grads(group))

  new_state, skipped, grad_norm = state_lib.apply_gradients_if_finite(state, grads, loss)
  metrics = {"loss": loss, "grad_norm": grad_norm, "skipped": skipped.astype(jnp.float32),
             "param_norm": optax.tree.norm(new_state.params), "tokens": total_weight}
  if has_frames:
    metrics["loss_first_frame"] = frames[0] / jnp.maximum(frames[1], 1)
    metrics["loss_later_frames"] = frames[2] / jnp.maximum(frames[3], 1)
  return new_state, metrics


def eval_step(params, batch, *, apply_fn):
  """`(params, batch) -> metrics` with the weighted loss and its weight sum (over every length
  group of a grouped batch)."""
  sums = weights = 0.0
  for group in batch_groups(batch):
    logits = _logits(apply_fn, params, group)
    loss, aux = weighted_cross_entropy(logits, group["targets"], group["weights"])
    sums, weights = sums + loss * aux["weight_sum"], weights + aux["weight_sum"]
  return {"loss": sums / jnp.maximum(weights, 1e-8), "tokens": weights}


def jit_train_step(state_shardings, mesh, axis_rules, *, z_loss: float = 0.0,
                   grad_accum_steps: int = 1, batch_keys=BATCH_KEYS, batch_transform=None,
                   seed: int = 0, groups: int = 0):
  """The train step compiled for `mesh`: explicit in/out shardings, the state donated.
  `groups` > 0: batches of that many length groups (`data.length_groups`).

  Call the returned function inside `with sharding.mesh_context(mesh, axis_rules):` so that the
  activation constraints resolve.
  """
  batch_sh = {k: sharding_lib.batch_sharding(mesh, 2) for k in batch_keys}
  if groups:
    batch_sh = {f"group{g}": dict(batch_sh) for g in range(groups)}
  step = functools.partial(train_step, z_loss=z_loss, grad_accum_steps=grad_accum_steps,
                           batch_transform=batch_transform, seed=seed)
  return jax.jit(step,
                 in_shardings=(state_shardings, batch_sh),
                 out_shardings=(state_shardings, sharding_lib.replicated(mesh)),
                 donate_argnums=(0,))
