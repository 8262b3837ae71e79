"""Train the video tokenizer.

  python -m loong_jax.train_tokenizer --config configs/tokenizer/magvit2.py:demo --workdir DIR
  python -m loong_jax.train_tokenizer --config configs/tokenizer/magvit2.py:demo --workdir DIR \
      --config.data.folder=PATH/TO/VIDEOS

Runs the shared training loop (`train/loop.py`) on clips of the built-in dataset
(`data/synthetic.py`) or of every video in `config.data.folder` (unreadable ones counted and
skipped). Writes `config.json`, `metrics.jsonl`, TensorBoard events and orbax checkpoints
(generator + discriminator state and the data position) to DIR; a rerun resumes exactly from the
latest checkpoint.

Image-first training [MV2][OM2] (`config.image_phase.steps > 0`): an image tokenizer (the same
model with 1-frame kernels, `tokenizer/inflate.py`) first trains on single frames in DIR/image,
reconstruction loss only, with its own batch, learning rate and EMA; its final raw and EMA weights
are inflated into the video tokenizer, which then trains on clips in DIR as above. Each phase is
an ordinary run with its own checkpoints, so a rerun resumes exactly in either phase.

The final held-out evaluation (PSNR in dB, codebook usage; raw and EMA weights) is logged and
written to `DIR/eval.json`.
"""

from __future__ import annotations

import copy
import functools
import json
import os

import jax
import numpy as np
from absl import flags, logging

from loong_jax import cli
from loong_jax import sharding as sharding_lib
from loong_jax.data import sources, synthetic, video_batches
from loong_jax.tokenizer import autoencoder
from loong_jax.tokenizer import inflate
from loong_jax.tokenizer import perceptual
from loong_jax.train import checkpoint as checkpoint_lib
from loong_jax.train import loop, tokenizer_step

# Flag holders, created by define_flags() when the module runs as a program.
_CONFIG = _WORKDIR = None


def define_flags():
  """Define this entry point's flags (only when run as a program, so that modules that
  define flags of the same names can be imported side by side, e.g. by tests)."""
  global _CONFIG, _WORKDIR
  _CONFIG = cli.define_config_flag()
  _WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and eval.json.")

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


def clip_source(config, split: str = "train"):
  """Clips of `config.data.frames` x `resolution`^2: every video in `config.data.folder`, or the
  built-in dataset's `split` ("train" or "heldout"). A folder has no held-out split: its own
  clips are scored."""
  data = config.data
  if data.folder:
    return sources.FolderSource.uncaptioned(data.folder, data.resolution, data.frames)
  return synthetic.SyntheticVideos(synthetic.SyntheticConfig(
      resolution=data.resolution, num_frames=(data.frames,), max_objects=data.num_shapes), split)


def heldout_clips(config, num: int) -> np.ndarray:
  """The first `num` readable held-out clips, float32 `[num, T, H, W, 3]` in [-1, 1]."""
  batches = video_batches.video_batches(clip_source(config, "heldout"), num, shuffle=False,
                                        num_epochs=1, process_index=0, process_count=1)
  return next(iter(batches))["video"]


def make_evaluator(config, mesh, clips: np.ndarray, batch_size: int):
  """`state -> {psnr, usage, ema_psnr, ema_usage}` on `clips` `[N, T, H, W, 3]` (compiled once).

  PSNR in dB (mean over clips) and codebook usage (fraction of the K codes seen), for the raw and
  the EMA generator weights.
  """
  recon = jax.jit(functools.partial(tokenizer_step.reconstruct, config=config))
  sharding = sharding_lib.batch_sharding(mesh, 5)
  codebook_size = config.tokenizer.quantizer.codebook_size

  def evaluate(state) -> dict[str, float]:
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
      results[f"{name}psnr"] = float(np.mean(psnrs))
      results[f"{name}usage"] = len(np.unique(np.concatenate(ids))) / codebook_size
    return results
  return evaluate


def evaluate(state, clips: np.ndarray, config, mesh, batch_size: int) -> dict[str, float]:
  """One evaluation of `state` (see `make_evaluator`)."""
  return make_evaluator(config, mesh, clips, batch_size)(state)


def step_schedule(config, state_shardings, mesh):
  """`step index -> (state, {"video": ...}) -> (state, metrics)`: reconstruction-only steps
  before `config.loss.disc_start`, GAN steps from it (each compiled on first use)."""
  gan_on = config.loss.gan_weight > 0
  perceptual_params = load_perceptual(config)
  extra, perceptual_sh = (), None
  if perceptual_params is not None:
    perceptual_sh = jax.tree.map(lambda _: sharding_lib.replicated(mesh), perceptual_params)
    extra = (jax.device_put(perceptual_params, perceptual_sh),)

  def on_video(step):
    return lambda state, batch: step(state, batch["video"], *extra)

  steps = {use_gan: on_video(tokenizer_step.jit_train_step(config, state_shardings, mesh,
                                                           use_gan, perceptual_sh))
           for use_gan in {False, gan_on}}
  return lambda step: steps[gan_on and step >= config.loss.disc_start]


IMAGE_DIR = "image"


