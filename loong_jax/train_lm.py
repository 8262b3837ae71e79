"""Train the LM: `python -m loong_jax.train_lm --config configs/lm/llama.py:tiny --workdir DIR`.

Builds the mesh from `config.mesh`, initialises the sharded train state, and runs the shared
training loop (`train/loop.py`) on the built-in token stream (`config.data.kind ==
'token_stream'`) or on pre-tokenized shards (`'shards'`, the curriculum stages). Writes
`config.json`, `metrics.jsonl`, TensorBoard events and orbax checkpoints
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
from loong_jax.data import pipeline, token_stream
from loong_jax.llm import attention as attn_lib
from loong_jax.llm import transformer
from loong_jax.train import ardf
from loong_jax.train import checkpoint as checkpoint_lib
from loong_jax.train import lm_step, loop
from loong_jax.train import state as state_lib

# Flag holders, created by define_flags() when the module runs as a program.
_CONFIG = _WORKDIR = _COORDINATOR = _NUM_PROCESSES = _PROCESS_ID = None


def define_flags():
  """Define this entry point's flags (only when run as a program, so that modules that
  define flags of the same names can be imported side by side, e.g. by tests)."""
  global _CONFIG, _WORKDIR, _COORDINATOR, _NUM_PROCESSES, _PROCESS_ID
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
                                   batch_keys=batch_keys(lm_config),
                                   batch_transform=objective_transform(config, lm_config),
                                   seed=config.train.seed, groups=len(length_groups(config)),
                                   **caption_contrast(config))
  return model, mesh, rules, state, shardings, step_fn


def caption_contrast(config) -> dict:
  """`lm_step.jit_train_step`'s caption-contrast keywords from `config.train.caption_contrast`
  (absent in older configs: off)."""
  cc = config.train.get("caption_contrast", None)
  if cc is None or not cc.weight:
    return {}
  if cc.weight < 0:
    raise ValueError(f"config.train.caption_contrast.weight={cc.weight} must be >= 0")
  return dict(caption_contrast=float(cc.weight), contrast_ids=tuple(int(i) for i in cc.ids))


def length_groups(config) -> list[tuple[int, list[int], int]]:
  """`pipeline.length_groups` of a shards stage (`[]`: one padded batch). Each group's rows
  must split over the processes and the mesh's data-parallel axes."""
  if config.data.kind != "shards" or not config.data.get("length_groups", False):
    return []
  vocab = tokens.Vocab(config.vocab.text_size, config.vocab.video_size)
  groups = pipeline.length_groups(config.data, vocab, jax.process_count())
  shape = dict(zip(sharding_lib.MESH_AXES,
                   sharding_lib.mesh_shape(config.mesh, jax.device_count())))
  split = shape["data"] * shape["fsdp"] * config.train.grad_accum_steps
  for seq_len, _, rows in groups:
    if rows % split:
      raise ValueError(f"data.length_groups: the group of length {seq_len} has {rows} rows, not "
                       f"divisible by data*fsdp*grad_accum_steps={split}")
  return groups


def data_source(config, vocab: tokens.Vocab, seed: int):
  """This host's batches, `{inputs, targets, weights, frame}` `[B / P, L]`, from `config.data`.

  `token_stream`: the built-in stream (`data/token_stream.py`); `shards`: pre-tokenized ArrayRecord
  shards mixed per curriculum stage (`data/pipeline.py`).
  """
  if config.data.kind == "token_stream":
    return token_stream.dataset(config.data, vocab, config.train.batch_size,
                                config.train.seq_len, seed, jax.process_index(),
                                jax.process_count()).to_iter_dataset()
  if config.data.kind == "shards":
    data = config.data.copy_and_resolve_references()
    with data.unlocked():
      data.seed = seed
    return pipeline.make_pipeline(data, vocab)
  raise ValueError(f"config.data.kind={config.data.kind!r}; known: 'token_stream', 'shards'")


def with_layout(batch, keys, vocab: tokens.Vocab, frame_width: int, prev_radius: int = 0):
  """Keep the step's `keys`, adding the layout arrays the model needs: `input_frame` (latent
  frame of each input), `positions` (MM-RoPE `[B, L, 3]`) and `input_prev` (previous-frame ids,
  `[B, L, (2r + 1)**2]` for `prev_radius` r > 0), all derived from `inputs`."""
  if "input_frame" in keys:
    batch["input_frame"] = tokens.frame_index(batch["inputs"], vocab)
  if "positions" in keys:
    batch["positions"] = tokens.mm_rope_positions(batch["inputs"], vocab, frame_width)
  if "input_prev" in keys:
    batch["input_prev"] = tokens.previous_frame_inputs(batch["inputs"], vocab, frame_width,
                                                       prev_radius)
  return {k: batch[k] for k in keys}


def layout_groups(batch, keys, vocab: tokens.Vocab, frame_width: int, prev_radius: int = 0):
  """`with_layout` of a batch, or of each length group of a grouped one."""
  if not lm_step.is_grouped(batch):
    return with_layout(batch, keys, vocab, frame_width, prev_radius)
  return {g: with_layout(b, keys, vocab, frame_width, prev_radius) for g, b in batch.items()}


