"""The generate CLI's pieces: checkpoint restore, prompts, reproducibility, video files."""

import dataclasses
import os
import sys
import types

import imageio.v2 as imageio
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from loong_jax import cli, generate
from loong_jax import sharding as sharding_lib
from loong_jax.inference import decode, long_video, masked_decode
from loong_jax.llm import transformer
from loong_jax.train import checkpoint as checkpoint_lib

TEXT_SIZE = 40  # the test vocabulary's (tests/inference/conftest.py)


def tiny_config(model, vocab):
  """configs/inference.py:tiny shrunk to the test LM (16x16 pixels: 2x2 tokens per frame)."""
  config = cli.load_config_file("configs/inference.py:tiny")
  lm = {f: getattr(model.config, f) for f in model.config.__dataclass_fields__}
  lm.update(dtype="float32", param_dtype="float32")
  with config.unlocked():
    config.vocab = ml_collections.ConfigDict(dict(text_size=vocab.text_size,
                                                  video_size=vocab.video_size))
    config.lm = ml_collections.ConfigDict(lm)
    config.inference.update(height=16, width=16, clip_latent_frames=3, cond_latent_frames=1,
                            max_text_len=4, fps=4.0, top_k=8)
  return config


def encode_text(prompt):
  """Stand-in text tokenizer: one id per character."""
  return np.asarray([ord(c) % TEXT_SIZE for c in prompt], np.int32)


def save_run(workdir, params):
  """A checkpoint written as train_lm writes it (`train.checkpoint.Checkpointer`)."""
  checkpointer = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"), save_every=1,
                                             keep_last=1)
  state = types.SimpleNamespace(step=jnp.asarray(3), params=params, opt_state={"mu": params})
  checkpointer.save(3, state, force=True)
  checkpointer.close()


def test_restores_params_only_from_a_train_lm_checkpoint(tmp_path, lm, vocab):
  model, params = lm
  save_run(str(tmp_path), params)
  config = tiny_config(model, vocab)
  mesh = sharding_lib.make_mesh(dict(data=1, fsdp=1, tensor=1), jax.devices()[:1])
  restored = generate.restore_params(str(tmp_path), model, mesh,
                                     sharding_lib.rules(config.sharding))
  jax.tree.map(np.testing.assert_array_equal, restored, params)


def test_missing_checkpoint_is_a_clear_error(tmp_path, lm):
  model, _ = lm
  with pytest.raises(FileNotFoundError, match="no checkpoint"):
    generate.restore_params(str(tmp_path), model, None, ())


def test_same_seed_same_videos_and_files_are_written(tmp_path, lm, vocab, stand_in_codec):
  model, params = lm
  config = tiny_config(model, vocab)
  prompts = ["a red ball", "", "a prompt much longer than four ids"]
  run = lambda seed: generate.generate_videos(config, params, prompts, 2.5, seed,
                                              stand_in_codec.codec(), encode_text).video
  first = run(7)
  assert first.shape == (3, 10, 16, 16, 3)  # 2.5 s at 4 fps
  np.testing.assert_array_equal(first, run(7))
  paths = generate.output_paths(str(tmp_path / "v.mp4"), len(prompts))
  for path, video in zip(paths, first):
    mp4, gif = generate.write_video(path, video, config.inference.fps)
    assert imageio.get_reader(mp4).count_frames() == 10
    # Pillow merges identical consecutive gif frames (the stand-in repeats each one 4 times).
    assert imageio.mimread(gif)[0].shape == (16, 16, 3)


