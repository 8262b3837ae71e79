"""Train the LM: `python -m loong_jax.train_lm --config configs/lm/llama.py:tiny --workdir DIR`.

Builds the mesh from `config.mesh`, initialises the sharded train state, and runs the shared
training loop (`train/loop.py`) on the built-in token stream (`config.data.kind ==
'token_stream'`). Writes `config.json`, `metrics.jsonl`, TensorBoard events and orbax checkpoints
(state + data position) to DIR, and resumes exactly from the latest checkpoint when re-run.

Multi-host: pass `--coordinator_address`, `--num_processes`, `--process_id` (see
`launch/local_multiprocess.sh`), or nothing on a TPU pod / under SLURM, where
`jax.distributed.initialize()` reads the environment.
"""

from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
from absl import flags

from loong_jax import cli, tokens
from loong_jax import sharding as sharding_lib
from loong_jax.data import token_stream
from loong_jax.llm import transformer
from loong_jax.train import checkpoint as checkpoint_lib
from loong_jax.train import lm_step, loop
from loong_jax.train import state as state_lib

_CONFIG = cli.define_config_flag("configs/lm/llama.py:tiny")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (metrics, checkpoints).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0, for multi-process runs.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in a multi-process run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")


def initialize_distributed(coordinator: str | None, num_processes: int | None,
                           process_id: int | None):
  """`jax.distributed.initialize` from flags, or from the TPU-pod / SLURM environment."""
  if coordinator or (num_processes or 1) > 1:
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)
  elif int(os.environ.get("SLURM_NTASKS", "1")) > 1 or "TPU_WORKER_HOSTNAMES" in os.environ:
    jax.distributed.initialize()


def build(config):
  """Model, mesh, rules, sharded state, state shardings and the jitted step for `config`."""
  lm_config = transformer.LMConfig.from_config(config.lm)
  model = transformer.Transformer(lm_config)
  mesh = sharding_lib.make_mesh(config.mesh)
  rules = sharding_lib.rules(config.sharding)
  batch_split = mesh.shape["data"] * mesh.shape["fsdp"] * config.train.grad_accum_steps
  if config.train.batch_size % batch_split:
    raise ValueError(f"config.train.batch_size={config.train.batch_size} must be divisible by "
                     f"data*fsdp*grad_accum_steps={batch_split}")
  tx = state_lib.make_optimizer(config.optim, config.train.steps)
  dummy = jnp.zeros((1, config.train.seq_len), jnp.int32)
  state, shardings = state_lib.create_sharded_state(
      lambda key: model.init(key, dummy)["params"], model.apply, tx,
      jax.random.key(config.train.seed), mesh, rules, config.sharding.max_replicated_fraction)
  step_fn = lm_step.jit_train_step(shardings, mesh, rules, z_loss=config.train.z_loss,
                                   grad_accum_steps=config.train.grad_accum_steps,
                                   batch_keys=lm_step.BATCH_KEYS + ("frame",))
  return model, mesh, rules, state, shardings, step_fn


def _stream(config, vocab, seed):
  return token_stream.dataset(config.data, vocab, config.train.batch_size, config.train.seq_len,
                              seed, jax.process_index(), jax.process_count())


def _eval_fn(config, vocab, model, mesh):
  """Mean loss over `train.eval_batches` held-out batches (another seed of the stream)."""
  batches = _stream(config, vocab, config.train.seed + 1)
  step = jax.jit(functools.partial(lm_step.eval_step, apply_fn=model.apply))

  def evaluate(state):
    losses = [step(state.params, loop.to_global(batches[i], mesh))["loss"]
              for i in range(config.train.eval_batches)]
    return {"eval_loss": float(jnp.mean(jnp.stack(losses)))}
  return evaluate


def train(config, workdir: str) -> loop.LoopResult:
  """Train (or resume) until `config.train.steps`."""
  if config.data.kind != "token_stream":
    raise ValueError(f"config.data.kind={config.data.kind!r}: train_lm reads 'token_stream'")
  vocab = tokens.Vocab(config.vocab.text_size, config.vocab.video_size)
  model, mesh, rules, state, _, step_fn = build(config)
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=1))
  data = iter(_stream(config, vocab, config.train.seed).to_iter_dataset())
  cfg = config.train
  checkpointer = checkpoint_lib.Checkpointer(
      os.path.join(workdir, "checkpoints"), save_every=cfg.checkpoint_every,
      keep_last=cfg.keep_last, keep_every=cfg.keep_every)
  tokens_per_batch = cfg.batch_size * cfg.seq_len
  flops = loop.model_flops_per_token(model.config, state_lib.count_params(state.params),
                                     cfg.seq_len) * tokens_per_batch
  try:
    return loop.train_loop(
        state=state, step_fn=step_fn, data=data, mesh=mesh, axis_rules=rules, train_config=cfg,
        workdir=workdir, checkpointer=checkpointer, tokens_per_batch=tokens_per_batch,
        flops_per_batch=flops,
        eval_fn=_eval_fn(config, vocab, model, mesh) if cfg.eval_every else None)
  finally:
    checkpointer.close()


def main(argv):
  del argv
  if not _WORKDIR.value:
    raise SystemExit("error: --workdir is required")
  initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  result = train(_CONFIG.value, _WORKDIR.value)
  if result.preempted:
    print(f"preempted: checkpoint saved at step {int(result.state.step)}", flush=True)
  elif result.history and jax.process_index() == 0:
    last = result.history[-1]
    print(f"final loss {last['loss']:.4f} after {last['step']} steps "
          f"(metrics in {os.path.join(_WORKDIR.value, 'metrics.jsonl')})")


if __name__ == "__main__":
  cli.run(main)
