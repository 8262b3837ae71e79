"""End to end: the demo config trains, checkpoints, resumes and reconstructs held-out clips."""

import json
import os

import jax
import pytest

from loong_jax import sharding, train_tokenizer
from loong_jax.tokenizer import toy_data
from loong_jax.train import tokenizer_step
from tests.tokenizer.conftest import load


def test_validate_reports_bad_clip_and_batch_shapes():
  config = load("tiny")
  config.data.frames = 6
  with pytest.raises(ValueError, match="1 \\+ 4k"):
    train_tokenizer.validate(config, 1)
  config = load("tiny")
  with pytest.raises(ValueError, match="batch_size=2 must be divisible by the 8 data shards"):
    train_tokenizer.validate(config, 8)


@pytest.mark.slow
def test_short_demo_run_learns_and_resumes(tmp_path):
  config = load("demo")
  config.mesh = dict(data=1, fsdp=1, tensor=1)
  config.train.eval_clips = 16
  config.loss.disc_start = 1_000  # reconstruction only in this short run
  mesh, rules = sharding.make_mesh(config.mesh), sharding.rules(config.sharding)
  state, _ = tokenizer_step.create_state(config, jax.random.key(config.train.seed), mesh, rules)
  clips = next(toy_data.make_clip_iterator(
      config, config.train.seed + train_tokenizer.EVAL_SEED_OFFSET,
      batch_size=config.train.eval_clips))
  with sharding.mesh_context(mesh, rules):
    untrained = train_tokenizer.evaluate(state, clips, config, mesh, config.train.batch_size)
  config.train.steps = 60
  workdir = str(tmp_path / "trained")
  trained = train_tokenizer.train_and_evaluate(config, workdir)
  # The demo's own 200-600-step figures are measured by the demo (report.json), not asserted here.
  assert trained["psnr"] > untrained["psnr"], (untrained, trained)
  assert os.path.exists(os.path.join(workdir, "checkpoints", "60"))
  # A longer run in the same workdir resumes from step 60 instead of starting over.
  config.train.steps = 64
  train_tokenizer.train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, "eval.json")) as f:
    assert json.load(f)["step"] == 64
