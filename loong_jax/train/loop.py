"""The training loop shared by the LM and the video tokenizer.

`train_loop` owns everything around the jitted step: restoring the latest checkpoint (state and
data position), feeding each host's slice of the batch to the global mesh, the numerical guard's
bookkeeping, metrics (TensorBoard, JSONL, console with ETA; tokens/s or frames/s, MFU, time waiting
for data), periodic evaluation, asynchronous checkpoints, a `jax.profiler` trace window, and a
clean save and exit on SIGTERM (preemption).

The step function is `(state, batch) -> (state, metrics)` with scalar metrics; a `skipped` metric
(1.0 when the numerical guard dropped the update) is counted, and `max_consecutive_skips` in a row
stop the run with an error naming the step and the last good checkpoint. A run whose step changes
with the step number (the tokenizer's GAN switch) passes `step_fn_at(step) -> step function`
instead; the choice is a function of the step alone, so a resumed run picks as a straight one.
"""

from __future__ import annotations

import dataclasses
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
from absl import logging

from loong_jax import sharding as sharding_lib
from loong_jax.train import checkpoint as checkpoint_lib
from loong_jax.train import metrics as metrics_lib


class NonFiniteError(RuntimeError):
  """Too many consecutive non-finite steps."""


@dataclasses.dataclass
class LoopResult:
  state: Any
  history: list[dict]     # the logged rows
  preempted: bool         # stopped by SIGTERM after saving
  skipped_steps: list[int]
  start_step: int         # the step this run started (or resumed) from


def to_global(batch: dict, mesh) -> dict:
  """This host's rows of the batch (a dict of arrays, or of such dicts: length groups) ->
  global arrays sharded over ('data', 'fsdp')."""
  return jax.tree.map(
      lambda v: jax.make_array_from_process_local_data(
          sharding_lib.batch_sharding(mesh, v.ndim), v), batch)


def _poison(batch: dict) -> dict:
  """Fault injection (`train.debug_nan_steps`): every float array becomes NaN."""
  return jax.tree.map(lambda v: v * np.nan if np.issubdtype(v.dtype, np.floating) else v, batch)


