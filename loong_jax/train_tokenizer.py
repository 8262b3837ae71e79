"""Train the video tokenizer.

  python -m loong_jax.train_tokenizer --config configs/tokenizer/magvit2.py:demo --workdir DIR
  python -m loong_jax.train_tokenizer --config configs/tokenizer/magvit2.py:demo --workdir DIR \
      --config.data.folder=PATH/TO/VIDEOS

Checkpoints go to `DIR/checkpoints` (orbax; a rerun resumes from the latest one); the final
held-out evaluation (PSNR in dB, codebook usage) is logged and written to `DIR/eval.json`.
"""

from __future__ import annotations

import json
import os
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import flags, logging

from loong_jax import cli
from loong_jax import sharding as sharding_lib
from loong_jax.tokenizer import autoencoder
from loong_jax.tokenizer import perceptual
from loong_jax.tokenizer import toy_data
from loong_jax.train import tokenizer_step

_CONFIG = cli.define_config_flag()
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and eval.json.")

# Held-out clips come from a seed no training run uses (training seeds are seed + start step).
EVAL_SEED_OFFSET = 1_000_003
# Fields of TokenizerState that are saved (the optimizers are rebuilt from the config).
SAVED_FIELDS = ("step", "params", "ema_params", "codebook_stats", "opt_state", "disc_params",
                "disc_opt_state", "lecam_ema")


def validate(config, num_data_shards: int):
  model_config = autoencoder.AutoencoderConfig.from_config(config.tokenizer)
  model_config.latent_shape(config.data.frames, config.data.resolution, config.data.resolution)
  if config.train.batch_size % num_data_shards:
    raise ValueError(f"config.train.batch_size={config.train.batch_size} must be divisible by the "
                     f"{num_data_shards} data shards of config.mesh")


def load_perceptual(config):
  path = config.loss.perceptual_weights_path
  if not path or not config.loss.perceptual_weight:
    logging.info("perceptual loss off (config.loss.perceptual_weights_path is empty or its weight "
                 "is 0)")
    return None
  logging.info("perceptual loss on: LPIPS weights from %s", path)
  return perceptual.load_params(path)


def evaluate(state, clips: np.ndarray, config, mesh, batch_size: int) -> dict[str, float]:
  """Held-out PSNR (dB, mean over clips) and codebook usage (fraction of the K codes seen).

  Both the raw and the EMA generator weights are scored.
  """
  recon = jax.jit(lambda p, s, v: tokenizer_step.reconstruct(p, s, v, config=config))
  sharding = sharding_lib.batch_sharding(mesh, 5)
  results = {}
  for name, params in (("", state.params), ("ema_", state.ema_params)):
    psnrs, ids = [], []
    for start in range(0, len(clips), batch_size):
      video = jax.device_put(clips[start:start + batch_size], sharding)
      out, indices = recon(params, state.codebook_stats, video)
      out, video = np.asarray(out, np.float64), np.asarray(video, np.float64)
      mse = np.mean(((out - video) / 2.0) ** 2, axis=(1, 2, 3, 4))
      psnrs.extend(-10.0 * np.log10(np.maximum(mse, 1e-10)))
      ids.append(np.asarray(indices).reshape(-1))
    codebook_size = config.tokenizer.quantizer.codebook_size
    results[f"{name}psnr"] = float(np.mean(psnrs))
    results[f"{name}usage"] = len(np.unique(np.concatenate(ids))) / codebook_size
  return results


def checkpoint_manager(workdir: str, config) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=2,
                                         save_interval_steps=config.train.checkpoint_every)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                               options=options)


def restore_latest(manager, state, shardings):
  step = manager.latest_step()
  if step is None:
    return state
  abstract = {f: jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                              getattr(state, f), getattr(shardings, f)) for f in SAVED_FIELDS}
  restored = manager.restore(step, args=ocp.args.StandardRestore(abstract))
  logging.info("resumed from step %d", step)
  return state.replace(**restored)


def train_and_evaluate(config, workdir: str) -> dict[str, float]:
  """Train for `config.train.steps`, checkpointing; returns the held-out evaluation."""
  mesh = sharding_lib.make_mesh(config.mesh)
  rules = sharding_lib.rules(config.sharding)
  validate(config, mesh.shape["data"] * mesh.shape["fsdp"])
  state, shardings = tokenizer_step.create_state(config, jax.random.key(config.train.seed), mesh,
                                                 rules)
  perceptual_params = load_perceptual(config)
  perceptual_args, perceptual_sh = (), None
  if perceptual_params is not None:
    perceptual_args = (perceptual_params,)
    perceptual_sh = jax.tree.map(lambda _: sharding_lib.replicated(mesh), perceptual_params)
  manager = checkpoint_manager(workdir, config)
  state = restore_latest(manager, state, shardings)
  start = int(state.step)
  gan_on = config.loss.gan_weight > 0
  steps = {use_gan: tokenizer_step.jit_train_step(config, shardings, mesh, use_gan, perceptual_sh)
           for use_gan in {False, gan_on}}
  batches = toy_data.make_clip_iterator(config, config.train.seed + start)
  batch_sharding = sharding_lib.batch_sharding(mesh, 5)
  tick = time.time()
  with sharding_lib.mesh_context(mesh, rules):
    for step in range(start, config.train.steps):
      batch = jax.device_put(next(batches), batch_sharding)
      state, metrics = steps[gan_on and step >= config.loss.disc_start](state, batch,
                                                                         *perceptual_args)
      if (step + 1) % config.train.log_every == 0 or step + 1 == config.train.steps:
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        rate = config.train.log_every / (time.time() - tick)
        logging.info("step %d (%.2f steps/s) %s", step + 1, rate,
                     " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())))
        tick = time.time()
      manager.save(step + 1, args=ocp.args.StandardSave(
          {f: getattr(state, f) for f in SAVED_FIELDS}), force=step + 1 == config.train.steps)
    manager.wait_until_finished()
    held_out = next(toy_data.make_clip_iterator(config, config.train.seed + EVAL_SEED_OFFSET,
                                                batch_size=config.train.eval_clips))
    results = evaluate(state, held_out, config, mesh, config.train.batch_size)
  logging.info("held-out evaluation on %d clips: %s", len(held_out), results)
  with open(os.path.join(workdir, "eval.json"), "w") as f:
    json.dump(dict(results, step=int(state.step)), f, indent=2)
  return results


def main(argv):
  del argv
  os.makedirs(_WORKDIR.value, exist_ok=True)
  train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  cli.run(main)
