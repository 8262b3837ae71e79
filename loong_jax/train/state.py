"""Train state, optimizer from config, sharded initialisation, parameter counting.

The optimizer is plain optax: AdamW (b1, b2, eps, decoupled weight decay on matrices only, not on
norm scales or embeddings), warm-up + cosine schedule, global-norm clipping.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from loong_jax import sharding as sharding_lib

TrainState = train_state.TrainState

# Parameter leaf names that get weight decay: projection matrices. Norm `scale`s and the
# `embedding` table are excluded (LLaMA practice).
DECAYED_LEAVES = ("kernel",)


def learning_rate_schedule(optim_config, total_steps: int) -> optax.Schedule:
  """Linear warm-up from 0 to `learning_rate`, then cosine to `end_learning_rate_fraction` of it."""
  decay_steps = optim_config.decay_steps or total_steps
  if optim_config.warmup_steps >= decay_steps:
    raise ValueError(f"config.optim.warmup_steps={optim_config.warmup_steps} must be below the "
                     f"decay horizon {decay_steps} (config.optim.decay_steps or train.steps)")
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=optim_config.learning_rate,
      warmup_steps=optim_config.warmup_steps, decay_steps=decay_steps,
      end_value=optim_config.learning_rate * optim_config.end_learning_rate_fraction)


def weight_decay_mask(params) -> Any:
  """True for leaves named in `DECAYED_LEAVES` (works on boxed and plain parameter trees)."""
  def decide(path, _):
    names = [getattr(k, "key", None) for k in path]
    return any(n in DECAYED_LEAVES for n in names)
  return jax.tree_util.tree_map_with_path(decide, params)


def make_optimizer(optim_config, total_steps: int) -> optax.GradientTransformation:
  schedule = learning_rate_schedule(optim_config, total_steps)
  return optax.chain(
      optax.clip_by_global_norm(optim_config.grad_clip_norm),
      optax.adamw(schedule, b1=optim_config.b1, b2=optim_config.b2, eps=optim_config.eps,
                  weight_decay=optim_config.weight_decay, mask=weight_decay_mask),
  )


def abstract_sharded_state(init_params: Callable[[jax.Array], Any], apply_fn: Callable,
                           tx: optax.GradientTransformation, mesh, axis_rules,
                           max_replicated_fraction: float):
  """Shapes and shardings of a `TrainState`, without allocating it (also for AOT compiles).

  Args:
    init_params: `rng -> params`, params boxed with logical axis names (`model.init(...)['params']`).
    apply_fn, tx: stored on the state.
    mesh, axis_rules: where and how to shard.
    max_replicated_fraction: see `sharding.check_param_sharding`.
  Returns:
    `(make_state, abstract_state, state_shardings)`: `make_state(rng)` builds the real state (params
    and optimizer moments unboxed); the abstract state holds `jax.ShapeDtypeStruct`s.
  """
  rng = jax.random.key(0)
  boxed = jax.eval_shape(init_params, rng)
  param_shardings = sharding_lib.logical_to_sharding(nn.get_partition_spec(boxed), mesh,
                                                     axis_rules)
  sharding_lib.check_param_sharding(nn.unbox(boxed), param_shardings, mesh,
                                    max_replicated_fraction)

  def make_state(key):
    return TrainState.create(apply_fn=apply_fn, params=nn.unbox(init_params(key)), tx=tx)

  # Optimizer moments follow their parameter's sharding; counters and the like are replicated.
  abstract = jax.eval_shape(make_state, rng)
  opt_shardings = optax.tree_map_params(
      tx, lambda _, sh: sh, abstract.opt_state, param_shardings,
      transform_non_params=lambda _: sharding_lib.replicated(mesh))
  shardings = abstract.replace(step=sharding_lib.replicated(mesh), params=param_shardings,
                               opt_state=opt_shardings)
  return make_state, abstract, shardings


def create_sharded_state(init_params: Callable[[jax.Array], Any], apply_fn: Callable,
                         tx: optax.GradientTransformation, rng: jax.Array, mesh, axis_rules,
                         max_replicated_fraction: float):
  """Initialise a `TrainState` directly into its shards (no full copy on any one device).

  Arguments as `abstract_sharded_state`, plus the init key `rng`.
  Returns:
    `(state, state_shardings)`.
  """
  make_state, _, shardings = abstract_sharded_state(init_params, apply_fn, tx, mesh, axis_rules,
                                                    max_replicated_fraction)
  with sharding_lib.mesh_context(mesh, axis_rules):
    state = jax.jit(make_state, out_shardings=shardings)(rng)
  return state, shardings


def apply_gradients_if_finite(state: TrainState, grads, loss):
  """The numerical guard: update only when the loss and the gradients are finite.

  A non-finite step leaves params and optimizer state untouched and still advances `step` (so
  the data moves on and a resumed run stays aligned).
  Returns:
    `(new_state, skipped bool[], grad_norm float[])`.
  """
  grad_norm = optax.tree.norm(grads)
  new_state, skipped = keep_if_finite(loss, grad_norm, state.apply_gradients(grads=grads),
                                      state.replace(step=state.step + 1))
  return new_state, skipped, grad_norm


def keep_if_finite(loss, grad_norm, updated, kept):
  """`(updated if loss and grad_norm are finite else kept, skipped bool[])`, leaf by leaf.

  `updated` and `kept` are pytrees of one structure (e.g. a state after and without an update).
  """
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  chosen = jax.tree.map(lambda new, old: jnp.where(finite, new, old), updated, kept)
  return chosen, jnp.logical_not(finite)


def count_params(params) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(params))


def param_table(params, depth: int = 3) -> list[tuple[str, tuple[int, ...] | str, int]]:
  """Rows `(module path, shape or '', count)` grouping leaves by their first `depth` path keys."""
  rows: dict[str, list] = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(nn.unbox(params)):
    keys = [str(getattr(k, "key", k)) for k in path]
    group = "/".join(keys[:depth])
    entry = rows.setdefault(group, [None, 0])
    entry[0] = tuple(leaf.shape) if len(keys) <= depth else ""
    entry[1] += math.prod(leaf.shape)
  return [(name, shape, n) for name, (shape, n) in rows.items()]