class _Preemption:
  """Turns SIGTERM into a flag checked between steps (the step in flight completes)."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread: leave signals alone
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning("SIGTERM received: saving a checkpoint and exiting")
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def train_loop(*, state, data: Iterator, mesh, axis_rules, train_config, workdir: str,
               checkpointer: checkpoint_lib.Checkpointer, step_fn: Callable | None = None,
               step_fn_at: Callable[[int], Callable] | None = None,
               counts_per_batch: dict[str, float] | None = None, flops_per_batch: float = 0.0,
               eval_fn: Callable[[Any], dict[str, float]] | None = None) -> LoopResult:
  """Run until `train_config.steps`, resuming from the latest checkpoint in `checkpointer`.

  Args:
    state: the freshly initialised, sharded train state (overwritten by a restore).
    step_fn: jitted `(state, global batch) -> (state, metrics)`.
    step_fn_at: instead of `step_fn`, `step index (0-based) -> step function` for that step.
    data: a grain `DatasetIterator` (its position is checkpointed) yielding this host's slice of
      each batch as a dict of NumPy arrays.
    mesh, axis_rules: the mesh and logical rules the step was compiled for.
    train_config: `config.train` (steps, log_every, eval_every, max_consecutive_skips,
      profile_steps, debug_nan_steps; peak_flops_per_device when `flops_per_batch` is given).
    workdir: metrics go here.
    checkpointer: where checkpoints are restored from and saved to.
    counts_per_batch: global per-step counts, logged as rates (`{"tokens": B * L}` ->
      `tokens_per_s`).
    flops_per_batch: global training FLOPs per step, for MFU (0: omit).
    eval_fn: `state -> {name: value}`, run every `eval_every` steps.
  """
  if (step_fn is None) == (step_fn_at is None):
    raise ValueError("train_loop: pass exactly one of step_fn and step_fn_at")
  step_fn_at = step_fn_at or (lambda _: step_fn)
  cfg = train_config
  if checkpointer.latest_step() is not None:
    state = checkpointer.restore(state, data)
    if jax.process_index() == 0:
      print(f"resumed from step {int(state.step)} ({checkpointer.directory})", flush=True)
  start = int(state.step)
  writer = metrics_lib.MetricWriter(workdir, cfg.steps)
  peak = cfg.peak_flops_per_device * jax.device_count() if flops_per_batch else 0.0
  history, skipped_steps, consecutive = [], [], 0
  # Sums and counts per metric: a step function chosen by step may add metrics mid-window.
  window: dict[str, float] = {}
  window_counts: dict[str, int] = {}
  data_wait, window_start = 0.0, time.perf_counter()
  profile = tuple(cfg.profile_steps) if cfg.profile_steps else None
  preempted = False

  with sharding_lib.mesh_context(mesh, axis_rules), _Preemption() as preemption:
    for step in range(start, cfg.steps):
      done = step + 1
      if profile and done == profile[0]:
        jax.profiler.start_trace(f"{workdir}/profile")
      tick = time.perf_counter()
      local = next(data)
      if done in cfg.debug_nan_steps:
        local = _poison(local)
      batch = to_global(local, mesh)
      data_wait += time.perf_counter() - tick
      state, metrics = step_fn_at(step)(state, batch)
      metrics = jax.device_get(metrics)
      if metrics.get("skipped", 0.0) > 0:
        consecutive += 1
        skipped_steps.append(done)
        logging.warning("step %d: non-finite loss or gradient, update skipped (%d in a row)",
                        done, consecutive)
        if consecutive >= cfg.max_consecutive_skips:
          checkpointer.wait()
          raise NonFiniteError(
              f"{consecutive} consecutive non-finite steps ending at step {done} "
              f"(config.train.max_consecutive_skips={cfg.max_consecutive_skips}); last good "
              f"checkpoint: step {checkpointer.latest_step()} in {checkpointer.directory}")
      else:
        consecutive = 0
        for k, v in metrics.items():
          window[k] = window.get(k, 0.0) + float(v)
          window_counts[k] = window_counts.get(k, 0) + 1
      if profile and done == profile[1]:
        jax.profiler.stop_trace()

      if done % cfg.log_every == 0 or done == cfg.steps:
        elapsed = time.perf_counter() - window_start
        row = {k: v / window_counts[k] for k, v in window.items()}
        row["skipped_total"] = float(len(skipped_steps))
        row["steps_per_s"] = (done - (history[-1]["step"] if history else start)) / elapsed
        row["data_wait_frac"] = data_wait / elapsed
        for name, count in (counts_per_batch or {}).items():
          row[f"{name}_per_s"] = count * row["steps_per_s"]
        if peak:
          row["mfu"] = flops_per_batch * row["steps_per_s"] / peak
        history.append({"step": done, **row})
        writer.write(done, row)
        window, window_counts, data_wait = {}, {}, 0.0
        window_start = time.perf_counter()
      if eval_fn is not None and cfg.eval_every and done % cfg.eval_every == 0:
        writer.write(done, eval_fn(state), prefix="eval")

      stop = preemption.requested
      # Inside a run of skipped steps nothing new is worth saving: the last checkpoint stays the
      # last good one that the error message names.
      if consecutive == 0 or stop:
        checkpointer.save(done, state, data, force=stop or done == cfg.steps)
      if stop:
        preempted = True
        break

  checkpointer.wait()
  writer.close()
  return LoopResult(state, history, preempted, skipped_steps, start)


def model_flops_per_token(lm_config, num_params: int, seq_len: int) -> float:
  """Training FLOPs per token: 6 x matmul parameters (the embedding lookup is not a matmul)
  + 6 x layers x seq_len x heads x head_dim for causal attention (forward and backward)."""
  matmul = num_params - lm_config.padded_vocab_size * lm_config.d_model
  attention = 6 * lm_config.num_layers * seq_len * lm_config.num_heads * lm_config.head_dim
  return float(6 * matmul + attention)

