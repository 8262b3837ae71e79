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

Caption contrast [ours] (`train.caption_contrast`, off by default): each row whose input holds one
of the ids `contrast_ids` (e.g. the colour words) is also run with that id swapped for another of
them, and `softplus(nll(true caption) - nll(swapped))` over its first latent frame's targets is
added (times the weight, averaged over the rows): the log-loss of telling the true caption from the
swapped one by the frame's likelihood, the LM as its own caption classifier (README, "First-frame
candidates").
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


def swap_caption_ids(inputs, contrast_ids, step):
  """`(swapped [B, L], has [B])`: every id of `contrast_ids` in a row replaced by another of them
  (the next by 1 + (row + step) mod (C - 1) places, so the alternatives cycle over steps, and a
  resumed run repeats them); `has` marks the rows that held one."""
  ids = jnp.asarray(contrast_ids, inputs.dtype)
  c = ids.shape[0]
  match = inputs[..., None] == ids   # [B, L, C]
  where = match.any(axis=-1)
  rows = jnp.arange(inputs.shape[0])[:, None]
  shift = 1 + (rows + step) % (c - 1)
  swapped = jnp.where(where, ids[(jnp.argmax(match, axis=-1) + shift) % c], inputs)
  return swapped, where.any(axis=1)


def caption_contrast_sum(apply_fn, params, batch, ce, contrast_ids, step):
  """Sum over the rows of `softplus(nll_true - nll_swapped)` (module docstring), the NLLs over
  the first latent frame's weighted targets (all weighted targets without `frame`); `ce [B, L]`
  is the true caption's per-token loss."""
  swapped, has = swap_caption_ids(batch["inputs"], contrast_ids, step)
  mask = batch["weights"] > 0
  if "frame" in batch:
    mask = mask & (batch["frame"] == 0)
  alt_ce = optax.softmax_cross_entropy_with_integer_labels(
      _logits(apply_fn, params, dict(batch, inputs=swapped)).astype(jnp.float32),
      batch["targets"])
  nll, alt = jnp.sum(ce * mask, axis=1), jnp.sum(alt_ce * mask, axis=1)
  return jnp.sum(jnp.where(has & mask.any(axis=1), jax.nn.softplus(nll - alt), 0.0))


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
               grad_accum_steps: int = 1, batch_transform=None, seed: int = 0,
               caption_contrast: float = 0.0, contrast_ids: tuple[int, ...] = ()):
  """One optimizer step: `(state, batch) -> (state, metrics)`; metrics are scalars.

  With `grad_accum_steps = k` the batch is split into k micro-batches along B whose gradients are
  summed before the single update (same result as the full batch, k times less activation
  memory). Non-finite loss or gradients skip the update (`metrics['skipped']`).
  `batch_transform(key, batch) -> batch` rewrites the batch inside the step (AR-DF masking,
  `train/ardf.py`) with a key derived from `seed` and the step number, so resumes are exact.
  `caption_contrast` > 0 adds the caption contrast over `contrast_ids` (module docstring; its
  mean over the rows is `metrics['caption_contrast']`).
  """
  contrast = caption_contrast > 0
  if contrast and len(contrast_ids) < 2:
    raise ValueError(f"train.caption_contrast: needs >= 2 ids to swap, got {contrast_ids}")
  groups = batch_groups(batch)
  if batch_transform is not None:
    key = jax.random.fold_in(jax.random.key(seed), state.step)
    groups = [batch_transform(key if len(groups) == 1 else jax.random.fold_in(key, g), group)
              for g, group in enumerate(groups)]
  total_weight = sum(jnp.sum(group["weights"].astype(jnp.float32)) for group in groups)
  has_frames = "frame" in groups[0]
  total_rows = sum(group["inputs"].shape[0] for group in groups)

  def loss_fn(params, micro):
    logits = _logits(state.apply_fn, params, micro)
    loss, aux = weighted_cross_entropy(logits, micro["targets"], micro["weights"], z_loss,
                                       denominator=total_weight)
    frames = _frame_loss_sums(aux["ce_per_token"], micro["frame"]) if has_frames else None
    if contrast:
      pair = caption_contrast_sum(state.apply_fn, params, micro, aux["ce_per_token"],
                                  contrast_ids, state.step) / total_rows
      loss = loss + caption_contrast * pair
      frames = (frames, pair)
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

    aux = jnp.zeros(4) if has_frames else None
    zeros = (jnp.zeros(()), (aux, jnp.zeros(())) if contrast else aux,
             jax.tree.map(jnp.zeros_like, state.params))
    return jax.lax.scan(accumulate, zeros, micro)[0]

  loss, frames, grads = group_grads(groups[0])
  for group in groups[1:]:
    loss, frames, grads = jax.tree.map(jnp.add, (loss, frames, grads), group_grads(group))

  pair = None
  if contrast:
    frames, pair = frames
  new_state, skipped, grad_norm = state_lib.apply_gradients_if_finite(state, grads, loss)
  metrics = {"loss": loss, "grad_norm": grad_norm, "skipped": skipped.astype(jnp.float32),
             "param_norm": optax.tree.norm(new_state.params), "tokens": total_weight}
  if has_frames:
    metrics["loss_first_frame"] = frames[0] / jnp.maximum(frames[1], 1)
    metrics["loss_later_frames"] = frames[2] / jnp.maximum(frames[3], 1)
  if pair is not None:
    metrics["caption_contrast"] = pair
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
                   seed: int = 0, groups: int = 0, caption_contrast: float = 0.0,
                   contrast_ids: tuple[int, ...] = ()):
  """The train step compiled for `mesh`: explicit in/out shardings, the state donated.
  `groups` > 0: batches of that many length groups (`data.length_groups`).

  Call the returned function inside `with sharding.mesh_context(mesh, axis_rules):` so that the
  activation constraints resolve.
  """
  batch_sh = {k: sharding_lib.batch_sharding(mesh, 2) for k in batch_keys}
  if groups:
    batch_sh = {f"group{g}": dict(batch_sh) for g in range(groups)}
  step = functools.partial(train_step, z_loss=z_loss, grad_accum_steps=grad_accum_steps,
                           batch_transform=batch_transform, seed=seed,
                           caption_contrast=caption_contrast,
                           contrast_ids=tuple(int(i) for i in contrast_ids))
  return jax.jit(step,
                 in_shardings=(state_shardings, batch_sh),
                 out_shardings=(state_shardings, sharding_lib.replicated(mesh)),
                 donate_argnums=(0,))
