"""End to end: the demo config trains, checkpoints, resumes and reconstructs held-out clips."""

import json
import os

import pytest

from loong_jax import train_tokenizer
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
  config.train.steps = 250
  config.train.eval_clips = 32
  config.loss.disc_start = 200
  workdir = str(tmp_path)
  first = train_tokenizer.train_and_evaluate(config, workdir)
  # An untrained tokenizer (or one that ignores its input) scores ~11-13 dB on these clips; the
  # full demo run (600 steps) is measured separately (see the README / report).
  assert first["psnr"] > 14.0, first
  assert first["usage"] > 0.02, first
  assert os.path.exists(os.path.join(workdir, "checkpoints", "250"))
  # A longer run in the same workdir resumes from step 250 instead of starting over.
  config.train.steps = 260
  train_tokenizer.train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, "eval.json")) as f:
    assert json.load(f)["step"] == 260