def test_first_frame_candidates_reach_the_long_video_config(monkeypatch, lm, vocab,
                                                           stand_in_codec):
  """`inference.first_frame_candidates` / `rerank_guidance` reach `long_video.generate`; the
  config's defaults keep one first frame."""
  model, params = lm
  config = tiny_config(model, vocab)
  seen = []
  real = long_video.generate
  monkeypatch.setattr(long_video, "generate",
                      lambda *a, **k: seen.append(a[5]) or real(*a, **k))
  generate.generate_videos(config, params, ["a red ball"], 1.0, 0, stand_in_codec.codec(),
                           encode_text)
  config.inference.update(dict(first_frame_candidates=4, rerank_guidance=2.0,
                               reencode_margin=0.5))
  codec = dataclasses.replace(stand_in_codec.codec(), reencode=lambda v, p, m: p)
  out = generate.generate_videos(config, params, ["a red ball"], 1.0, 0, codec, encode_text)
  assert out.video.shape[1] == 4
  assert [(c.first_frame_candidates, c.rerank_guidance, c.reencode_margin)
          for c in seen] == [(1, 1.0, 0.0), (4, 2.0, 0.5)]


def test_long_prompt_is_truncated_and_empty_prompt_is_unconditional(caplog, vocab):
  ids = generate.encode_prompt("abcdefgh", encode_text, 4, vocab)
  np.testing.assert_array_equal(ids, encode_text("abcd"))
  assert "truncated" in caplog.text
  assert generate.encode_prompt("   ", encode_text, 4, vocab) is None


def test_seconds_to_frames():
  assert generate.num_frames(60, 6.5) == 390
  assert generate.num_frames(0.01, 6.5) == 1


def test_no_tokenizer_is_a_clear_error(monkeypatch):
  with pytest.raises(RuntimeError, match="tokenizer_config"):
    generate.load_codec("", "")
  monkeypatch.setitem(sys.modules, "loong_jax.tokenizer", None)
  with pytest.raises(RuntimeError, match="loong_jax.tokenizer package"):
    generate.load_codec("configs/tokenizer/x.py", "/nonexistent")


def test_oracle_codec_needs_no_files_and_reencodes_exactly():
  codec = generate.load_codec("", "", "oracle", 8192)
  codes = np.random.default_rng(0).integers(0, 4096, (1, 3, 2, 2))
  video = codec.decode(codes)
  assert video.shape == (1, 9, 16, 16, 3)
  np.testing.assert_array_equal(codec.encode(video), codes)
  np.testing.assert_array_equal(codec.reencode(video, codes + 1, 0.5), codes)  # exact anyway
  with pytest.raises(ValueError, match="tokenizer_kind"):
    generate.load_codec("", "", "vqgan")


def test_text_encoder_is_the_runs_sentencepiece_model(tmp_path):
  from loong_jax.data import text
  path = str(tmp_path / "text.model")
  text.train([f"a {c} ball moves {d}" for c in ("red", "blue", "green") for d in ("up", "down")],
             path, vocab_size=30)
  ids = generate.load_text_encoder(path)("a red ball moves up")
  np.testing.assert_array_equal(ids, text.TextTokenizer(path).encode("a red ball moves up"))
  assert ids.dtype == np.int32 and len(ids) > 0


def test_config_picks_the_decoder_and_masked_generation_runs(lm, vocab, stand_in_codec):
  model, params = lm
  config = tiny_config(model, vocab)
  assert type(generate.make_decoder(config, model, vocab)) is decode.Decoder
  config.inference.decoder = "masked"
  with pytest.raises(ValueError, match="decoder='autoregressive'"):
    generate.make_decoder(config, model, vocab)
  ardf = cli.load_config_file("configs/inference.py:tiny,ardf")
  assert ardf.inference.decoder == "masked" and ardf.lm.attention_mask == "frame_bidirectional"
  config.lm.update(rope="mm_rope", attention_mask="frame_bidirectional", num_heads=2,
                   num_kv_heads=1, head_dim=32)
  config.inference.masked.steps = 2
  model = transformer.Transformer(transformer.LMConfig.from_config(config.lm))
  params = model.init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))["params"]
  assert isinstance(generate.make_decoder(config, model, vocab), masked_decode.MaskedDecoder)
  video = generate.generate_videos(config, params, ["a red ball", ""], 2.5, 0,
                                   stand_in_codec.codec(), encode_text).video
  assert video.shape == (2, 10, 16, 16, 3)
  config.inference.decoder = "beam"
  with pytest.raises(ValueError, match="inference.decoder='beam'"):
    generate.make_decoder(config, model, vocab)
