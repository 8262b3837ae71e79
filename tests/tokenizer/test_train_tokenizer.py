"""End to end through the shared loop: exact resume across the GAN switch, bad videos and
non-finite steps skipped, the demo config learns."""

import json
import logging
import os

import chex
import jax
import numpy as np
import pytest

from loong_jax import sharding, train_tokenizer
from loong_jax.data import encoders
from loong_jax.train import tokenizer_step
from tests.data.test_sources import make_folder
from tests.tokenizer.conftest import load


def small_config(**train):
  """`tiny` with one downsampling level on one device: the quickest model to compile."""
  config = load("tiny")
  config.mesh = dict(data=1, fsdp=1, tensor=1)
  config.tokenizer.ch_mult = (1, 2)
  config.tokenizer.down_strides = ((2, 2, 2),)
  config.tokenizer.discriminator.ch_mult = (2,)
  config.tokenizer.norm = "none"  # norm-free blocks: quicker to trace; no test here is on norms
  config.train.log_every = 1
  config.data.read_ahead = 4  # not grain's 500 clips (for a folder: 500 ffmpeg processes)
  for key, value in train.items():
    config.train[key] = value
  return config


def _losses(workdir) -> dict[int, dict[str, float]]:
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  return {r["step"]: {k: v for k, v in r.items() if "loss" in k} for r in rows}


def test_validate_reports_bad_clip_and_batch_shapes():
  config = load("tiny")
  config.data.frames = 6
  with pytest.raises(ValueError, match="1 \\+ 4k"):
    train_tokenizer.validate(config, 1)
  config = load("tiny")
  with pytest.raises(ValueError, match="batch_size=2 must be divisible by the 8 data shards"):
    train_tokenizer.validate(config, 8)


# imageio-ffmpeg starts a subprocess (fork + exec, no deadlock risk).
@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
def test_folder_run_skips_corrupt_videos_and_non_finite_steps(tmp_path, caplog):
  folder = tmp_path / "videos"
  folder.mkdir()
  make_folder(folder)  # 2 good clips; a corrupt, a truncated video and a 1-frame image
  config = small_config(steps=3, checkpoint_every=100, debug_nan_steps=(2,))
  config.data.folder = str(folder)
  config.loss.disc_start = 100
  with caplog.at_level(logging.WARNING):
    result = train_tokenizer.train(config, str(tmp_path / "run"))
  # 3 batches of 2 read the folder twice over: every bad file is met at least once.
  assert any("corrupt.mp4" in r.getMessage() for r in caplog.records)
  assert any("truncated.mp4" in r.getMessage() for r in caplog.records)
  summary = [r.getMessage() for r in caplog.records if "unreadable or too-short" in r.getMessage()]
  assert summary and int(summary[0].split()[1]) >= 3, summary
  assert result.skipped_steps == [2]
  assert [r["step"] for r in result.history] == [1, 2, 3]
  assert result.history[1]["skipped_total"] == 1
  assert all(np.isfinite(r["generator_loss"]) for r in result.history if r["step"] != 2)
  assert int(result.state.step) == 3
  for tree in (result.state.params, result.state.ema_params, result.state.opt_state):
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(tree))


@pytest.mark.slow
def test_resume_across_the_gan_switch_is_bit_identical(tmp_path):
  n = 2
  # The schedule's horizon is pinned, so that the first half (steps=n) trains as the straight run.
  config = small_config(steps=2 * n, checkpoint_every=n)
  config.optim.decay_steps = 2 * n
  assert config.loss.disc_start == n  # the second half runs the GAN steps
  straight = train_tokenizer.train(config, str(tmp_path / "straight"))
  resumed_dir = str(tmp_path / "resumed")
  config.train.steps = n
  first = train_tokenizer.train(config, resumed_dir)
  assert "disc_loss" not in first.history[-1]
  config.train.steps = 2 * n
  resumed = train_tokenizer.train(config, resumed_dir)
  assert resumed.start_step == n
  assert "disc_loss" in resumed.history[-1]
  assert _losses(resumed_dir) == _losses(tmp_path / "straight")  # exact, steps 1..2n
  for field in train_tokenizer.SAVED_FIELDS:
    chex.assert_trees_all_equal(jax.device_get(getattr(resumed.state, field)),
                                jax.device_get(getattr(straight.state, field)))
  # Pre-tokenization and generation read the EMA weights of this checkpoint layout.
  _, ema = encoders.restore_tokenizer(config.tokenizer, resumed_dir)
  chex.assert_trees_all_equal(jax.device_get(ema), jax.device_get(straight.state.ema_params))


