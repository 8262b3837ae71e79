"""Train the LM: `python -m loong_jax.train_lm --config configs/lm/llama.py:tiny --workdir DIR`.

Builds the mesh from `config.mesh`, initialises the sharded train state, and runs the jitted,
donated train step on the built-in token stream (`config.data.kind == 'token_stream'`). Writes
`metrics.jsonl` and orbax checkpoints to DIR and resumes from the latest one when re-run.
"""

from __future__ import annotations

import json
import os
import time

import jax
import orbax.checkpoint as ocp
from absl import flags, logging

from loong_jax import cli, tokens
from loong_jax import sharding as sharding_lib
from loong_jax.data import token_stream
from loong_jax.llm import transformer
from loong_jax.train import lm_step
from loong_jax.train import state as state_lib

_CONFIG = cli.define_config_flag("configs/lm/llama.py:tiny")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (metrics, checkpoints).")


def build(config):
  """Model, mesh, rules, sharded state and jitted step for `config`."""
  lm_config = transformer.LMConfig.from_config(config.lm)
  model = transformer.Transformer(lm_config)
  mesh = sharding_lib.make_mesh(config.mesh)
  rules = sharding_lib.rules(config.sharding)
  if config.train.batch_size % (mesh.shape["data"] * mesh.shape["fsdp"]):
    raise ValueError(f"config.train.batch_size={config.train.batch_size} must be divisible by "
                     f"the batch-sharding mesh axes data*fsdp="
                     f"{mesh.shape['data'] * mesh.shape['fsdp']}")
  tx = state_lib.make_optimizer(config.optim, config.train.steps)
  dummy = jax.numpy.zeros((1, config.train.seq_len), jax.numpy.int32)
  state, shardings = state_lib.create_sharded_state(
      lambda key: model.init(key, dummy)["params"], model.apply, tx,
      jax.random.key(config.train.seed), mesh, rules, config.sharding.max_replicated_fraction)
  step_fn = lm_step.jit_train_step(shardings, mesh, rules, z_loss=config.train.z_loss)
  return model, mesh, rules, state, shardings, step_fn


def train(config, workdir: str) -> list[dict]:
  """Train for `config.train.steps`; returns the logged metric rows."""
  if config.data.kind != "token_stream":
    raise ValueError(f"config.data.kind={config.data.kind!r}: train_lm reads 'token_stream'")
  vocab = tokens.Vocab(config.vocab.text_size, config.vocab.video_size)
  _, mesh, rules, state, shardings, step_fn = build(config)
  os.makedirs(workdir, exist_ok=True)
  manager = ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), "checkpoints"),
      options=ocp.CheckpointManagerOptions(max_to_keep=2,
                                           save_interval_steps=config.train.checkpoint_every))
  saved = {"params": state.params, "opt_state": state.opt_state, "step": state.step}
  if manager.latest_step() is not None:
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, saved)
    saved = manager.restore(manager.latest_step(), args=ocp.args.StandardRestore(target))
    state = state.replace(**saved)
    logging.info("resumed from step %d", int(state.step))
  first = int(state.step)
  stream = token_stream.batches(config.data, vocab, config.train.batch_size,
                                config.train.seq_len, config.train.seed, start=first)
  rows, tick = [], time.perf_counter()
  with sharding_lib.mesh_context(mesh, rules), open(os.path.join(workdir, "metrics.jsonl"),
                                                      "a") as log:
    for step in range(first, config.train.steps):
      batch = next(stream)
      state, metrics = step_fn(state, batch)
      done = step + 1
      if done % config.train.log_every == 0 or done == config.train.steps:
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        elapsed, tick = time.perf_counter() - tick, time.perf_counter()
        steps_run = done - (rows[-1]["step"] if rows else first)
        row = {"step": done, **metrics,
               "tokens_per_s": steps_run * batch["inputs"].size / elapsed}
        rows.append(row)
        log.write(json.dumps(row) + "\n")
        log.flush()
        print(f"step {done:6d}  loss {row['loss']:.4f}  grad_norm {row['grad_norm']:.3f}  "
              f"{row['tokens_per_s']:.0f} tokens/s", flush=True)
      manager.save(done, args=ocp.args.StandardSave(
          {"params": state.params, "opt_state": state.opt_state, "step": state.step}),
          force=done == config.train.steps)
  manager.wait_until_finished()
  manager.close()
  return rows


def main(argv):
  del argv
  if not _WORKDIR.value:
    raise SystemExit("error: --workdir is required")
  rows = train(_CONFIG.value, _WORKDIR.value)
  if rows:
    print(f"final loss {rows[-1]['loss']:.4f} after {rows[-1]['step']} steps "
          f"(metrics in {os.path.join(_WORKDIR.value, 'metrics.jsonl')})")


if __name__ == "__main__":
  cli.run(main)