def image_phase_config(config):
  """The image phase's run config: the image-tokenizer twin on 1-frame clips, with
  `config.image_phase`'s steps, batch, learning rate, warm-up and EMA; no GAN, no periodic eval."""
  phase = config.image_phase
  out = copy.deepcopy(config)
  out.tokenizer = inflate.image_config(config.tokenizer)
  out.data.frames = 1
  out.train.steps, out.train.batch_size = phase.steps, phase.batch_size
  out.train.eval_every = 0
  out.optim.learning_rate = phase.learning_rate
  out.optim.warmup_steps = phase.warmup_steps
  out.optim.ema_decay = phase.ema_decay
  out.optim.decay_steps = None
  out.loss.gan_weight = 0.0
  out.image_phase.steps = 0
  return out


def inflate_state(state, image_state, config, shardings):
  """`state` with the generator's raw and EMA weights inflated from `image_state`'s and a fresh
  optimizer state for them (placed as `shardings`)."""
  middle = (inflate.temporal_downsamplers(config.tokenizer)
            if config.image_phase.downsample_tap == "middle" else ())
  params, ema = (inflate.inflate_params(tree, state.params, middle)
                 for tree in (image_state.params, image_state.ema_params))
  params = jax.device_put(params, shardings.params)
  ema = jax.device_put(ema, shardings.ema_params)
  opt_state = jax.device_put(state.tx.init(params), shardings.opt_state)
  return state.replace(params=params, ema_params=ema, opt_state=opt_state)


def train(config, workdir: str, source=None, image_source=None) -> loop.LoopResult:
  """Train (or resume) until `config.train.steps` in `workdir`, after the image phase when
  `config.image_phase.steps > 0` (see the module docstring).

  Args:
    config: a `configs/tokenizer/magvit2.py` config.
    workdir: run directory (checkpoints, metrics).
    source: the training clips (a data source of `{"video": uint8 [T, H, W, 3]}` items);
      default `clip_source(config)`.
    image_source: the image phase's 1-frame items; default `clip_source` of its config.
  Returns:
    The clip phase's result (the image phase's when it was preempted).
  """
  image_state = None
  if config.image_phase.steps:
    if config.image_phase.downsample_tap not in ("last", "middle"):
      raise ValueError("config.image_phase.downsample_tap must be 'last' or 'middle', got "
                       f"{config.image_phase.downsample_tap!r}")
    image_config = image_phase_config(config)
    image_result = train(image_config, os.path.join(workdir, IMAGE_DIR), image_source)
    if image_result.preempted:
      return image_result
    image_state = image_result.state
  cfg = config.train
  mesh = sharding_lib.make_mesh(config.mesh)
  rules = sharding_lib.rules(config.sharding)
  validate(config, mesh.shape["data"] * mesh.shape["fsdp"])
  state, shardings = tokenizer_step.create_state(config, jax.random.key(cfg.seed), mesh, rules)
  if image_state is not None:
    state = inflate_state(state, image_state, config, shardings)
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=1))
  skipped = sources.SkipCounter()
  data = iter(video_batches.video_batches(
      clip_source(config) if source is None else source, cfg.batch_size // jax.process_count(),
      seed=cfg.seed, counter=skipped, read_ahead=config.data.get("read_ahead")))
  eval_fn = None
  if cfg.eval_every:
    evaluator = make_evaluator(config, mesh, heldout_clips(config, cfg.eval_clips),
                               cfg.batch_size)
    eval_fn = lambda s: {f"eval_{k}": v for k, v in evaluator(s).items()}  # noqa: E731
  checkpointer = checkpoint_lib.Checkpointer(
      os.path.join(workdir, "checkpoints"), save_every=cfg.checkpoint_every,
      keep_last=cfg.keep_last, keep_every=cfg.keep_every, fields=SAVED_FIELDS)
  try:
    result = loop.train_loop(
        state=state, step_fn_at=step_schedule(config, shardings, mesh), data=data, mesh=mesh,
        axis_rules=rules, train_config=cfg, workdir=workdir, checkpointer=checkpointer,
        counts_per_batch={"frames": cfg.batch_size * config.data.frames}, eval_fn=eval_fn)
  finally:
    checkpointer.close()
  if skipped.count:
    logging.warning("skipped %d unreadable or too-short clips in this run (config.data.folder=%s)",
                    skipped.count, config.data.folder)
  return result


def train_and_evaluate(config, workdir: str) -> dict[str, float]:
  """Train for `config.train.steps`, then score held-out clips; returns the evaluation ({} when
  preempted: the run stopped after a checkpoint and resumes when started again)."""
  result = train(config, workdir)
  if result.preempted:
    logging.warning("preempted: checkpoint saved at step %d", int(result.state.step))
    return {}
  mesh = sharding_lib.make_mesh(config.mesh)
  clips = heldout_clips(config, config.train.eval_clips)
  with sharding_lib.mesh_context(mesh, sharding_lib.rules(config.sharding)):
    results = evaluate(result.state, clips, config, mesh, config.train.batch_size)
  logging.info("held-out evaluation on %d clips: %s", len(clips), results)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "eval.json"), "w") as f:
      json.dump(dict(results, step=int(result.state.step)), f, indent=2)
  return results


def main(argv):
  del argv
  train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["config", "workdir"])
  cli.run(main)
