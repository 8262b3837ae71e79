"""Checkpoints: model + optimizer + step, and the data iterator's position, in one orbax step.

Saves are asynchronous (training continues while the arrays are written) and atomic: orbax writes
into a temporary directory and renames it when complete, and only completed steps are listed, so a
half-written checkpoint (a crash, SIGKILL, a full disk) is never restored. Retention keeps the last
`keep_last` steps plus every step divisible by `keep_every`.

Restoring onto another mesh: pass an abstract state whose `jax.ShapeDtypeStruct`s carry the new
shardings (`state.abstract_sharded_state` on the new mesh); orbax reshards on read.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from absl import logging

STATE, DATA = "state", "data"


# The checkpointed fields of a flax `TrainState` (apply_fn and tx are code, not data).
TRAIN_STATE_FIELDS = ("step", "params", "opt_state")


class Checkpointer:
  """A thin policy layer over `ocp.CheckpointManager`.

  Args:
    directory: where step directories go (created).
    save_every: save when `step % save_every == 0` (plus forced saves: end of run, preemption).
    keep_last: the newest N steps are kept.
    keep_every: steps divisible by this are kept forever (None: none).
    async_save: write in a background thread.
    fields: the state's data fields to save (a struct with `.replace`, e.g. a flax `TrainState`
      or the tokenizer's generator + discriminator state).
  """

  def __init__(self, directory: str, *, save_every: int, keep_last: int,
               keep_every: int | None = None, async_save: bool = True,
               fields: tuple[str, ...] = TRAIN_STATE_FIELDS):
    self.directory = os.path.abspath(directory)
    self.fields = fields
    policies = [ocp.checkpoint_managers.LatestN(keep_last)]
    if keep_every:
      policies.append(ocp.checkpoint_managers.EveryNSteps(keep_every))
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            # Only the interval (orbax's default also saves the very first step).
            save_decision_policy=ocp.checkpoint_managers.FixedIntervalPolicy(save_every),
            preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies),
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True),
        item_handlers={STATE: ocp.StandardCheckpointHandler(),
                       DATA: grain.checkpoint.CheckpointHandler()})

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state, data_iterator=None, force: bool = False) -> bool:
    """Save if the policy says so (or `force`); returns whether a save was started."""
    args = {STATE: ocp.args.StandardSave(self._saveable(state))}
    if data_iterator is not None:
      args[DATA] = grain.checkpoint.CheckpointSave(data_iterator)
    return self._manager.save(step, args=ocp.args.Composite(**args), force=force)

  def restore(self, state, data_iterator=None, step: int | None = None):
    """Restore into the structure/shardings of `state` (real or abstract); returns the new state.

    `data_iterator`, when given, is moved to the saved position in place.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no complete checkpoint in {self.directory}")
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, self._saveable(state))
    args = {STATE: ocp.args.StandardRestore(target)}
    if data_iterator is not None:
      args[DATA] = grain.checkpoint.CheckpointRestore(data_iterator)
    restored = self._manager.restore(step, args=ocp.args.Composite(**args))
    logging.info("restored step %d from %s", step, self.directory)
    return state.replace(**restored[STATE])

  def _saveable(self, state) -> dict[str, Any]:
    return {name: getattr(state, name) for name in self.fields}

  def wait(self):
    """Block until every started save is on disk."""
    self._manager.wait_until_finished()

  def close(self):
    self._manager.wait_until_finished()
    self._manager.close()


def restore_fields(directory: str, target: dict[str, Any] | Callable[[], dict[str, Any]],
                   step: int | None = None, name: str = "checkpoint directory") -> dict[str, Any]:
  """Some saved state fields of a `Checkpointer` run: `target` is e.g. `{"ema_params": tree of
  arrays or jax.ShapeDtypeStruct}` (their shardings are kept; none: the default device), or a
  function making it, called only once a checkpoint is found. The latest step unless `step`.
  `name` is the setting that gave `directory`, for the error when it holds no checkpoint."""
  manager = ocp.CheckpointManager(os.path.abspath(directory))
  try:
    step = manager.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"{name}: no checkpoint under {os.path.abspath(directory)}")
    target = target() if callable(target) else target
    restored = manager.restore(step, args=ocp.args.Composite(**{STATE: ocp.args.PyTreeRestore(
        item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
        partial_restore=True)}))
  finally:
    manager.close()
  logging.info("restored %s of step %d from %s", sorted(target), step, directory)
  return dict(restored[STATE])