def _eval_fn(config, vocab, model, mesh):
  """Mean loss over `train.eval_batches` held-out batches (another seed of the data)."""
  keys = batch_keys(model.config)
  batches = data_source(config, vocab, config.train.seed + 1).map(
      lambda b: layout_groups(b, keys, vocab, config.data.frame_width,
                              model.config.prev_frame_radius))
  step = jax.jit(functools.partial(lm_step.eval_step, apply_fn=model.apply))

  def evaluate(state):
    it = iter(batches)
    losses = [step(state.params, loop.to_global(next(it), mesh))["loss"]
              for _ in range(config.train.eval_batches)]
    return {"eval_loss": float(jnp.mean(jnp.stack(losses)))}
  return evaluate


def stage_dirs(config, workdir: str) -> tuple[str, str | None]:
  """`(run directory, previous stage's directory or None)` for a curriculum config."""
  if "stage" not in config:
    return workdir, None
  run_dir = os.path.join(workdir, f"stage{config.stage}")
  previous = config.init.from_workdir or (
      os.path.join(workdir, f"stage{config.stage - 1}") if config.stage > 1 else None)
  return run_dir, previous


def init_from_previous_stage(config, state, previous: str, run_dir: str):
  """Start a stage from the previous stage's final weights; record the lineage."""
  source = checkpoint_lib.Checkpointer(os.path.join(previous, "checkpoints"), save_every=1,
                                       keep_last=1)
  try:
    step = source.latest_step()
    if step is None:
      raise FileNotFoundError(f"config.init.from_workdir: no checkpoint in {previous} to start "
                              f"stage {config.stage} from; train stage {config.stage - 1} first")
    restored = source.restore(state, step=step)
  finally:
    source.close()
  reset = config.init.reset_optimizer
  state = state.replace(params=restored.params,
                        opt_state=state.opt_state if reset else restored.opt_state)
  if jax.process_index() == 0:
    with open(os.path.join(run_dir, "lineage.json"), "w") as f:
      json.dump({"stage": config.stage, "from_workdir": os.path.abspath(previous),
                 "from_step": step, "reset_optimizer": reset}, f, indent=1)
    print(f"stage {config.stage}: starting from {previous} step {step} "
          f"({'fresh' if reset else 'kept'} optimizer state)", flush=True)
  return state


def batch_keys(lm_config: transformer.LMConfig) -> tuple[str, ...]:
  """The batch arrays the step reads for this model."""
  keys = lm_step.BATCH_KEYS + ("frame",)
  if lm_config.rope == "mm_rope":
    keys += ("positions",)
  if lm_config.attention_mask in attn_lib.FRAME_MASKS:
    keys += ("input_frame",)
  if lm_config.prev_frame_input:
    keys += ("input_prev",)
  return keys


def max_latent_frames(config) -> int:
  if config.data.kind == "token_stream":
    return max(frames for frames, _ in config.data.clip_mix)
  return max(tokens.latent_frames(src["max_frames"]) for src in config.data.sources)


def objective_transform(config, lm_config: transformer.LMConfig):
  """`None` for next-token prediction; the in-step AR-DF masking for `train.objective='ardf'`."""
  objective = config.train.objective
  if objective == "next_token":
    return None
  if objective != "ardf":
    raise ValueError(f"config.train.objective={objective!r}; known: 'next_token', 'ardf'")
  if lm_config.attention_mask != "frame_bidirectional":
    raise ValueError("config.train.objective='ardf' predicts tokens at their own position and "
                     "needs config.lm.attention_mask='frame_bidirectional'")
  vocab = tokens.Vocab(config.vocab.text_size, config.vocab.video_size)
  return functools.partial(
      ardf.ardf_batch, mask_id=vocab.mask, kind=config.train.ardf.mask_kind,
      min_ratio=config.train.ardf.min_ratio, tokens_per_frame=config.data.frame_width**2,
      video_range=(vocab.video_offset, vocab.special_offset), boi_id=vocab.boi,
      max_frames=max_latent_frames(config))


def train(config, workdir: str) -> loop.LoopResult:
  """Train (or resume) until `config.train.steps`; a curriculum stage trains in WORKDIR/stageK."""
  vocab = tokens.Vocab(config.vocab.text_size, config.vocab.video_size)
  model, mesh, rules, state, _, step_fn = build(config)
  workdir, previous = stage_dirs(config, workdir)
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=1))
  keys = batch_keys(model.config)
  data = iter(data_source(config, vocab, config.train.seed).map(
      lambda b: layout_groups(b, keys, vocab, config.data.frame_width,
                              model.config.prev_frame_radius)))
  cfg = config.train
  checkpointer = checkpoint_lib.Checkpointer(
      os.path.join(workdir, "checkpoints"), save_every=cfg.checkpoint_every,
      keep_last=cfg.keep_last, keep_every=cfg.keep_every)
  if previous and checkpointer.latest_step() is None:
    state = init_from_previous_stage(config, state, previous, workdir)
  groups = length_groups(config) or [(cfg.seq_len, None, cfg.batch_size)]
  tokens_per_batch = sum(rows * seq_len for seq_len, _, rows in groups)  # positions computed
  flops = sum(loop.model_flops_per_token(model.config, state_lib.count_params(state.params),
                                         seq_len) * rows * seq_len
              for seq_len, _, rows in groups)
  try:
    return loop.train_loop(
        state=state, step_fn=step_fn, data=data, mesh=mesh, axis_rules=rules, train_config=cfg,
        workdir=workdir, checkpointer=checkpointer,
        counts_per_batch={"tokens": tokens_per_batch}, flops_per_batch=flops,
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
    run_dir, _ = stage_dirs(_CONFIG.value, _WORKDIR.value)
    print(f"final loss {last['loss']:.4f} after {last['step']} steps "
          f"(metrics in {os.path.join(run_dir, 'metrics.jsonl')})")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
