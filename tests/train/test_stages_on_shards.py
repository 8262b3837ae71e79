"""Curriculum stages on pre-tokenized shards of the built-in dataset (data/pipeline.py)."""

import json

import numpy as np

from configs.stages import base
from loong_jax import tokens, train_lm
from loong_jax.data import encoders, pretokenize, synthetic, text


def _shards(root):
  """images/ and clips17/ token shards of 64 px built-in videos (pooling stand-in encoder)."""
  vocab = tokens.Vocab(1_000, 8_192)
  corpus = synthetic.SyntheticVideos(synthetic.SyntheticConfig(num_frames=(1, 17),
                                                               num_train=300))
  text_model = text.train((corpus.caption(i) for i in range(len(corpus))),
                          str(root / "text.model"), vocab.text_size)
  encode = encoders.pooling_stand_in_encoder(vocab.video_size)
  for name, frames, n in (("images", 1, 16), ("clips17", 17, 8)):
    source = synthetic.SyntheticVideos(synthetic.SyntheticConfig(
        resolution=64, num_frames=(frames,), num_train=n, num_heldout=n))
    pretokenize.pretokenize(source, encode, text_model, str(root / "tokens" / name),
                            vocab=vocab, shard_size=8, batch_size=4)
  return str(root / "tokens")


def test_stage_one_then_two_on_token_shards(tmp_path):
  shards = _shards(tmp_path)
  histories = []
  for stage in (1, 2):
    config = base.stage_config(stage, f"tiny,shards={shards}")
    config.mesh = dict(data=1, fsdp=1, tensor=1)
    config.train.update(steps=4, log_every=2, eval_every=0, checkpoint_every=4,
                        batch_size=4)
    config.optim.warmup_steps = 1
    histories.append(train_lm.train(config, str(tmp_path / "run")).history)
  assert all(np.isfinite(r["loss"]) for h in histories for r in h)
  assert histories[0][-1]["loss_later_frames"] == 0     # stage 1: images only
  assert histories[1][-1]["loss_later_frames"] > 0      # stage 2: 17-frame clips too
  lineage = json.loads((tmp_path / "run" / "stage2" / "lineage.json").read_text())
  assert lineage["from_step"] == 4
  # Stage 2 again with its images and clips in length groups (data.length_groups).
  config.data.length_groups = True
  config.init.from_workdir = str(tmp_path / "run" / "stage1")
  assert [(n, r) for n, _, r in train_lm.length_groups(config)] == [(100, 1), (364, 3)]
  grouped = train_lm.train(config, str(tmp_path / "grouped")).history
  assert all(np.isfinite(r["loss"]) for r in grouped) and grouped[-1]["loss_later_frames"] > 0
  assert grouped[-1]["tokens_per_s"] > 0
