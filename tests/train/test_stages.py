"""The progressive curriculum: stage lineage, start-up checks, loss re-weighting."""

import json
import shutil

import chex
import jax
import numpy as np
import pytest

from configs.lm import llama
from configs.stages import base
from loong_jax import train_lm


def _stage(stage, **overrides):
  config = base.stage_config(stage, "tiny")
  config.vocab.text_size, config.vocab.video_size = 1_000, 256
  config.mesh = dict(data=1, fsdp=1, tensor=1)
  config.train.update(steps=6, log_every=3, eval_every=0, checkpoint_every=6)
  config.optim.warmup_steps = 2
  for key, value in overrides.items():
    section, field = key.split(".")
    config[section][field] = value
  return config


@pytest.fixture(scope="module")
def three_stages(tmp_path_factory):
  """`(workdir, [LoopResult of stage 1, 2, 3])`: the curriculum run once, shared."""
  workdir = tmp_path_factory.mktemp("stages")
  return workdir, [train_lm.train(_stage(k), str(workdir)) for k in (1, 2, 3)]


@pytest.mark.xdist_group("three_stages")  # one worker trains the shared curriculum, not two
def test_stages_one_two_three_chain_their_weights(three_stages):
  workdir, results = three_stages
  assert all(int(r.state.step) == 6 for r in results)
  lineage = json.loads((workdir / "stage3" / "lineage.json").read_text())
  assert lineage == {"stage": 3, "from_workdir": str(workdir / "stage2"), "from_step": 6,
                     "reset_optimizer": True}
  assert not (workdir / "stage1" / "lineage.json").exists()
  # Stage 2 started from stage 1's final weights: its first logged loss is far below a fresh
  # model's (stage 1's first loss), on the same kind of tokens.
  assert results[1].history[0]["loss"] < results[0].history[0]["loss"]
  # Stage 1 is images only; stage 3 sees 17-latent-frame clips.
  assert results[0].history[-1]["loss_later_frames"] == 0
  assert results[2].history[-1]["loss_later_frames"] > 0


@pytest.mark.xdist_group("three_stages")
def test_a_stage_starts_from_exactly_the_previous_final_params(three_stages, tmp_path):
  shared, results = three_stages
  # A copy of stage 1's run: starting stage 2 writes its lineage, which the shared run keeps.
  shutil.copytree(shared / "stage1", tmp_path / "stage1")
  config = _stage(2, **{"train.steps": 3})
  *_, fresh, _, _ = train_lm.build(config)
  run_dir, previous = train_lm.stage_dirs(config, str(tmp_path))
  (tmp_path / "stage2").mkdir()
  started = train_lm.init_from_previous_stage(config, fresh, previous, run_dir)
  chex.assert_trees_all_equal(jax.device_get(started.params),
                              jax.device_get(results[0].state.params))
  assert int(started.step) == 0


def test_missing_previous_stage_and_short_sequences_fail_at_start_up(tmp_path):
  with pytest.raises(FileNotFoundError, match="config.init.from_workdir: no checkpoint"):
    train_lm.train(_stage(2), str(tmp_path))
  with pytest.raises(ValueError, match="config.train.seq_len=64 cannot hold this stage's "
                     "longest clip"):
    train_lm.train(_stage(3, **{"train.seq_len": 64}), str(tmp_path / "other"))


@pytest.mark.slow
def test_first_frame_weighting_lowers_the_first_frame_loss(tmp_path):
  finals = {}
  for weighting in ("uniform", "first_frame"):
    config = _stage(2, **{"data.loss_weighting": weighting, "train.steps": 60,
                          "train.log_every": 20, "init.from_workdir": ""})
    config.stage = 1  # train from scratch on stage 2's clip mix
    config.data.clip_mix = ((5, 1.0),)
    finals[weighting] = train_lm.train(config, str(tmp_path / weighting)).history[-1]
  assert finals["first_frame"]["loss_first_frame"] < finals["uniform"]["loss_first_frame"]
  np.testing.assert_array_less(0, [f["loss_later_frames"] for f in finals.values()])


@pytest.mark.parametrize("variant", ["mmrope", "ardf"])
def test_lumos_variants_parse_and_build(variant, tmp_path):
  for stage in (1, 2, 3):
    config = base.stage_config(stage, f"tiny,shards={tmp_path},{variant}")
    assert config.variant == variant and config.lm.rope == "mm_rope"
    assert config.data.text_dropout == 0.1
  ardf = variant == "ardf"
  assert config.lm.attention_mask == ("frame_bidirectional" if ardf else "causal")
  assert config.train.objective == ("ardf" if ardf else "next_token")
  if ardf:
    assert dict(config.train.ardf) == {"mask_kind": "tube", "min_ratio": 0.7}
  config = _stage(2)
  llama.apply_variant(config, variant)
  model, *_, step_fn = train_lm.build(config)
  assert model.config.head_dim == 32 and model.config.num_heads == 2  # same widths as 4 x 16
  assert step_fn is not None


def test_loong_defaults_are_unchanged_and_bad_options_fail():
  config = base.stage_config(2, "tiny")
  assert (config.variant, config.lm.rope, config.lm.attention_mask, config.train.objective,
          config.lm.head_dim) == ("loong", "rope_1d", "causal", "next_token", 16)
  with pytest.raises(ValueError, match="variant"):
    base.stage_config(2, "tiny,lumos")
  with pytest.raises(ValueError, match="unknown option"):
    base.stage_config(2, "tiny,shard=/x")