@pytest.mark.slow
def test_short_demo_run_learns_and_resumes(tmp_path):
  config = load("demo")
  config.mesh = dict(data=1, fsdp=1, tensor=1)
  config.train.eval_clips = 16
  config.data.read_ahead = 4
  config.loss.disc_start = 1_000  # reconstruction only in this short run
  config.image_phase.steps, config.image_phase.warmup_steps = 20, 2
  config.train.batch_size, config.optim.warmup_steps = 2, 2
  mesh, rules = sharding.make_mesh(config.mesh), sharding.rules(config.sharding)
  state, _ = tokenizer_step.create_state(config, jax.random.key(config.train.seed), mesh, rules)
  clips = train_tokenizer.heldout_clips(config, config.train.eval_clips)
  with sharding.mesh_context(mesh, rules):
    untrained = train_tokenizer.evaluate(state, clips, config, mesh, config.train.batch_size)
  config.train.steps = 20
  workdir = str(tmp_path / "trained")
  trained = train_tokenizer.train_and_evaluate(config, workdir)
  # The default-step figures are measured by the demo (report.json), not asserted here.
  assert trained["psnr"] > untrained["psnr"], (untrained, trained)
  assert os.path.exists(os.path.join(workdir, "checkpoints", "20"))
  # A longer run in the same workdir resumes from step 20 instead of starting over.
  config.train.steps = 24
  train_tokenizer.train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, "eval.json")) as f:
    assert json.load(f)["step"] == 24


@pytest.mark.slow
def test_image_phase_then_inflation_resumes_exactly_across_the_switch(tmp_path):
  config = small_config(steps=2, checkpoint_every=2)
  config.optim.decay_steps = 2  # pinned, so that a 1-step clip phase trains as the straight run
  config.tokenizer.norm, config.tokenizer.temporal_padding = "none", "replicate"
  config.image_phase.update(steps=2, batch_size=4, downsample_tap="middle")
  straight = train_tokenizer.train(config, str(tmp_path / "straight"))
  assert [r["step"] for r in straight.history] == [1, 2]
  image_rows = _losses(tmp_path / "straight" / train_tokenizer.IMAGE_DIR)
  assert sorted(image_rows) == [1, 2]
  # Stopped after the image phase and one clip step, then resumed: the image phase is restored
  # (not retrained), the inflation redone, and the clip phase continues from its checkpoint.
  resumed_dir = tmp_path / "resumed"
  config.train.steps = 1
  first = train_tokenizer.train(config, str(resumed_dir))
  assert first.start_step == 0 and int(first.state.step) == 1
  config.train.steps = 2
  resumed = train_tokenizer.train(config, str(resumed_dir))
  assert resumed.start_step == 1
  assert _losses(resumed_dir / train_tokenizer.IMAGE_DIR) == image_rows
  assert _losses(resumed_dir) == _losses(tmp_path / "straight")
  for field in train_tokenizer.SAVED_FIELDS:
    chex.assert_trees_all_equal(jax.device_get(getattr(resumed.state, field)),
                                jax.device_get(getattr(straight.state, field)))


def test_generation_codec_canonicalises_flat_blocks_of_a_trained_tokenizer(tmp_path):
  """`generate.load_codec(..., flat_codes)` re-encodes as pre-tokenization does, at the
  tokenizer's own temporal and spatial factors: on a checkerboard of flat blocks (every block
  flat, its codes coloured by its neighbours through the encoder's convolutions) each block gets
  the code a clip of its colour alone gets there."""
  from loong_jax import generate
  config = small_config(steps=2, checkpoint_every=2)
  train_tokenizer.train(config, str(tmp_path))
  spec = str(tmp_path / "config.json")
  plain = generate.load_codec(spec, str(tmp_path))
  flat = generate.load_codec(spec, str(tmp_path),
                             flat_codes={"enabled": True, "tolerance": 0.0, "margin": 1})
  t, s = plain.temporal_stride, plain.spatial_downsample
  side = config.data.resolution
  blocks = (np.indices((side // s, side // s)).sum(0) % 2).astype(bool)   # [h, w] checkerboard
  white = np.kron(blocks, np.ones((s, s), bool))
  clip = np.where(white[None, None, :, :, None], 1.0, -1.0).astype(np.float32)
  clip = np.broadcast_to(clip, (1, 1 + 2 * t, side, side, 3)).copy()
  codes = {v: np.asarray(plain.encode(np.full_like(clip, v))) for v in (-1.0, 1.0)}
  want = np.where(blocks, codes[1.0], codes[-1.0])
  np.testing.assert_array_equal(np.asarray(flat.encode(clip)), want)
  assert (np.asarray(plain.encode(clip)) != want).any()  # without it, the neighbours show
